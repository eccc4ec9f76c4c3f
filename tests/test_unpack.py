"""Safe extraction of hostile archives built here, in tmp_path."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from crossemotion.data.unpack import UnpackError, safe_extract


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            _add(tar, name, data)
    return buf.getvalue()


def _zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """tmp_path/box/{in,out}: anything written outside box/out is an escape."""
    box = tmp_path / "box"
    (box / "in").mkdir(parents=True)
    return box


def _escapes(box: Path, before: set[str]) -> set[str]:
    return {p for p in _tree(box.parent) - before if not p.startswith("box/out")}


def test_hostile_tar_writes_nothing_outside(sandbox: Path) -> None:
    archive = sandbox / "in" / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "MELD.Raw/good.csv", b"a,b\n")
        _add(tar, "./MELD.Raw/dot_prefixed.csv", b"c\n")
        _add(tar, "/tmp/abs_evil_crossemotion.txt", b"abs")
        _add(tar, "../escape.txt", b"up")
        _add(tar, "MELD.Raw/../../escape2.txt", b"up")
        _add(tar, "MELD.Raw/link", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(tar, "MELD.Raw/uplink", type=tarfile.SYMTYPE, linkname="../../..")
        _add(tar, "MELD.Raw/uplink/through_link.txt", b"via link")
        _add(tar, "MELD.Raw/hard", type=tarfile.LNKTYPE, linkname="../../outside/x")
        _add(tar, "MELD.Raw/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        _add(tar, "MELD.Raw/blk", type=tarfile.BLKTYPE, devmajor=8, devminor=0)
        _add(tar, "MELD.Raw/fifo", type=tarfile.FIFOTYPE)
        _add(tar, "__MACOSX/MELD.Raw/._good.csv", b"meta")
        _add(tar, "MELD.Raw/._good.csv", b"meta")
        _add(tar, "MELD.Raw/.DS_Store", b"meta")
    before = _tree(sandbox.parent)
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert _escapes(sandbox, before) == set()
    assert not Path("/tmp/abs_evil_crossemotion.txt").exists()
    out = sandbox / "out"
    assert (out / "MELD.Raw" / "good.csv").read_text() == "a,b\n"
    assert not any(p.is_symlink() for p in out.rglob("*"))
    # the link was refused, so the member "through" it lands in a plain folder in out/
    through = out / "MELD.Raw" / "uplink" / "through_link.txt"
    assert through.read_bytes() == b"via link" and not through.parent.is_symlink()
    assert sorted(report.extracted) == [
        "MELD.Raw/dot_prefixed.csv", "MELD.Raw/good.csv", "MELD.Raw/uplink/through_link.txt",
    ]  # fmt: skip
    refused = {r["member"]: r["reason"] for r in report.refused}
    assert set(refused) >= {
        "/tmp/abs_evil_crossemotion.txt", "../escape.txt", "MELD.Raw/../../escape2.txt",
        "MELD.Raw/link", "MELD.Raw/uplink", "MELD.Raw/hard", "MELD.Raw/dev", "MELD.Raw/blk",
        "MELD.Raw/fifo",
    }  # fmt: skip
    assert refused["/tmp/abs_evil_crossemotion.txt"] == "absolute path"
    assert "traversal" in refused["../escape.txt"]
    assert "symlink" in refused["MELD.Raw/link"] and "/etc/passwd" in refused["MELD.Raw/link"]
    assert "hardlink" in refused["MELD.Raw/hard"]
    assert refused["MELD.Raw/dev"] == "device file" and refused["MELD.Raw/fifo"] == "FIFO"
    assert {r["archive"] for r in report.refused} == {"evil.tar.gz"}
    skipped = {r["member"] for r in report.skipped}
    assert skipped == {"__MACOSX/MELD.Raw/._good.csv", "MELD.Raw/._good.csv", "MELD.Raw/.DS_Store"}


def test_hostile_zip(sandbox: Path) -> None:
    archive = sandbox / "in" / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("IFEED_Base/Training/dia1_utt2/frame1_Ross_Happy.jpg", b"jpg")
        zf.writestr("../../zip_escape.txt", b"up")
        zf.writestr("..\\..\\win_escape.txt", b"up")
        zf.writestr("/abs.txt", b"abs")
        zf.writestr("C:/windows.txt", b"abs")
        zf.writestr("__MACOSX/IFEED_Base/._x", b"meta")
        zf.writestr("IFEED_Base/.DS_Store", b"meta")
        link = zipfile.ZipInfo("IFEED_Base/link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
        fifo = zipfile.ZipInfo("IFEED_Base/fifo")
        fifo.external_attr = 0o010644 << 16
        zf.writestr(fifo, b"")
    before = _tree(sandbox.parent)
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert _escapes(sandbox, before) == set()
    assert report.extracted == ["IFEED_Base/Training/dia1_utt2/frame1_Ross_Happy.jpg"]
    assert {r["member"] for r in report.refused} == {
        "../../zip_escape.txt", "..\\..\\win_escape.txt", "/abs.txt", "C:/windows.txt",
        "IFEED_Base/link", "IFEED_Base/fifo",
    }  # fmt: skip
    assert {r["member"] for r in report.skipped} == {
        "__MACOSX/IFEED_Base/._x",
        "IFEED_Base/.DS_Store",
    }
    assert _tree(sandbox / "out") == {
        "IFEED_Base", "IFEED_Base/Training", "IFEED_Base/Training/dia1_utt2",
        "IFEED_Base/Training/dia1_utt2/frame1_Ross_Happy.jpg",
    }  # fmt: skip


def test_nested_archives_extract_in_place(sandbox: Path) -> None:
    inner = _tar_bytes([("train_splits/dia0_utt0.mp4", b"v"), ("train_sent_emo.csv", b"h\n")])
    evil_inner = _tar_bytes(
        [("../../../nested_escape.txt", b"up"), ("dev_splits_complete/a.mp4", b"d")]
    )
    zipped = _zip_bytes([("faces/x.jpg", b"j"), ("__MACOSX/._x.jpg", b"m")])
    deeper = _tar_bytes([("inner/deep.tar.gz", _tar_bytes([("leaf.txt", b"leaf")]))])
    archive = sandbox / "in" / "MELD.Raw.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "MELD.Raw/train.tar.gz", inner)
        _add(tar, "MELD.Raw/dev.tar.gz", evil_inner)
        _add(tar, "MELD.Raw/dev_sent_emo.csv", b"h\n")
        _add(tar, "MELD.Raw/extra/faces.zip", zipped)
        _add(tar, "MELD.Raw/two.tar.gz", deeper)
        _add(tar, "MELD.Raw/._train.tar.gz", b"appledouble")
    before = _tree(sandbox.parent)
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert _escapes(sandbox, before) == set()
    root = sandbox / "out" / "MELD.Raw"
    assert (root / "train_splits" / "dia0_utt0.mp4").read_bytes() == b"v"
    assert (root / "dev_splits_complete" / "a.mp4").read_bytes() == b"d"
    assert (root / "extra" / "faces" / "x.jpg").read_bytes() == b"j"
    assert (root / "inner" / "leaf.txt").read_bytes() == b"leaf"
    assert not list(root.rglob("*.tar.gz")) and not list(root.rglob("*.zip"))
    assert sorted(report.nested) == [
        "MELD.Raw/dev.tar.gz", "MELD.Raw/extra/faces.zip", "MELD.Raw/inner/deep.tar.gz",
        "MELD.Raw/train.tar.gz", "MELD.Raw/two.tar.gz",
    ]  # fmt: skip
    assert "MELD.Raw/train.tar.gz" not in report.extracted
    assert "MELD.Raw/train_splits/dia0_utt0.mp4" in report.extracted
    assert "MELD.Raw/inner/leaf.txt" in report.extracted
    refused = {r["member"] for r in report.refused}
    assert "MELD.Raw/dev.tar.gz!../../../nested_escape.txt" in refused
    skipped = {r["member"] for r in report.skipped}
    assert {"MELD.Raw/extra/faces.zip!__MACOSX/._x.jpg", "MELD.Raw/._train.tar.gz"} <= skipped


def test_corrupt_nested_archive_is_reported_and_run_goes_on(sandbox: Path) -> None:
    good = _tar_bytes([("test_splits/dia1_utt1.mp4", b"t")])
    archive = sandbox / "in" / "MELD.Raw.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "MELD.Raw/test.tar.gz", good)
        _add(tar, "MELD.Raw/train.tar.gz", good[: len(good) // 2])  # truncated
        _add(tar, "MELD.Raw/notes.zip", b"not a zip at all")
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert (sandbox / "out/MELD.Raw/test_splits/dia1_utt1.mp4").exists()
    reasons = {r["member"]: r["reason"] for r in report.refused}
    assert "corrupt nested archive" in reasons["MELD.Raw/train.tar.gz"]
    assert "corrupt nested archive" in reasons["MELD.Raw/notes.zip"]


def test_several_archives_into_one_folder_and_json_report(sandbox: Path) -> None:
    one, two = sandbox / "in" / "IFEED_Base.zip", sandbox / "in" / "IFEED_Extra.zip"
    one.write_bytes(_zip_bytes([("IFEED_Base/Training/a.jpg", b"a")]))
    two.write_bytes(_zip_bytes([("IFEED_Extra/Testing/b.jpg", b"b"), ("../x", b"x")]))
    report = safe_extract([one, two], sandbox / "out", progress=False)
    assert report.extracted == ["IFEED_Base/Training/a.jpg", "IFEED_Extra/Testing/b.jpg"]
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["n_extracted"] == 2 and payload["n_refused"] == 1
    assert payload["refused"] == [
        {"archive": "IFEED_Extra.zip", "member": "../x", "reason": "path traversal (..)"}
    ]
    assert payload["archives"] == [str(one), str(two)]


def test_rerun_replaces_the_folder_and_stale_partial(sandbox: Path) -> None:
    archive = sandbox / "in" / "a.zip"
    archive.write_bytes(_zip_bytes([("new.txt", b"n")]))
    (sandbox / "out").mkdir()
    (sandbox / "out" / "old.txt").write_text("old")
    (sandbox / ".out.partial").mkdir()  # left by a killed job
    safe_extract(archive, sandbox / "out", progress=False)
    assert _tree(sandbox / "out") == {"new.txt"}
    assert sorted(os.listdir(sandbox)) == ["in", "out"]


def test_unreadable_archive_fails_and_leaves_no_folder(sandbox: Path) -> None:
    bad = sandbox / "in" / "bad.tar.gz"
    bad.write_bytes(b"not an archive at all")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        safe_extract(bad, sandbox / "out", progress=False)
    truncated = sandbox / "in" / "MELD.Raw.tar.gz"
    truncated.write_bytes(_tar_bytes([("a.bin", os.urandom(200_000))])[:50_000])
    with pytest.raises(UnpackError, match="truncated or corrupt"):
        safe_extract(truncated, sandbox / "out", progress=False)
    assert sorted(os.listdir(sandbox)) == ["in"]

"""Safe extraction of hostile archives built here, in tmp_path."""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from crossemotion.ingest.archives.unpack import Budget, BudgetError, UnpackError, safe_extract


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


def test_plain_tar_ending_in_a_zip_is_read_as_a_tar(sandbox: Path) -> None:
    """zipfile alone would take the tar for the zip at its end and drop the rest."""
    archive = sandbox / "in" / "MELD.Raw.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, "MELD.Raw/dev_sent_emo.csv", b"h\n")
        _add(tar, "MELD.Raw/faces.zip", _zip_bytes([("x.jpg", b"j")]))
    assert zipfile.is_zipfile(archive)
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert sorted(report.extracted) == ["MELD.Raw/dev_sent_emo.csv", "MELD.Raw/x.jpg"]
    assert report.nested == ["MELD.Raw/faces.zip"]


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
        {"archive": "IFEED_Extra.zip", "member": "../x", "kind": "traversal",
         "reason": "path traversal (..)"}
    ]  # fmt: skip
    assert payload["refused_counts"] == {"traversal": 1}
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


# -- budgets: hostile archives stop within seconds and leave nothing ------------------


def _raw_zip(name: str, payload: bytes, *, method: int, file_size: int, crc: int) -> bytes:
    """A one-member zip with headers written by hand, so they may state any size."""
    fname = name.encode()
    zip64 = file_size >= 0xFFFFFFFF
    size32 = 0xFFFFFFFF if zip64 else file_size
    version = 45 if zip64 else 20
    local_extra = struct.pack("<HHQQ", 1, 16, file_size, len(payload)) if zip64 else b""
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", version, 0, method, 0, 0x21, crc,
                        0xFFFFFFFF if zip64 else len(payload), size32, len(fname),
                        len(local_extra)) + fname + local_extra  # fmt: skip
    central_extra = struct.pack("<HHQ", 1, 8, file_size) if zip64 else b""
    central = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", version, version, 0, method, 0, 0x21,
                          crc, len(payload), size32, len(fname), len(central_extra), 0, 0, 0,
                          0o100644 << 16, 0) + fname + central_extra  # fmt: skip
    body = local + payload
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(body), 0)
    return body + central + end


def _zero_deflate(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros, built from one compressed MiB.

    A sync-flushed block of zeros only refers back to zeros, so copies of it
    decode one after another; b"\\x03\\x00" is an empty final block.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_SYNC_FLUSH)
    return block * mib + b"\x03\x00"


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 1 MB on disk, 1 GiB of zeros in its stream, 10 GiB by its headers."""
    path = tmp_path_factory.mktemp("bomb") / "IFEED_Base.zip"
    path.write_bytes(_raw_zip("IFEED_Base/zeros.bin", _zero_deflate(1024),
                              method=zipfile.ZIP_DEFLATED, file_size=10 << 30, crc=0))  # fmt: skip
    return path


def _fails_cleanly(sandbox: Path, archive: Path, budget: Budget | None, match: str) -> float:
    before = _tree(sandbox.parent)
    start = time.monotonic()
    with pytest.raises(BudgetError, match=match):
        safe_extract(archive, sandbox / "out", progress=False, budget=budget)
    elapsed = time.monotonic() - start
    assert _escapes(sandbox, before) == set()
    assert sorted(os.listdir(sandbox)) == ["in"]  # no output, no partial folder
    return elapsed


@pytest.mark.parametrize(
    ("budget", "match"),
    [
        (None, r"20 times the size of IFEED_Base.zip \(config unpack.max_ratio\)"),
        (Budget(max_ratio=1e6, max_bytes=50_000_000),
         r"the cap of 50000000 bytes in all \(config unpack.max_gb\)"),
    ],
)  # fmt: skip
def test_zip_bomb_stops_at_the_byte_cap(
    sandbox: Path, zip_bomb: Path, budget: Budget | None, match: str
) -> None:
    archive = sandbox / "in" / zip_bomb.name
    os.symlink(zip_bomb, archive)
    assert zip_bomb.stat().st_size < 2_000_000
    with zipfile.ZipFile(zip_bomb) as zf:
        assert zf.getinfo("IFEED_Base/zeros.bin").file_size == 10 << 30
    # writing the stream's 1 GiB alone would take longer than this on the test machines
    assert _fails_cleanly(sandbox, archive, budget, match) < 20


def test_header_sizes_are_not_trusted(sandbox: Path) -> None:
    """The budget counts bytes written: a header claiming 10 GiB for 1 KiB of data
    breaks nothing, and a header claiming less than the data truncates it."""
    data = os.urandom(1024)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = comp.compress(data) + comp.flush()
    archive = sandbox / "in" / "claims.zip"
    archive.write_bytes(_raw_zip("big_claim.bin", stream, method=zipfile.ZIP_DEFLATED,
                                 file_size=10 << 30, crc=zlib.crc32(data)))  # fmt: skip
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert (sandbox / "out" / "big_claim.bin").read_bytes() == data
    assert report.refused == []
    archive.write_bytes(_raw_zip("small_claim.bin", stream, method=zipfile.ZIP_DEFLATED,
                                 file_size=100, crc=zlib.crc32(data)))  # fmt: skip
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert report.extracted == [] and not (sandbox / "out" / "small_claim.bin").exists()
    assert "corrupt member" in report.refused[0]["reason"]


def test_member_count_cap(sandbox: Path) -> None:
    archive = sandbox / "in" / "MELD.Raw.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for i in range(100_000):
            tar.addfile(tarfile.TarInfo(f"many/{i}"))
    elapsed = _fails_cleanly(sandbox, archive, Budget(max_members=10_000),
                             r"more than 10000 \(config unpack.max_members\)")  # fmt: skip
    assert elapsed < 20
    # a zip states its count in the central directory: refused before any member is written
    many_zip = sandbox / "in" / "many.zip"
    many_zip.write_bytes(_zip_bytes([(f"f{i}.txt", b"x") for i in range(500)]))
    _fails_cleanly(sandbox, many_zip, Budget(max_members=499), "unpack.max_members")
    archive.unlink()
    report = safe_extract(many_zip, sandbox / "out", progress=False, budget=Budget(max_members=500))
    assert len(report.extracted) == 500


def _patch_method(zip_bytes: bytes, member_index: int, method: int) -> bytes:
    """Set the compression method field of one member in its local and central headers."""
    out = bytearray(zip_bytes)
    for signature, field in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = -1
        for _ in range(member_index + 1):
            at = out.index(signature, at + 1)
        out[at + field : at + field + 2] = struct.pack("<H", method)
    return bytes(out)


def test_deflate64_member_is_a_report_entry(sandbox: Path) -> None:
    from crossemotion.ingest.ifeed.members import build_manifest

    raw = _zip_bytes([("IFEED_Base/Training/dia1_utt1/f1_Ross_Happy.jpg", b"d64"),
                      ("IFEED_Base/Training/dia1_utt1/f2_Ross_Happy.jpg", b"ok")])  # fmt: skip
    archive = sandbox / "in" / "IFEED_Base.zip"
    archive.write_bytes(_patch_method(raw, 0, 9))
    with zipfile.ZipFile(archive) as zf, pytest.raises(NotImplementedError):
        zf.read("IFEED_Base/Training/dia1_utt1/f1_Ross_Happy.jpg")  # what went uncaught before
    outer = sandbox / "in" / "outer.tar"
    with tarfile.open(outer, "w") as tar:
        _add(tar, "nested/IFEED_Base.zip", archive.read_bytes())
    frames = "IFEED_Base/Training/dia1_utt1/"
    for source, folder, prefix in ((archive, "", ""), (outer, "nested/", "nested/IFEED_Base.zip!")):
        report = safe_extract(source, sandbox / "out", progress=False)
        assert report.extracted == [f"{folder}{frames}f2_Ross_Happy.jpg"]
        (entry,) = report.refused
        assert entry["member"] == f"{prefix}{frames}f1_Ross_Happy.jpg"
        assert "unsupported zip compression method deflate64 (9)" in entry["reason"]
    # the IFEED manifest carries the member with the reason
    report_path = sandbox / "report.json"
    report_path.write_text(json.dumps(safe_extract(archive, sandbox / "out",
                                                   progress=False).to_dict()))  # fmt: skip
    rows = {r.member: r for r in build_manifest(sandbox / "out", report_path)}
    row = rows["IFEED_Base.zip:IFEED_Base/Training/dia1_utt1/f1_Ross_Happy.jpg"]
    assert row.status == "skipped" and "deflate64" in row.reason


def test_nesting_cap(sandbox: Path) -> None:
    """A 5-deep nest: levels 1..max_depth are expanded, the next is refused and removed."""
    inner = _tar_bytes([("level5.txt", b"5")])
    for level in (4, 3, 2, 1):
        # each level unpacks into the folder that holds it: all land in nest/
        inner = _tar_bytes([(f"level{level}.txt", str(level).encode()),
                            (f"l{level + 1}.tar.gz", inner)])  # fmt: skip
    archive = sandbox / "in" / "deep.tar.gz"
    archive.write_bytes(_tar_bytes([("nest/l1.tar.gz", inner)]))
    before = _tree(sandbox.parent)
    start = time.monotonic()
    report = safe_extract(archive, sandbox / "out", progress=False)
    assert time.monotonic() - start < 20
    assert _escapes(sandbox, before) == set()
    assert _tree(sandbox / "out") == {"nest"} | {f"nest/level{i}.txt" for i in (1, 2, 3)}
    assert report.nested == ["nest/l3.tar.gz", "nest/l2.tar.gz", "nest/l1.tar.gz"]
    assert report.refused == [{
        "archive": "deep.tar.gz", "member": "nest/l4.tar.gz", "kind": "nested_too_deep",
        "reason": "archive nested deeper than 3 levels (config unpack.max_depth); not expanded",
    }]  # fmt: skip
    report = safe_extract(archive, sandbox / "out", progress=False, budget=Budget(max_depth=5))
    assert (sandbox / "out" / "nest" / "level5.txt").read_bytes() == b"5"
    assert report.refused == []


def test_budget_from_config() -> None:
    from crossemotion.config import load_config
    from tests.conftest import ROOT

    assert Budget.from_config(None) == Budget()
    # the real config spells out the defaults, through the schema
    assert Budget.from_config(load_config(ROOT / "config" / "config.yaml")["unpack"]) == Budget()
    budget = Budget.from_config({"max_gb": 2.5, "max_depth": 1, "max_members": None})
    assert budget == Budget(max_bytes=2_500_000_000, max_depth=1)
    with pytest.raises(ValueError, match="unknown unpack budget keys"):
        Budget.from_config({"max_size": 3})
    with pytest.raises(ValueError, match="max_ratio is too small"):
        Budget.from_config({"max_ratio": 0})
    budget = Budget.from_config({"allow_methods": ["BZIP2"], "max_seconds": 60, "report_names": 0})
    assert budget == Budget(allow_methods=("bzip2",), max_seconds=60, report_names=0)
    with pytest.raises(ValueError, match=r"cannot read \['zstd'\]"):
        Budget.from_config({"allow_methods": ["zstd"]})


def test_config_schema_checks_the_unpack_keys(tmp_path: Path) -> None:
    import yaml

    from crossemotion.config import load_config
    from tests.conftest import ROOT

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for bad in ({"allow_methods": ["zstd"]}, {"max_seconds": 0}, {"report_names": -1},
                {"max_folders": 1.5}):  # fmt: skip
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**cfg, "unpack": {**cfg["unpack"], **bad}}))
        (key,) = bad
        with pytest.raises(ValueError, match=rf"config key unpack\.{key}\b"):
            load_config(path)

"""Issue 38: every class of hostile archive, unpacked in a child process.

Each case builds a small archive, unpacks it with ``safe_extract`` in a fresh
interpreter (``tests.hostile_archives.unpack_in_child``) and checks the
outcome (a clear error, or report entries with the right reason), that the
child stayed under 1 GB resident and 30 s, and that nothing half-written is
left: a failed unpack leaves no folder at all, a finished one holds exactly
the files its report lists. Every case goes through the workflow's unpack rule
too (zips as IFEED's archives, tars as MELD's), so each case that ends "ok"
yields at least one file the rule counts as usable (an image for a zip, a clip
for a tar), and a case that requires suffixes requires the rule's.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from crossemotion.ingest.ifeed.members import IMAGE_SUFFIXES
from crossemotion.ingest.meld.index import CLIP_SUFFIXES
from tests import hostile_archives as H

PEAK_RSS = 10**9  # bytes: the bound on any archive
SECONDS = 30.0
GIB_MIB = 1024  # MiB in the bombs that old code decompressed whole


@pytest.fixture(scope="module")
def bombs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bzip2/LZMA streams (seconds to compress), kept in pytest's cache
    (built again when the cache plugin is off)."""
    cache_plugin = getattr(request.config, "cache", None)
    cache = (
        Path(cache_plugin.mkdir("hostile_archives_v1"))
        if cache_plugin is not None
        else tmp_path_factory.mktemp("hostile_archives")
    )
    H.cached(cache, "zeros_1gib.bz2", lambda: H.bzip2_zeros(GIB_MIB))
    H.cached(cache, "zeros_1gib.lzma", lambda: H.lzma_zip_zeros(GIB_MIB))
    head = H.tar_header("MELD.Raw/._big.mp4", 256 * H.MIB)
    H.cached(cache, "tar_256mib.bz2", lambda: H.bzip2_zeros(256, prefix=head))
    return cache


@dataclass
class Case:
    build: Callable[[Path], bytes]  # gets the bombs folder
    name: str = "archive.tar.gz"  # the file name given to the archive
    budget: dict[str, Any] | None = None
    require: tuple[str, ...] = ()
    outcome: str = "ok"  # or the error class the child raises
    match: str = ""  # regex the error message matches
    refused: dict[str, int] = field(default_factory=dict)  # report refused_counts
    extracted: set[str] = field(default_factory=set)
    reason: dict[str, str] = field(default_factory=dict)  # member -> regex of its reason


def _deflate_zip(name: bytes, mib: int, claimed: int | None = None) -> bytes:
    crc = zlib.crc32(bytes(mib * H.MIB))
    usize = mib * H.MIB if claimed is None else claimed
    data = H.zero_deflate(mib) + H._FINAL_BLOCK
    return H.raw_zip([H.RawMember(name, data, method=8, crc=crc, usize=usize)])


def _bz2_zip(bombs: Path) -> bytes:
    data = (bombs / "zeros_1gib.bz2").read_bytes()
    crc = 0  # never reached: the budget stops the member long before
    return H.raw_zip([
        H.RawMember(b"IFEED_Base/Training/dia1_utt1/bomb.jpg", data, method=12, crc=crc,
                    usize=1 << 30),
        H.RawMember(b"IFEED_Base/Training/dia1_utt1/ok.jpg", b"jpg"),
    ])  # fmt: skip


def _lzma_zip(bombs: Path) -> bytes:
    data = (bombs / "zeros_1gib.lzma").read_bytes()
    return H.raw_zip([
        H.RawMember(b"IFEED_Base/Training/dia1_utt1/bomb.jpg", data, method=14, crc=0,
                    usize=1 << 30, flags=2),
        H.RawMember(b"IFEED_Base/Training/dia1_utt1/ok.jpg", b"jpg"),
    ])  # fmt: skip


def _overlap_zip(_: Path) -> bytes:
    # one 1 MiB kernel; 1000 more directory entries point at its header
    aliases = [f"IFEED_Base/Training/dia1_utt1/{i}.jpg".encode() for i in range(1000)]
    member = H.RawMember(b"IFEED_Base/kernel.jpg", H.zero_deflate(1) + H._FINAL_BLOCK, method=8,
                         crc=zlib.crc32(bytes(H.MIB)), usize=H.MIB, aliases=aliases)  # fmt: skip
    return H.raw_zip([member])


def _nested_zip(_: Path) -> bytes:
    # 42.zip's shape: 16 x 16 x 16 members of 16 MiB of zeros, 64 GiB from 16 kB
    level = H.raw_zip([
        H.RawMember(f"z{i}.jpg".encode(), H.zero_deflate(16) + H._FINAL_BLOCK, method=8,
                    crc=zlib.crc32(bytes(16 * H.MIB)), usize=16 * H.MIB)
        for i in range(16)
    ])  # fmt: skip
    for depth in range(2):
        level = H.zip_bytes([(f"l{depth}_{i}.zip", level) for i in range(16)],
                            compression=zipfile.ZIP_DEFLATED)  # fmt: skip
    return level


def _nested_tar(_: Path) -> bytes:
    level = H.gzip_tar_bomb(H.tar_header("zeros.mp4", 64 * H.MIB), 64)
    for depth in range(2):
        level = H.tar_file([H.info(f"t{depth}_{i}.tar.gz", level) for i in range(16)])
    return level


def _skipped_bomb(_: Path, gib: int = 8) -> bytes:
    # a dotfile (skipped) of 8 GiB of zeros: 8 MB of gzip
    return H.gzip_tar_bomb(H.tar_header("MELD.Raw/._big.mp4", gib << 30), gib << 10)


def _header_chain(_: Path) -> bytes:
    # tarfile follows a chain of long-name headers by recursion: 5000 of them
    # would end in RecursionError; each is 2 blocks here
    link = H.tar_header("././@LongLink", 8, kind=tarfile.GNUTYPE_LONGNAME)
    raw = (link + b"MELD.Raw".ljust(512, b"\x00")) * 5000 + H.tar_header("x.mp4") + bytes(1024)
    return H._gzip(raw)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None], mode: str = "w:gz") -> bytes:
    return H.tar_file(members, mode=mode)


def _self_nesting(_: Path) -> bytes:
    inner = _tar(H.info("inner.tar", b"not the archive"), H.info("dia1_utt1.mp4", b"v"), mode="w")
    return _tar(H.info("MELD.Raw/inner.tar", inner))


def _pax_sparse(_: Path) -> bytes:
    ti = tarfile.TarInfo("MELD.Raw/sparse.mp4")
    ti.size = 512
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                      "GNU.sparse.name": "MELD.Raw/sparse.mp4",
                      "GNU.sparse.realsize": str(1 << 40)}  # fmt: skip
    return H.tar_file([(ti, bytes(512)), H.info("MELD.Raw/after.mp4", b"v")])


def _bad_utf8_zip(_: Path) -> bytes:
    return H.raw_zip([H.RawMember(b"IFEED_Base/\xff\xfe_Ross_Happy.jpg", b"x", flags=0x800),
                      H.RawMember(b"IFEED_Base/ok.jpg", b"y")])  # fmt: skip


def _bad_utf8_tar(_: Path) -> bytes:
    # tarfile writes the surrogate back as the raw byte \xff
    return _tar(H.info("MELD.Raw/\udcffdia1.mp4", b"x"), H.info("MELD.Raw/ok.mp4", b"y"))


def _tar_size_lie(_: Path) -> bytes:
    raw = H.tar_header("MELD.Raw/lie.mp4", 10 << 30) + b"v" * 512 + bytes(1024)
    return H._gzip(raw)


def _long_name(_: Path) -> bytes:
    name = "/".join(["p" * 200] * 10) + ".mp4"  # 2 kB in 10 parts: long, not deep
    return _tar(H.info(name, b"x"), H.info("MELD.Raw/ok.mp4", b"y"))


def _encrypted_zip(_: Path) -> bytes:
    return H.raw_zip([H.RawMember(b"IFEED_Base/e.jpg", b"\x00" * 12 + b"xxxx", flags=1),
                      H.RawMember(b"IFEED_Base/ok.jpg", b"y")])  # fmt: skip


WIN_IMAGES = {
    f"IFEED_Base/{split}/{utt}/frame{f}_{who}.jpg"
    for split, utt in (("Training", "dia1_utt2"), ("Testing", "dia7_utt0"))
    for f, who in ((1, "Ross_Happy"), (2, "Monica_Sad"))
}
STOPPED = r"^{name}: stopped at member {member}: "
KEPT = r"\. A download that is not what the dataset ships.*Nothing was kept\.$"

CASES: dict[str, Case] = {
    "bzip2 zip member refused up front": Case(
        _bz2_zip, "IFEED_Base.zip", refused={"method": 1},
        extracted={"IFEED_Base/Training/dia1_utt1/ok.jpg"},
        reason={"IFEED_Base/Training/dia1_utt1/bomb.jpg":
                r"zip compression method bzip2 \(12\) is not used.*allow_methods: \[bzip2\]"},
    ),
    "bzip2 zip member allowed: output capped": Case(
        _bz2_zip, "IFEED_Base.zip", budget={"allow_methods": ["bzip2"]}, outcome="BudgetError",
        match=STOPPED.format(name=r"IFEED_Base\.zip", member=r"IFEED_Base/Training/dia1_utt1/"
                             r"bomb\.jpg") + r"unpacking would write more than 20 times the "
        r"size of IFEED_Base\.zip \(config unpack\.max_ratio\)" + KEPT,
    ),
    "lzma zip member refused up front": Case(
        _lzma_zip, "IFEED_Base.zip", refused={"method": 1},
        extracted={"IFEED_Base/Training/dia1_utt1/ok.jpg"},
        reason={"IFEED_Base/Training/dia1_utt1/bomb.jpg": r"method lzma \(14\)"},
    ),
    "lzma zip member allowed: output capped": Case(
        _lzma_zip, "IFEED_Base.zip", budget={"allow_methods": ["lzma"]}, outcome="BudgetError",
        match=r"bomb\.jpg: unpacking would write more than 20 times.*unpack\.max_ratio",
    ),
    "deflate bomb claiming 4 GiB": Case(
        lambda _: _deflate_zip(b"IFEED_Base/zeros.jpg", 1024, claimed=0xFFFFFFFE),
        "IFEED_Base.zip", outcome="BudgetError", match=r"zeros\.jpg: .*unpack\.max_ratio",
    ),
    "overlapping entries": Case(
        _overlap_zip, "IFEED_Base.zip", refused={"overlap": 1000},
        extracted={"IFEED_Base/kernel.jpg"},
        reason={"IFEED_Base/Training/dia1_utt1/7.jpg": r"overlaps another member's"},
    ),
    "nested zip bomb": Case(
        _nested_zip, "IFEED_Base.zip", outcome="BudgetError",
        match=r"stopped at member l1_0\.zip!l0_\d+\.zip: .*unpack\.max_ratio",
    ),
    "nested tar bomb": Case(
        _nested_tar, "MELD.Raw.tar.gz", outcome="BudgetError",
        match=r"stopped at member t1_0\.tar\.gz!t0_\d+\.tar\.gz: .*unpack\.max_ratio",
    ),
    "tar size lie": Case(
        _tar_size_lie, outcome="UnpackError",
        match=r"unexpected end of data in MELD\.Raw/lie\.mp4\. It is truncated or corrupt",
    ),
    "gnu sparse claim with 20000 map blocks": Case(
        lambda _: H.gnu_sparse_tar(20_000), refused={"sparse": 1},
        extracted={"MELD.Raw/after.mp4"},
        reason={"MELD.Raw/sparse.mp4": r"^sparse file"},
    ),
    "pax sparse claim of 1 TB": Case(
        _pax_sparse, refused={"sparse": 1}, extracted={"MELD.Raw/after.mp4"},
    ),
    "zip stating 600000 members": Case(
        lambda _: H.raw_zip([H.RawMember(b"a.jpg", b"a")], stated_total=600_000),
        "IFEED_Base.zip", outcome="BudgetError",
        match=r"more than 500000 \(config unpack\.max_members\)",
    ),
    "tar member flood": Case(
        lambda _: H.header_flood(f"MELD.Raw/{i}.mp4" for i in range(20_000)),
        budget={"max_members": 5_000}, outcome="BudgetError",
        match=r"^archive\.tar\.gz: stopped at member MELD\.Raw/5000\.mp4: archive\.tar\.gz "
        r"brings the archive members read to more than 5000 \(config unpack\.max_members\)",
    ),
    "long-name header bomb": Case(
        lambda _: H.ext_header_bomb(tarfile.GNUTYPE_LONGNAME, 300), outcome="UnpackError",
        match=r"^archive\.tar\.gz: a tar long-name header of 314572800 bytes \(at byte 0\) is "
        r"larger than 1048576 bytes \(config unpack\.max_header_bytes\)$",
    ),
    "pax header bomb": Case(
        lambda _: H.ext_header_bomb(tarfile.XHDTYPE, 300), outcome="UnpackError",
        match=r"a tar pax header of 314572800 bytes .*unpack\.max_header_bytes",
    ),
    "chain of 5000 long-name headers": Case(
        _header_chain, outcome="UnpackError",
        match=r"^archive\.tar\.gz: more than 16 extended tar headers in a row \(at byte 16384\)$",
    ),
    "skipped member decompressed into the budget": Case(
        _skipped_bomb, outcome="BudgetError",
        match=STOPPED.format(name=r"archive\.tar\.gz", member=r"MELD\.Raw/\._big\.mp4")
        + r"unpacking would decompress more than \d+ bytes, 50 times the size of "
        r"archive\.tar\.gz \(config unpack\.max_read_ratio\), skipped members included" + KEPT,
    ),
    "wall clock": Case(
        # 32 GiB take longer than a second to decompress on any machine
        lambda bombs: _skipped_bomb(bombs, gib=32),
        budget={"max_read_ratio": 1e6, "max_seconds": 1}, outcome="BudgetError",
        match=STOPPED.format(name=r"archive\.tar\.gz", member=r"MELD\.Raw/\._big\.mp4")
        + r"unpacking took more than 1 s \(config unpack\.max_seconds\)" + KEPT,
    ),
    "bzip2 tar named .tar.gz": Case(
        lambda _: _tar(H.info("MELD.Raw/a.mp4", b"v"), mode="w:bz2"), "MELD.Raw.tar.gz",
        outcome="UnpackError",
        match=r"^MELD\.Raw\.tar\.gz: compressed with bzip2, which the dataset's archives do not "
        r"use; refused \(config unpack\.allow_methods: \[bzip2\] reads it\)$",
    ),
    "bzip2 tar allowed: skipped data counted": Case(
        lambda bombs: (bombs / "tar_256mib.bz2").read_bytes(), "MELD.Raw.tar.bz2",
        budget={"allow_methods": ["bzip2"]}, outcome="BudgetError",
        match=r"at member MELD\.Raw/\._big\.mp4: .*\(config unpack\.max_read_ratio\)",
    ),
    "500000-part name": Case(
        lambda _: _tar(H.info("a/" * 500_000 + "f.mp4", b"x"), H.info("ok.mp4", b"y")),
        refused={"deep_path": 1}, extracted={"ok.mp4"},
    ),
    "1000-deep path in a tar": Case(
        lambda _: _tar(H.info("d/" * 1000 + "f.mp4", b"x"), H.info("ok.mp4", b"y")),
        refused={"deep_path": 1}, extracted={"ok.mp4"},
        reason={"d/" * 150 + "...": r"^path 1001 folders deep, deeper than 64 "
                r"\(config unpack\.max_path_depth\)$"},
    ),
    "1000-deep path in a zip": Case(
        lambda _: H.zip_bytes([("d/" * 1000 + "f.jpg", b"x"), ("ok.jpg", b"y")]), "a.zip",
        refused={"deep_path": 1}, extracted={"ok.jpg"},
        reason={"d/" * 150 + "...": r"^path 1001 folders deep"},
    ),
    "long name": Case(
        _long_name, refused={"long_name": 1}, extracted={"MELD.Raw/ok.mp4"},
    ),
    "folder flood": Case(
        lambda _: H.header_flood((f"d{i}/" for i in range(5_000)), kind=tarfile.DIRTYPE),
        budget={"max_folders": 2_000}, outcome="BudgetError",
        match=r"stopped at member d2000: unpacking would create more than 2000 folders "
        r"\(config unpack\.max_folders\)",
    ),
    "bad UTF-8 zip name": Case(
        _bad_utf8_zip, "a.zip", refused={"bad_name": 1}, extracted={"IFEED_Base/ok.jpg"},
        reason={r"IFEED_Base/\xff\xfe_Ross_Happy.jpg": r"^bad name encoding: flagged UTF-8"},
    ),
    "bad UTF-8 tar name": Case(
        _bad_utf8_tar, refused={"bad_name": 1}, extracted={"MELD.Raw/ok.mp4"},
        reason={r"MELD.Raw/\xffdia1.mp4": r"^bad name encoding"},
    ),
    "NUL in a pax path": Case(
        lambda _: H.pax_tar({"path": "MELD.Raw/a\x00/../../b.mp4"},
                            then=[H.info("MELD.Raw/ok.mp4", b"y")]),
        refused={"nul": 1}, extracted={"MELD.Raw/ok.mp4"},
        reason={r"MELD.Raw/a\x00/../../b.mp4": r"^NUL character in the name$"},
    ),
    "self-nesting tar": Case(
        _self_nesting, refused={"self_nesting": 1}, extracted={"MELD.Raw/dia1_utt1.mp4"},
        reason={"MELD.Raw/inner.tar!inner.tar": r"^self-nesting: the member would overwrite "
                r"the archive being unpacked$"},
    ),
    "encrypted zip member": Case(
        _encrypted_zip, "a.zip", refused={"encrypted": 1}, extracted={"IFEED_Base/ok.jpg"},
    ),
    "Windows IFEED zip": Case(
        lambda _: H.windows_ifeed_zip(), "IFEED_Base.zip", extracted=WIN_IMAGES,
    ),
    "nothing usable": Case(
        lambda bombs: _bz2_zip(bombs).replace(b"ok.jpg", b"ok.txt"), "IFEED_Base.zip",
        require=tuple(sorted(IMAGE_SUFFIXES)), outcome="UnpackError",
        match=r"^IFEED_Base\.zip: unpacking yielded no usable file \(none ending in \.bmp, "
        r"\.jpeg, \.jpg, \.png\): 1 files extracted, 1 members refused \(method: 1\), "
        r"0 skipped; for example IFEED_Base/Training/dia1_utt1/bomb\.jpg \(zip compression "
        r"method bzip2",
    ),
}  # fmt: skip


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


@pytest.mark.parametrize("case_name", list(CASES))
def test_hostile_archive_in_a_child(case_name: str, bombs: Path, tmp_path: Path) -> None:
    case = CASES[case_name]
    box = tmp_path / "box"
    box.mkdir()
    archive = box / case.name
    archive.write_bytes(case.build(bombs))
    run = H.unpack_in_child([archive], box / "out", case.budget, case.require)
    result = run.result
    assert run.returncode == 0, (run.returncode, result, run.log[-2000:])
    assert run.peak_rss < PEAK_RSS, f"peak RSS {run.peak_rss / 1e6:.0f} MB"
    assert run.seconds < SECONDS, f"{run.seconds:.1f} s"
    assert result["outcome"] == case.outcome, result
    # nothing half-written: a failure leaves no folder, no partial and no temp file
    assert sorted(os.listdir(box)) == (
        [case.name, "out"] if case.outcome == "ok" else [case.name]
    ), result
    if case.outcome != "ok":
        assert re.search(case.match, result["message"]), result["message"]
        # "delete it to download it again" is for broken downloads, not hostile content
        assert "download it again" not in result["message"] or "corrupt" in case.match
        return
    report = result["report"]
    assert report["refused_counts"] == case.refused
    assert set(report["extracted"]) == case.extracted == _files(box / "out")
    for member, pattern in case.reason.items():
        prefix = member.removesuffix("...")
        (entry,) = [e for e in report["refused"] if e["member"].startswith(prefix)]
        assert re.search(pattern, entry["reason"]), entry
        assert len(entry["member"]) < 400  # a megabyte of name is cut in the report


def test_names_that_do_not_decode_are_bad_name_entries(bombs: Path, tmp_path: Path) -> None:
    """The entry says bad_name and shows the raw bytes escaped; the unpack goes on."""
    archive = tmp_path / "a.zip"
    archive.write_bytes(_bad_utf8_zip(bombs))
    run = H.unpack_in_child([archive], tmp_path / "out")
    (entry,) = run.result["report"]["refused"]
    assert entry == {
        "archive": "a.zip", "member": "IFEED_Base/\\xff\\xfe_Ross_Happy.jpg", "kind": "bad_name",
        "reason": "bad name encoding: flagged UTF-8 but not valid UTF-8 (bytes escaped)",
        "status": "bad_name",
    }  # fmt: skip


def test_refused_name_flood_keeps_counts_and_the_first_names(tmp_path: Path) -> None:
    """20000 links refused: the report and the log count them all, list 7 names."""
    archive = tmp_path / "MELD.Raw.tar.gz"
    names = [f"MELD.Raw/link{i:06d}_" + "n" * 70 for i in range(20_000)]
    flood = H.header_flood(names, kind=tarfile.SYMTYPE, linkname="/etc/passwd")
    (tmp_path / "ok.tar.gz").write_bytes(H.tar_file([H.info("MELD.Raw/ok.mp4", b"v")]))
    archive.write_bytes(flood)
    budget = {"report_names": 7, "max_read_ratio": 10_000}  # headers compress ~500:1
    run = H.unpack_in_child([archive, tmp_path / "ok.tar.gz"], tmp_path / "out", budget)
    assert run.result["outcome"] == "ok", run.result
    report = run.result["report"]
    assert report["refused_counts"] == {"link": 20_000} and report["n_refused"] == 20_000
    assert [e["member"] for e in report["refused"]] == names[:7]
    assert report["extracted"] == ["MELD.Raw/ok.mp4"]
    assert run.result["report_bytes"] < 5_000
    assert "refused 20000 members: link (first 7 listed in the report)" in run.log
    assert len(run.log) < 5_000 and names[7] not in run.log
    assert run.peak_rss < PEAK_RSS and run.seconds < SECONDS


def test_windows_ifeed_zip_yields_its_images(tmp_path: Path) -> None:
    """Backslashes are folders: the IFEED manifest finds every image with its label."""
    from crossemotion.ingest.archives.unpack import safe_extract
    from crossemotion.ingest.ifeed.members import build_manifest

    archive = tmp_path / "IFEED_Base.zip"
    archive.write_bytes(H.windows_ifeed_zip())
    report = safe_extract(archive, tmp_path / "out", progress=False, require=(".jpg",))
    assert report.backslash_names == 9  # 5 folder entries, 4 images
    assert report.to_dict()["n_backslash_names"] == 9
    assert _files(tmp_path / "out") == WIN_IMAGES
    assert (tmp_path / "out/IFEED_Base/Training").is_dir()
    rows = build_manifest(tmp_path / "out", None)
    labels = {(r.split, r.label) for r in rows if r.status == "ok"}
    assert len([r for r in rows if r.status == "ok"]) == 4, rows
    assert {split for split, _ in labels} == {"train", "test"}


# ----------------------------------------------------------- through the rules


def _snakemake(
    workdir: Path, args: list[str], timeout: float = 600, address_space: int | None = None
) -> tuple[int, int, str]:
    """(returncode, peak RSS of Snakemake and its jobs, output) of a Snakemake run."""
    from tests.conftest import VENV_BIN, snakemake_cmd

    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    output = workdir / "snakemake.out"
    code, peak, _ = H.run_measured([*snakemake_cmd(), *args], workdir, timeout, env, output,
                                   address_space=address_space)  # fmt: skip
    return code, peak, output.read_text(errors="replace")


def _override(workdir: Path, **sections: Any) -> None:
    (workdir / "over.yaml").write_text(json.dumps({"synth": {"enabled": False}, **sections}))


def test_unpack_rules_on_hostile_archives(workdir: Path, bombs: Path) -> None:
    box = workdir / "archives"
    box.mkdir()
    meld = box / "MELD.Raw.tar.gz"
    meld.write_bytes(H.gzip_tar_bomb(H.tar_header("MELD.Raw/train_splits/dia0_utt0.mp4",
                                                  8192 * H.MIB), 8192))  # fmt: skip
    win = box / "IFEED_Base.zip"
    win.write_bytes(H.windows_ifeed_zip())
    links = box / "IFEED_Extra.zip"
    links.write_bytes(H.raw_zip([H.RawMember(f"IFEED_Extra/l{i}.jpg".encode(), b"/etc/passwd",
                                             mode=0o120777) for i in range(3000)]))  # fmt: skip
    _override(workdir, meld={"archive": str(meld)}, ifeed={"archives": [str(win), str(links)]})
    targets = ["results/meld/unpack_report.json", "results/ifeed/unpack_report.json"]
    start = time.monotonic()
    args = ["--cores", "1", "--keep-going", *targets, "--configfile", "config/demo.yaml"]
    code, peak, out = _snakemake(workdir, [*args, "over.yaml"])
    assert code != 0, out[-3000:]
    assert time.monotonic() - start < 300
    assert peak < PEAK_RSS, f"peak RSS {peak / 1e6:.0f} MB"
    # MELD: the bomb broke the ratio cap; the log says so and nothing is left
    meld_log = (workdir / "logs/acquire/unpack_meld.log").read_text()
    assert re.search(
        r"MELD\.Raw\.tar\.gz: stopped at member MELD\.Raw/train_splits/"
        r"dia0_utt0\.mp4: unpacking would write more than 20 times the size of "
        r"MELD\.Raw\.tar\.gz \(config unpack\.max_ratio\)",
        meld_log,
    ), meld_log
    assert not (workdir / "resources/meld/unpacked").exists()
    assert not list((workdir / "resources/meld").glob(".unpacked*"))
    assert not (workdir / "results/meld/unpack_report.json").exists()
    # IFEED: the Windows zip's images, the links refused and counted, 100 names kept
    report = json.loads((workdir / "results/ifeed/unpack_report.json").read_text())
    assert set(report["extracted"]) == WIN_IMAGES
    assert report["n_backslash_names"] == 9
    assert report["refused_counts"] == {"link": 3000} and len(report["refused"]) == 100
    ifeed_log = (workdir / "logs/acquire/unpack_ifeed.log").read_text()
    assert "refused 3000 members: link (first 100 listed in the report)" in ifeed_log
    assert "9 zip names had backslashes, read as folder separators" in ifeed_log
    assert len(ifeed_log) < 40_000

    # an IFEED zip with no usable image fails the rule with the reason
    _override(workdir, ifeed={"archives": [str(links)]})
    code, _, out = _snakemake(workdir, ["--cores", "1", "results/ifeed/unpack_report.json",
                                        "--forceall", "--configfile", "config/demo.yaml",
                                        "over.yaml"])  # fmt: skip
    assert code != 0
    ifeed_log = (workdir / "logs/acquire/unpack_ifeed.log").read_text()
    assert re.search(
        r"IFEED_Extra\.zip: unpacking yielded no usable file \(none ending in "
        r"\.bmp, \.jpeg, \.jpg, \.png\): 0 files extracted, 3000 members refused "
        r"\(link: 3000\)",
        ifeed_log,
    ), ifeed_log
    assert not (workdir / "resources/ifeed/unpacked").exists()


# a line of crossemotion.logs.setup_logging's format: time, level, logger, message
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ([A-Z]+) \S+: (.*)$")


def _job_log(path: Path) -> tuple[float, list[tuple[str, str]]]:
    """(seconds from the log's first line to its last, [(level, message)]) of a job's log.

    The first line is the unpacker's "extracting ..." and the last its summary
    or the error, so the span is the unpack's own time, without Snakemake's
    start-up or the script's imports. A line without a time stamp continues
    the message before it.
    """
    times: list[datetime] = []
    messages: list[tuple[str, str]] = []
    for line in path.read_text(errors="replace").splitlines():
        found = _LOG_LINE.match(line)
        if found:
            times.append(datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f"))
            messages.append((found[2], found[3]))
        elif messages:
            level, text = messages[-1]
            messages[-1] = (level, f"{text}\n{line}")
    assert times, f"{path} holds no log line"
    return (times[-1] - times[0]).total_seconds(), messages


@pytest.mark.parametrize("case_name", list(CASES))
def test_hostile_archive_through_the_unpack_rule(
    case_name: str, bombs: Path, workdir: Path
) -> None:
    """Each case as the only archive of the dataset whose rule reads its kind
    (zips: ifeed.archives, tars: meld.archive), with its budget as the config's
    ``unpack`` keys: the rule's exit status, the log's message, the report,
    nothing half-written, Snakemake and the job under 1 GB resident and the
    unpack (timed from its log) under 30 s."""
    case = CASES[case_name]
    dataset = "ifeed" if case.name.endswith(".zip") else "meld"
    usable = tuple(sorted(IMAGE_SUFFIXES if dataset == "ifeed" else CLIP_SUFFIXES))
    # the rule requires its usable suffixes whatever the case says: a case may
    # only require those, and one that ends ok must yield one
    assert case.require in ((), usable), (case.require, usable)
    if case.outcome == "ok":
        assert any(name.lower().endswith(usable) for name in case.extracted), case.extracted
    box = workdir / "archives"
    box.mkdir()
    archive = box / case.name
    archive.write_bytes(case.build(bombs))
    source = {"archive": str(archive)} if dataset == "meld" else {"archives": [str(archive)]}
    _override(workdir, **{dataset: source, "unpack": case.budget or {}})
    target = f"results/{dataset}/unpack_report.json"
    args = ["--cores", "1", target, "--configfile", "config/demo.yaml", "over.yaml"]
    # the timeout and the address-space limit (inherited by the job) only keep a
    # regression from holding or exhausting the machine; the bounds are asserted below
    code, peak, out = _snakemake(workdir, args, timeout=300, address_space=H.CHILD_ADDRESS_SPACE)

    # 1: Snakemake's status when a job fails (a kill would read negative)
    assert code == (0 if case.outcome == "ok" else 1), out[-3000:]
    assert peak < PEAK_RSS, f"peak RSS of Snakemake and the job {peak / 1e6:.0f} MB"
    # an uncaught exception in the job prints a traceback: every refusal here is clean
    assert "Traceback" not in out, out[-3000:]
    seconds, messages = _job_log(workdir / f"logs/acquire/unpack_{dataset}.log")
    assert seconds < SECONDS, f"unpack took {seconds:.1f} s"
    errors = [text for level, text in messages if level == "ERROR"]
    resources = workdir / "resources" / dataset
    kept = sorted(os.listdir(resources)) if resources.exists() else []
    report_path = workdir / target
    if case.outcome != "ok":
        (message,) = errors
        assert re.search(case.match, message), message
        assert "download it again" not in message or "corrupt" in case.match
        # nothing half-written: no unpacked folder, no .unpacked.partial, no report
        assert kept == [], kept
        assert not report_path.exists()
        return
    assert errors == [], errors
    assert kept == ["unpacked"], kept
    report = json.loads(report_path.read_text())
    assert report["refused_counts"] == case.refused
    # Snakemake marks a finished directory() output with its own time stamp file
    written = _files(resources / "unpacked") - {".snakemake_timestamp"}
    assert set(report["extracted"]) == case.extracted == written
    for member, pattern in case.reason.items():
        prefix = member.removesuffix("...")
        (entry,) = [e for e in report["refused"] if e["member"].startswith(prefix)]
        assert re.search(pattern, entry["reason"]), entry
    # the log counts each refusal reason and ends with the summary
    texts = [text for _, text in messages]
    for kind, n in case.refused.items():
        assert any(re.match(rf"refused {n} members: {kind}\b", t) for t in texts), texts
    assert texts[-1].startswith(f"extracted {len(case.extracted)} files into "), texts[-1]


def test_bad_name_is_a_manifest_entry_of_its_own(bombs: Path, tmp_path: Path) -> None:
    """The IFEED manifest keeps the unpacker's bad_name status (not a plain skip), and it
    counts as neither good nor bad, like the other members the unpacker left out."""
    from crossemotion.ingest import manifest as mf
    from crossemotion.ingest.ifeed.members import build_manifest

    archive = tmp_path / "a.zip"
    archive.write_bytes(_bad_utf8_zip(bombs))
    run = H.unpack_in_child([archive], tmp_path / "out")
    report = tmp_path / "report.json"
    report.write_text(json.dumps(run.result["report"]))
    rows = {r.member: r for r in build_manifest(tmp_path / "out", report)}
    bad = rows["a.zip:IFEED_Base/\\xff\\xfe_Ross_Happy.jpg"]
    assert bad.status == mf.BAD_NAME and "bad name encoding" in bad.reason
    assert rows["IFEED_Base/ok.jpg"].status != mf.BAD_NAME
    assert mf.BAD_NAME in mf.NEUTRAL


def test_peak_rss_is_the_commands_own_not_the_test_process(tmp_path: Path) -> None:
    """The measure the cases use: a command's peak, however large the test process has
    grown (a forked child's ru_maxrss would start at its parent's size), and a command
    that does allocate is seen doing so."""
    ballast = bytearray(1200 * 1024 * 1024)  # this process now holds 1.2 GB
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched, so resident
    code, small, _ = H.run_measured([sys.executable, "-c", "pass"], tmp_path, 60)
    grow = "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    code2, large, _ = H.run_measured([sys.executable, "-c", grow], tmp_path, 60)
    del ballast
    assert code == code2 == 0
    assert small < 200e6, f"{small / 1e6:.0f} MB"
    assert 400e6 < large < 700e6, f"{large / 1e6:.0f} MB"

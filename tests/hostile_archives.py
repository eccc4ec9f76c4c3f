"""Hostile archives for the unpacker's tests, built small, and a child-process runner.

Each builder writes one archive of a class from issue 38 (bombs, lies, floods,
header tricks) in well under a second, except the bzip2/LZMA bombs whose
streams take seconds to compress: those are cached in pytest's cache folder.
The bombs are built from pieces rather than by compressing gigabytes:

- deflate: a sync-flushed block of zeros only refers back to zeros, so copies
  of it decode one after another (a 1 MiB block compresses to about 1 kB);
- gzip: the same blocks behind a gzip header; the trailer's CRC is left wrong,
  since every bomb here must be stopped long before the trailer is read.

``unpack_in_child`` runs ``safe_extract`` in a fresh interpreter and measures
what the issue bounds: the child's peak resident memory (its own VmHWM) and its
wall time, with an address-space limit so that a regression fails with
MemoryError instead of exhausting the test machine.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import resource
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
# the child may map this much: 4x the bound the tests assert, so a regression
# shows as a measured peak over 1 GB or a MemoryError, never as a swapping box
CHILD_ADDRESS_SPACE = 4 << 30


# ----------------------------------------------------------------- compression


def zero_deflate(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros, without its final block."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(MIB)) + comp.flush(zlib.Z_SYNC_FLUSH)
    return block * mib


_FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block


def gzip_tar_bomb(head: bytes, zeros_mib: int) -> bytes:
    """A .tar.gz whose stream is ``head`` (tar headers) then ``zeros_mib`` MiB of zeros.

    The trailer's CRC and size are not those of the data: no bomb here is
    decompressed to its end.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = comp.compress(head) + comp.flush(zlib.Z_SYNC_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + start + zero_deflate(zeros_mib) + _FINAL_BLOCK + struct.pack("<2I", 0, 0)


def _compressed_zeros(compressor: Any, mib: int) -> bytes:
    out = [compressor.compress(bytes(16 * MIB)) for _ in range(mib // 16)]
    return b"".join(out) + compressor.flush()


def bzip2_zeros(mib: int, prefix: bytes = b"") -> bytes:
    """A bzip2 stream of ``prefix`` then ``mib`` MiB of zeros (about 8 s per GiB)."""
    comp = bz2.BZ2Compressor(9)
    head = comp.compress(prefix)
    return head + _compressed_zeros(comp, mib)


def lzma_zip_zeros(mib: int) -> bytes:
    """A zip LZMA member's data (version, properties, raw LZMA1) of ``mib`` MiB of zeros."""
    filters = [{"id": lzma.FILTER_LZMA1, "preset": 0}]
    comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=filters)
    props = lzma._encode_filter_properties(filters[0])  # type: ignore[attr-defined]
    return struct.pack("<BBH", 9, 4, len(props)) + props + _compressed_zeros(comp, mib)


def cached(cache_dir: Path, name: str, build: Any) -> Path:
    """``cache_dir/name``, built by ``build() -> bytes`` when missing (written then renamed)."""
    path = cache_dir / name
    if not path.exists():
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        tmp.write_bytes(build())
        tmp.replace(path)
    return path


# ------------------------------------------------------------------------- zip


@dataclass
class RawMember:
    """A zip member with every header field chosen by the test."""

    name: bytes
    data: bytes  # as stored (compressed)
    method: int = zipfile.ZIP_STORED
    crc: int | None = None  # None: the CRC of ``data`` (right for stored members)
    usize: int | None = None  # None: len(data)
    flags: int = 0
    system: int = 3  # 3: unix, 0: MS-DOS/Windows
    mode: int = 0o100644
    dos_attr: int = 0
    # extra central-directory entries pointing at this member's local header
    aliases: list[bytes] = field(default_factory=list)


def raw_zip(members: Sequence[RawMember], stated_total: int | None = None) -> bytes:
    """A zip written by hand, so that headers may lie, alias and overlap.

    ``stated_total``: the member count its zip64 end record states, whatever
    the directory holds (a flood announced up front).
    """
    body = bytearray()
    central = bytearray()
    count = 0
    for m in members:
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        usize = len(m.data) if m.usize is None else m.usize
        offset = len(body)
        body += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, m.flags, m.method, 0, 0x21, crc,
                            len(m.data), usize, len(m.name), 0) + m.name + m.data  # fmt: skip
        attr = (m.mode << 16 if m.system == 3 else 0) | m.dos_attr
        for name in (m.name, *m.aliases):
            central += struct.pack(
                "<4s6H3I5H2I", b"PK\x01\x02", (m.system << 8) | 20, 20, m.flags, m.method, 0,
                0x21, crc, len(m.data), usize, len(name), 0, 0, 0, 0, attr, offset,
            ) + name  # fmt: skip
            count += 1
    if stated_total is None:
        if count > 0xFFFF:
            raise ValueError("more than 65535 members need stated_total (a zip64 end record)")
        end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, count, count, len(central),
                          len(body), 0)  # fmt: skip
        return bytes(body + central + end)
    eocd64_at = len(body) + len(central)
    eocd64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, stated_total,
                         stated_total, len(central), len(body))  # fmt: skip
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd64_at, 1)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                      0xFFFFFFFF, 0)  # fmt: skip
    return bytes(body + central + eocd64 + locator + end)


def zip_bytes(members: Iterable[tuple[str, bytes]], **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", **kwargs) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def windows_ifeed_zip() -> bytes:
    """IFEED_Base as a zip written on Windows: backslashed names, folder entries."""
    members = [RawMember(b"IFEED_Base\\", b"", system=0, dos_attr=0x10)]
    images = []
    for split, utt in (("Training", "dia1_utt2"), ("Testing", "dia7_utt0")):
        members.append(RawMember(f"IFEED_Base\\{split}\\".encode(), b"", system=0, dos_attr=0x10))
        members.append(
            RawMember(f"IFEED_Base\\{split}\\{utt}\\".encode(), b"", system=0, dos_attr=0x10)
        )
        for frame, who in ((1, "Ross_Happy"), (2, "Monica_Sad")):
            name = f"IFEED_Base\\{split}\\{utt}\\frame{frame}_{who}.jpg"
            images.append(name)
            members.append(RawMember(name.encode(), f"jpg {name}".encode(), system=0))
    return raw_zip(members)


# ------------------------------------------------------------------------- tar


def tar_header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.GNU_FORMAT)


def tar_file(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buf.getvalue()


def info(name: str, data: bytes = b"", **attrs: Any) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti, data if ti.isreg() else None


def header_flood(names: Iterable[str], kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    """A .tar.gz of one empty member per name (each under 100 bytes), written
    by patching one header: tarfile's writer takes minutes for 100k members
    on a loaded machine."""
    template = bytearray(tar_header("x", kind=kind, linkname=linkname))
    out = bytearray()
    for name in names:
        raw = name.encode()
        if len(raw) >= 100:
            raise ValueError(f"{name!r}: header_flood writes names under 100 bytes")
        template[0:100] = raw.ljust(100, b"\x00")
        out += _checksummed(template)
    return _gzip(bytes(out + bytes(1024)), level=6)


def _checksummed(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def gnu_sparse_tar(extension_blocks: int) -> bytes:
    """A .tar.gz with one old-GNU sparse member claiming 8.6 GB, followed by a
    flood of sparse-map extension blocks, then a plain clip (one the MELD rule
    counts as usable, so that the rule succeeds once the sparse one is refused)."""
    head = bytearray(tar_header("MELD.Raw/sparse.mp4", size=0, kind=tarfile.GNUTYPE_SPARSE))
    entry = b"%011o\x00%011o\x00" % (1 << 32, 512)
    head[386 : 386 + 24] = entry  # one (offset, size) pair in the header
    head[482] = 1  # extension blocks follow
    head[483:495] = b"%011o\x00" % 0o77777777777  # real size: 8.6 GB, the most 11 digits hold
    blocks = bytearray()
    ext = bytearray(entry * 21 + bytes(512 - 21 * 24))
    ext[504] = 1
    for i in range(extension_blocks):
        if i == extension_blocks - 1:
            ext[504] = 0
        blocks += ext
    plain = tar_header("MELD.Raw/after.mp4", size=3) + b"mp4".ljust(512, b"\x00")
    raw = _checksummed(head) + bytes(blocks) + plain + bytes(1024)
    return _gzip(raw)


def _gzip(raw: bytes, level: int = 9) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=level) as gz:
        gz.write(raw)
    return buf.getvalue()


def pax_tar(
    pax: dict[str, str],
    name: str = "placeholder",
    data: bytes = b"x",
    then: Sequence[tuple[tarfile.TarInfo, bytes | None]] = (),
) -> bytes:
    """A .tar.gz whose first member carries ``pax`` headers, then the members ``then``."""
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.pax_headers = pax
    return tar_file([(ti, data), *then], mode="w:gz")


def ext_header_bomb(kind: bytes, mib: int) -> bytes:
    """A .tar.gz whose first header is a GNU long-name (b"L") or pax (b"x")
    header stating ``mib`` MiB, followed by that many MiB (compressed ~1000:1)."""
    head = tar_header("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax", mib * MIB,
                      kind=kind)  # fmt: skip
    return gzip_tar_bomb(head, mib)


# ------------------------------------------------------------------- the child


@dataclass
class ChildRun:
    returncode: int
    peak_rss: int  # bytes: the child's VmHWM, or wait4's ru_maxrss when it wrote none
    seconds: float
    result: dict[str, Any]  # what the child wrote: outcome, message, report
    log: str


def unpack_in_child(
    archives: Sequence[Path],
    dest: Path,
    budget: dict[str, Any] | None = None,
    require: Sequence[str] = (),
    timeout: float = 120.0,
) -> ChildRun:
    """Run ``safe_extract`` in a fresh interpreter; its peak RSS and wall time."""
    work = dest.parent
    args = work / f".{dest.name}.child.json"
    result = work / f".{dest.name}.result.json"
    log = work / f".{dest.name}.log"
    result.unlink(missing_ok=True)
    args.write_text(json.dumps({
        "archives": [str(a) for a in archives], "dest": str(dest), "budget": budget,
        "require": list(require), "result": str(result), "log": str(log),
    }))  # fmt: skip

    cmd = [sys.executable, "-c", "from tests.hostile_archives import child_main; child_main()"]
    returncode, peak_rss, seconds = run_measured([*cmd, str(args)], ROOT, timeout,
                                                 address_space=CHILD_ADDRESS_SPACE)  # fmt: skip
    args.unlink(missing_ok=True)
    payload = json.loads(result.read_text()) if result.exists() else {"outcome": "no result"}
    result.unlink(missing_ok=True)
    text = log.read_text(errors="replace") if log.exists() else ""
    log.unlink(missing_ok=True)
    # the child's own peak when it could say it; else wait4's, an upper bound
    return ChildRun(returncode, payload.get("vm_hwm", peak_rss), seconds, payload, text)


# A small process between the test and the measured command. Linux's ru_maxrss
# of a child counts the memory it had before exec, i.e. a copy of its parent's:
# forked from a pytest process that grew to 1.5 GB, any command would "peak" at
# 1.5 GB. Forked from this launcher (a fresh, small interpreter), the command's
# figure is its own and its children's. It writes the command's exit code and
# peak, from wait4, to the file named first.
LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}, fh)
"""


def run_measured(
    cmd: Sequence[str],
    cwd: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    output: Path | None = None,
    address_space: int | None = None,
) -> tuple[int, int, float]:
    """(exit code, peak RSS in bytes, seconds) of ``cmd`` and the children it waits for.

    The peak comes from ``wait4`` on the command in ``LAUNCHER``: Linux reports the
    larger of its own high-water mark and those of its reaped children (a
    Snakemake job's script included), not those of this test process. On timeout
    the whole process group is killed, and the peak is unknown (-1).
    """

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "measured.json"
        sink = open(output, "wb") if output else subprocess.DEVNULL  # noqa: SIM115 - closed below
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, str(result), *cmd], cwd=cwd, env=env,
                preexec_fn=limit, start_new_session=True, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            if output:
                sink.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=max(0.0, start + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        seconds = time.monotonic() - start
        if not result.exists():  # killed before the command ended
            return proc.returncode, -1, seconds
        measured = json.loads(result.read_text())
    # ru_maxrss is in KiB on Linux
    return measured["code"], measured["maxrss_kib"] * 1024, seconds


def child_main() -> None:
    """The child: unpack as told, write the outcome as JSON."""
    import logging

    from crossemotion.ingest.archives.unpack import Budget, safe_extract

    args = json.loads(Path(sys.argv[1]).read_text())
    logging.basicConfig(filename=args["log"], level=logging.INFO, force=True)
    out: dict[str, Any]
    try:
        budget = Budget.from_config(args["budget"]) if args["budget"] is not None else None
        report = safe_extract(args["archives"], args["dest"], progress=False, budget=budget,
                              require=tuple(args["require"]))  # fmt: skip
        payload = report.to_dict()
        out = {"outcome": "ok", "report": payload, "report_bytes": len(json.dumps(payload))}
    except Exception as err:
        out = {"outcome": type(err).__name__, "message": str(err)}
    out["vm_hwm"] = vm_hwm()
    Path(args["result"]).write_text(json.dumps(out))


def vm_hwm() -> int:
    """This process's peak resident bytes since its exec (/proc VmHWM).

    ``wait4``'s ``ru_maxrss`` also counts the pages the child shared with its
    parent at fork (a pytest process of a few hundred MB); after exec the
    address space is the child's own, and VmHWM is its own high-water mark.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

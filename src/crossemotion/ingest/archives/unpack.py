"""Safe extraction of tar(.gz) and zip archives, nested archives included.

Each member is checked by hand before anything is written (tarfile's
``filter='data'`` raises on the first bad member; here a bad member is skipped,
reported, and extraction goes on):

- refused: absolute paths (``/``, drive letters, UNC), ``..`` traversal, NUL
  characters, names longer than ``Budget.max_name_bytes`` or deeper than
  ``Budget.max_path_depth`` folders, symlinks and hardlinks (none is ever
  created, so no later member can write through one), device files, FIFOs,
  sparse, encrypted, overlapping or corrupt members, members that would
  overwrite the archive being read (self-nesting), names that cannot be written;
- ``bad_name``: a name that does not decode (flagged UTF-8 and not, or raw
  bytes in a tar); reported with its bytes escaped, and extraction goes on;
- skipped: macOS metadata (``__MACOSX/``, ``._*``) and dotfiles (``.DS_Store``).

Backslashes in zip names are folder separators (zips written on Windows name
``IFEED_Base\\Training\\...``); they go through the same checks as slashes.

Nested archives (MELD.Raw.tar.gz holds train.tar.gz, ...) are extracted in
place, into the folder that holds them, and the nested copy is removed; one
nested deeper than ``Budget.max_depth`` is refused and removed, not expanded.

Nothing is read whole and nothing is trusted from headers. The archives are
read by this module, not by tarfile's or zipfile's openers: compressed data is
fed in fixed-size chunks to a decompressor whose output is capped per call
(zipfile decompresses a bzip2 or LZMA block whole, whatever it expands to), the
compression is taken from the file's leading bytes (tarfile's ``r:*`` reads
bzip2 whatever the file is called), and methods the datasets do not use
(anything but stored/deflate zips and gzip/plain tars) are refused by name unless
``Budget.allow_methods`` names them. tar long-name and pax headers are capped in
size before tarfile reads them, and the zip central directory is parsed here
so a name is capped before it is decoded.

A ``Budget`` (config ``unpack``) bounds every top-level archive, nested ones
included: bytes written (counted as written) and bytes decompressed (skipped
data included) per byte of the archive, bytes written in all, members read,
folders created and wall-clock seconds. A broken budget stops at once and raises
``BudgetError`` naming the archive, the member and the limit. The report keeps
counts per refusal reason and the first ``Budget.report_names`` names of each,
never every name. Everything goes to a temp folder beside ``dest`` that is
renamed onto ``dest`` at the end, so a killed job or a broken budget never
leaves a folder taken as complete.
"""

from __future__ import annotations

import bz2
import io
import logging
import lzma
import os
import shutil
import stat
import struct
import tarfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tqdm import tqdm

log = logging.getLogger(__name__)

NESTED_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
GB = 10**9
_CHUNK = 1 << 20  # bytes written per write call
_IN_CHUNK = 1 << 18  # compressed bytes fed to a decompressor per call
_OUT_CHUNK = 1 << 20  # most bytes one decompressor call may return
# what any top-level archive may write or decompress whatever its size: a tiny
# archive of text legitimately expands far beyond the ratio
_RATIO_ALLOWANCE = 1 << 20
_READ_ALLOWANCE = 16 << 20
_NAME_MAX = 255  # bytes in one path part (Linux NAME_MAX)
_MAX_HEADER_CHAIN = 16  # tar extended headers in a row before one member
_SHOWN = 300  # characters of a name or link kept in the report

REFUSED = "refused"
SKIPPED = "skipped"
BAD_NAME = "bad_name"

# methods this module can read when allowed; the real archives use none of them
OPTIONAL_METHODS = ("bzip2", "lzma", "xz")
_ZIP_STORED, _ZIP_DEFLATED, _ZIP_BZIP2, _ZIP_LZMA = 0, 8, 12, 14
_ZIP_METHOD_NAMES = {
    0: "stored", 1: "shrink", 2: "reduce", 3: "reduce", 4: "reduce", 5: "reduce", 6: "implode",
    8: "deflate", 9: "deflate64", 10: "PKWARE DCL implode", 12: "bzip2", 14: "lzma",
    18: "IBM TERSE", 19: "IBM LZ77", 93: "zstd", 95: "xz", 96: "JPEG variant", 97: "WavPack",
    98: "PPMd", 99: "AES encryption",
}  # fmt: skip


class UnpackError(ValueError):
    """A top-level archive cannot be read at all, or yields nothing usable."""


class BudgetError(UnpackError):
    """Unpacking broke a ``Budget`` cap: the run stops and writes no output."""


class _Refused(UnpackError):
    """A whole archive refused for a reason of its own (method, header size)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class _CorruptMember(Exception):
    """One zip member's data is damaged; the member is refused, the rest goes on."""


class _CannotWrite(Exception):
    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))


@dataclass(frozen=True)
class Budget:
    """Caps on one unpack run; the config's ``unpack`` section overrides the defaults.

    The defaults pass the real archives with room to spare: MELD.Raw.tar.gz
    (10 GB of barely compressible mp4s in nested tars) writes and decompresses
    about twice its size, counting the nested tars, in 14k members and a handful
    of folders; the IFEED zips hold jpgs, about once their size, in one folder per
    utterance.
    """

    # bytes written (nested archives included) per byte of the top-level archive
    max_ratio: float = 20.0
    # bytes written in all, every archive of the run together
    max_bytes: int = 100 * GB
    # bytes decompressed (skipped members and nested archives included) per byte
    # of the top-level archive
    max_read_ratio: float = 50.0
    # wall-clock seconds per top-level archive, nested ones included
    max_seconds: float = 3600.0
    # archive members read (directories, refused and nested ones included)
    max_members: int = 500_000
    # folders created, by folder entries or as parents of files
    max_folders: int = 100_000
    # archive-in-archive levels expanded; MELD needs 1
    max_depth: int = 3
    # bytes in one member name (its UTF-8 form) and folders in its path
    max_name_bytes: int = 1024
    max_path_depth: int = 64
    # bytes of one tar long-name or pax header, checked before it is read
    max_header_bytes: int = 1 << 20
    # names kept per refusal reason in the report and the log
    report_names: int = 100
    # compression methods read although the datasets never use them
    allow_methods: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Budget:
        """From the config's ``unpack`` section (``max_gb`` in GB, unset keys default)."""
        cfg = dict(cfg or {})
        if "max_gb" in cfg:
            gb = cfg.pop("max_gb")
            cfg["max_bytes"] = None if gb is None else int(float(gb) * GB)
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown unpack budget keys: {sorted(unknown)}")
        if cfg.get("allow_methods") is not None:
            methods = tuple(str(m).lower() for m in cfg["allow_methods"])
            bad = sorted(set(methods) - set(OPTIONAL_METHODS))
            if bad:
                raise ValueError(
                    f"unpack.allow_methods: cannot read {bad}; known: {list(OPTIONAL_METHODS)}"
                )
            cfg["allow_methods"] = methods
        budget = cls(**{k: v for k, v in cfg.items() if v is not None})
        for f in fields(budget):
            if f.name == "allow_methods":
                continue
            floor = 0 if f.name in ("max_depth", "report_names") else 1
            if getattr(budget, f.name) < floor:
                raise ValueError(f"unpack budget {f.name} is too small: {getattr(budget, f.name)}")
        return budget


@dataclass
class UnpackReport:
    """What happened to the members: counts per reason, the first names of each.

    ``refused`` and ``skipped`` hold at most ``names_per_reason`` entries per
    reason kind; ``refused_counts``/``skipped_counts`` count them all. JSON-ready
    via ``to_dict``.
    """

    names_per_reason: int = 100
    archives: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    nested: list[str] = field(default_factory=list)
    refused_counts: Counter[str] = field(default_factory=Counter)
    skipped_counts: Counter[str] = field(default_factory=Counter)
    backslash_names: int = 0  # zip names whose backslashes were read as folder separators
    folders: int = 0
    bytes_written: int = 0
    bytes_read: int = 0

    def add(
        self, status: str, source: tuple[str, str], member: str, kind: str, reason: str
    ) -> None:
        """``source`` is (top-level archive name, member prefix of a nested archive)."""
        counts, entries = (
            (self.skipped_counts, self.skipped)
            if status == SKIPPED
            else (self.refused_counts, self.refused)
        )
        counts[kind] += 1
        if counts[kind] <= self.names_per_reason:
            archive, prefix = source
            entry = {"archive": archive, "member": prefix + member, "kind": kind, "reason": reason}
            if status == BAD_NAME:
                entry["status"] = BAD_NAME
            entries.append(entry)

    @property
    def n_refused(self) -> int:
        return sum(self.refused_counts.values())

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped_counts.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "archives": self.archives,
            "n_extracted": len(self.extracted),
            "n_skipped": self.n_skipped,
            "n_refused": self.n_refused,
            "n_nested": len(self.nested),
            "n_folders": self.folders,
            "n_backslash_names": self.backslash_names,
            "bytes_written": self.bytes_written,
            "bytes_decompressed": self.bytes_read,
            "names_per_reason": self.names_per_reason,
            "refused_counts": dict(sorted(self.refused_counts.items())),
            "skipped_counts": dict(sorted(self.skipped_counts.items())),
            "nested": self.nested,
            "skipped": self.skipped,
            "refused": self.refused,
            "extracted": self.extracted,
        }


# ------------------------------------------------------------------------ names


class _Problem(NamedTuple):
    status: str
    kind: str
    reason: str


# control characters in names are escaped: a newline or NUL in a log line
# would split it or spoof another
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)}


def _shown(text: str, limit: int = _SHOWN) -> str:
    """A name fit for the report and the log: cut first (a name may be a
    megabyte), then undecodable bytes and control characters escaped."""
    cut = text[:limit].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    cut = cut.translate(_CONTROL)
    return cut if len(text) <= limit else f"{cut}... ({len(text)} characters)"


def check_name(name: str, budget: Budget) -> _Problem | tuple[str, ...]:
    """The path parts a member may be written to, or why it may not.

    Linear in the name's length: the parts are checked as strings and nothing
    is resolved on disk (no member is ever written through a link, since links
    are never created, so parts free of ``..`` stay inside the folder).
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # tarfile keeps undecodable bytes as surrogates
        return _Problem(BAD_NAME, "bad_name", "bad name encoding: not valid UTF-8 (bytes escaped)")
    if "\x00" in name:
        return _Problem(REFUSED, "nul", "NUL character in the name")
    if name.startswith(("//", "\\\\")):
        return _Problem(REFUSED, "absolute", "absolute path (UNC)")
    if name.startswith(("/", "\\")):
        return _Problem(REFUSED, "absolute", "absolute path")
    if len(name) > 1 and name[1] == ":":
        return _Problem(REFUSED, "absolute", "absolute path (drive letter)")
    if name.count("/") >= budget.max_path_depth:  # cheap before splitting
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if len(parts) > budget.max_path_depth and ".." not in parts:
            return _deep(len(parts), budget)
    if size > budget.max_name_bytes:
        return _Problem(REFUSED, "long_name", f"name of {size} bytes is longer than "
                        f"{budget.max_name_bytes} (config unpack.max_name_bytes)")  # fmt: skip
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    # a backslashed ".." is a traversal on Windows: refused in tar names too
    if ".." in parts or ("\\" in name and ".." in name.replace("\\", "/").split("/")):
        return _Problem(REFUSED, "traversal", "path traversal (..)")
    if len(parts) > budget.max_path_depth:
        return _deep(len(parts), budget)
    if any(len(p.encode()) > _NAME_MAX for p in parts):
        return _Problem(REFUSED, "long_name", f"a path part longer than {_NAME_MAX} bytes")
    if "__MACOSX" in parts:
        return _Problem(SKIPPED, "macos_metadata", "macOS metadata (__MACOSX)")
    if any(p.startswith(".") for p in parts):
        return _Problem(SKIPPED, "dotfile", "dotfile or hidden folder")
    return parts


def _deep(depth: int, budget: Budget) -> _Problem:
    return _Problem(REFUSED, "deep_path", f"path {depth} folders deep, deeper than "
                    f"{budget.max_path_depth} (config unpack.max_path_depth)")  # fmt: skip


def member_problem(name: str, budget: Budget | None = None) -> tuple[str, str] | None:
    """(status, reason) for a member name, or None when it may be written."""
    checked = check_name(name, budget or Budget())
    return (checked.status, checked.reason) if isinstance(checked, _Problem) else None


def _is_archive(name: str) -> bool:
    return name.lower().endswith(NESTED_SUFFIXES)


# --------------------------------------------------------------- decompression


class _Decoder(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Zlib:
    """zlib's decompressobj behind the bz2/lzma decompressor interface."""

    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        tail = self._d.unconsumed_tail
        return self._d.decompress(tail + data if tail else data, max(max_length, 0))


_TAR_DECODERS: dict[str, Callable[[], _Decoder]] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "bzip2": bz2.BZ2Decompressor,
    "xz": lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ),
    "lzma": lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE),
}
_TAR_MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00"}


class _Decoded:
    """A forward-only byte stream: raw input decompressed chunk by chunk.

    Each decompressor call gets at most ``_IN_CHUNK`` bytes and may return at
    most ``_OUT_CHUNK``, so no read allocates more than a few MB whatever the
    data expands to; every decompressed byte goes through ``account`` (the
    budgets), skipped ones included. ``seek`` only moves forward, by reading.
    """

    def __init__(
        self,
        read_raw: Callable[[int], bytes],
        decoder: Callable[[], _Decoder] | None,
        account: Callable[[int], None],
        restart: bytes | None = None,
        truncated: Callable[[str], Exception] | None = EOFError,
    ) -> None:
        self._read_raw = read_raw
        self._new = decoder
        self._dec = decoder() if decoder else None
        self._account = account
        self._restart = restart  # magic of a concatenated stream (gzip members, ...)
        # raised when the input ends inside a compressed stream; None: the data
        # just ends there (zip's LZMA may have no end marker; sizes and CRC decide)
        self._truncated = truncated
        self._buf = bytearray()
        self._tell = 0
        self._eof = False

    def _fill(self) -> bool:
        """Add decoded bytes to the buffer; False at the end of the data."""
        if self._eof:
            return False
        dec = self._dec
        if dec is None:
            data = self._read_raw(_IN_CHUNK)
            if not data:
                self._eof = True
                return False
            self._push(data)
            return True
        if dec.eof:
            return self._next_stream(dec.unused_data)
        data = b""
        if dec.needs_input:
            data = self._read_raw(_IN_CHUNK)
            if not data:
                # zlib may hold output with no input left (a match cut by the cap)
                out = dec.decompress(b"", _OUT_CHUNK)
                if out:
                    self._push(out)
                    return True
                if dec.eof:
                    return self._next_stream(dec.unused_data)
                if self._truncated is None:  # the caller checks sizes and CRCs
                    self._eof = True
                    return False
                raise self._truncated("compressed data ends before its end marker (truncated)")
        self._push(dec.decompress(data, _OUT_CHUNK))
        return True

    def _next_stream(self, rest: bytes) -> bool:
        """After one compressed stream: the next concatenated one, or the end.

        gzip and bzip2 files may hold several streams back to back and be
        padded with zeros; anything else after the end marker is ignored.
        """
        assert self._new is not None
        magic = self._restart
        if magic is not None:
            rest = rest.lstrip(b"\x00")
            while len(rest) < len(magic):
                more = self._read_raw(_IN_CHUNK)
                if not more:
                    break
                rest = (rest + more).lstrip(b"\x00")
            if rest.startswith(magic):
                self._dec = self._new()
                self._push(self._dec.decompress(rest, _OUT_CHUNK))
                return True
        self._eof = True
        return False

    def _push(self, data: bytes) -> None:
        if data:
            self._account(len(data))
            self._buf += data

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            while self._fill():
                pass
            n = len(self._buf)
        while len(self._buf) < n and self._fill():
            pass
        n = min(n, len(self._buf))
        if n == len(self._buf):
            out = bytes(self._buf)
            self._buf.clear()
        else:
            with memoryview(self._buf) as view:
                out = view[:n].tobytes()
            del self._buf[:n]  # O(1): bytearray moves its start
        self._tell += n
        return out

    def tell(self) -> int:
        return self._tell

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            pos += self._tell
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only forward seeks from the start or here")
        if pos < self._tell:
            raise io.UnsupportedOperation(f"cannot seek back from {self._tell} to {pos}")
        skip = pos - self._tell
        while skip:
            if not self._buf and not self._fill():
                break
            k = min(skip, len(self._buf))
            del self._buf[:k]
            self._tell += k
            skip -= k
        return self._tell


def _raw_reader(fh: io.BufferedReader, start: int, length: int) -> Callable[[int], bytes]:
    """read(n) over ``length`` bytes of ``fh`` from ``start`` (a zip member's data)."""
    pos = start
    end = start + length

    def read(n: int) -> bytes:
        nonlocal pos
        n = min(n, end - pos)
        if n <= 0:
            return b""
        fh.seek(pos)
        data = fh.read(n)
        pos += len(data)
        return data

    return read


# ------------------------------------------------------------------------- tar

_TAR_EXT_TYPES = (
    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
)  # fmt: skip


class _TarInfo(tarfile.TarInfo):
    """TarInfo that checks an extended header's size before tarfile reads it whole.

    tarfile reads a GNU long-name or pax header in one read of the size its
    header states, and follows a chain of them by recursion; here the size is
    capped (``max_header``, set per run on a subclass) and the chain bounded.
    Sparse maps are not parsed (sparse members are refused anyway).
    """

    max_header = 1 << 20

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type not in _TAR_EXT_TYPES:
            return super()._proc_member(tarfile_)  # type: ignore[misc]
        what = "long-name" if self.type in (b"L", b"K") else "pax"
        if self.size > self.max_header:
            raise _Refused("header_too_large", f"a tar {what} header of {self.size} bytes (at "
                           f"byte {self.offset}) is larger than {self.max_header} bytes (config "
                           "unpack.max_header_bytes)")  # fmt: skip
        depth: int = getattr(tarfile_, "_chain", 0)
        if depth >= _MAX_HEADER_CHAIN:
            raise _Refused("header_chain", f"more than {_MAX_HEADER_CHAIN} extended tar headers "
                           f"in a row (at byte {self.offset})")  # fmt: skip
        tarfile_._chain = depth + 1  # type: ignore[attr-defined]
        try:
            return super()._proc_member(tarfile_)  # type: ignore[misc]
        finally:
            tarfile_._chain = depth  # type: ignore[attr-defined]

    def _proc_sparse(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # tarfile keeps every (offset, size) pair of the extension blocks, and
        # fails with IndexError when the data ends inside them: read past them
        # one block at a time (counted as decompressed), keep nothing
        _, isextended, origsize = self._sparse_structs  # type: ignore[attr-defined]
        del self._sparse_structs  # type: ignore[attr-defined]
        fileobj = tarfile_.fileobj
        assert fileobj is not None
        while isextended:
            buf = fileobj.read(tarfile.BLOCKSIZE)
            if len(buf) < tarfile.BLOCKSIZE:
                raise tarfile.ReadError("unexpected end of data in a sparse header")
            isextended = bool(buf[504])
        self.sparse = []  # type: ignore[attr-defined]
        self.offset_data = fileobj.tell()
        tarfile_.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
        self.size = origsize
        return self

    def _proc_gnusparse_00(self, next: tarfile.TarInfo, pax_headers: Any, buf: bytes) -> None:
        next.sparse = []  # type: ignore[attr-defined]

    def _proc_gnusparse_01(self, next: tarfile.TarInfo, pax_headers: Any) -> None:
        next.sparse = []  # type: ignore[attr-defined]

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: Any, tarfile_: Any) -> None:
        next.sparse = []  # type: ignore[attr-defined]


def _tar_type_problem(member: tarfile.TarInfo) -> _Problem | None:
    if member.issym():
        return _Problem(REFUSED, "link", f"symlink to {_shown(member.linkname)!r} "
                        "(links are never extracted)")  # fmt: skip
    if member.islnk():
        return _Problem(REFUSED, "link", f"hardlink to {_shown(member.linkname)!r} "
                        "(links are never extracted)")  # fmt: skip
    if member.ischr() or member.isblk():
        return _Problem(REFUSED, "device", "device file")
    if member.isfifo():
        return _Problem(REFUSED, "fifo", "FIFO")
    if member.issparse():
        return _Problem(REFUSED, "sparse", "sparse file (its size claims are not honoured)")
    if not (member.isreg() or member.isdir()):
        return _Problem(REFUSED, "member_type", f"unsupported member type {member.type!r}")
    return None


# ------------------------------------------------------------------------- zip

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s2B4HL2L2H")


class _ZipEntry(NamedTuple):
    name: bytes  # at most max_name_bytes + 1 bytes of it
    name_len: int
    seps: int  # slashes and backslashes in the whole name
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    mode: int  # unix mode bits (0 when written elsewhere)


class _ZipDirectory:
    """The central directory of a zip, parsed here so that nothing in it is
    decoded or kept whole before it is checked (zipfile decodes every name,
    raising on the first bad one, and keeps each name whole)."""

    def __init__(self, fh: io.BufferedReader, size: int, max_name: int) -> None:
        self.fh = fh
        self.max_name = max_name
        tail_len = min(size, _EOCD.size + 0xFFFF)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            raise _CorruptArchive("no zip end-of-directory record")
        _, _, _, _, total, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        eocd = size - tail_len + at
        concat = eocd - cd_size - cd_offset
        loc = eocd - _EOCD64_LOCATOR.size
        if loc >= 0:
            fh.seek(loc)
            locator = fh.read(_EOCD64_LOCATOR.size)
            if locator[:4] == b"PK\x06\x07":
                fh.seek(_EOCD64_LOCATOR.unpack(locator)[2])
                record = fh.read(_EOCD64.size)
                if record[:4] != b"PK\x06\x06":
                    raise _CorruptArchive("bad zip64 end-of-directory record")
                total, cd_size, cd_offset = _EOCD64.unpack(record)[7:10]
                concat = loc - _EOCD64.size - cd_size - cd_offset
        self.total = total  # as stated: checked against the member cap up front
        self.start = cd_offset + max(concat, 0)
        self.concat = max(concat, 0)  # bytes before the first member (self-extractors)
        self.end = self.start + cd_size
        if self.end > size:
            raise _CorruptArchive("the zip directory runs past the end of the file")

    def __iter__(self) -> Iterator[_ZipEntry]:
        fh = self.fh
        fh.seek(self.start)
        pos = self.start
        while pos < self.end:
            head = fh.read(_CENTRAL.size)
            if len(head) < _CENTRAL.size or head[:4] != b"PK\x01\x02":
                raise _CorruptArchive(f"bad zip directory entry at byte {pos}")
            (_, _, system, _, _, flags, method, _, _, crc, csize, usize,
             n_name, n_extra, n_comment, _, _, attr, offset) = _CENTRAL.unpack(head)  # fmt: skip
            name = fh.read(n_name)  # at most 64 kB: the field has 16 bits
            seps = name.count(b"/") + name.count(b"\\")
            name = name[: self.max_name + 1]
            extra = fh.read(n_extra)
            if n_comment:
                fh.seek(n_comment, io.SEEK_CUR)
            pos += _CENTRAL.size + n_name + n_extra + n_comment
            if 0xFFFFFFFF in (usize, csize, offset):
                usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
            mode = attr >> 16 if system == 3 else 0
            yield _ZipEntry(name, n_name, seps, flags, method, crc, csize, usize,
                            offset + self.concat, mode)  # fmt: skip


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    at = 0
    while at + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, at)
        if tag == 1:
            values = list(struct.unpack_from(f"<{n // 8}Q", extra, at + 4))
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        at += 4 + n
    return usize, csize, offset


class _CorruptArchive(Exception):
    """The archive's own structure is broken (not one member's data)."""


def _zip_type_problem(entry: _ZipEntry, allowed: Sequence[str]) -> _Problem | None:
    mode = entry.mode
    if stat.S_ISLNK(mode):
        return _Problem(REFUSED, "link", "symlink (links are never extracted)")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return _Problem(REFUSED, "device", "device file")
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return _Problem(REFUSED, "fifo", "FIFO or socket")
    if entry.flags & 0x41 or entry.method == 99:  # traditional or strong encryption, AES
        return _Problem(REFUSED, "encrypted", "encrypted member")
    method = entry.method
    name = _ZIP_METHOD_NAMES.get(method, "unknown")
    if method in (_ZIP_STORED, _ZIP_DEFLATED):
        return None
    if method in (_ZIP_BZIP2, _ZIP_LZMA) and name in allowed:
        return None
    if method in (_ZIP_BZIP2, _ZIP_LZMA):
        return _Problem(REFUSED, "method", f"zip compression method {name} ({method}) is not "
                        "used by the dataset's archives; refused (config unpack.allow_methods: "
                        f"[{name}] reads it)")  # fmt: skip
    return _Problem(REFUSED, "method", f"unsupported zip compression method {name} ({method}); "
                    "re-pack the archive with deflate to use this member")  # fmt: skip


def _zip_problem(entry: _ZipEntry, overlaps: bool, budget: Budget) -> _Problem | None:
    if overlaps:
        return _Problem(REFUSED, "overlap", "its data overlaps another member's (a zip bomb)")
    return _zip_type_problem(entry, budget.allow_methods)


def _zip_decoder(entry: _ZipEntry, read_raw: Callable[[int], bytes]) -> _Decoder | None:
    if entry.method == _ZIP_DEFLATED:
        return _Zlib(-zlib.MAX_WBITS)
    if entry.method == _ZIP_BZIP2:
        return bz2.BZ2Decompressor()
    if entry.method == _ZIP_LZMA:
        head = read_raw(4)
        if len(head) < 4:
            raise _CorruptMember("truncated lzma header")
        props = read_raw(struct.unpack("<2H", head)[1])
        filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # type: ignore[attr-defined]
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])
    return None


def _overlapping(spans: Sequence[tuple[int, int]]) -> set[int]:
    """Indices of members whose header lies inside an earlier member's data.

    Overlapping-entry bombs point many directory entries at one compressed
    kernel; a genuine zip never overlaps. A member's extent (``spans``) is at
    least its 30-byte local header plus its compressed size.
    """
    order = sorted(range(len(spans)), key=spans.__getitem__)
    out: set[int] = set()
    reach = -1
    for i in order:
        start, end = spans[i]
        if start < reach:
            out.add(i)
        reach = max(reach, end)
    return out


# ---------------------------------------------------------------------- sniffing


def _sniff(archive: Path) -> tuple[str, str]:
    """(format, compression) by content: ("zip", ""), ("tar", "gzip" | "none" | ...).

    zipfile finds a zip by the directory at its end, so it also takes a plain
    tar whose last member is a zip: a zip's leading signature decides first, a
    tar header second, a zip directory at the end only last (self-extractors).
    """
    with open(archive, "rb") as fh:
        head = fh.read(tarfile.BLOCKSIZE)
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            return "zip", ""
        for method, magic in _TAR_MAGIC.items():
            if head.startswith(magic):
                return "tar", method
        if head.startswith(b"\x28\xb5\x2f\xfd"):
            return "tar", "zstd"
        if head.startswith(b"\x1f\x9d"):
            return "tar", "compress"
        if len(head) == tarfile.BLOCKSIZE:
            try:
                tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
                return "tar", "none"
            except tarfile.HeaderError:
                pass
        size = fh.seek(0, io.SEEK_END)
        fh.seek(max(0, size - _EOCD.size - 0xFFFF))
        if b"PK\x05\x06" in fh.read():
            return "zip", ""
    raise UnpackError("neither a tar nor a zip archive")


# ------------------------------------------------------------------- extraction


class _Extraction:
    """Extracts archives into ``root`` (the temp folder), filling ``report``."""

    def __init__(self, root: Path, nested: bool, progress: bool, budget: Budget) -> None:
        self.root = str(root)
        self.nested = nested
        self.progress = progress
        self.budget = budget
        self.report = UnpackReport(names_per_reason=budget.report_names)
        self._tarinfo = type("_CappedTarInfo", (_TarInfo,), {"max_header": budget.max_header_bytes})
        self.top = ""  # name of the top-level archive being extracted
        self.member = ""  # member being read, for budget messages
        self._extracted: dict[str, None] = {}  # ordered set: tars may repeat a name
        self._dirs: set[tuple[str, ...]] = {()}
        self._active: set[tuple[str, ...]] = set()  # nested archives being read
        self.written = 0  # bytes written in all
        self.members = 0  # archive members read in all
        self._top_cap = 0
        self._top_written = 0
        self._read_cap = 0
        self._top_read = 0
        self._deadline = 0.0

    # --------------------------------------------------------------- budget

    def start_top(self, archive: Path) -> None:
        size = archive.stat().st_size
        self.top = archive.name
        self.member = ""
        self._top_written = self._top_read = 0
        self._top_cap = int(self.budget.max_ratio * size) + _RATIO_ALLOWANCE
        self._read_cap = int(self.budget.max_read_ratio * size) + _READ_ALLOWANCE
        self._deadline = time.monotonic() + self.budget.max_seconds

    def _stop(self, what: str) -> BudgetError:
        at = f" at member {_shown(self.member)}" if self.member else ""
        return BudgetError(
            f"{self.top}: stopped{at}: {what}. A download that is not what the dataset ships "
            "(a zip bomb?) breaks this; for a genuine archive raise the cap. Nothing was kept."
        )

    def _account_read(self, n: int) -> None:
        self._top_read += n
        self.report.bytes_read += n
        if self._top_read > self._read_cap:
            raise self._stop(
                f"unpacking would decompress more than {self._read_cap} bytes, "
                f"{self.budget.max_read_ratio:g} times the size of {self.top} "
                "(config unpack.max_read_ratio), skipped members included"
            )
        self._check_clock()

    def _check_clock(self) -> None:
        if time.monotonic() > self._deadline:
            raise self._stop(
                f"unpacking took more than {self.budget.max_seconds:g} s "
                "(config unpack.max_seconds)"
            )

    def _room(self) -> int:
        return min(self._top_cap - self._top_written, self.budget.max_bytes - self.written)

    def _over_bytes(self) -> BudgetError:
        if self.budget.max_bytes - self.written <= self._top_cap - self._top_written:
            cap = f"the cap of {self.budget.max_bytes} bytes in all (config unpack.max_gb)"
        else:
            cap = (f"{self.budget.max_ratio:g} times the size of {self.top} "
                   f"(config unpack.max_ratio)")  # fmt: skip
        return self._stop(f"unpacking would write more than {cap}")

    def _count_members(self, n: int, archive: str) -> None:
        self.members += n
        if self.members > self.budget.max_members:
            raise self._stop(
                f"{archive} brings the archive members read to more than "
                f"{self.budget.max_members} (config unpack.max_members)"
            )

    # --------------------------------------------------------------- writing

    def _mkdirs(self, parts: tuple[str, ...]) -> None:
        """Create the folder ``parts`` and its parents, iteratively, counting each."""
        if parts in self._dirs:
            return
        depth = len(parts)
        while depth and parts[:depth] not in self._dirs:
            depth -= 1
        for i in range(depth + 1, len(parts) + 1):
            path = os.path.join(self.root, *parts[:i])
            try:
                os.mkdir(path)
            except FileExistsError:
                if not os.path.isdir(path):
                    raise _CannotWrite(
                        NotADirectoryError(20, "a file has the name of a folder")
                    ) from None
            except OSError as err:
                raise _CannotWrite(err) from None
            else:
                self.report.folders += 1
                if self.report.folders > self.budget.max_folders:
                    raise self._stop(f"unpacking would create more than "
                                     f"{self.budget.max_folders} folders "
                                     "(config unpack.max_folders)")  # fmt: skip
            self._dirs.add(parts[:i])

    def _write(self, parts: tuple[str, ...], chunks: Iterator[bytes]) -> None:
        self._mkdirs(parts[:-1])
        path = os.path.join(self.root, *parts)
        try:
            out = open(path, "wb")  # noqa: SIM115 - closed below, removed on any failure
        except OSError as err:
            raise _CannotWrite(err) from None
        try:
            with out:
                for chunk in chunks:
                    if len(chunk) > self._room():
                        raise self._over_bytes()
                    try:
                        out.write(chunk)
                    except OSError as err:
                        raise _CannotWrite(err) from None
                    self.written += len(chunk)
                    self._top_written += len(chunk)
        except BaseException:
            os.unlink(path)
            raise
        self.report.bytes_written = self.written
        self._extracted["/".join(parts)] = None

    # --------------------------------------------------------------- members

    def _member(
        self,
        source: tuple[str, str],
        folder: tuple[str, ...],
        checked: _Problem | tuple[str, ...],
        shown: str,
        problem: Callable[[], _Problem | None],
        is_dir: bool,
    ) -> tuple[str, ...] | None:
        """The root-relative parts a member goes to, or None (reported) when it may not."""
        self.member = source[1] + shown
        if isinstance(checked, _Problem):
            self.report.add(checked.status, source, shown, checked.kind, checked.reason)
            return None
        bad = problem()
        if bad is not None:
            self.report.add(bad.status, source, shown, bad.kind, bad.reason)
            return None
        if not checked:  # the archive's own "./" entry
            return None
        parts = folder + checked
        if parts in self._active:
            self.report.add(REFUSED, source, shown, "self_nesting",
                            "self-nesting: the member would overwrite the archive "
                            "being unpacked")  # fmt: skip
            return None
        if is_dir:
            try:
                self._mkdirs(parts)
            except _CannotWrite as err:
                self.report.add(REFUSED, source, shown, "cannot_write", f"cannot write: {err}")
            return None
        return parts

    def _tar(
        self, archive: Path, method: str, folder: tuple[str, ...], source: tuple[str, str]
    ) -> list[tuple[str, ...]]:
        written: list[tuple[str, ...]] = []
        with open(archive, "rb", buffering=0) as fh:
            stream = _Decoded(
                fh.read,
                _TAR_DECODERS.get(method),
                self._account_read,
                restart=_TAR_MAGIC.get(method),
                truncated=lambda why: tarfile.ReadError(why),
            )
            tar = tarfile.TarFile(fileobj=stream, mode="r", tarinfo=self._tarinfo)  # type: ignore[arg-type]
            bar = tqdm(desc=archive.name, unit=" members", disable=not self.progress)
            with tar, bar:
                while (member := tar.next()) is not None:
                    tar.members.clear()  # tarfile keeps every member read: memory grows
                    bar.update(1)
                    name = member.name
                    shown = _shown(name)
                    self.member = source[1] + shown  # the member a broken budget names
                    self._count_members(1, archive.name)
                    self._check_clock()
                    parts = self._member(
                        source,
                        folder,
                        check_name(name, self.budget),
                        shown,
                        lambda member=member: _tar_type_problem(member),
                        member.isdir(),
                    )
                    if parts is None:
                        continue
                    try:
                        self._write(parts, _tar_chunks(stream, member))
                    except _CannotWrite as err:
                        self.report.add(REFUSED, source, shown, "cannot_write",
                                        f"cannot write: {err}")  # fmt: skip
                        continue
                    written.append(parts)
        return written

    def _zip(
        self, archive: Path, folder: tuple[str, ...], source: tuple[str, str]
    ) -> list[tuple[str, ...]]:
        written: list[tuple[str, ...]] = []
        budget = self.budget
        size = archive.stat().st_size
        with open(archive, "rb") as cd_fh, open(archive, "rb") as data_fh:
            directory = _ZipDirectory(cd_fh, size, budget.max_name_bytes)
            # the directory states its count: a count over the cap fails up front
            if self.members + directory.total > budget.max_members:
                self._count_members(directory.total, archive.name)
            spans: list[tuple[int, int]] = []
            for entry in directory:  # a first pass: the real count, the overlaps
                if self.members + len(spans) >= budget.max_members:
                    self._count_members(len(spans) + 1, archive.name)
                # only the extent is kept: names are read again below
                spans.append((entry.offset, entry.offset + _LOCAL.size + entry.csize))
            n = len(spans)
            self._count_members(n, archive.name)
            overlaps = _overlapping(spans)
            del spans
            bar = tqdm(total=n, desc=archive.name, unit=" members", disable=not self.progress)
            with bar:
                for i, entry in enumerate(directory):
                    bar.update(1)
                    if i % 256 == 0:
                        self._check_clock()
                    checked, shown, is_dir = self._zip_name(entry)
                    parts = self._member(
                        source,
                        folder,
                        checked,
                        shown,
                        lambda entry=entry, over=i in overlaps: _zip_problem(entry, over, budget),
                        is_dir,
                    )
                    if parts is None:
                        continue
                    try:
                        self._write(parts, self._zip_chunks(data_fh, entry, size))
                    except _CannotWrite as err:
                        self.report.add(REFUSED, source, shown, "cannot_write",
                                        f"cannot write: {err}")  # fmt: skip
                        continue
                    except (_CorruptMember, zlib.error, EOFError, OSError, lzma.LZMAError) as err:
                        # bz2 signals bad data with OSError; write errors are _CannotWrite
                        self.report.add(REFUSED, source, shown, "corrupt", f"corrupt member: {err}")
                        continue
                    written.append(parts)
        return written

    def _zip_name(self, entry: _ZipEntry) -> tuple[_Problem | tuple[str, ...], str, bool]:
        """The checked name of a zip member, its name for the report, whether a folder."""
        raw = entry.name
        budget = self.budget
        if entry.name_len > budget.max_name_bytes:
            shown = _shown(raw.decode("utf-8", "backslashreplace"))
            if entry.seps >= budget.max_path_depth:
                return _deep(entry.seps + 1, budget), shown, False
            return _Problem(REFUSED, "long_name", f"name of {entry.name_len} bytes is longer "
                            f"than {budget.max_name_bytes} (config unpack.max_name_bytes)"), \
                shown, False  # fmt: skip
        if entry.flags & 0x800:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                shown = _shown(raw.decode("utf-8", "backslashreplace"))
                return _Problem(BAD_NAME, "bad_name", "bad name encoding: flagged UTF-8 but "
                                "not valid UTF-8 (bytes escaped)"), shown, False  # fmt: skip
        else:
            name = raw.decode("cp437")  # zip's legacy encoding: every byte decodes
        if "\\" in name:
            # written on Windows: IFEED_Base\Training\...; checked like any other name
            self.report.backslash_names += 1
            slashed = name.replace("\\", "/")
            return check_name(slashed, budget), _shown(name), slashed.endswith("/")
        return check_name(name, budget), _shown(name), name.endswith("/")

    def _zip_chunks(self, fh: io.BufferedReader, entry: _ZipEntry, size: int) -> Iterator[bytes]:
        """A zip member's data, checked against its stated size and CRC as it comes."""
        fh.seek(entry.offset)
        head = fh.read(_LOCAL.size)
        if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
            raise _CorruptMember("no local header at the offset the directory states")
        n_name, n_extra = _LOCAL.unpack(head)[-2:]
        start = entry.offset + _LOCAL.size + n_name + n_extra
        if start + entry.csize > size:
            raise _CorruptMember("its data runs past the end of the archive")
        read_raw = _raw_reader(fh, start, entry.csize)
        decoder = _zip_decoder(entry, read_raw)
        stream = _Decoded(
            read_raw, (lambda: decoder) if decoder else None, self._account_read, truncated=None
        )
        crc = 0
        got = 0
        while chunk := stream.read(_CHUNK):
            got += len(chunk)
            if got > entry.usize:
                raise _CorruptMember(f"more data than the {entry.usize} bytes its header states")
            crc = zlib.crc32(chunk, crc)
            yield chunk
        if crc != entry.crc:
            raise _CorruptMember("CRC mismatch")

    # --------------------------------------------------------------- driving

    def extract(
        self, archive: Path, folder: tuple[str, ...], source: tuple[str, str], depth: int = 0
    ) -> None:
        """Extract ``archive`` into ``folder`` (root-relative parts), then the archives in it."""
        kind, method = _sniff(archive)
        if kind == "zip":
            written = self._zip(archive, folder, source)
        else:
            if method not in ("none", "gzip") and method not in self.budget.allow_methods:
                hint = (
                    f" (config unpack.allow_methods: [{method}] reads it)"
                    if method in OPTIONAL_METHODS
                    else ""
                )
                raise _Refused(
                    "method",
                    f"compressed with {method}, which the dataset's archives do not use; "
                    f"refused{hint}",
                )
            written = self._tar(archive, method, folder, source)
        if not self.nested:
            return
        for inner in written:
            if _is_archive(inner[-1]) and os.path.isfile(os.path.join(self.root, *inner)):
                self._expand(inner, depth + 1)

    def _expand(self, inner: tuple[str, ...], depth: int) -> None:
        rel = "/".join(inner)
        path = Path(self.root, *inner)
        if depth > self.budget.max_depth:
            cap = self.budget.max_depth
            self.report.add(REFUSED, (self.top, ""), rel, "nested_too_deep",
                            f"archive nested deeper than {cap} levels (config unpack.max_depth); "
                            "not expanded")  # fmt: skip
        else:
            if len(self.report.nested) < self.budget.report_names:
                log.info("extracting nested archive %s", _shown(rel))
            self._active.add(inner)
            try:
                self.extract(path, inner[:-1], (self.top, f"{rel}!"), depth)
            except BudgetError:
                raise
            except _Refused as err:
                self.report.add(REFUSED, (self.top, ""), rel, err.kind, str(err))
            except (tarfile.TarError, _CorruptArchive, zlib.error, EOFError, OSError,
                    lzma.LZMAError, UnpackError) as err:  # fmt: skip
                # what came out before the damage stays; the rest is reported
                self.report.add(REFUSED, (self.top, ""), rel, "corrupt_nested",
                                f"corrupt nested archive: {err}")  # fmt: skip
            finally:
                self._active.discard(inner)
            self.report.nested.append(rel)
        path.unlink()
        self._extracted.pop(rel, None)

    def finish(self) -> UnpackReport:
        self.report.extracted = list(self._extracted)
        self.report.bytes_written = self.written
        return self.report


def _tar_chunks(stream: _Decoded, member: tarfile.TarInfo) -> Iterator[bytes]:
    stream.seek(member.offset_data)
    left = member.size
    while left:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            raise tarfile.ReadError(f"unexpected end of data in {_shown(member.name)}")
        left -= len(chunk)
        yield chunk


def safe_extract(
    archives: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    nested: bool = True,
    progress: bool = True,
    budget: Budget | None = None,
    require: Sequence[str] = (),
) -> UnpackReport:
    """Extract one or more archives into ``dest`` (replaced as a whole at the end).

    Returns the report: extracted files (relative to ``dest``) and the skipped
    and refused members, counted per reason with the first names of each. A
    top-level archive that cannot be read raises UnpackError, a broken
    ``budget`` (default ``Budget()``) BudgetError; so does, when ``require``
    names file suffixes (".jpg", ...), an unpack that yields no file with one.
    Any error leaves ``dest`` untouched.
    """
    paths = (
        [Path(archives)] if isinstance(archives, str | os.PathLike) else list(map(Path, archives))
    )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    if tmp.exists():  # left by a killed run
        shutil.rmtree(tmp)
    tmp.mkdir()
    budget = budget or Budget()
    job = _Extraction(tmp, nested=nested, progress=progress, budget=budget)
    try:
        for archive in paths:
            log.info("extracting %s into %s", archive, dest)
            job.report.archives.append(str(archive))
            try:
                job.start_top(archive)
                job.extract(archive, (), (archive.name, ""))
            except _Refused as err:
                raise UnpackError(f"{archive.name}: {err}") from None
            except UnpackError as err:
                if isinstance(err, BudgetError):
                    raise
                raise UnpackError(
                    f"{archive.name}: {err}; delete it to download it again, "
                    "or point the config at a good copy"
                ) from None
            except (tarfile.TarError, _CorruptArchive, zlib.error, EOFError, OSError,
                    lzma.LZMAError) as err:  # fmt: skip
                raise UnpackError(
                    f"cannot read archive {archive}: {err}. It is truncated or corrupt: "
                    "delete it to download it again, or point the config at a good copy."
                ) from err
        report = job.finish()
        if require and not any(name.lower().endswith(tuple(require)) for name in report.extracted):
            raise UnpackError(_nothing_usable(report, require))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _log_summary(report)
    return report


def _nothing_usable(report: UnpackReport, require: Sequence[str]) -> str:
    names = ", ".join(Path(a).name for a in report.archives)
    counts = "; ".join(f"{k}: {n}" for k, n in report.refused_counts.most_common(5))
    first = report.refused[:3] + report.skipped[:3]
    examples = "; ".join(f"{e['member']} ({e['reason']})" for e in first)
    return (
        f"{names}: unpacking yielded no usable file (none ending in {', '.join(require)}): "
        f"{len(report.extracted)} files extracted, {report.n_refused} members refused"
        f"{f' ({counts})' if counts else ''}, {report.n_skipped} skipped"
        f"{f'; for example {examples}' if examples else ''}. Nothing was kept."
    )


def _log_summary(report: UnpackReport) -> None:
    for status, counts, entries in (
        (REFUSED, report.refused_counts, report.refused),
        (SKIPPED, report.skipped_counts, report.skipped),
    ):
        for kind, n in counts.most_common():
            listed = [e for e in entries if e["kind"] == kind]
            more = f" (first {len(listed)} listed in the report)" if n > len(listed) else ""
            level = logging.WARNING if status == REFUSED else logging.INFO
            log.log(level, "%s %d members: %s%s", status, n, kind, more)
            for item in listed:
                log.log(level, "  %s in %s: %s", item["member"], item["archive"], item["reason"])
    if report.backslash_names:
        log.info("%d zip names had backslashes, read as folder separators",
                 report.backslash_names)  # fmt: skip
    log.info(
        "extracted %d files into %d folders (%d skipped, %d refused, %d nested archives "
        "expanded; %d bytes written, %d decompressed)",
        len(report.extracted), report.folders, report.n_skipped, report.n_refused,
        len(report.nested), report.bytes_written, report.bytes_read,
    )  # fmt: skip

"""Safe extraction of tar(.gz) and zip archives, nested archives included.

Each member is checked by hand before anything is written (tarfile's
``filter='data'`` raises on the first bad member; here a bad member is skipped,
reported, and extraction goes on):

- refused: absolute paths, ``..`` traversal, symlinks and hardlinks (none is
  ever created, so no later member can write through one), device files,
  FIFOs, encrypted or corrupt members, names that cannot be written;
- skipped: macOS metadata (``__MACOSX/``, ``._*``) and dotfiles (``.DS_Store``).

Nested archives (MELD.Raw.tar.gz holds train.tar.gz, ...) are extracted in
place, into the folder that holds them, and the nested copy is removed; one
nested deeper than ``Budget.max_depth`` is refused and removed, not expanded.
A zip member packed with a method zipfile cannot read (deflate64, ...) is
refused with the method's name.

A ``Budget`` (config ``unpack``) bounds the whole run: bytes written per byte
of the top-level archive and in all, and archive members read. Bytes are
counted as they are written, never taken from headers (a zip can state any
size); a broken budget stops writing at once and raises ``BudgetError``.
Everything goes to a temp folder beside ``dest`` that is renamed onto ``dest``
at the end, so a killed job or a broken budget never leaves a folder taken as
complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tqdm import tqdm

log = logging.getLogger(__name__)

NESTED_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_CHUNK = 1 << 20
GB = 10**9
# what any top-level archive may write whatever its size: a tiny archive of
# text legitimately expands far beyond the ratio
_RATIO_ALLOWANCE = 1 << 20

# zip compression methods zipfile reads; any other is refused by name
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_ZIP_METHOD_NAMES = {
    1: "shrink", 2: "reduce", 3: "reduce", 4: "reduce", 5: "reduce", 6: "implode",
    9: "deflate64", 10: "PKWARE DCL implode", 18: "IBM TERSE", 19: "IBM LZ77", 93: "zstd",
    95: "xz", 96: "JPEG variant", 97: "WavPack", 98: "PPMd", 99: "AES encryption",
}  # fmt: skip

REFUSED = "refused"
SKIPPED = "skipped"


class UnpackError(ValueError):
    """A top-level archive cannot be read at all."""


class BudgetError(UnpackError):
    """Unpacking broke a ``Budget`` cap: the run stops and writes no output."""


@dataclass(frozen=True)
class Budget:
    """Caps on one unpack run; the config's ``unpack`` section overrides the defaults.

    The defaults pass the real archives with room to spare: MELD.Raw.tar.gz
    (10 GB of barely compressible mp4s in nested tars) writes about twice its
    size, counting the nested tars it removes, and 14k members; the IFEED zips
    hold jpgs, about once their size.
    """

    # bytes written (nested archives included) per byte of the top-level archive
    max_ratio: float = 20.0
    # bytes written in all, every archive of the run together
    max_bytes: int = 100 * GB
    # archive members read (directories, refused and nested ones included)
    max_members: int = 500_000
    # archive-in-archive levels expanded; MELD needs 1
    max_depth: int = 3

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Budget:
        """From the config's ``unpack`` section (``max_gb`` in GB, unset keys default)."""
        cfg = dict(cfg or {})
        if "max_gb" in cfg:
            cfg["max_bytes"] = int(float(cfg.pop("max_gb")) * GB)
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown unpack budget keys: {sorted(unknown)}")
        budget = cls(**{k: v for k, v in cfg.items() if v is not None})
        for f in fields(budget):
            if getattr(budget, f.name) < (0 if f.name == "max_depth" else 1):
                raise ValueError(f"unpack budget {f.name} is too small: {getattr(budget, f.name)}")
        return budget


@dataclass
class UnpackReport:
    """What happened to every member; JSON-ready via ``to_dict``."""

    archives: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    nested: list[str] = field(default_factory=list)

    def add(self, kind: str, source: tuple[str, str], member: str, reason: str) -> None:
        """``source`` is (top-level archive name, member prefix of a nested archive)."""
        archive, prefix = source
        getattr(self, kind).append(
            {"archive": archive, "member": prefix + member, "reason": reason}
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "archives": self.archives,
            "n_extracted": len(self.extracted),
            "n_skipped": len(self.skipped),
            "n_refused": len(self.refused),
            "nested": self.nested,
            "skipped": self.skipped,
            "refused": self.refused,
            "extracted": self.extracted,
        }


def member_problem(name: str) -> tuple[str, str] | None:
    """(REFUSED | SKIPPED, reason) for a member name, or None when it may be written."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return REFUSED, "absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return REFUSED, "path traversal (..)"
    if "__MACOSX" in parts:
        return SKIPPED, "macOS metadata (__MACOSX)"
    if any(p.startswith(".") for p in parts):
        return SKIPPED, "dotfile or hidden folder"
    return None


def _inside(root: Path, target: Path) -> bool:
    """``target`` is under ``root``; ``root`` must already be resolved."""
    try:
        target.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def _is_archive(name: str) -> bool:
    return name.lower().endswith(NESTED_SUFFIXES)


class _Extraction:
    """Extracts archives into ``root`` (the temp folder), filling ``report``."""

    def __init__(self, root: Path, nested: bool, progress: bool, budget: Budget) -> None:
        self.root = root
        self._real_root = root.resolve()  # once: resolving costs a syscall per path part
        self.nested = nested
        self.progress = progress
        self.budget = budget
        self.report = UnpackReport()
        self.top = ""  # name of the top-level archive being extracted
        self._extracted: dict[str, None] = {}  # ordered set: tars may repeat a name
        self.written = 0  # bytes written in all
        self.members = 0  # archive members read in all
        self._top_cap = 0  # byte cap of the top-level archive being extracted
        self._top_written = 0

    # --------------------------------------------------------------- budget

    def start_top(self, archive: Path) -> None:
        self.top = archive.name
        self._top_written = 0
        self._top_cap = int(self.budget.max_ratio * archive.stat().st_size) + _RATIO_ALLOWANCE

    def _room(self) -> int:
        return min(self._top_cap - self._top_written, self.budget.max_bytes - self.written)

    def _over_bytes(self, target: Path) -> BudgetError:
        rel = target.relative_to(self.root).as_posix()
        if self.budget.max_bytes - self.written <= self._top_cap - self._top_written:
            cap = f"the cap of {self.budget.max_bytes} bytes in all (config unpack.max_gb)"
        else:
            cap = (f"{self.budget.max_ratio:g} times the size of {self.top} "
                   f"(config unpack.max_ratio)")  # fmt: skip
        return BudgetError(
            f"{self.top}: stopped while writing {rel}: unpacking would write more than {cap}. "
            "A download that is not what the dataset ships (a zip bomb?) breaks this; "
            "for a genuine archive raise the cap. Nothing was kept."
        )

    def _count_members(self, n: int, archive: Path) -> None:
        self.members += n
        if self.members > self.budget.max_members:
            raise BudgetError(
                f"{self.top}: {archive.name} brings the archive members read to more than "
                f"{self.budget.max_members} (config unpack.max_members). A download that is not "
                "what the dataset ships breaks this; for a genuine archive raise the cap. "
                "Nothing was kept."
            )

    # --------------------------------------------------------------- helpers

    def _target(self, folder: Path, name: str, source: tuple[str, str]) -> Path | None:
        target = folder / PurePosixPath(name)
        if not _inside(self._real_root, target):
            self.report.add(REFUSED, source, name, "resolves outside the extraction folder")
            return None
        return target

    def _write(self, src: IO[bytes], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(target, "wb") as out:
                while chunk := src.read(_CHUNK):
                    if len(chunk) > self._room():
                        raise self._over_bytes(target)
                    out.write(chunk)
                    self.written += len(chunk)
                    self._top_written += len(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _done(self, target: Path) -> None:
        self._extracted[target.relative_to(self.root).as_posix()] = None

    # --------------------------------------------------------------- formats

    def _member(
        self,
        folder: Path,
        source: tuple[str, str],
        name: str,
        *,
        shown: str,
        problem: tuple[str, str] | None,
        is_dir: bool,
        open_data: Callable[[], IO[bytes] | None],
        refusal: Callable[[Exception], str | None],
    ) -> Path | None:
        """Extract one member of either format: the file written, or None.

        ``name`` is the member's POSIX path, ``shown`` its name as the archive
        spells it (for the report). A member that fails ``problem``, or whose
        reading ``refusal`` names a reason for, is reported and skipped.
        """
        if problem is not None:
            self.report.add(problem[0], source, shown, problem[1])
            return None
        if not PurePosixPath(name).parts:  # the archive's own "./" entry
            return None
        target = self._target(folder, name, source)
        if target is None:
            return None
        try:
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                return None
            src = open_data()
            if src is None:
                self.report.add(REFUSED, source, shown, "member has no data")
                return None
            with src:
                self._write(src, target)
        except Exception as err:
            reason = refusal(err)
            if reason is None:
                raise
            self.report.add(REFUSED, source, shown, reason)
            return None
        self._done(target)
        return target

    def _tar(self, archive: Path, folder: Path, source: tuple[str, str]) -> list[Path]:
        written: list[Path] = []
        with tarfile.open(archive, "r:*") as tar:
            members = tqdm(tar, desc=archive.name, unit=" members", disable=not self.progress)
            for member in members:
                self._count_members(1, archive)
                target = self._member(
                    folder,
                    source,
                    member.name,
                    shown=member.name,
                    problem=member_problem(member.name) or _tar_type_problem(member),
                    is_dir=member.isdir(),
                    open_data=lambda member=member: tar.extractfile(member),
                    refusal=_write_refusal,
                )
                if target is not None:
                    written.append(target)
        return written

    def _zip(self, archive: Path, folder: Path, source: tuple[str, str]) -> list[Path]:
        written: list[Path] = []
        with zipfile.ZipFile(archive) as zf:
            # the central directory lists every member: a count over the cap fails up front
            self._count_members(len(zf.infolist()), archive)
            infos = tqdm(
                zf.infolist(), desc=archive.name, unit=" members", disable=not self.progress
            )
            for info in infos:
                # zips written on Windows may separate with backslashes
                name = info.filename.replace("\\", "/")
                target = self._member(
                    folder,
                    source,
                    name,
                    shown=info.filename,
                    problem=member_problem(name) or _zip_type_problem(info),
                    is_dir=info.is_dir(),
                    open_data=lambda info=info: zf.open(info),
                    refusal=lambda err, info=info: _zip_refusal(info, err),
                )
                if target is not None:
                    written.append(target)
        return written

    # --------------------------------------------------------------- driving

    def extract(self, archive: Path, folder: Path, source: tuple[str, str], depth: int = 0) -> None:
        """Extract ``archive`` into ``folder``, then the archives found in it."""
        kind = _archive_kind(archive)
        if kind == "zip":
            written = self._zip(archive, folder, source)
        elif kind == "tar":
            written = self._tar(archive, folder, source)
        else:
            raise UnpackError(
                f"{source[1] or source[0]}: neither a tar nor a zip archive; delete it "
                "to download it again, or point the config at a good copy"
            )
        if not self.nested:
            return
        for inner in written:
            if _is_archive(inner.name) and inner.exists():
                self._expand(inner, depth + 1)

    def _expand(self, inner: Path, depth: int) -> None:
        rel = inner.relative_to(self.root).as_posix()
        if depth > self.budget.max_depth:
            cap = self.budget.max_depth
            self.report.add(REFUSED, (self.top, ""), rel,
                            f"archive nested deeper than {cap} levels (config unpack.max_depth); "
                            "not expanded")  # fmt: skip
            inner.unlink()
            self._extracted.pop(rel, None)
            return
        log.info("extracting nested archive %s", rel)
        try:
            self.extract(inner, inner.parent, (self.top, f"{rel}!"), depth)
        except BudgetError:
            raise
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError,
                UnpackError) as err:  # fmt: skip
            # what came out before the damage stays; the rest is reported
            self.report.add(REFUSED, (self.top, ""), rel, f"corrupt nested archive: {err}")
        self.report.nested.append(rel)
        inner.unlink()
        self._extracted.pop(rel, None)

    def finish(self) -> UnpackReport:
        self.report.extracted = list(self._extracted)
        return self.report


def _archive_kind(archive: Path) -> str | None:
    """The archive's format by content: zip, tar or None.

    zipfile finds a zip by the directory at its end, so it also takes a plain
    tar whose last member is a zip (and would drop the tar's other members):
    a zip's leading signature decides first, zipfile's test only after tar's.
    """
    with open(archive, "rb") as fh:
        head = fh.read(4)
    if head in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    if zipfile.is_zipfile(archive):  # data before the first member (a self-extractor)
        return "zip"
    return None


def _tar_type_problem(member: tarfile.TarInfo) -> tuple[str, str] | None:
    if member.issym():
        return REFUSED, f"symlink to {member.linkname!r} (links are never extracted)"
    if member.islnk():
        return REFUSED, f"hardlink to {member.linkname!r} (links are never extracted)"
    if member.ischr() or member.isblk():
        return REFUSED, "device file"
    if member.isfifo():
        return REFUSED, "FIFO"
    if not (member.isreg() or member.isdir()):
        return REFUSED, f"unsupported member type {member.type!r}"
    return None


def _zip_type_problem(info: zipfile.ZipInfo) -> tuple[str, str] | None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return REFUSED, "symlink (links are never extracted)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return REFUSED, "device file"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return REFUSED, "FIFO or socket"
    if info.flag_bits & 0x1:
        return REFUSED, "encrypted member"
    if info.compress_type not in _ZIP_METHODS:
        return REFUSED, _method_reason(info)
    return None


def _write_refusal(err: Exception) -> str | None:
    """Why a member was not written, for errors that refuse that member only; None: re-raise."""
    if isinstance(err, OSError):
        return f"cannot write: {err.strerror or err}"
    return None


def _zip_refusal(info: zipfile.ZipInfo, err: Exception) -> str | None:
    if isinstance(err, (zipfile.BadZipFile, zlib.error, EOFError)):
        return f"corrupt member: {err}"
    if isinstance(err, (NotImplementedError, RuntimeError)):
        # zipfile's answer to a method it lacks (or whose module is missing)
        return _method_reason(info, str(err))
    return _write_refusal(err)


def _method_reason(info: zipfile.ZipInfo, detail: str = "") -> str:
    method = info.compress_type
    name = _ZIP_METHOD_NAMES.get(method, "unknown")
    extra = f" ({detail})" if detail else ""
    return (f"unsupported zip compression method {name} ({method}){extra}; "
            "re-pack the archive with deflate to use this member")  # fmt: skip


def safe_extract(
    archives: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    nested: bool = True,
    progress: bool = True,
    budget: Budget | None = None,
) -> UnpackReport:
    """Extract one or more archives into ``dest`` (replaced as a whole at the end).

    Returns the report of extracted files (relative to ``dest``) and of skipped
    and refused members with their archive and reason. A top-level archive
    that cannot be read raises UnpackError, a broken ``budget`` (default
    ``Budget()``) BudgetError; either leaves ``dest`` untouched.
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
    job = _Extraction(tmp, nested=nested, progress=progress, budget=budget or Budget())
    try:
        for archive in paths:
            log.info("extracting %s into %s", archive, dest)
            job.report.archives.append(str(archive))
            try:
                job.start_top(archive)
                job.extract(archive, tmp, (archive.name, ""))
            except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise UnpackError(
                    f"cannot read archive {archive}: {err}. It is truncated or corrupt: "
                    "delete it to download it again, or point the config at a good copy."
                ) from err
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = job.finish()
    _log_summary(report)
    return report


def _log_summary(report: UnpackReport) -> None:
    for item in report.refused:
        log.warning("refused %s in %s: %s", item["member"], item["archive"], item["reason"])
    log.info(
        "extracted %d files (%d skipped, %d refused, %d nested archives expanded)",
        len(report.extracted), len(report.skipped), len(report.refused), len(report.nested),
    )  # fmt: skip

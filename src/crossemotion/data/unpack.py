"""Safe extraction of tar(.gz) and zip archives, nested ones included.

Every member is checked before anything is written: absolute paths, ``..``
traversal, links, device files and FIFOs are refused and reported, macOS
metadata (``__MACOSX/``, ``._*``) and dotfiles are skipped. Extraction goes to a
temp folder beside the destination that is renamed at the end, so a killed job
never leaves a folder that Snakemake would take as complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

NESTED_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_CHUNK = 1 << 20


@dataclass
class UnpackReport:
    extracted: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    nested: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "n_extracted": len(self.extracted),
            "extracted": self.extracted,
            "skipped": self.skipped,
            "refused": self.refused,
            "nested": self.nested,
        }


def member_problem(name: str) -> tuple[str, str] | None:
    """("refused"|"skipped", reason) for a member name, or None when it is fine."""
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "refused", "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "refused", "path traversal (..)"
    if any(p == "__MACOSX" for p in parts):
        return "skipped", "macOS metadata (__MACOSX)"
    if any(p.startswith(".") for p in parts if p not in (".",)):
        return "skipped", "dotfile"
    return None


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _copy_stream(src, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _extract_tar(archive: Path, dest: Path, report: UnpackReport, prefix: str) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            name = member.name
            label = f"{prefix}{name}"
            problem = member_problem(name)
            if problem is None and (member.issym() or member.islnk()):
                problem = ("refused", f"link to {member.linkname!r}")
            if problem is None and not (member.isfile() or member.isdir()):
                problem = ("refused", "device file, FIFO or other special member")
            if problem:
                getattr(report, problem[0]).append({"member": label, "reason": problem[1]})
                continue
            target = dest / name
            if not _inside(dest, target):
                report.refused.append({"member": label, "reason": "resolves outside folder"})
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            src = tar.extractfile(member)
            if src is None:
                report.refused.append({"member": label, "reason": "unreadable member"})
                continue
            with src:
                _copy_stream(src, target)
            report.extracted.append(label)


def _extract_zip(archive: Path, dest: Path, report: UnpackReport, prefix: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            label = f"{prefix}{name}"
            problem = member_problem(name)
            mode = (info.external_attr >> 16) & 0o170000
            if problem is None and mode and stat.S_ISLNK(mode):
                problem = ("refused", "symbolic link")
            if problem:
                getattr(report, problem[0]).append({"member": label, "reason": problem[1]})
                continue
            target = dest / name
            if not _inside(dest, target):
                report.refused.append({"member": label, "reason": "resolves outside folder"})
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:
                _copy_stream(src, target)
            report.extracted.append(label)


def _is_nested(path: Path) -> bool:
    return path.name.lower().endswith(NESTED_SUFFIXES)


def _extract_into(archive: Path, dest: Path, report: UnpackReport, prefix: str = "") -> None:
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, report, prefix)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, dest, report, prefix)
    else:
        raise ValueError(f"{archive}: neither a tar nor a zip archive")


def _expand_nested(root: Path, report: UnpackReport, depth: int) -> None:
    """Extract archives found inside the tree in place, then drop the copies."""
    if depth > 3:
        return
    nested = sorted(p for p in root.rglob("*") if p.is_file() and _is_nested(p))
    for path in nested:
        rel = path.relative_to(root).as_posix()
        try:
            _extract_into(path, path.parent, report, prefix=f"{rel}!")
        except (tarfile.TarError, zipfile.BadZipFile, ValueError, OSError) as exc:
            report.refused.append({"member": rel, "reason": f"bad nested archive: {exc}"})
            continue
        report.nested.append(rel)
        path.unlink()
    if nested:
        _expand_nested(root, report, depth + 1)


def safe_extract(archives: list[Path] | Path, dest: Path, nested: bool = True) -> UnpackReport:
    """Extract one or more archives into ``dest`` (replaced atomically)."""
    if isinstance(archives, (str, os.PathLike)):
        archives = [Path(archives)]
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    report = UnpackReport()
    try:
        for archive in archives:
            log.info("extracting %s", archive)
            _extract_into(Path(archive), tmp, report, prefix="")
        if nested:
            _expand_nested(tmp, report, depth=0)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for item in report.refused:
        log.warning("refused %s: %s", item["member"], item["reason"])
    log.info(
        "extracted %d files (%d skipped, %d refused, %d nested archives)",
        len(report.extracted), len(report.skipped), len(report.refused), len(report.nested),
    )  # fmt: skip
    return report

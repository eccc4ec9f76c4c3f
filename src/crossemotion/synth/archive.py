"""Byte-reproducible tar.gz and zip writing (fixed times, owners, order)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

# A fixed timestamp keeps archives byte-identical between runs of one seed.
EPOCH = 1_546_300_800  # 2019-01-01, MELD's release year
ZIP_DATE = (2019, 1, 1, 0, 0, 0)


def _info(name: str, size: int, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def write_tar_gz(
    target: Path,
    members: Iterable[tuple[str, bytes | Path | None]],
    compresslevel: int = 6,
) -> None:
    """Write ``members`` (name, bytes | file path | None for a folder) in order."""
    # GzipFile with mtime=0 and no file name: tarfile's "w:gz" stamps the clock
    with (
        open(target, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name, payload in members:
            if payload is None:
                tar.addfile(_info(name.rstrip("/") + "/", 0, is_dir=True))
            elif isinstance(payload, Path):
                with open(payload, "rb") as fh:
                    tar.addfile(_info(name, payload.stat().st_size), fh)
            else:
                tar.addfile(_info(name, len(payload)), io.BytesIO(payload))


def write_zip(target: Path, members: Iterable[tuple[str, bytes | None]]) -> None:
    """Write a zip; ``None`` payloads become folder entries. JPEGs are stored."""
    with zipfile.ZipFile(target, "w") as zf:
        for name, payload in members:
            if payload is None:
                info = zipfile.ZipInfo(name.rstrip("/") + "/", ZIP_DATE)
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
                continue
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = (
                zipfile.ZIP_STORED if name.lower().endswith(".jpg") else zipfile.ZIP_DEFLATED
            )
            zf.writestr(info, payload)

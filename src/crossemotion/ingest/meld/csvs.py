"""The official MELD annotation csvs: where they are published, their md5s, and
a local folder holding them for the tests and benchmarks that need real rows.

The csvs sit in the MELD repository on GitHub (declare-lab/MELD,
``data/MELD/{split}_sent_emo.csv``). ``config/meld_text.yaml`` names the same
URLs and md5s for the workflow; a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from crossemotion.ingest.archives.download import (
    ChecksumError,
    DownloadError,
    download,
    file_digests,
)

SPLITS: tuple[str, ...] = ("train", "dev", "test")
OFFICIAL_BASE = "https://raw.githubusercontent.com/declare-lab/MELD/master/data/MELD/"
OFFICIAL_MD5: dict[str, str] = {
    "train": "3a33b022655c68961c440a83c93497ec",
    "dev": "0ff1dda801c068b6e69bf8dd83218ac2",
    "test": "46c92f610268c703cb1a0472c76925e5",
}
ENV_VAR = "CROSSEMOTION_MELD_CSV_DIR"
HOW_TO_ENABLE = (
    f"set {ENV_VAR} to a folder holding train_sent_emo.csv, dev_sent_emo.csv and "
    "test_sent_emo.csv (the official MELD annotations)"
)


def csv_name(split: str) -> str:
    return f"{split}_sent_emo.csv"


def official_url(split: str, base: str = OFFICIAL_BASE) -> str:
    return base.rstrip("/") + "/" + csv_name(split)


def default_cache_dir() -> Path:
    """Outside any checkout, so every clone on a machine shares one verified copy."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "crossemotion" / "meld_annotations"


def missing_csvs(folder: Path) -> list[str]:
    return [csv_name(s) for s in SPLITS if not (folder / csv_name(s)).is_file()]


def verify_md5s(csvs: Mapping[str, Path], md5s: Mapping[str, str | None]) -> None:
    """Re-check csvs downloaded earlier against their pinned md5s before use.

    The download verified them once; this catches a copy that changed since
    (edited, truncated, replaced by hand) before it is indexed.
    """
    for split, want in md5s.items():
        if not want:
            continue
        got, _ = file_digests(csvs[split])
        if got != want.strip().lower():
            raise ChecksumError(
                f"{csvs[split]}: md5 {got}, but meld.annotations_md5.{split} pins {want}; "
                "delete the file and run again to download it afresh, or set "
                f"meld.annotations.{split} to a local csv"
            )


def fetch_official(
    dest: Path,
    base: str = OFFICIAL_BASE,
    md5s: Mapping[str, str] = OFFICIAL_MD5,
    timeout: float = 10.0,
    retries: int = 0,
) -> Path:
    """Download the three csvs into ``dest`` (md5-checked) and return ``dest``.

    A copy already in ``dest`` is re-verified and kept when it matches; a
    mismatch raises :class:`~crossemotion.ingest.archives.download.ChecksumError`.
    """
    hint = f"Or {HOW_TO_ENABLE}."
    for split in SPLITS:
        download(
            official_url(split, base),
            dest / csv_name(split),
            md5=md5s[split],
            retries=retries,
            timeout=timeout,
            progress=False,
            hint=hint,
        )
    return dest


def local_csv_dir(
    cache: Path | None = None, base: str = OFFICIAL_BASE, timeout: float = 10.0
) -> tuple[Path | None, str]:
    """A folder with the three real csvs, or None and the reason there is none.

    ``$CROSSEMOTION_MELD_CSV_DIR`` wins; a folder named there that lacks a csv
    is an error, not a fallback, since the user asked for that folder.
    Otherwise the official csvs are downloaded (or re-verified) into
    ``cache``; a network failure or a changed file gives None.
    """
    named = os.environ.get(ENV_VAR)
    if named:
        folder = Path(named).expanduser().resolve()
        missing = missing_csvs(folder)
        if missing:
            raise FileNotFoundError(f"{ENV_VAR}={named}: {', '.join(missing)} not found there")
        return folder, f"from {ENV_VAR}"
    folder = cache or default_cache_dir()
    try:
        return fetch_official(folder, base=base, timeout=timeout), f"downloaded into {folder}"
    except DownloadError as err:  # its message ends with HOW_TO_ENABLE
        return None, f"the official MELD csvs are not available: {err}"
    except OSError as err:  # e.g. a read-only cache folder
        return None, f"cannot cache the official MELD csvs in {folder} ({err}); {HOW_TO_ENABLE}"

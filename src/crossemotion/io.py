"""Atomic file writes: an output exists complete or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it onto ``target`` on success.

    The temp file lives in the same folder so the final rename is atomic on
    one filesystem; on any error the temp file is removed and ``target`` is
    left untouched, so a killed job never leaves a file Snakemake takes as done.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp creates 0600; give outputs the usual umask-based mode
            tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(target: str | os.PathLike[str], payload: Any) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_parquet(target: str | os.PathLike[str], frame: Any) -> None:
    """Write a polars DataFrame or pyarrow Table atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else frame.to_arrow()
    with atomic_path(target, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)

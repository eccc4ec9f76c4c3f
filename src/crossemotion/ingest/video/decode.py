"""MELD clip decoding for the workflow: sample every clip of a shard into a clips shard.

The decoder itself is ``crossemotion.ingest.video.reader`` (in-process PyAV: sampling,
``exact``, limits, statuses; its names are re-exported here). This module
streams a shard through it: clips are decoded in a pool of worker processes
(``crossemotion.ingest.video.pool``), so a clip past ``timeout`` really stops (its
worker is killed and replaced) and the shard goes on with that clip marked
``corrupt``; rows are written ``batch_size`` at a time, so memory stays
bounded by the batch whatever the shard size.

Statuses (per clip, never an exception): ``ok``, ``overlong`` (longer than
``max_duration``: its first ``max_duration`` seconds are sampled), ``corrupt``
(unreadable, over a limit, no frames, timeout), ``no_video`` (e.g. an
audio-only file), ``missing``, ``empty``. A clip without audio is ``ok`` with
``has_audio=False``. The sound's loudness at the sampled frames
(``audio_rms``, for the speaker choice) is read in the same worker; a sound
stream that cannot be decoded leaves the clip ``ok`` with ``audio_status``
corrupt and its ``audio_reason``. Reasons carry no memory addresses or server paths, so
manifests compare across runs and machines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from crossemotion.ingest import manifest as mf
from crossemotion.ingest.meld.index import TEXT_COLUMNS
from crossemotion.ingest.video.audio import decode_job
from crossemotion.ingest.video.pool import WorkerPool, WorkerTimeout
from crossemotion.ingest.video.reader import (
    ClipResult,
    DecodeError,
    DecodeSettings,
    Limits,
    ProbeInfo,
    VideoError,
    VideoInfo,
    decode_clip,
    frames_at,
    iter_frames,
    output_size,
    probe,
    sample_times,
)
from crossemotion.io import atomic_path, write_parquet

__all__ = [
    "CLIP_SCHEMA",
    "STATUS_SCHEMA",
    "ClipResult",
    "DecodeError",
    "DecodeSettings",
    "Limits",
    "LogStream",
    "ProbeInfo",
    "VideoError",
    "VideoInfo",
    "decode_clip",
    "decode_shard",
    "frames_at",
    "iter_frames",
    "output_size",
    "probe",
    "sample_times",
]

log = logging.getLogger(__name__)

# per decode worker: address space for Python, PyAV and a few 4K frames; an
# allocation bomb fails in the worker (the clip is corrupt), not the machine
WORKER_MEMORY_MB = 2048
# seconds a worker gets beyond the decoder's own (cooperative) timeout before it is killed
KILL_GRACE = 5.0

CLIP_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("dialogue_id", pa.int32()),
        ("utterance_id", pa.int32()),
        ("key", pa.string()),
        ("speaker", pa.string()),
        ("character", pa.string()),
        ("label", pa.string()),
        ("sentiment", pa.string()),
        ("text", pa.string()),
        ("season", pa.int32()),
        ("episode", pa.int32()),
        ("start_time", pa.string()),
        ("end_time", pa.string()),
        ("file", pa.string()),
        ("duration", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("has_audio", pa.bool_()),
        ("overlong", pa.bool_()),
        ("timestamps", pa.list_(pa.float64())),
        ("frames", pa.list_(pa.binary())),
        # the sound's RMS at each sampled frame (null without sound) and its status
        ("audio_rms", pa.list_(pa.float64())),
        ("audio_status", pa.string()),
        ("audio_reason", pa.string()),
    ]
)

STATUS_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("dialogue_id", pa.int32()),
        ("utterance_id", pa.int32()),
        ("key", pa.string()),
        ("file", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("duration", pa.float64()),
        ("has_audio", pa.bool_()),
        ("n_frames", pa.int32()),
        ("decode_seconds", pa.float64()),
        ("audio_status", pa.string()),
        ("audio_reason", pa.string()),
    ]
)


class LogStream:
    """File-like sink that turns tqdm's updates into log lines."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            self.logger.info(text)

    def flush(self) -> None:
        pass


# the columns a clip shard's and a status file's rows copy from the clip's index row
_CLIP_INDEX_COLUMNS = (*TEXT_COLUMNS, "file")
_STATUS_INDEX_COLUMNS = ("split", "dialogue_id", "utterance_id", "key", "file")


def _row(
    schema: pa.Schema, index_columns: tuple[str, ...], row: dict[str, Any], r: ClipResult
) -> dict[str, Any]:
    """A row of ``schema`` for one clip: ``index_columns`` from its index row, the
    other columns from its decode result (the ``ClipResult`` field of that name)."""
    given = {k: row.get(k) for k in index_columns}
    given.update(n_frames=len(r.frames), decode_seconds=r.seconds)
    return {name: given[name] if name in given else getattr(r, name) for name in schema.names}


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def decode_shard(
    rows: pl.DataFrame,
    settings: DecodeSettings,
    clips_out: str | Path,
    status_out: str | Path,
    workers: int = 1,
    batch_size: int = 32,
) -> pl.DataFrame:
    """Decode ``rows`` (index rows of one shard) into a clips shard and a status file.

    Clips are decoded ``workers`` at a time in worker processes and written
    ``batch_size`` rows at a time into the temp file. Returns the status frame.
    """
    statuses: list[dict[str, Any]] = []
    pbar = tqdm(total=rows.height, desc=f"decode {Path(clips_out).name}", unit="clip",
                file=LogStream(log), mininterval=10, ascii=True)  # fmt: skip

    def failed(job: tuple[str, DecodeSettings], exc: BaseException) -> ClipResult:
        # the pool's own failures (a killed or crashed worker); decode errors are statuses
        if isinstance(exc, WorkerTimeout):
            reason = f"decode timed out after {settings.timeout:g}s (worker killed)"
        else:
            reason = f"decode failed: {type(exc).__name__}: {exc}"
        return ClipResult(mf.CORRUPT, reason[:300])

    with atomic_path(clips_out, suffix=".parquet") as tmp, \
            pq.ParquetWriter(tmp, CLIP_SCHEMA, compression="zstd") as writer, \
            WorkerPool(max(1, workers), memory_mb=WORKER_MEMORY_MB,
                       preload=["crossemotion.ingest.video.audio"]) as pool:  # fmt: skip
        for batch in _batches(rows.iter_rows(named=True), batch_size):
            results = pool.map(decode_job, [(r["file"], settings) for r in batch],
                               timeout=settings.timeout + KILL_GRACE,
                               on_error=failed)  # fmt: skip
            decoded = list(zip(batch, results, strict=True))
            good = [_row(CLIP_SCHEMA, _CLIP_INDEX_COLUMNS, row, r) for row, r in decoded
                    if r.status in mf.USABLE]  # fmt: skip
            if good:
                writer.write_table(pa.Table.from_pylist(good, schema=CLIP_SCHEMA))
            for row, r in decoded:
                statuses.append(_row(STATUS_SCHEMA, _STATUS_INDEX_COLUMNS, row, r))
                if r.status not in mf.USABLE:
                    log.warning("%s (%s): %s: %s", row["key"], row["file"], r.status, r.reason)
            pbar.update(len(batch))
        if not rows.height:
            writer.write_table(CLIP_SCHEMA.empty_table())
    pbar.close()
    status = pl.from_arrow(pa.Table.from_pylist(statuses, schema=STATUS_SCHEMA))
    assert isinstance(status, pl.DataFrame)
    write_parquet(status_out, status)
    return status

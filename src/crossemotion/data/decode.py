"""MELD clip decoding: probe, then one ffmpeg pass per clip that samples T frames.

Sampling. A clip of duration ``D`` is read over ``d = min(D, max_duration)``
seconds; frame ``k`` (0..T-1) is taken at ``(k + 0.5) * d / T``, the centre
of the k-th of T equal slices. One ffmpeg process does it: an input-side ``-t d``
bounds the read, an ``fps=T/d`` filter keeps, for output slot k, the last
frame before ``(k + 0.5) * d / T`` (the filter's own rounding puts its slots
at the slice centres, so no ``-ss`` offset is needed; a sample lies at most
one frame interval before its centre), ``scale`` brings the kept frames
(only those) to ``height`` (width keeps the aspect, rounded to even), and raw
RGB comes back through a pipe; cv2 encodes the JPEGs.

``exact``. With ``exact: false`` (default) the decoder is told
``-skip_frame noref``: frames no other frame references (most B-frames in
MELD's x264 encodes) are never decoded, roughly halving decode work. The
``fps`` filter then picks the nearest *decoded* frame, so a sample may sit up
to a couple of frame intervals (~40-80 ms at 24 fps) from its uniform
position, never further, because reference frames occur at least every few
frames; ``nokey`` would be faster still but puts samples up to one GOP
(seconds) away, which is why it is not used. ``exact: true`` decodes every
frame and samples exactly.

Bounded time. A wrongly cut clip lasting minutes is read over its first
``max_duration`` seconds only (the input-side ``-t`` stops demuxing there),
flagged ``overlong`` and still decoded. Every ffprobe/ffmpeg call runs under
``timeout`` seconds; a clip that exceeds it is ``corrupt`` with that reason.

Statuses (per clip, never an exception): ``ok``, ``overlong``, ``corrupt``
(probe or decode fails, no frames, timeout), ``no_video`` (no video stream,
e.g. an audio-only file). A clip without audio is ``ok`` with
``has_audio=False``.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import ffmpeg
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from crossemotion.data import manifest as mf
from crossemotion.io import atomic_path, write_parquet

log = logging.getLogger(__name__)

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
    ]
)


@dataclass(frozen=True)
class DecodeSettings:
    frames: int = 16
    height: int = 360
    jpeg_quality: int = 90
    max_duration: float = 30.0
    exact: bool = False
    timeout: float = 300.0
    threads: int = 1

    @classmethod
    def from_config(cls, cfg: dict[str, Any], threads: int = 1) -> DecodeSettings:
        known = {k: cfg[k] for k in ("frames", "height", "jpeg_quality", "max_duration",
                                     "exact", "timeout") if k in cfg}
        return cls(**known, threads=threads)


@dataclass
class ProbeInfo:
    duration: float | None
    fps: float | None
    width: int
    height: int
    has_video: bool
    has_audio: bool


@dataclass
class ClipResult:
    status: str
    reason: str | None = None
    duration: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    has_audio: bool | None = None
    overlong: bool = False
    timestamps: list[float] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    seconds: float = 0.0


class DecodeError(RuntimeError):
    """A clip ffprobe/ffmpeg cannot read; the message is the tool's own."""


def _tail(stderr: bytes | str | None, n: int = 300) -> str:
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no message")[-n:]


def _rate(text: str | None) -> float | None:
    try:
        num, _, den = (text or "").partition("/")
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def probe(path: str | Path, timeout: float = 60.0) -> ProbeInfo:
    """Streams and duration via ffprobe (ffmpeg.probe has no timeout, hence subprocess)."""
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
           "-show_streams", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffprobe timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        raise DecodeError(f"ffprobe failed: {_tail(proc.stderr)}")
    info = json.loads(proc.stdout or b"{}")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    audio = any(s.get("codec_type") == "audio" for s in streams)
    duration = _float(info.get("format", {}).get("duration"))
    if video is not None:
        duration = duration or _float(video.get("duration"))
    return ProbeInfo(
        duration=duration,
        fps=(_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")))
        if video else None,
        width=int(video.get("width") or 0) if video else 0,
        height=int(video.get("height") or 0) if video else 0,
        has_video=video is not None,
        has_audio=audio,
    )


def sample_times(span: float, n: int) -> list[float]:
    """Centres of ``n`` equal slices of ``[0, span]``."""
    return [(k + 0.5) * span / n for k in range(n)]


def output_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """Width keeping the aspect at ``target_height``, rounded to an even number."""
    w = max(2, round(width * target_height / max(height, 1) / 2) * 2)
    return w, target_height


def ffmpeg_args(path: str | Path, span: float, size: tuple[int, int], s: DecodeSettings
                ) -> list[str]:
    """The single ffmpeg command that samples ``s.frames`` frames over ``span`` seconds."""
    in_kw: dict[str, Any] = {"t": f"{span:.6f}"}
    if not s.exact:
        in_kw["skip_frame"] = "noref"
    stream = (
        ffmpeg.input(str(path), **in_kw)
        .video.filter("fps", fps=f"{s.frames / span:.9f}")
        .filter("scale", size[0], size[1])
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", an=None,
                **{"frames:v": s.frames, "threads": s.threads})
    )
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            *stream.compile(cmd="ffmpeg")[1:]]


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise DecodeError("JPEG encoding failed")
    return buf.tobytes()


def decode_clip(path: str | Path, s: DecodeSettings) -> ClipResult:
    """Probe and sample one clip; every failure becomes a status, never an exception."""
    t0 = time.perf_counter()
    result = _decode_clip(Path(path), s)
    result.seconds = time.perf_counter() - t0
    return result


def _decode_clip(path: Path, s: DecodeSettings) -> ClipResult:
    if not path.is_file():
        return ClipResult(mf.MISSING, f"file not found: {path}")
    if path.stat().st_size == 0:
        return ClipResult(mf.EMPTY, "zero-byte clip file")
    try:
        info = probe(path, timeout=s.timeout)
    except DecodeError as err:
        return ClipResult(mf.CORRUPT, str(err))
    if not info.has_video:
        return ClipResult(mf.NO_VIDEO, "no video stream", duration=info.duration,
                          has_audio=info.has_audio)
    if info.width <= 0 or info.height <= 0:
        return ClipResult(mf.CORRUPT, "video stream without a frame size",
                          duration=info.duration, has_audio=info.has_audio)
    overlong = info.duration is None or info.duration > s.max_duration
    span = min(info.duration or s.max_duration, s.max_duration)
    size = output_size(info.width, info.height, s.height)
    base = ClipResult(mf.OVERLONG if overlong else mf.OK, None, info.duration, info.fps,
                      size[0], size[1], info.has_audio, overlong)
    if overlong:
        base.reason = (f"duration {info.duration:.1f}s > max_duration {s.max_duration:g}s; "
                       f"first {span:g}s sampled" if info.duration else
                       "duration unknown; first max_duration seconds sampled")
    try:
        proc = subprocess.run(ffmpeg_args(path, span, size, s), capture_output=True,
                              timeout=s.timeout, check=False)
    except subprocess.TimeoutExpired:
        return _failed(base, f"decode timed out after {s.timeout:g}s")
    frame_bytes = size[0] * size[1] * 3
    n = len(proc.stdout) // frame_bytes
    if proc.returncode != 0 or n == 0:
        return _failed(base, f"ffmpeg decoded {n} frames: {_tail(proc.stderr)}")
    arr = np.frombuffer(proc.stdout[: n * frame_bytes], np.uint8).reshape(n, size[1], size[0], 3)
    times = sample_times(span, s.frames)
    # The fps filter may stop one slot short at the very end; repeat the last frame.
    idx = [min(k, n - 1) for k in range(s.frames)]
    base.frames = [_jpeg(arr[i], s.jpeg_quality) for i in idx]
    base.timestamps = [round(t, 4) for t in times]
    return base


def _failed(base: ClipResult, reason: str) -> ClipResult:
    return ClipResult(mf.CORRUPT, reason, duration=base.duration, fps=base.fps,
                      has_audio=base.has_audio)


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


def _clip_row(row: dict[str, Any], r: ClipResult) -> dict[str, Any]:
    return {
        **{k: row.get(k) for k in ("split", "dialogue_id", "utterance_id", "key", "speaker",
                                   "character", "label", "sentiment", "text", "season",
                                   "episode", "start_time", "end_time", "file")},
        "duration": r.duration, "fps": r.fps, "width": r.width, "height": r.height,
        "has_audio": r.has_audio, "overlong": r.overlong, "timestamps": r.timestamps,
        "frames": r.frames,
    }


def _status_row(row: dict[str, Any], r: ClipResult) -> dict[str, Any]:
    return {
        **{k: row.get(k) for k in ("split", "dialogue_id", "utterance_id", "key", "file")},
        "status": r.status, "reason": r.reason, "duration": r.duration,
        "has_audio": r.has_audio, "n_frames": len(r.frames), "decode_seconds": r.seconds,
    }


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

    Clips are decoded ``workers`` at a time (ffmpeg runs in subprocesses) and
    written ``batch_size`` rows at a time into the temp file, so memory stays
    bounded by the batch whatever the shard size. Returns the status frame.
    """
    statuses: list[dict[str, Any]] = []
    pbar = tqdm(total=rows.height, desc=f"decode {Path(clips_out).name}", unit="clip",
                file=LogStream(log), mininterval=10, ascii=True)
    with atomic_path(clips_out, suffix=".parquet") as tmp, \
            pq.ParquetWriter(tmp, CLIP_SCHEMA, compression="zstd") as writer, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for batch in _batches(rows.iter_rows(named=True), batch_size):
            results = list(pool.map(lambda r: decode_clip(r["file"], settings), batch))
            good = [_clip_row(row, r) for row, r in zip(batch, results, strict=True)
                    if r.status in mf.USABLE]
            if good:
                writer.write_table(pa.Table.from_pylist(good, schema=CLIP_SCHEMA))
            for row, r in zip(batch, results, strict=True):
                statuses.append(_status_row(row, r))
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

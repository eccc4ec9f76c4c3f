"""MELD clip decoding: read the container header, then one ffmpeg pass per clip.

Sampling. A clip of duration ``D`` is read over ``d = min(D, max_duration)``
seconds; frame ``k`` (0..T-1) is taken at ``(k + 0.5) * d / T``, the centre
of the k-th of T equal slices. One ffmpeg process samples a clip, in one of
two ways chosen by the spacing of the samples ``d / T``:

* Dense (``d / T < seek_gap``; most MELD clips). An input-side ``-t d`` bounds
  the read, an ``fps=T/d`` filter keeps, for output slot k, the last frame
  before ``(k + 0.5) * d / T`` (the filter's rounding puts its slots at the
  slice centres), ``scale`` brings the kept frames (only those) to ``height``
  (width keeps the aspect, rounded to even), and raw RGB comes back through a
  pipe; cv2 encodes the JPEGs.
* Sparse (``d / T >= seek_gap``; long clips). One ffmpeg process opens the
  clip once per sample with an input-side ``-ss t_k``, so only the frames
  near each sample are decoded and the cost no longer grows with the clip's
  length; a ``concat`` filter joins the T single frames.

``exact``. With ``exact: false`` (default) frames are skipped at the decoder:
in dense mode ``-skip_frame bidir`` decodes only I and P frames (x264 with
b-pyramid makes some B-frames references, so ``noref`` skips little; with
``-bf 3`` about 3 of 4 frames are B-frames), and the ``fps`` filter picks the
nearest decoded frame, so a sample sits at most one run of B-frames (a few
frame intervals, ~40-170 ms at 24 fps) from its uniform position. In sparse
mode the seek is not accurate: the sample is the key frame at or before its
uniform position, i.e. within one GOP (the key-frame interval) of it, and
only that frame is decoded. Both stay within one GOP step of the uniform
positions. ``exact: true`` decodes every frame in dense mode and seeks
accurately (decoding from the key frame up to the sample) in sparse mode, so
samples are the exact frames in both.

Probing. Duration, frame size, rate and audio presence come from the MP4/MOV
header, parsed in-process (``probe``), which saves an ffprobe process per clip
(on this 2-core box a process start costs about as much as decoding a dozen
720p frames). Files that are not ISO-BMFF or whose header does not parse fall
back to ffprobe.

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
import re
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
from crossemotion.data.ffmpeg_bin import ffmpeg_exe
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
    # samples at least this many seconds apart are taken by seeking (sparse mode)
    seek_gap: float = 1.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any], threads: int = 1) -> DecodeSettings:
        known = {k: cfg[k] for k in ("frames", "height", "jpeg_quality", "max_duration",
                                     "exact", "timeout", "seek_gap") if k in cfg}
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


_CONTEXT = re.compile(r"\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*")  # "[in#0 @ 0x55bc...] "
_POINTER = re.compile(r"0x[0-9a-fA-F]{6,}")


def _tail(stderr: bytes | str | None, path: Path | None = None, n: int = 300) -> str:
    """The tool's first error line (the cause; later lines are its consequences).

    Cleaned so the manifest stays the same from run to run and machine to
    machine: no memory addresses, the clip's name instead of its full path.
    """
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()]
    if not lines:
        return "no message"
    line = _POINTER.sub("0x…", _CONTEXT.sub("", lines[0])).strip()
    if path is not None:
        line = line.replace(str(path), path.name)
    return line[:n]


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


_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size = int.from_bytes(data[start:start + 4], "big")
        kind = data[start + 4:start + 8]
        head = 8
        if size == 1:
            size, head = int.from_bytes(data[start + 8:start + 16], "big"), 16
        elif size == 0:
            size = end - start
        if size < head or start + size > end:
            raise ValueError(f"truncated {kind!r} box")
        yield kind, start + head, start + size
        start += size


def _moov(path: Path) -> bytes:
    """The ``moov`` box of an MP4/MOV file, found by hopping over top-level boxes."""
    with open(path, "rb") as fh:
        pos = 0
        while True:
            fh.seek(pos)
            head = fh.read(16)
            if len(head) < 8:
                raise ValueError("no moov box")
            size, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if size == 1:
                size = int.from_bytes(head[8:16], "big")
            if size < 8:
                raise ValueError(f"bad {kind!r} box size")
            if kind == b"moov":
                fh.seek(pos)
                data = fh.read(size)
                if len(data) < size:
                    raise ValueError("truncated moov box")
                return data
            if pos == 0 and kind != b"ftyp":
                raise ValueError("not an ISO-BMFF file")
            pos += size


def _fullbox_time(data: bytes, a: int) -> tuple[int, int]:
    """(timescale, duration) of an mvhd/mdhd payload starting at ``a``."""
    if data[a] == 1:
        return (int.from_bytes(data[a + 20:a + 24], "big"),
                int.from_bytes(data[a + 24:a + 32], "big"))
    return int.from_bytes(data[a + 12:a + 16], "big"), int.from_bytes(data[a + 16:a + 20], "big")


def _track(data: bytes, a: int, b: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, x, y in _boxes(data, a, b):
        if kind in _CONTAINERS:
            out.update(_track(data, x, y))
        elif kind == b"hdlr":
            out["handler"] = data[x + 8:x + 12]
        elif kind == b"mdhd":
            out["timescale"], out["duration"] = _fullbox_time(data, x)
        elif kind == b"stts":
            count = int.from_bytes(data[x + 4:x + 8], "big")
            out["samples"] = sum(int.from_bytes(data[x + 8 + 8 * i:x + 12 + 8 * i], "big")
                                 for i in range(count))
        elif kind == b"stsd" and y - x >= 44:
            # first sample entry: 8-byte box head, then visual fields; size at +32
            out["width"] = int.from_bytes(data[x + 40:x + 42], "big")
            out["height"] = int.from_bytes(data[x + 42:x + 44], "big")
    return out


def probe_mp4(path: str | Path) -> ProbeInfo:
    """Streams and duration from the MP4/MOV header; ValueError when it does not parse."""
    data = _moov(Path(path))
    duration: float | None = None
    tracks = []
    for kind, a, b in _boxes(data, 8):
        if kind == b"mvhd":
            scale, dur = _fullbox_time(data, a)
            duration = dur / scale if scale else None
        elif kind == b"trak":
            tracks.append(_track(data, a, b))
    video = next((t for t in tracks if t.get("handler") == b"vide"), None)
    audio = any(t.get("handler") == b"soun" and t.get("samples") for t in tracks)
    fps = None
    if video is not None:
        if not video.get("samples") or not video.get("width"):
            raise ValueError("video track without samples or frame size")
        vdur = video.get("duration", 0) / video.get("timescale", 1) if video.get("timescale") \
            else 0.0
        fps = _float(video["samples"] / vdur) if vdur else None
        duration = _float(duration) or _float(vdur)
    return ProbeInfo(
        duration=_float(duration),
        fps=fps,
        width=int(video.get("width", 0)) if video else 0,
        height=int(video.get("height", 0)) if video else 0,
        has_video=video is not None,
        has_audio=audio,
    )


def probe(path: str | Path, timeout: float = 60.0) -> ProbeInfo:
    """Streams and duration: the MP4 header when it parses, else ffprobe."""
    try:
        return probe_mp4(path)
    except (OSError, ValueError, IndexError) as err:
        log.debug("%s: header probe failed (%s); using ffprobe", path, err)
    return ffprobe(path, timeout)


def ffprobe(path: str | Path, timeout: float = 60.0) -> ProbeInfo:
    """Streams and duration via ffprobe (ffmpeg.probe has no timeout, hence subprocess)."""
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
           "-show_streams", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffprobe timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        raise DecodeError(f"ffprobe failed: {_tail(proc.stderr, Path(path))}")
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
    if span / s.frames >= s.seek_gap:
        return seek_args(path, span, size, s)
    in_kw: dict[str, Any] = {"t": f"{span:.6f}"}
    if not s.exact:
        in_kw["skip_frame"] = "bidir"
    stream = (
        ffmpeg.input(str(path), **in_kw)
        .video.filter("fps", fps=f"{s.frames / span:.9f}")
        .filter("scale", size[0], size[1])
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", an=None,
                **{"frames:v": s.frames, "threads": s.threads})
    )
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
            *stream.compile(cmd="ffmpeg")[1:]]


def seek_args(path: str | Path, span: float, size: tuple[int, int], s: DecodeSettings
              ) -> list[str]:
    """Sparse mode: one input per sample, each seeked to its time, one frame from each."""
    per_input = ["-skip_frame", "nokey", "-noaccurate_seek"] if not s.exact else []
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    graph = []
    for k, t in enumerate(sample_times(span, s.frames)):
        args += [*per_input, "-ss", f"{t:.6f}", "-i", str(path)]
        graph.append(f"[{k}:v:0]trim=end_frame=1,setpts=PTS-STARTPTS,"
                     f"scale={size[0]}:{size[1]}[v{k}]")
    joined = "".join(f"[v{k}]" for k in range(s.frames))
    graph.append(f"{joined}concat=n={s.frames}:v=1:a=0[out]")
    # passthrough: the T frames share a timestamp after setpts; keep them all
    return [*args, "-filter_complex", ";".join(graph), "-map", "[out]",
            "-fps_mode", "passthrough", "-threads", str(s.threads),
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]


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
        return _failed(base, f"ffmpeg decoded {n} frames: {_tail(proc.stderr, path)}")
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

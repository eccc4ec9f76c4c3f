"""Reading video in-process with PyAV, every read bounded by ``Limits``.

This is the one video reader of the project: the workflow's decode stage,
the API and the Gradio demo (through ``crossemotion.ingest.video.pool``) and
``crossemotion predict`` all read clips here. PyAV's wheels bundle FFmpeg's
libraries, so no ffmpeg or ffprobe process is started per clip and no
container header is parsed by hand.

Limits. A hostile or broken file must not cost more than a bounded amount of
work, so every read checks, as it goes:

* ``max_pixels``: the coded frame size (width x height, from the stream's
  parameters before any frame is decoded; FFmpeg's own ``max_pixels`` codec
  option then refuses larger frames met later in the stream);
* ``max_duration``: only the first ``max_duration`` seconds are read;
* ``max_packets`` / ``max_bytes``: video packets demuxed for one clip (a file
  whose timestamps never advance would otherwise be read to its end);
* ``timeout``: a wall-clock deadline, checked between packets and, through
  PyAV's interrupt callback, inside FFmpeg's blocking open/read/seek calls.

A broken limit raises ``VideoError`` with a reason meant for a manifest or a
client: no memory addresses, no file paths. The checks are cooperative (they
run between FFmpeg calls, each of which the limits keep short); where a hard
stop is needed, ``crossemotion.ingest.video.pool`` runs the reader in a worker
process that is killed at its deadline.

Sampling (``Clip.sample``). Times are seconds from the video stream's start.

* Dense (one pass): frames are decoded in order and each time takes the frame
  on display at that time (``exact``: the last frame at or before it) or,
  with ``exact=False``, the nearest of the frames the decoder produced while
  skipping B-frames (the codec's ``skip_frame``; x264 with ``-bf 3`` makes
  most frames B-frames, which no other frame then needs), so a sample sits at
  most one run of B-frames from its time. Decoding stops once the last time
  is passed.
* Seeking (long clips): one open container, one seek per time to the key
  frame at or before it. ``exact=False`` decodes only that key frame (within
  one GOP, the key-frame interval, of the time); ``exact`` decodes on from it
  to the frame on display at the time.

Only the picked frames are scaled and converted, by FFmpeg's swscale
(``VideoFrame.reformat``). JPEGs are encoded from the scaled YUV planes by
libjpeg-turbo (``simplejpeg``), which skips an RGB round trip: JPEG stores
YCbCr 4:2:0 anyway, and swscale converts the video's limited-range BT.709
or BT.601 to JPEG's full-range BT.601 on the way.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import simplejpeg

T = TypeVar("T")
MB = 1024 * 1024

# Clip statuses: crossemotion.ingest.manifest's strings (a test keeps them equal), not
# imported from there because it loads polars, half a second more per worker start.
OK, OVERLONG, CORRUPT, NO_VIDEO, MISSING, EMPTY = (
    "ok", "overlong", "corrupt", "no_video", "missing", "empty"
)  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """Bounds on reading one clip (see the module docstring)."""

    # 4096 x 2304: UHD and DCI 4K fit; a 65535 x 65535 header does not
    max_pixels: int = 4096 * 2304
    max_duration: float = 30.0
    # a 30 s clip at 60 fps is 1,800 packets; exact seeking re-reads up to a GOP per sample
    max_packets: int = 30_000
    max_bytes: int = 256 * MB
    timeout: float = 60.0


@dataclass(frozen=True)
class DecodeSettings:
    """How the workflow (and serving) samples a clip: ``frames`` JPEGs at ``height`` px."""

    frames: int = 16
    height: int = 360
    jpeg_quality: int = 90
    max_duration: float = 30.0
    exact: bool = False
    timeout: float = 300.0
    threads: int = 1
    # samples at least this many seconds apart are taken by seeking
    seek_gap: float = 1.0
    max_pixels: int = Limits.max_pixels
    max_packets: int = Limits.max_packets
    max_bytes: int = Limits.max_bytes
    # the sound's loudness at the sampled frames (crossemotion.ingest.video.audio), for the
    # speaker choice; a clip without sound is still ``ok``
    audio: bool = True
    # seconds of sound around each frame: short, so that the loudness is the frame's own
    # (a syllable lasts 0.1-0.3 s), not the average over the gap between sampled frames
    audio_window: float = 0.1

    @classmethod
    def from_config(cls, cfg: dict[str, Any], threads: int = 1) -> DecodeSettings:
        names = ("frames", "height", "jpeg_quality", "max_duration", "exact", "timeout",
                 "seek_gap", "max_pixels", "max_packets", "max_bytes", "audio",
                 "audio_window")  # fmt: skip
        return cls(**{k: cfg[k] for k in names if k in cfg}, threads=threads)

    @property
    def limits(self) -> Limits:
        return Limits(self.max_pixels, self.max_duration, self.max_packets, self.max_bytes,
                      self.timeout)  # fmt: skip


@dataclass
class VideoInfo:
    duration: float | None  # the container's (the longest stream's), seconds
    video_duration: float | None  # the video stream's, seconds
    fps: float | None
    width: int
    height: int
    has_video: bool
    has_audio: bool


# the pre-PyAV name, kept for callers
ProbeInfo = VideoInfo


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
    # the picked frames' times (seconds on the video stream's clock)
    timestamps: list[float] = field(default_factory=list)
    frames: list[Any] = field(default_factory=list)  # JPEG bytes, or RGB arrays (as_rgb)
    seconds: float = 0.0
    # the sound's RMS at each picked frame (crossemotion.ingest.video.audio.decode_job);
    # audio_status: ok, none (no sound), corrupt (audio_reason says why), or None (not read)
    audio_rms: list[float] | None = None
    audio_status: str | None = None
    audio_reason: str | None = None


class VideoError(RuntimeError):
    """A clip that cannot be read within its limits; the message is safe to show."""


# the pre-PyAV name, kept for callers
DecodeError = VideoError

_POINTER = re.compile(r"0x[0-9a-fA-F]{6,}")


def _reason(err: BaseException, path: Path | None = None) -> str:
    """FFmpeg's message without the file name PyAV appends, addresses or folders."""
    if isinstance(err, av.FFmpegError):
        text = str(err.strerror or type(err).__name__)
    else:
        text = str(err) or type(err).__name__
    text = _POINTER.sub("0x…", text)
    if path is not None:
        text = text.replace(str(path), path.name).replace(str(path.parent), "")
    return text.strip()[:300]


_MAX_TOP_BOXES = 64


def _moov_overrun(path: Path) -> str | None:
    """Why the file's ``moov`` box cannot be whole, or None.

    FFmpeg reads a ``moov`` that claims more bytes than the file holds up to
    the end of the file and decodes what it finds, so a lying header would
    pass as a valid clip. Only the top level is walked (at most
    ``_MAX_TOP_BOXES`` 16-byte headers, no recursion, no counts trusted), and
    only the ``moov`` box is judged: a cut ``mdat`` is left to the decoder,
    and bytes after the ``moov`` (trailing garbage) are never read.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            pos = 0
            for _ in range(_MAX_TOP_BOXES):
                fh.seek(pos)
                head = fh.read(16)
                if len(head) < 8:
                    return None
                claimed = int.from_bytes(head[:4], "big")
                kind = head[4:8]
                if claimed == 1 and len(head) == 16:
                    claimed = int.from_bytes(head[8:16], "big")
                elif claimed == 0:  # to the end of the file
                    claimed = size - pos
                if claimed < 8:
                    return None
                if kind == b"moov":
                    if pos + claimed > size:
                        return (f"the moov box claims {claimed} bytes, "
                                f"{pos + claimed - size} more than the file holds")  # fmt: skip
                    return None
                pos += claimed
                if pos >= size:
                    return None
    except OSError:
        return None
    return None


def _positive(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def sample_times(span: float, n: int) -> list[float]:
    """Centres of ``n`` equal slices of ``[0, span]``."""
    return [(k + 0.5) * span / n for k in range(n)]


def output_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """Width keeping the aspect at ``target_height``, rounded to an even number."""
    w = max(2, round(width * target_height / max(height, 1) / 2) * 2)
    return w, target_height


# AVColorSpace -> the swscale matrix that converts it; anything else is taken as BT.601
_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020",
           10: "BT2020"}  # fmt: skip


def to_jpeg(frame: av.VideoFrame, size: tuple[int, int], quality: int) -> bytes:
    """The frame scaled to ``size`` as a JPEG, encoded from YUV planes (no RGB step)."""
    yuv = frame.reformat(width=size[0], height=size[1], format="yuvj420p",
                         src_colorspace=_MATRIX.get(frame.colorspace),
                         dst_colorspace="ITU601")  # fmt: skip
    planes = [
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in yuv.planes
    ]
    # simplejpeg here, not crossemotion.codec's OpenCV encoder: it takes the YUV
    # planes as they are, and the decode workers load neither OpenCV nor torch
    return simplejpeg.encode_jpeg_yuv_planes(*planes, quality=int(quality))


def to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """The frame (scaled to ``size`` when given) as RGB uint8 ``(H, W, 3)``."""
    if size is None:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(width=size[0], height=size[1], format="rgb24")


class Clip:
    """One open clip: its facts (``info``) and bounded reads of its video frames.

    Use as a context manager. Opening raises ``VideoError`` for files FFmpeg
    cannot open, and for a video stream over ``limits.max_pixels``.
    """

    def __init__(self, path: str | Path, limits: Limits = Limits(), threads: int = 1) -> None:
        self.path = Path(path)
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout
        self.packets = 0
        self.bytes = 0
        self.errors: list[str] = []
        # the last read reached the end of the data (or an error that ends it)
        self.exhausted = False
        try:
            # skip_frame=all: the stream probe decodes no frame (the frame size comes from
            # the stream headers), so a huge or broken frame costs nothing before the checks
            self.container = av.open(
                str(self.path), timeout=(limits.timeout, limits.timeout),
                metadata_errors="ignore", options={"skip_frame": "all"},
            )  # fmt: skip
        except (av.FFmpegError, OSError, UnicodeError, MemoryError) as err:
            self._check()
            raise VideoError(_reason(err, self.path)) from None
        try:
            self._setup(threads)
        except BaseException:
            self.container.close()
            raise

    def _setup(self, threads: int) -> None:
        container = self.container
        if "mp4" in container.format.name.split(","):
            overrun = _moov_overrun(self.path)
            if overrun:
                raise VideoError(overrun)
        videos = [s for s in container.streams.video
                  if not s.disposition & av.stream.Disposition.attached_pic]  # fmt: skip
        self.stream = videos[0] if videos else None
        has_audio = bool(container.streams.audio)
        duration = _positive(container.duration / 1e6) if container.duration else None
        if self.stream is None:
            self.info = VideoInfo(duration, None, None, 0, 0, False, has_audio)
            return
        s = self.stream
        self.time_base = float(s.time_base) if s.time_base else 1e-6
        self.start = s.start_time if s.start_time is not None else 0
        vdur = _positive(s.duration * self.time_base) if s.duration else None
        fps = _positive(s.average_rate) or _positive(s.guessed_rate)
        width, height = int(s.codec_context.width or 0), int(s.codec_context.height or 0)
        self.info = VideoInfo(duration or vdur, vdur, fps, width, height, True, has_audio)
        if width <= 0 or height <= 0:
            raise VideoError("video stream without a frame size")
        if width * height > self.limits.max_pixels:
            raise VideoError(f"frame size {width}x{height} exceeds the limit of "
                             f"{self.limits.max_pixels} pixels")  # fmt: skip
        cc = s.codec_context
        # FFmpeg then refuses any larger frame a later parameter set announces
        cc.options = {"max_pixels": str(self.limits.max_pixels)}
        cc.thread_count = max(1, threads)
        if threads > 1:
            cc.thread_type = "AUTO"
        try:
            cc.open()
        except (av.FFmpegError, MemoryError) as err:
            raise VideoError(f"the decoder refused the stream: {_reason(err)}") from None

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    # -- bounded reading ---------------------------------------------------------
    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            raise VideoError(f"decode timed out after {self.limits.timeout:g}s")

    def _packets(self) -> Iterator[av.Packet]:
        """Video packets from the current position, counted against the limits.

        A demuxing error ends the stream, as a truncated file ends it (the
        error is kept in ``errors``); either sets ``exhausted``.
        """
        assert self.stream is not None
        lim = self.limits
        demux = self.container.demux(self.stream)
        self.exhausted = False
        while True:
            self._check()
            try:
                packet = next(demux)
            except StopIteration:
                self.exhausted = True
                return
            except (av.FFmpegError, OSError, MemoryError) as err:
                if isinstance(err, av.ExitError):  # the interrupt callback fired
                    self._check()
                self.errors.append(_reason(err, self.path))
                self.exhausted = True
                return
            if packet.size == 0 and packet.pts is None:
                # PyAV's end-of-stream flush packet
                self.exhausted = True
                return
            self.packets += 1
            self.bytes += packet.size
            if self.packets > lim.max_packets:
                raise VideoError(f"more than {lim.max_packets} video packets read")
            if self.bytes > lim.max_bytes:
                raise VideoError(f"more than {lim.max_bytes} bytes of video read")
            yield packet

    def _decode(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        """Frames out of the decoder for one packet (None drains); bad packets are skipped."""
        assert self.stream is not None
        try:
            return self.stream.codec_context.decode(packet)
        except (av.FFmpegError, MemoryError) as err:
            self.errors.append(_reason(err, self.path))
            if len(self.errors) > 50:
                raise VideoError(f"undecodable video: {self.errors[0]}") from None
            return []

    def _time(self, frame: av.VideoFrame | av.Packet, previous: float | None) -> float:
        if frame.pts is None:
            step = 1.0 / (self.info.fps or 25.0)
            return 0.0 if previous is None else previous + step
        return (frame.pts - self.start) * self.time_base

    def frames(self, *, skip_b: bool = False, end: float | None = None
               ) -> Iterator[tuple[float, av.VideoFrame]]:  # fmt: skip
        """(time, frame) in presentation order from the current position, up to ``end``
        (default: ``limits.max_duration``); ``skip_b`` leaves B-frames undecoded."""
        if self.stream is None:
            raise VideoError("no video stream")
        end = self.limits.max_duration if end is None else min(end, self.limits.max_duration)
        self.stream.codec_context.skip_frame = "BIDIR" if skip_b else "DEFAULT"
        last: float | None = None
        for packet in self._packets():
            for frame in self._decode(packet):
                last = self._time(frame, last)
                if last > end:
                    return
                yield last, frame
        for frame in self._decode(None):
            last = self._time(frame, last)
            if last > end:
                return
            yield last, frame

    def _seek(self, t: float) -> None:
        """To the key frame at or before ``t`` (decoder flushed)."""
        assert self.stream is not None
        self._check()
        target = self.start + int(max(t, 0.0) / self.time_base)
        try:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError) as err:
            self._check()
            raise VideoError(f"seek failed: {_reason(err, self.path)}") from None
        self.stream.codec_context.flush_buffers()

    def _key_frame(self, known: float | None) -> tuple[float, av.VideoFrame | None] | None:
        """The first key frame from the current position, decoding nothing else; when
        its time is ``known`` (the previous sample's), it is not decoded again (None)."""
        assert self.stream is not None
        self.stream.codec_context.skip_frame = "NONKEY"
        for packet in self._packets():
            if (
                packet.is_keyframe
                and known is not None
                and packet.pts is not None
                and self._time(packet, None) == known
            ):
                return known, None
            frames = self._decode(packet)
            if not frames and packet.is_keyframe:
                frames = self._decode(None)  # the decoder holds frames back for reordering
            if frames:
                frame = frames[0]
                return self._time(frame, None), frame
        return None

    # -- sampling ----------------------------------------------------------------
    def sample(self, times: Sequence[float], convert: Callable[[av.VideoFrame], T], *,
               exact: bool, seek: bool) -> tuple[list[T], list[float]]:  # fmt: skip
        """``convert(frame)`` of the frame picked for each time, and the picked frames' times.

        Raises ``VideoError`` when no frame at all can be read. Times past the
        end of the stream take its last frame.
        """
        picked = self._sample_seek(times, exact) if seek else self._sample_dense(times, exact)
        done: dict[int, T] = {}
        out = []
        for _, frame_id, frame in picked:
            if frame_id not in done:
                done[frame_id] = convert(frame)
            out.append(done[frame_id])
        return out, [t for t, _, _ in picked]

    def _sample_dense(self, times: Sequence[float], exact: bool
                      ) -> list[tuple[float, int, av.VideoFrame]]:  # fmt: skip
        picked: list[tuple[float, int, av.VideoFrame]] = []
        prev: tuple[float, int, av.VideoFrame] | None = None
        end = max(times) if times else 0.0
        for index, (t, frame) in enumerate(self.frames(skip_b=not exact)):
            here = (t, index, frame)
            while len(picked) < len(times) and times[len(picked)] < t:
                want = times[len(picked)]
                nearer_now = prev is None or (not exact and t - want < want - prev[0])
                picked.append(here if nearer_now else prev)  # type: ignore[arg-type]
            if len(picked) == len(times) or t > end:
                break
            prev = here
        if prev is None and not picked:
            raise VideoError(self._no_frames())
        last = prev if prev is not None else picked[-1]
        picked += [last] * (len(times) - len(picked))
        return picked

    def _sample_seek(self, times: Sequence[float], exact: bool
                     ) -> list[tuple[float, int, av.VideoFrame]]:  # fmt: skip
        picked: list[tuple[float, int, av.VideoFrame]] = []
        index = 0
        for want in times:
            self._seek(want)
            if exact:
                prev = None
                for t, frame in self.frames(end=math.inf):
                    if t > want and prev is not None:
                        break
                    prev = (t, index, frame)
                    index += 1
                    if t > want:
                        break
                found = prev
            else:
                # consecutive samples in one GOP share its key frame: decode it once
                key = self._key_frame(picked[-1][0] if picked else None)
                found = None
                if key is not None:
                    found = picked[-1] if key[1] is None else (key[0], index, key[1])
                    index += 1
            if found is None:
                if not picked:
                    raise VideoError(self._no_frames())
                found = picked[-1]
            picked.append(found)
        return picked

    def _no_frames(self) -> str:
        if self.errors:
            return f"no frame decoded: {self.errors[0]}"
        return "no frame decoded"


def probe(path: str | Path, limits: Limits = Limits()) -> VideoInfo:
    """Streams, duration, rate and frame size, from the container and stream headers."""
    with Clip(path, limits) as clip:
        return clip.info


def iter_frames(path: str | Path, *, height: int | None = None, exact: bool = True,
                limits: Limits = Limits()) -> Iterator[tuple[float, np.ndarray]]:  # fmt: skip
    """(time, RGB frame) for every frame of the first ``limits.max_duration`` seconds
    (every reference frame with ``exact=False``), scaled to ``height`` when given.

    Frames are yielded one at a time, so a caller that reads a clip densely
    holds one frame, not the clip. Raises ``VideoError`` when no frame can be read.
    """
    with Clip(path, limits) as clip:
        if clip.stream is None:
            raise VideoError("no video stream")
        size = output_size(clip.info.width, clip.info.height, height) if height else None
        any_frame = False
        for t, frame in clip.frames(skip_b=not exact):
            any_frame = True
            yield t, to_rgb(frame, size)
        if not any_frame:
            raise VideoError(clip._no_frames())


def frames_at(path: str | Path, times: Sequence[float], *, height: int | None = None,
              exact: bool = True, seek_gap: float = 1.0, limits: Limits = Limits()
              ) -> list[tuple[float, np.ndarray]]:  # fmt: skip
    """(time of the frame, RGB frame) on display at each of ``times`` (seconds, ascending),
    scaled to ``height`` when given; seeks when the times are ``seek_gap`` s apart or more."""
    times = sorted(float(t) for t in times)
    if not times:
        return []
    if times[-1] > limits.max_duration:
        raise VideoError(f"time {times[-1]:g}s is past max_duration {limits.max_duration:g}s")
    with Clip(path, limits) as clip:
        if clip.stream is None:
            raise VideoError("no video stream")
        size = output_size(clip.info.width, clip.info.height, height) if height else None
        gaps = np.diff(times)
        seek = len(times) > 1 and float(gaps.min()) >= seek_gap
        frames, picked = clip.sample(times, lambda f: to_rgb(f, size), exact=exact, seek=seek)
    return list(zip(picked, frames, strict=True))


def decode_clip(path: str | Path, s: DecodeSettings, *, as_rgb: bool = False) -> ClipResult:
    """Sample ``s.frames`` frames of one clip; every failure is a status, never an exception.

    ``frames`` are JPEG bytes (the workflow's shards), or RGB arrays with ``as_rgb``
    (serving, where the models take arrays).
    """
    t0 = time.perf_counter()
    result = _decode_clip(Path(path), s, as_rgb)
    result.seconds = time.perf_counter() - t0
    return result


def _decode_clip(path: Path, s: DecodeSettings, as_rgb: bool) -> ClipResult:
    if not path.is_file():
        return ClipResult(MISSING, f"file not found: {path.name}")
    if path.stat().st_size == 0:
        return ClipResult(EMPTY, "zero-byte clip file")
    try:
        with Clip(path, s.limits, threads=s.threads) as clip:
            return sample_clip(clip, s, as_rgb=as_rgb)
    except VideoError as err:
        return ClipResult(CORRUPT, str(err))


def sample_clip(clip: Clip, s: DecodeSettings, *, as_rgb: bool = False) -> ClipResult:
    """``decode_clip`` on a clip already open (e.g. after checks on ``clip.info``)."""
    info = clip.info
    if not info.has_video:
        return ClipResult(NO_VIDEO, "no video stream", duration=info.duration,
                          has_audio=info.has_audio)  # fmt: skip
    overlong = info.duration is None or info.duration > s.max_duration
    span = min(info.video_duration or info.duration or s.max_duration, s.max_duration)
    size = output_size(info.width, info.height, s.height)
    result = ClipResult(OVERLONG if overlong else OK, None, info.duration, info.fps,
                        size[0], size[1], info.has_audio, overlong)  # fmt: skip
    if overlong:
        result.reason = (
            f"duration {info.duration:.1f}s > max_duration {s.max_duration:g}s; "
            f"first {span:g}s sampled" if info.duration
            else "duration unknown; first max_duration seconds sampled"
        )  # fmt: skip
    times = sample_times(span, s.frames)

    def convert(frame: av.VideoFrame) -> Any:
        return to_rgb(frame, size) if as_rgb else to_jpeg(frame, size, s.jpeg_quality)

    try:
        result.frames, picked = clip.sample(times, convert, exact=s.exact,
                                            seek=span / s.frames >= s.seek_gap)  # fmt: skip
    except VideoError as err:
        return _failed(result, str(err))
    # frames that stop well short of the header's duration: a truncated file, or
    # timestamps that do not advance (a zero or absurd frame rate)
    shown_until = picked[-1] + (1 / info.fps if info.fps else 0.0)
    if clip.exhausted and shown_until < span / 2:
        cause = f" ({clip.errors[0]})" if clip.errors else ""
        return _failed(result, f"the video's frames end at {shown_until:.3g}s of the "
                               f"{span:.3g}s its header claims{cause}")  # fmt: skip
    # the times of the frames picked, not the times asked for: with ``exact: false``
    # a frame may be the nearest reference frame, and the sound is matched to it
    result.timestamps = [round(t, 4) for t in picked]
    return result


def _failed(base: ClipResult, reason: str) -> ClipResult:
    return ClipResult(CORRUPT, reason, duration=base.duration, fps=base.fps,
                      has_audio=base.has_audio)  # fmt: skip

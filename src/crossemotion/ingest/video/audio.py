"""A clip's sound, decoded in-process with PyAV, and its loudness at the sampled frames.

The speaker of an utterance is the face whose mouth moves while the sound is
loud (``crossemotion.ingest.faces.tracks``). This module gives the sound side:
``read_audio`` decodes the clip's first audio stream through the same
``Clip`` (the same container, limits and deadline) that the video reader
opens, mixes it to mono and resamples it (FFmpeg's swresample, through
``av.AudioResampler``); ``rms_envelope`` gives its RMS energy in a window
around each of the video's sampled frame times (seconds from the video
stream's start, as ``Clip.sample`` reports them).

Outcomes a caller has to handle:

* no audio stream, or one without a single packet: ``None`` (the speaker is
  then chosen by mouth motion alone);
* an audio stream that cannot be decoded (the decoder refuses it, or most of
  its packets fail): ``AudioError``, a ``VideoError`` whose message is safe
  for a manifest's ``reason`` (no paths, no addresses). A few bad packets are
  skipped and their time filled with silence, as the video reader skips bad
  video packets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from crossemotion.ingest.video.reader import (
    OK,
    OVERLONG,
    Clip,
    ClipResult,
    DecodeSettings,
    Limits,
    VideoError,
    _reason,
    decode_clip,
)

# a clip's sound, as the clips shard records it (``audio_status``)
AUDIO_OK, AUDIO_NONE, AUDIO_CORRUPT = "ok", "none", "corrupt"

DEFAULT_RATE = 16_000  # speech energy lies below 8 kHz; more rate buys nothing here
# a stream where more than this share of packets fail is corrupt, not just damaged
MAX_BAD_SHARE = 0.5


class AudioError(VideoError):
    """An audio stream that cannot be decoded; the message is safe to show."""


@dataclass(frozen=True)
class AudioTrack:
    """Mono float32 samples in [-1, 1] at ``sample_rate``.

    ``start``: the time of ``samples[0]`` in seconds from the video stream's
    start (the clock of the sampled frame times); 0 for a file without video.
    ``bad_packets``: packets the decoder refused (their time is silence).
    """

    samples: np.ndarray
    sample_rate: int
    start: float
    bad_packets: int = 0

    @property
    def duration(self) -> float:
        return self.samples.size / self.sample_rate


def read_audio(
    path: str | Path,
    sample_rate: int = DEFAULT_RATE,
    limits: Limits | None = None,
    end: float | None = None,
) -> AudioTrack | None:
    """``decode_audio`` of the clip at ``path`` (opened as the video reader opens it)."""
    with Clip(path, limits or Limits()) as clip:
        return decode_audio(clip, sample_rate, end=end)


def _seconds(pts: int | None, time_base: float) -> float | None:
    return None if pts is None else pts * time_base


def decode_audio(clip: Clip, sample_rate: int = DEFAULT_RATE, end: float | None = None
                 ) -> AudioTrack | None:  # fmt: skip
    """The first audio stream of an open ``Clip``, mono at ``sample_rate``, up to ``end``
    seconds (default and at most ``limits.max_duration``); None without audio.

    Reads from the container's start (a clip whose video was read already is
    sought back first). Packets count against the clip's limits and deadline
    like video packets do. Raises ``AudioError`` for a stream that cannot be
    decoded (module docstring).
    """
    container = clip.container
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    lim = clip.limits
    stop = lim.max_duration if end is None else min(end, lim.max_duration)
    time_base = float(stream.time_base) if stream.time_base else 1.0 / max(stream.rate or 1, 1)
    # the sampled frame times count from the video stream's start; audio is put on that clock
    video_start = 0.0
    if clip.stream is not None:
        video_start = float(clip.start) * clip.time_base
    if clip.packets:
        try:
            container.seek(0)
        except (av.FFmpegError, OSError) as err:
            raise AudioError(f"audio: seek to the start failed: {_reason(err)}") from None
    cc = stream.codec_context
    try:
        cc.open()
    except (av.FFmpegError, MemoryError, ValueError) as err:
        raise AudioError(f"the audio decoder refused the stream: {_reason(err)}") from None
    resampler: av.AudioResampler | None = None
    shape: tuple[str, str, int] | None = None
    chunks: list[np.ndarray] = []
    produced = 0  # output samples so far
    start: float | None = None
    packets = bad = 0
    nbytes = 0
    first_error = ""

    def take(frame: av.AudioFrame) -> None:
        nonlocal resampler, shape, produced, start
        t = _seconds(frame.pts, time_base)
        if t is not None:
            t -= video_start
        if start is None:
            start = t if t is not None else 0.0
        elif t is not None:
            # a gap (skipped bad packets): fill it with silence so later sound stays in time
            missing = round((t - start) * sample_rate) - produced
            if missing > sample_rate // 100:  # more than 10 ms
                chunks.append(np.zeros(missing, np.float32))
                produced += missing
        key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        if resampler is None or key != shape:
            # a mid-stream change of layout or rate needs a resampler of its own
            if resampler is not None:
                flush(resampler)
            resampler, shape = av.AudioResampler(format="flt", layout="mono", rate=sample_rate), key
        for out in resampler.resample(frame):
            put(out)

    def put(out: av.AudioFrame) -> None:
        nonlocal produced
        data = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        chunks.append(data)
        produced += data.size

    def flush(r: av.AudioResampler) -> None:
        for out in r.resample(None):
            put(out)

    demux = container.demux(stream)
    while True:
        clip._check()  # the clip's wall-clock deadline covers the audio too
        try:
            packet = next(demux)
        except StopIteration:
            break
        except (av.FFmpegError, OSError, MemoryError) as err:
            if isinstance(err, av.ExitError):
                clip._check()
            # a demuxing error ends the stream, as the video reader treats it
            first_error = first_error or _reason(err, clip.path)
            break
        if packet.size == 0 and packet.pts is None:  # PyAV's flush packet
            break
        packets += 1
        nbytes += packet.size
        if packets > lim.max_packets:
            raise AudioError(f"more than {lim.max_packets} audio packets read")
        if nbytes > lim.max_bytes:
            raise AudioError(f"more than {lim.max_bytes} bytes of audio read")
        t = _seconds(packet.pts, time_base)
        if t is not None and t - video_start > stop:
            break
        try:
            frames = cc.decode(packet)
        except (av.FFmpegError, MemoryError, ValueError) as err:
            bad += 1
            first_error = first_error or _reason(err, clip.path)
            continue
        for frame in frames:
            take(frame)
    try:
        for frame in cc.decode(None):
            take(frame)
    except (av.FFmpegError, MemoryError, ValueError) as err:
        first_error = first_error or _reason(err, clip.path)
    if resampler is not None:
        flush(resampler)
    if packets == 0:
        return None
    cause = f" ({first_error})" if first_error else ""
    if produced == 0:
        raise AudioError(f"corrupt audio stream: no audio decoded from {packets} packets{cause}")
    if bad > MAX_BAD_SHARE * packets:
        raise AudioError(f"corrupt audio stream: {bad} of {packets} packets undecodable{cause}")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not np.isfinite(samples).all():
        raise AudioError("corrupt audio stream: the decoder gave non-finite samples")
    first = start if start is not None else 0.0
    if first + samples.size / sample_rate > stop:
        samples = samples[: max(0, math.ceil((stop - first) * sample_rate))]
    return AudioTrack(samples, sample_rate, first, bad)


def default_window(times: Sequence[float]) -> float:
    """The median spacing of the frame times (one window per frame, no gaps, no
    overlap), at least 20 ms; 0.1 s for a single time."""
    if len(times) < 2:
        return 0.1
    return max(0.02, float(np.median(np.diff(np.sort(np.asarray(times, float))))))


def rms_envelope(audio: AudioTrack, times: Sequence[float], window: float | None = None
                 ) -> np.ndarray:  # fmt: skip
    """RMS of the sound in ``window`` seconds centred on each of ``times`` (the video's
    clock; default ``default_window``). Time outside the sound counts as silence."""
    if window is None:
        window = default_window(times)
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    x = audio.samples.astype(np.float64)
    # cumulative energy: every window's sum is one subtraction, whatever its length
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    rate = audio.sample_rate
    n_window = max(1, round(window * rate))
    out = np.zeros(len(times), np.float64)
    for i, t in enumerate(times):
        a = round((t - audio.start - window / 2) * rate)
        b = a + n_window
        lo, hi = min(max(a, 0), x.size), min(max(b, 0), x.size)
        out[i] = math.sqrt(max(energy[hi] - energy[lo], 0.0) / n_window)
    return out


def clip_envelope(
    path: str | Path,
    times: Sequence[float],
    window: float | None = None,
    sample_rate: int = DEFAULT_RATE,
    limits: Limits | None = None,
) -> np.ndarray | None:
    """``rms_envelope`` of the clip's sound at ``times``; None for a clip without audio.

    Decodes only as far as the last window reaches. Raises ``AudioError`` for a
    corrupt audio stream, ``VideoError`` for a file that cannot be opened.
    """
    if not len(times):
        return np.zeros(0)
    w = default_window(times) if window is None else window
    audio = read_audio(path, sample_rate, limits, end=max(times) + w)
    return None if audio is None else rms_envelope(audio, times, w)


def decode_job(job: tuple[str | Path, DecodeSettings]) -> ClipResult:
    """What a pool worker runs for one clip of a shard: ``decode_clip``, then (with
    ``settings.audio``) the sound's RMS at the picked frames, ``audio_window`` s each.

    The sound never fails the clip: no sound is ``audio_status`` none, a stream that
    cannot be decoded is corrupt with its reason, and the clip stays ``ok`` (the
    speaker is then chosen from the faces alone). It lives here, not with the
    shard code, so workers import neither polars nor pyarrow.
    """
    path, s = job
    result = decode_clip(path, s)
    if not s.audio or result.status not in (OK, OVERLONG):
        return result
    if not result.has_audio:
        result.audio_status = AUDIO_NONE
        return result
    # the sound gets what is left of the clip's time budget
    t0 = time.perf_counter()
    left = max(1.0, s.timeout - result.seconds)
    limits = replace(s.limits, timeout=left)
    try:
        envelope = clip_envelope(path, result.timestamps, s.audio_window, limits=limits)
    except VideoError as err:
        result.audio_status, result.audio_reason = AUDIO_CORRUPT, str(err)[:300]
    else:
        if envelope is None:
            result.audio_status = AUDIO_NONE
        else:
            result.audio_status = AUDIO_OK
            result.audio_rms = [round(float(v), 6) for v in envelope]
    result.seconds += time.perf_counter() - t0
    return result

"""A clip's sound decoded in-process (crossemotion.ingest.video.audio): the energy
envelope follows the loudness at the video's frame times; no audio stream is None;
a corrupt audio stream is a clear AudioError; a few bad packets keep the timing.

The clips are encoded here with PyAV (H.264 + AAC in MP4, as the demo's are).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest

from crossemotion.ingest.video.audio import (
    AudioError,
    AudioTrack,
    clip_envelope,
    decode_audio,
    default_window,
    read_audio,
    rms_envelope,
)
from crossemotion.ingest.video.reader import (
    Clip,
    DecodeSettings,
    VideoError,
    decode_clip,
    frames_at,
    to_rgb,
)


def write_clip(
    path: Path,
    frames: Sequence[np.ndarray],
    fps: int = 10,
    audio: np.ndarray | None = None,
    rate: int = 16_000,
    channels: int = 1,
    audio_delay: int = 0,
) -> Path:
    """An MP4 of RGB ``frames`` (H.264) and, when given, ``audio`` (float samples in
    [-1, 1], shape (n,) or (channels, n); AAC), starting ``audio_delay`` samples
    after the video."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "20"}
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=rate)
            sound.layout = "mono" if channels == 1 else "stereo"
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None and audio is not None:
            data = np.asarray(audio, np.float32).reshape(channels, -1)
            step = 1024  # AAC's frame size
            for k in range(0, data.shape[1], step):
                chunk = np.ascontiguousarray(data[:, k : k + step])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=sound.layout.name)
                frame.sample_rate, frame.pts = rate, k + audio_delay
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def audio_packets(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of every audio packet in the file."""
    with av.open(str(path)) as src:
        return [(p.pos, p.size) for p in src.demux(src.streams.audio[0]) if p.size]


def corrupt_audio(src: Path, dst: Path, share: float = 1.0, seed: int = 0) -> Path:
    """``src`` with the payload of ``share`` of its audio packets (evenly spread)
    overwritten by random bytes; the video packets and the container stay intact."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    packets = audio_packets(src)
    chosen = packets if share >= 1 else packets[:: max(1, round(1 / share))]
    for pos, size in chosen:
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def grey_frames(n: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    return [np.full((height, width, 3), 40 + 4 * i, np.uint8) for i in range(n)]


def voice(amplitude: np.ndarray, rate: int = 16_000, f0: float = 140.0) -> np.ndarray:
    """A voice-like sound: a harmonic tone (f0 and three overtones) whose loudness
    follows ``amplitude`` (one value per sample)."""
    t = np.arange(amplitude.size) / rate
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3, 4))
    return (amplitude * tone / 2.1).astype(np.float32)


def test_envelope_follows_the_loudness_at_frame_times(tmp_path: Path) -> None:
    """Loud from 1.0 to 2.0 s and from 3.0 to 3.5 s, near silence elsewhere: the RMS
    at the sampled frame times is high exactly there."""
    rate, seconds = 16_000, 4.0
    t = np.arange(int(rate * seconds)) / rate
    loud = ((t >= 1.0) & (t < 2.0)) | ((t >= 3.0) & (t < 3.5))
    amp = np.where(loud, 0.5, 0.005)
    path = write_clip(tmp_path / "c.mp4", grey_frames(40), audio=voice(amp, rate), rate=rate)
    times = [(k + 0.5) * seconds / 16 for k in range(16)]  # the reader's sample_times
    env = clip_envelope(path, times)
    assert env is not None and env.shape == (16,)
    expected_loud = np.array([(1.0 <= x < 2.0) or (3.0 <= x < 3.5) for x in times])
    # windows of 0.25 s centred on times that lie mid-slice never straddle an edge
    assert env[expected_loud].min() > 10 * env[~expected_loud].max()
    # the level is the sound's: the tone's RMS is 0.5 x its own RMS (sum of 1/k^2 over 2)
    tone_rms = 0.5 * float(np.sqrt(sum(1 / k**2 for k in (1, 2, 3, 4)) / 2)) / 2.1
    assert env[expected_loud] == pytest.approx(tone_rms, rel=0.15)


def test_delayed_sound_on_the_video_clock_and_read_after_the_video(tmp_path: Path) -> None:
    """Sound that starts 0.5 s after the picture: a burst 1.0-1.5 s into the sound is
    loud at 1.5-2.0 s of the video's clock; decoding it from a ``Clip`` whose
    frames were read already (the same open container) gives the same sound."""
    rate = 16_000
    t = np.arange(3 * rate) / rate
    amp = np.where((t >= 1.0) & (t < 1.5), 0.5, 0.005)
    path = write_clip(tmp_path / "late.mp4", grey_frames(40), audio=voice(amp), rate=rate,
                      audio_delay=rate // 2)  # fmt: skip
    audio = read_audio(path)
    assert audio is not None and 0.4 < audio.start <= 0.5  # AAC's priming comes first
    env = rms_envelope(audio, [1.25, 1.75, 2.25], window=0.2)
    assert env[1] > 20 * max(env[0], env[2])
    with Clip(path) as clip:
        frames, _ = clip.sample([0.5, 2.0], to_rgb, exact=True, seek=False)
        assert len(frames) == 2 and clip.packets > 0
        again = decode_audio(clip)
    assert again is not None and again.start == audio.start
    assert np.array_equal(again.samples, audio.samples)


def test_clip_without_audio_is_none(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "silent.mp4", grey_frames(10))
    assert read_audio(path) is None
    assert clip_envelope(path, [0.1, 0.5]) is None


def test_corrupt_audio_stream_is_a_clear_error_and_the_video_still_reads(
    tmp_path: Path,
) -> None:
    rate = 16_000
    amp = np.full(2 * rate, 0.3)
    good = write_clip(tmp_path / "good.mp4", grey_frames(20), audio=voice(amp), rate=rate)
    bad = corrupt_audio(good, tmp_path / "bad.mp4")
    with pytest.raises(AudioError, match=r"^corrupt audio stream: ") as err:
        read_audio(bad)
    # a VideoError: callers that turn those into a manifest status catch it too
    assert isinstance(err.value, VideoError)
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(AudioError):
        clip_envelope(bad, [0.5, 1.0])
    # the video stream is untouched: the clip decodes, so a caller can keep it
    # and choose the speaker from mouth motion alone
    assert len(frames_at(bad, [0.2, 1.5])) == 2
    assert decode_clip(bad, DecodeSettings(frames=4, height=120)).status == "ok"


def test_a_few_bad_packets_are_skipped_and_the_timing_kept(tmp_path: Path) -> None:
    """One packet in six destroyed: decoded, the bad ones counted, and a burst late in
    the clip still sits at its time (the lost packets are silence, not dropped time)."""
    rate, seconds = 16_000, 4.0
    t = np.arange(int(rate * seconds)) / rate
    amp = np.where((t >= 3.0) & (t < 3.5), 0.5, 0.005)
    good = write_clip(tmp_path / "good.mp4", grey_frames(40), audio=voice(amp), rate=rate)
    n_packets = len(audio_packets(good))
    bad = corrupt_audio(good, tmp_path / "some_bad.mp4", share=1 / 6, seed=3)
    audio = read_audio(bad)
    assert audio is not None
    assert 0 < audio.bad_packets <= n_packets // 6 + 1
    assert audio.duration == pytest.approx(read_audio(good).duration, abs=0.1)  # type: ignore[union-attr]
    env = rms_envelope(audio, [0.5, 1.5, 2.5, 3.1, 3.25, 3.4], window=0.1)
    assert env[3:].min() > 10 * env[:3].max()


def test_stereo_48k_is_mixed_to_mono_and_resampled(tmp_path: Path) -> None:
    rate = 48_000
    n = 2 * rate
    left = voice(np.full(n, 0.4), rate)
    path = write_clip(tmp_path / "stereo.mp4", grey_frames(20),
                      audio=np.stack([left, np.zeros(n, np.float32)]), rate=rate,
                      channels=2)  # fmt: skip
    audio = read_audio(path, sample_rate=8_000)
    assert audio is not None and audio.sample_rate == 8_000 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(2.0, abs=0.1)
    # one loud channel and one silent one: swresample's downmix takes each channel
    # at -3 dB (1/sqrt(2)), FFmpeg's stereo-to-mono rule
    rms = float(np.sqrt(np.mean(audio.samples[2000:14000] ** 2)))
    assert rms == pytest.approx(float(np.sqrt(np.mean(left**2))) / np.sqrt(2), rel=0.1)


def test_end_and_max_duration_bound_the_read(tmp_path: Path) -> None:
    rate = 16_000
    path = write_clip(tmp_path / "c.mp4", grey_frames(40), audio=voice(np.full(4 * rate, 0.3)))
    short = read_audio(path, end=1.0)
    assert short is not None and 1.0 <= short.duration < 1.3


def test_audio_only_file(tmp_path: Path) -> None:
    """A file with sound and no picture (the decode stage's ``no_video``) still gives
    its sound, timed from its own start."""
    rate = 16_000
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=rate)
        sound.layout = "mono"
        data = voice(np.full(rate, 0.3))[None]
        for k in range(0, data.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, k : k + 1024]),
                                               format="fltp", layout="mono")  # fmt: skip
            frame.sample_rate, frame.pts = rate, k
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    audio = read_audio(path)
    assert audio is not None and audio.start == pytest.approx(0.0, abs=0.05)
    assert audio.duration == pytest.approx(1.0, abs=0.1)


def test_rms_envelope_of_known_samples() -> None:
    rate = 1000
    samples = np.zeros(3000, np.float32)
    samples[1000:2000] = 0.5  # a DC block: RMS 0.5 inside, 0 outside
    track = AudioTrack(samples, rate, start=0.5)  # sound starts 0.5 s into the video
    env = rms_envelope(track, [0.2, 1.0, 2.0, 3.0, 4.0], window=0.2)
    assert env.tolist() == pytest.approx([0.0, 0.0, 0.5, 0.0, 0.0])
    # a window half over the block: half its energy
    assert rms_envelope(track, [1.5], window=0.2)[0] == pytest.approx(0.5 * np.sqrt(0.5))
    assert default_window([0.0, 0.25, 0.5]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="window"):
        rms_envelope(track, [1.0], window=0.0)

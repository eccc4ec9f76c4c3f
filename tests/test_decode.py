"""Clip decoding: sampling positions, per-clip statuses, bounded time, shard streaming."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from crossemotion.data.decode import DecodeSettings, decode_clip, decode_shard, sample_times
from crossemotion.data.meld import build_index, decodable_rows
from tests.meld_fixtures import build_tree, make_clips

FAST = DecodeSettings(frames=4, height=48, max_duration=30.0, timeout=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def counter_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 fps, 2 s, with B-frames; frame n has luma 16 + 4n, so a frame tells its index."""
    path = tmp_path_factory.mktemp("counter") / "counter.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "nullsrc=s=64x48:r=25:d=2,geq=lum='16+4*N':cb=128:cr=128",
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-bf",
            "3",
            "-g",
            "50",
            str(path),
        ],
        check=True,
    )
    return path


def _frame_indices(frames: list[bytes]) -> list[float]:
    out = []
    for data in frames:
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        # limited-range luma: gray = (Y - 16) * 255 / 219
        out.append(float(gray.mean()) * 219 / 255 / 4.0)
    return out


@pytest.mark.parametrize(("exact", "tolerance"), [(True, 1.0), (False, 3.0)])
def test_uniform_sampling_positions(counter_clip: Path, exact: bool, tolerance: float) -> None:
    s = DecodeSettings(frames=8, height=48, exact=exact, jpeg_quality=100, timeout=60)
    r = decode_clip(counter_clip, s)
    assert r.status == "ok" and len(r.frames) == 8
    assert r.timestamps == pytest.approx(sample_times(2.0, 8), abs=1e-3)
    # slice centres (k + 0.5) * 2 s / 8 are frames 25 t; the sample is the last frame
    # at or before the centre (exact) or a nearby decoded reference frame (not exact)
    want = np.array([t * 25 for t in r.timestamps])
    got = np.array(_frame_indices(r.frames))
    assert np.abs(got - want).max() <= tolerance + 0.3, (got, want)
    assert (np.diff(got) > 0).all()


def test_ok_clip_with_audio(clips: dict[str, Path]) -> None:
    r = decode_clip(clips["av"], FAST)
    assert (r.status, r.has_audio, r.overlong) == ("ok", True, False)
    assert (r.width, r.height) == (64, 48) and len(r.frames) == 4
    assert r.duration == pytest.approx(1.5, abs=0.1) and r.fps == pytest.approx(10)
    img = cv2.imdecode(np.frombuffer(r.frames[0], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (48, 64, 3)


def test_size_keeps_aspect_with_even_width(clips: dict[str, Path]) -> None:
    r = decode_clip(clips["av"], DecodeSettings(frames=2, height=30, timeout=60))
    assert (r.width, r.height) == (40, 30)
    r = decode_clip(clips["av"], DecodeSettings(frames=2, height=34, timeout=60))
    assert r.width % 2 == 0 and r.width in (44, 46)


def test_bad_clips_get_statuses(clips: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    cases = {
        clips["noaudio"]: ("ok", False),
        clips["audioonly"]: ("no_video", True),
        clips["corrupt"]: ("corrupt", None),
        noise: ("corrupt", None),
        empty: ("empty", None),
        tmp_path / "absent.mp4": ("missing", None),
    }
    for path, (status, has_audio) in cases.items():
        r = decode_clip(path, FAST)
        assert r.status == status, (path, r)
        assert r.has_audio is has_audio or has_audio is None
        assert r.status == "ok" or (r.reason and not r.frames)


def test_failure_reasons_are_the_same_in_every_run(clips: dict[str, Path], tmp_path: Path) -> None:
    """No memory addresses or folders in reasons: the manifest must compare across runs."""
    reasons = set()
    for i in range(2):
        copy = tmp_path / f"run{i}" / "broken.mp4"
        copy.parent.mkdir()
        copy.write_bytes(clips["corrupt"].read_bytes())
        r = decode_clip(copy, FAST)
        assert r.status == "corrupt"
        assert str(copy.parent) not in r.reason and " @ 0x" not in r.reason, r.reason
        reasons.add(r.reason)
    assert len(reasons) == 1


def test_five_minute_clip_is_bounded_and_overlong(clips: dict[str, Path]) -> None:
    s = DecodeSettings(frames=4, height=32, max_duration=20.0, timeout=60)
    r = decode_clip(clips["long"], s)
    assert r.duration == pytest.approx(300, abs=1)
    assert r.status == "overlong" and r.overlong and len(r.frames) == 4
    assert max(r.timestamps) < 20.0 and "max_duration" in r.reason
    # bounded: about the cost of a 20 s read, not 300 s (generous for a loaded box)
    assert r.seconds < 15, r.seconds


def test_timeout_is_a_status(clips: dict[str, Path]) -> None:
    r = decode_clip(clips["av"], DecodeSettings(frames=2, height=32, timeout=0.001))
    assert r.status == "corrupt" and "timed out" in r.reason


def test_shard_streams_and_reads_back(clips: dict[str, Path], tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "unpacked", clips)
    index = build_index(tree)
    rows = pl.concat([decodable_rows(index, s, 0, 1) for s in ("train", "dev", "test")])
    out, status_out = tmp_path / "clips.parquet", tmp_path / "status.parquet"
    status = decode_shard(rows, FAST, out, status_out, workers=2, batch_size=2)
    usable = status.filter(pl.col("status").is_in(["ok", "overlong"]))
    shard = pl.scan_parquet(out).collect()
    assert shard.height == usable.height == 8
    assert sorted(shard["key"]) == sorted(usable["key"])
    assert shard["frames"].list.len().to_list() == [4] * 8
    assert shard.schema["dialogue_id"] == pl.Int32
    assert set(status["status"]) == {"ok", "overlong", "corrupt", "no_video"}
    assert pl.read_parquet(status_out).height == rows.height
    assert not list(tmp_path.glob(".*.tmp"))


def test_empty_shard_is_written(tmp_path: Path) -> None:
    rows = pl.DataFrame(schema={"file": pl.String, "key": pl.String})
    decode_shard(rows, FAST, tmp_path / "c.parquet", tmp_path / "s.parquet")
    assert pl.scan_parquet(tmp_path / "c.parquet").collect().height == 0


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Counter clip (frame n has luma 16 + 4n), 25 fps, 2 s, key frame every 10 frames."""
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    subprocess.run(
        ["ffmpeg", "-y", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
         "nullsrc=s=64x48:r=25:d=2,geq=lum='16+4*N':cb=128:cr=128", "-c:v", "libx264",
         "-qp", "0", "-pix_fmt", "yuv420p", "-bf", "3", "-g", "10", "-keyint_min", "10",
         "-sc_threshold", "0", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("exact", [True, False])
def test_seeking_stays_within_one_gop(gop_clip: Path, exact: bool) -> None:
    # seek_gap below the 0.25 s sample spacing forces sparse (per-sample seek) mode
    s = DecodeSettings(frames=8, height=48, exact=exact, jpeg_quality=100, seek_gap=0.1)
    r = decode_clip(gop_clip, s)
    assert r.status == "ok" and len(r.frames) == 8
    want = np.array([t * 25 for t in sample_times(2.0, 8)])
    got = np.array(_frame_indices(r.frames))
    if exact:
        # accurate seek: the first frame at or after the sample time
        assert np.abs(got - np.ceil(want - 1e-6)).max() <= 0.3, (got, want)
    else:
        # key frame at or before the sample: behind it by less than one GOP (10 frames)
        assert (got <= want + 0.3).all() and (want - got < 10.3).all(), (got, want)
        assert (np.round(got) % 10 == 0).all(), got


def test_header_probe_matches_ffprobe(clips: dict[str, Path], counter_clip: Path) -> None:
    from crossemotion.data.decode import ffprobe, probe_mp4

    for path in (clips["av"], clips["noaudio"], clips["long"], counter_clip):
        a, b = probe_mp4(path), ffprobe(path)
        assert (a.width, a.height, a.has_video, a.has_audio) == (
            b.width, b.height, b.has_video, b.has_audio
        ), path
        assert a.duration == pytest.approx(b.duration, abs=0.05)
        assert a.fps == pytest.approx(b.fps, rel=0.01)


def test_ffmpeg_executable_choice(monkeypatch: pytest.MonkeyPatch, clips: dict[str, Path]) -> None:
    from crossemotion.data import ffmpeg_bin

    def frames() -> list[np.ndarray]:
        r = decode_clip(clips["av"], FAST)
        assert r.status == "ok" and len(r.frames) == 4
        return [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in r.frames]

    ffmpeg_bin.ffmpeg_exe.cache_clear()
    try:
        default = frames()
        ffmpeg_bin.ffmpeg_exe.cache_clear()
        monkeypatch.setenv(ffmpeg_bin.ENV, "ffmpeg")  # the system build, by name on PATH
        assert Path(ffmpeg_bin.ffmpeg_exe()).name == "ffmpeg"
        # either build samples the same frames (scaling may differ by rounding)
        for a, b in zip(default, frames(), strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 3
        ffmpeg_bin.ffmpeg_exe.cache_clear()
        monkeypatch.setenv(ffmpeg_bin.ENV, "/nonexistent/ffmpeg")
        with pytest.raises(FileNotFoundError, match="CROSSEMOTION_FFMPEG"):
            ffmpeg_bin.ffmpeg_exe()
    finally:
        ffmpeg_bin.ffmpeg_exe.cache_clear()

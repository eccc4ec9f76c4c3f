"""Clip decoding: sampling positions, per-clip statuses, limits, bounded time, shard streaming."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from crossemotion.ingest.meld.index import build_index, decodable_rows
from crossemotion.ingest.video.decode import DecodeSettings, decode_clip, decode_shard, sample_times
from tests.meld_fixtures import build_tree, make_clips

FAST = DecodeSettings(frames=4, height=48, max_duration=30.0, timeout=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def counter_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 fps, 2 s, IBBBP... (qp 0 would make x264 drop B-frames); frame n has luma 16 + 4n,
    so a frame tells its index."""
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
            "1",
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
    # slice centres (k + 0.5) * 2 s / 8 are frames 25 t; the sample is the last frame
    # at or before the centre (exact) or a nearby decoded reference frame (not exact)
    want = np.array(sample_times(2.0, 8)) * 25
    got = np.array(_frame_indices(r.frames))
    # the recorded times are the picked frames' own (what the sound is matched to)
    assert np.abs(got - np.array(r.timestamps) * 25).max() <= 0.3, (got, r.timestamps)
    assert np.abs(got - want).max() <= tolerance + 0.3, (got, want)
    assert (np.diff(got) > 0).all()
    if exact:  # the very frame on display at each time: no tolerance beyond luma rounding
        assert np.abs(got - np.floor(want + 1e-6)).max() <= 0.3, (got, want)
    else:  # B-frames were never decoded, so some picks are a neighbour of the exact frame
        assert (np.abs(got - np.floor(want + 1e-6)) > 0.5).any(), got


def test_fast_mode_decodes_no_b_frames(counter_clip: Path) -> None:
    from crossemotion.ingest.video.decode import iter_frames

    every = [t for t, _ in iter_frames(counter_clip)]
    refs = [t for t, _ in iter_frames(counter_clip, exact=False)]
    assert len(every) == 50 and 10 <= len(refs) < 25  # -bf 3: about 1 frame in 4
    assert set(refs) <= set(every)


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
         "-qp", "1", "-pix_fmt", "yuv420p", "-bf", "3", "-g", "10", "-keyint_min", "10",
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
        # the frame on display at the sample time: the last one at or before it
        assert np.abs(got - np.floor(want + 1e-6)).max() <= 0.3, (got, want)
    else:
        # key frame at or before the sample: behind it by less than one GOP (10 frames)
        assert (got <= want + 0.3).all() and (want - got < 10.3).all(), (got, want)
        assert (np.round(got) % 10 == 0).all(), got


def test_dense_and_seeking_agree_when_exact(counter_clip: Path) -> None:
    dense = decode_clip(counter_clip, DecodeSettings(frames=8, height=48, exact=True,
                                                     jpeg_quality=100))  # fmt: skip
    sparse = decode_clip(counter_clip, DecodeSettings(frames=8, height=48, exact=True,
                                                      jpeg_quality=100, seek_gap=0.1))  # fmt: skip
    assert np.allclose(_frame_indices(dense.frames), _frame_indices(sparse.frames), atol=0.3)


def test_probe_matches_ffprobe(clips: dict[str, Path], counter_clip: Path) -> None:
    """The in-process probe reads what the ffprobe executable reports."""
    import json

    from crossemotion.ingest.video.decode import probe

    for path in (clips["av"], clips["noaudio"], clips["long"], counter_clip):
        out = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
                str(path),
            ],
            capture_output=True,
            check=True,
        )
        info = json.loads(out.stdout)  # fmt: skip
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        num, den = video["avg_frame_rate"].split("/")
        got = probe(path)
        assert (got.width, got.height) == (video["width"], video["height"]), path
        assert got.has_audio == any(s["codec_type"] == "audio" for s in info["streams"])
        assert got.duration == pytest.approx(float(info["format"]["duration"]), abs=0.05)
        assert got.fps == pytest.approx(int(num) / int(den), rel=0.01)


def test_decoding_starts_no_process(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
                                    ) -> None:  # fmt: skip
    """No ffmpeg/ffprobe per clip: the whole read happens in this process."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    r = decode_clip(clips["av"], FAST)
    assert r.status == "ok" and len(r.frames) == 4


def test_statuses_match_the_manifest() -> None:
    from crossemotion.ingest import manifest as mf
    from crossemotion.ingest.video import reader as video

    for name in ("OK", "OVERLONG", "CORRUPT", "NO_VIDEO", "MISSING", "EMPTY"):
        assert getattr(video, name) == getattr(mf, name)


@pytest.mark.parametrize(
    ("limit", "phrase"),
    [
        ({"max_pixels": 64 * 47}, "exceeds the limit of 3008 pixels"),
        ({"max_packets": 5}, "more than 5 video packets"),
        ({"max_bytes": 500}, "more than 500 bytes of video"),
    ],
)
def test_limits_make_a_clip_corrupt(counter_clip: Path, limit: dict, phrase: str) -> None:
    r = decode_clip(counter_clip, DecodeSettings(frames=8, height=48, exact=True, **limit))
    assert r.status == "corrupt" and not r.frames
    assert phrase in r.reason, r.reason


def test_max_duration_bounds_what_is_read(counter_clip: Path) -> None:
    from crossemotion.ingest.video.decode import Limits, iter_frames

    times = [t for t, _ in iter_frames(counter_clip, limits=Limits(max_duration=0.5))]
    assert times == pytest.approx([i / 25 for i in range(13)])


def test_read_every_frame_and_frames_at_times(counter_clip: Path) -> None:
    """The public readers: every frame in order, or the frame on display at given times."""
    from crossemotion.ingest.video.decode import VideoError, frames_at, iter_frames

    frames = list(iter_frames(counter_clip))
    assert len(frames) == 50
    assert [t for t, _ in frames] == pytest.approx([i / 25 for i in range(50)])
    lumas = [float(rgb.mean()) for _, rgb in frames]
    assert all(b > a for a, b in itertools.pairwise(lumas))
    times = [0.0, 0.5, 0.53, 1.99]
    for gap in (1.0, 0.01):  # dense, then seeking
        got = frames_at(counter_clip, times, height=24, seek_gap=gap)
        assert [t for t, _ in got] == pytest.approx([0.0, 0.48, 0.52, 1.96])
        assert got[0][1].shape == (24, 32, 3)
    with pytest.raises(VideoError, match="max_duration"):
        frames_at(counter_clip, [40.0])


def test_jpeg_colours_match_rgb_conversion(tmp_path: Path) -> None:
    """JPEGs are encoded from scaled YUV planes; they must show the colours an RGB
    conversion shows, for untagged (BT.601) and BT.709-tagged video alike."""
    import av

    from crossemotion.codec import decode_jpeg
    from crossemotion.ingest.video.reader import to_jpeg, to_rgb

    for tag in ([], ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]):
        path = tmp_path / f"colour{len(tag)}.mp4"
        subprocess.run(["ffmpeg", "-y", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                        "smptehdbars=s=320x240:r=5:d=0.2", "-vf",
                        f"scale=out_color_matrix={'bt709' if tag else 'bt601'}", *tag,
                        "-c:v", "libx264", "-qp", "1", "-pix_fmt", "yuv420p", str(path)],
                       check=True)  # fmt: skip
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
        rgb = to_rgb(frame, (160, 120)).astype(int)
        jpeg = decode_jpeg(to_jpeg(frame, (160, 120), 95)).astype(int)
        assert jpeg.shape == rgb.shape
        # measured: median 1, mean 3.9; a missed BT.709 matrix gives median 2, mean 6.9,
        # a missed range conversion median 11
        diff = np.abs(jpeg - rgb)
        assert np.median(diff) <= 1 and diff.mean() < 5, (tag, np.median(diff), diff.mean())


def test_bench_ffmpeg_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The full-decode bound's executable (the only ffmpeg the decode path still names)."""
    from crossemotion.ingest.video import ffmpeg_bin

    ffmpeg_bin.ffmpeg_exe.cache_clear()
    try:
        monkeypatch.setenv(ffmpeg_bin.ENV, "ffmpeg")  # a name on PATH
        assert Path(ffmpeg_bin.ffmpeg_exe()).name == "ffmpeg"
        ffmpeg_bin.ffmpeg_exe.cache_clear()
        monkeypatch.setenv(ffmpeg_bin.ENV, "/nonexistent/ffmpeg")
        with pytest.raises(FileNotFoundError, match="CROSSEMOTION_FFMPEG"):
            ffmpeg_bin.ffmpeg_exe()
    finally:
        ffmpeg_bin.ffmpeg_exe.cache_clear()

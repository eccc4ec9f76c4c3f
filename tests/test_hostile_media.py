"""Hostile and broken media: every read path rejects or bounds them.

The workflow path (``decode_clip`` and ``decode_shard``) must answer each in
under 2 s with a status and a reason free of paths and addresses; the public
readers raise ``VideoError``; the worker pool really stops a call past its
deadline; the API answers each with a 4xx while ``/health`` stays responsive.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import polars as pl
import pytest

from crossemotion.ingest.video.decode import DecodeSettings, decode_clip, decode_shard
from crossemotion.ingest.video.pool import WorkerCrashed, WorkerPool, WorkerTimeout
from crossemotion.ingest.video.reader import Limits, VideoError, frames_at, iter_frames, probe
from tests import hostile_media

# what the decoder makes of each file: the status, and a phrase of its reason
EXPECTED: dict[str, tuple[set[str], str]] = {
    "stts_bomb": ({"corrupt"}, ""),
    "deep_boxes": ({"no_video", "corrupt"}, ""),
    # FFmpeg alone would read it up to the end of the file and decode the clip inside
    "moov_too_big": ({"corrupt"}, "more than the file holds"),
    "moov_too_small": ({"no_video", "corrupt"}, ""),
    "moov_largesize": ({"corrupt"}, ""),
    "frame_65535": ({"corrupt"}, ""),
    "frame_16000": ({"corrupt"}, "exceeds the limit"),
    "zero_fps": ({"corrupt"}, "its header claims"),
    "fps_2e9": ({"corrupt"}, "its header claims"),
    "fps_1e-5": ({"overlong"}, "max_duration"),
    "ten_hours_1kb": ({"overlong"}, "max_duration"),
    "truncated": ({"corrupt"}, "its header claims"),
    "audio_only": ({"no_video"}, "no video stream"),
}
WORKFLOW = DecodeSettings()  # the workflow's defaults: 16 frames at 360 px, 30 s read


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hostile_media.make_all(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def garbage_clip(tmp_path: Path) -> Iterator[Path]:
    """A valid clip followed by 200 MB of random bytes, deleted after the test."""
    src = hostile_media.valid_clip(tmp_path / "src.mp4", faststart=True)
    path = hostile_media.trailing_garbage(tmp_path / "garbage.mp4", src)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _clean(reason: str | None, path: Path) -> None:
    assert reason is None or (
        str(path.parent) not in reason and not re.search(r"0x[0-9a-f]{6}", reason)
    ), reason


def test_the_files_are_what_they_claim(hostile: dict[str, Path]) -> None:
    data = hostile["stts_bomb"].read_bytes()
    assert len(data) < 300 and b"stts\0\0\0\0\xff\xff\xff\xff" in data
    assert hostile["deep_boxes"].read_bytes().count(b"trak") >= 2500
    assert hostile["ten_hours_1kb"].stat().st_size <= 1024
    sps = hostile_media.avcc_sps(hostile["frame_65535"].read_bytes())
    assert hostile_media.sps_size(sps) == (65535, 65535)
    assert hostile_media.sps_size(hostile_media.avcc_sps(hostile_media.valid_clip(
        hostile["stts_bomb"].parent / "check.mp4").read_bytes())) == (64, 48)  # fmt: skip
    assert set(hostile) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_workflow_decode_rejects_or_bounds(hostile: dict[str, Path], name: str) -> None:
    path = hostile[name]
    t0 = time.perf_counter()
    r = decode_clip(path, WORKFLOW)
    elapsed = time.perf_counter() - t0
    statuses, phrase = EXPECTED[name]
    assert elapsed < 2.0, (name, elapsed)
    assert r.status in statuses, (name, r.status, r.reason)
    assert phrase in (r.reason or ""), (name, r.reason)
    _clean(r.reason, path)
    if r.status in ("ok", "overlong"):
        assert len(r.frames) == WORKFLOW.frames and max(r.timestamps) < WORKFLOW.max_duration
    else:
        assert not r.frames and r.reason


def test_trailing_garbage_is_not_read(garbage_clip: Path) -> None:
    t0 = time.perf_counter()
    r = decode_clip(garbage_clip, WORKFLOW)
    assert time.perf_counter() - t0 < 2.0
    assert r.status == "ok" and len(r.frames) == WORKFLOW.frames


def test_moov_check_reads_only_top_level_headers(tmp_path: Path) -> None:
    """The moov-size check passes valid clips with moov last or first, judges only
    moov, and gives up (leaving the verdict to FFmpeg) after 64 top-level boxes."""
    plain = hostile_media.valid_clip(tmp_path / "plain.mp4")  # mdat before moov
    fast = hostile_media.valid_clip(tmp_path / "fast.mp4", faststart=True)
    for path in (plain, fast):
        assert decode_clip(path, WORKFLOW).status == "ok"
    # 70 free boxes between mdat and a lying moov (chunk offsets stay right): the
    # check stops before the moov and FFmpeg decides (it reads the clip whole)
    data = plain.read_bytes()
    ((a, _),) = hostile_media.find(data, [b"moov"])
    padding = hostile_media.box(b"free", b"") * 70
    lying = bytearray(data[:a] + padding + data[a:])
    lying[a + len(padding) : a + len(padding) + 4] = (0x7FFFFFF0).to_bytes(4, "big")
    (tmp_path / "lying.mp4").write_bytes(bytes(lying))
    assert decode_clip(tmp_path / "lying.mp4", WORKFLOW).status == "ok"
    data = fast.read_bytes()
    ((a, _),) = hostile_media.find(data, [b"moov"])
    close = bytearray(data)
    close[a : a + 4] = (0x7FFFFFF0).to_bytes(4, "big")
    (tmp_path / "close.mp4").write_bytes(bytes(close))
    r = decode_clip(tmp_path / "close.mp4", WORKFLOW)
    assert r.status == "corrupt" and "more than the file holds" in (r.reason or "")


def test_public_readers_reject_hostile_files(hostile: dict[str, Path]) -> None:
    limits = Limits(timeout=10)
    for name in ("stts_bomb", "frame_16000", "moov_largesize", "audio_only"):
        t0 = time.perf_counter()
        with pytest.raises(VideoError):
            list(iter_frames(hostile[name], limits=limits))
        with pytest.raises(VideoError):
            frames_at(hostile[name], [0.5, 1.0], limits=limits)
        assert time.perf_counter() - t0 < 2.0, name
    assert probe(hostile["audio_only"]).has_video is False


def test_predict_reads_video_through_the_bounded_decoder(hostile: dict[str, Path]) -> None:
    """`crossemotion predict` on a clip file: the same limits, a clear error."""
    from crossemotion.models.vision import read_video

    for name in ("frame_16000", "truncated", "audio_only"):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=f"cannot read video {name}.mp4: "):
            read_video(hostile[name], 8)
        assert time.perf_counter() - t0 < 2.0, name
    frames = read_video(hostile["fps_1e-5"], 8)  # overlong: its first 30 s, bounded
    assert len(frames) == 8 and frames[0].shape == (360, 480, 3)


def test_shard_of_hostile_files(hostile: dict[str, Path], garbage_clip: Path,
                                tmp_path: Path) -> None:  # fmt: skip
    """The workflow's own path: one shard through the worker pool, every clip a status."""
    files = {**hostile, "garbage": garbage_clip}
    rows = pl.DataFrame({"file": [str(p) for p in files.values()], "key": list(files)})
    status = decode_shard(rows, WORKFLOW, tmp_path / "c.parquet", tmp_path / "s.parquet",
                          workers=2)  # fmt: skip
    got = dict(zip(status["key"], status["status"], strict=True))
    for name, (statuses, _) in EXPECTED.items():
        assert got[name] in statuses, (name, got[name])
    assert got["garbage"] == "ok"
    assert status["decode_seconds"].max() < 2.0
    usable = pl.read_parquet(tmp_path / "c.parquet")
    assert usable.height == sum(s in ("ok", "overlong") for s in got.values())


# -- the pool's hard deadline ---------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_pool_kills_a_call_past_its_deadline_and_replaces_the_worker() -> None:
    with WorkerPool(1) as pool:
        (before,) = pool.pids()
        t0 = time.perf_counter()
        with pytest.raises(WorkerTimeout):
            pool.call(time.sleep, 30, timeout=0.5)
        assert time.perf_counter() - t0 < 3
        (after,) = pool.pids()
        assert after != before and not _alive(before)
        assert pool.call(abs, -3, timeout=30) == 3  # the replacement serves
        with pytest.raises(WorkerCrashed, match="exit status 7"):
            pool.call(os._exit, 7, timeout=30)
        with pytest.raises(ZeroDivisionError):  # the worker's exception, raised here
            pool.call(divmod, 1, 0, timeout=30)
        assert pool.replaced == 2
        pids = pool.pids()
    assert not any(_alive(pid) for pid in pids)  # closing stops every worker


def test_pool_caps_a_workers_memory() -> None:
    with WorkerPool(1, memory_mb=1024) as pool, pytest.raises(MemoryError):
        pool.call(bytearray, 2 * 1024**3, timeout=30)


# -- the API --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from tests.test_serving import MODEL_CONFIGS, start_server, write_checkpoint

    models = tmp_path_factory.mktemp("models")
    write_checkpoint(models, "c3d", "meld", MODEL_CONFIGS[("c3d", "meld")])
    yield from start_server(models, tmp_path_factory.mktemp("server"))


def _post_head_only(url: str, path: Path) -> int:
    """POST the file as a multipart upload, declaring its full length but sending only
    its first MB, and return the status the server answers without reading the rest."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "hostile-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + path.stat().st_size + len(tail)
    request = (f"POST /v1/predict/video HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
               f"multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
               "Connection: close\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=30) as sock, path.open("rb") as fh:
        sock.sendall(request + head + fh.read(1024 * 1024))
        answer = sock.recv(4096).decode("latin-1")
    return int(answer.split(" ", 2)[1])


@pytest.mark.slow
def test_api_answers_hostile_uploads_while_health_stays_up(
    clip_server: object, hostile: dict[str, Path], garbage_clip: Path
) -> None:
    server = clip_server
    url: str = server.url  # type: ignore[attr-defined]
    health_ms: list[float] = []
    stop = threading.Event()

    def poll_health() -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert c.get("/health").status_code == 200
                health_ms.append(1000 * (time.perf_counter() - t0))
                time.sleep(0.05)

    def upload(name: str) -> tuple[str, int, str]:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post(
                "/v1/predict/video",
                files={"file": ("clip.mp4", hostile[name].read_bytes(), "video/mp4")},
            )
        return name, r.status_code, r.text  # fmt: skip

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(upload, sorted(EXPECTED) * 2))
        big = _post_head_only(url, garbage_clip)
    finally:
        stop.set()
        poller.join(timeout=15)
    for name, code, text in answers:
        assert 400 <= code < 500, (name, code, text)
        assert "/tmp" not in text and " @ 0x" not in text, text
    assert big == 413
    assert health_ms and max(health_ms) < 1000, sorted(health_ms)[-5:]
    assert server.proc.poll() is None  # type: ignore[attr-defined]
    assert server.leftover_files() == []  # type: ignore[attr-defined]
    # the decode pool kept its size: workers killed or crashed were replaced, not added
    pid = server.proc.pid  # type: ignore[attr-defined]
    children = [kid for task in Path(f"/proc/{pid}/task").iterdir()
                for kid in (task / "children").read_text().split()]  # fmt: skip
    assert len(children) == 2, children

"""The datasets layer: one decode per JPEG, bad images left out, the codec, shared detectors."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from crossemotion import codec
from crossemotion.datasets import clips, faces
from crossemotion.datasets.clips import ClipDataset
from crossemotion.datasets.collate import stack_collate
from crossemotion.datasets.faces import FaceDataset
from crossemotion.ingest.faces.detect import shared_detector
from crossemotion.labels import EMOTIONS
from crossemotion.model_config import ClipConfig, FaceConfig
from tests.vision_fixtures import class_image

BAD = b"\xff\xd8 not a jpeg"


def _jpegs(n: int, size: int = 40, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [codec.encode_jpeg(class_image(i % 7, size, rng, i)) for i in range(n)]


def _clip_frame(clip_frames: list[list[bytes]]) -> pl.DataFrame:
    n = len(clip_frames)
    return pl.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "key": [f"dia{i}_utt0" for i in range(n)],
            "split": ["train"] * n,
            "speaker": ["Ross"] * n,
            "character": ["Ross"] * n,
            "label": [EMOTIONS[i % 7] for i in range(n)],
            "frames": clip_frames,
        },
        schema_overrides={"frames": pl.List(pl.Binary)},
    )


def _face_frame(images: list[bytes]) -> pl.DataFrame:
    n = len(images)
    return pl.DataFrame(
        {
            "id": [f"f{i}" for i in range(n)],
            "key": [f"dia{i}_utt0" for i in range(n)],
            "label": [EMOTIONS[i % 7] for i in range(n)],
            "image": images,
        }
    )


class _Counting:
    """Counts calls of the decoder a datasets module uses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        self.calls = 0
        real = codec.decode_jpeg

        def decode(data: bytes) -> np.ndarray:
            self.calls += 1
            return real(data)

        monkeypatch.setattr(module, "decode_jpeg", decode)


def test_clip_dataset_decodes_each_frame_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    frames = _jpegs(30)
    rows = [frames[0:5], frames[5:10], [*frames[10:12], BAD, *frames[13:15]], [], frames[15:30]]
    cfg = {"frames": 3, "size": 24}
    counter = _Counting(monkeypatch, clips)
    with caplog.at_level(logging.WARNING):
        ds = ClipDataset(_clip_frame(rows), ClipConfig.from_mapping(cfg))
    # the clip with a bad frame goes although the frame is not one of the 3 sampled
    assert ds.meta["id"].to_list() == ["c0", "c1", "c4"]
    assert ds.labels.tolist() == [0, 1, 4]
    assert "dropping 1 of 4 rows with undecodable frames" in caplog.text
    # the check decoded every frame of every clip; nothing is decoded again afterwards
    assert counter.calls == 5 + 5 + 3 + 15
    items = [ds[i]["frames"] for i in range(len(ds)) for _ in range(2)]
    assert counter.calls == 28
    # ... and the items are what decoding on access gives (the path without a cache)
    uncached = ClipDataset(_clip_frame(rows), ClipConfig.from_mapping(cfg, cache_mb=0))
    for i in range(len(ds)):
        assert torch.equal(items[2 * i], uncached[i]["frames"])
        assert items[2 * i].shape == (3, 3, 24, 24) and items[2 * i].dtype == torch.uint8


def test_clip_dataset_speaker_crops_match_on_access() -> None:
    frames = _jpegs(8, size=64)
    rows = [frames[:4], frames[4:]]
    boxes = {"dia0_utt0": {0: (10, 12, 20, 20), 3: (30, 20, 16, 16)}, "dia1_utt0": {}}
    cfg = {"frames": 2, "size": 16}
    cached = ClipDataset(_clip_frame(rows), ClipConfig.from_mapping(cfg), boxes=boxes)
    fresh = ClipDataset(_clip_frame(rows), ClipConfig.from_mapping(cfg, cache_mb=0), boxes=boxes)
    assert cached.cache is not None and len(cached.cache.items) == 2
    for i in range(2):
        assert torch.equal(cached[i]["frames"], fresh[i]["frames"])
    full = ClipDataset(_clip_frame(rows), ClipConfig.from_mapping(cfg, cache_mb=0))
    # the clip with boxes is cropped, the one without stays a full frame
    assert not torch.equal(cached[0]["frames"], full[0]["frames"])
    assert torch.equal(cached[1]["frames"], full[1]["frames"])


def test_face_dataset_decodes_each_image_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    images = _jpegs(6)
    images[2] = BAD
    counter = _Counting(monkeypatch, faces)
    with caplog.at_level(logging.WARNING):
        ds = FaceDataset(_face_frame(images), FaceConfig(size=32))
    assert ds.meta["id"].to_list() == ["f0", "f1", "f3", "f4", "f5"]
    assert ds.labels.tolist() == [0, 1, 3, 4, 5]
    assert "dropping 1 of 6 rows with undecodable image" in caplog.text
    assert counter.calls == 6
    batch = stack_collate([ds[i] for i in range(len(ds))])
    assert counter.calls == 6
    for i, data in enumerate(images[:2] + images[3:]):
        expected = codec.normalize(codec.to_uint8_chw(codec.decode_jpeg(data), 32))
        assert torch.equal(batch["image"][i], expected)


def test_a_full_cache_decodes_the_rest_on_access(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _jpegs(5)
    counter = _Counting(monkeypatch, faces)
    # room for two 3x32x32 uint8 images
    ds = FaceDataset(_face_frame(images), FaceConfig(size=32, cache_mb=2 * 3 * 32 * 32 / 2**20))
    assert ds.cache is not None and sorted(ds.cache.items) == [0, 1]
    assert counter.calls == 5
    for i in range(5):
        ds[i]
    assert counter.calls == 8


def test_codec_round_trip_and_errors(tmp_path: Path) -> None:
    # smooth, with channels far apart: a swapped channel order would show
    ramp = np.linspace(0, 1, 48)
    rgb = np.stack(
        np.broadcast_arrays(200 * ramp[:, None], 60 + 0 * ramp[None], 30 + 150 * ramp[None]), -1
    ).astype(np.uint8)
    data = codec.encode_jpeg(rgb, 95)
    back = codec.decode_jpeg(data)
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 3
    # the BGR form of the same pixels gives the same file
    assert codec.encode_jpeg(np.ascontiguousarray(rgb[..., ::-1]), 95, bgr=True) == data
    assert np.array_equal(codec.load_image(data), back)
    with pytest.raises(ValueError, match="undecodable"):
        codec.decode_jpeg(BAD)
    # files: RGB by default, OpenCV's BGR on request, None when they do not decode
    path, junk = tmp_path / "face.jpg", tmp_path / "junk.jpg"
    path.write_bytes(data)
    junk.write_bytes(BAD)
    assert np.array_equal(codec.read_image(path), back)
    assert np.array_equal(codec.read_image(path, bgr=True), back[..., ::-1])
    assert np.array_equal(codec.load_image(path), back)
    assert codec.read_image(junk) is None
    with pytest.raises(ValueError, match="cannot read image"):
        codec.load_image(tmp_path / "missing.jpg")
    face = codec.pil_face_tensor(data, 24)
    assert face.shape == (3, 24, 24) and face.dtype == torch.float32


def test_shared_detector_is_built_once_per_thread_and_settings() -> None:
    first = shared_detector("haar")
    assert shared_detector("haar") is first
    assert shared_detector("haar", min_size=40) is not first
    assert shared_detector("haar", min_size=40) is shared_detector("haar", min_size=40)
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(shared_detector("haar")))
    thread.start()
    thread.join()
    assert other[0] is not first

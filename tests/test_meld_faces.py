"""Speaker face crops from sampled MELD frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from crossemotion.ingest.faces.crops import FaceSettings, faces_shard, square_crop
from crossemotion.ingest.faces.detect import Detection
from crossemotion.ingest.ifeed.members import FACE_SHARD_SCHEMA
from crossemotion.ingest.video.decode import CLIP_SCHEMA
from crossemotion.synth.faces import SceneRenderer, random_scene


def _jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_square_crop_pads_at_the_border() -> None:
    img = np.full((60, 80, 3), 200, np.uint8)
    crop = square_crop(img, Detection(0, 0, 20, 30, 1.0), margin=0.5, size=32)
    assert crop.shape == (32, 32, 3)
    assert crop[0, 0].max() == 0 and crop[-1, -1].min() == 200  # padded corner, face corner
    inside = square_crop(img, Detection(30, 20, 10, 10, 1.0), margin=0.2, size=16)
    assert inside.shape == (16, 16, 3) and inside.min() == 200


def test_faces_shard_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    spec = random_scene("Ross", "joy", 0.9, rng, second_face_p=0.0)
    face_frame, _box = SceneRenderer(spec, 320, 240).frame(0, rng)
    blank = np.full((240, 320, 3), 90, np.uint8)
    row = {
        "split": "dev",
        "dialogue_id": 4,
        "utterance_id": 2,
        "key": "dia4_utt2",
        "speaker": "Ross",
        "character": "Ross",
        "label": "joy",
        "sentiment": "positive",
        "text": "hi",
        "season": 1,
        "episode": 2,
        "start_time": None,
        "end_time": None,
        "file": "x/dia4_utt2.mp4",
        "duration": 1.0,
        "fps": 10.0,
        "width": 320,
        "height": 240,
        "has_audio": True,
        "overlong": False,
        "timestamps": [0.25, 0.75],
        "frames": [_jpeg(blank), _jpeg(face_frame)],
    }
    clips = tmp_path / "clips.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=CLIP_SCHEMA), clips)
    out = tmp_path / "faces.parquet"
    counts = faces_shard(clips, out, FaceSettings(size=48, margin=0.15, min_size=24))
    faces = pl.scan_parquet(out).collect()
    assert pq.read_schema(out).equals(FACE_SHARD_SCHEMA)
    assert counts.row(0, named=True)["faces_found"] == faces.height == 1
    face = faces.row(0, named=True)
    assert face["id"] == "dia4_utt2_f1" and face["frame_index"] == 1
    assert face["dataset"] == "meld" and face["character"] == "Ross" and face["label"] == "joy"
    assert face["n_faces"] >= 1 and len(face["bbox"]) == 4
    img = cv2.imdecode(np.frombuffer(face["image"], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (48, 48, 3)

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


def _clip_row(frames: list[np.ndarray]) -> dict:
    return {
        "split": "dev", "dialogue_id": 4, "utterance_id": 2, "key": "dia4_utt2",
        "speaker": "Ross", "character": "Ross", "label": "joy", "sentiment": "positive",
        "text": "hi", "season": 1, "episode": 2, "start_time": None, "end_time": None,
        "file": "x/dia4_utt2.mp4", "duration": 1.0, "fps": 10.0, "width": 320,
        "height": 240, "has_audio": True, "overlong": False,
        "timestamps": [0.25 * (i + 1) for i in range(len(frames))],
        "frames": [_jpeg(f) for f in frames],
    }  # fmt: skip


def test_faces_shard_keeps_box_landmarks_score_and_aligns(tmp_path: Path) -> None:
    """Each row keeps the detector's box, five landmarks and score: the aligned crop
    can be made again from the clip's frame without detecting; align: false and
    haar give the square box crop."""
    from dataclasses import replace

    from crossemotion.codec import decode_jpeg
    from crossemotion.ingest.faces.align import face_crop

    rng = np.random.default_rng(8)
    spec = replace(random_scene("Ross", "joy", 0.9, rng, second_face_p=0.0), angle=25.0)
    frame, _box = SceneRenderer(spec, 320, 240).frame(0, rng)
    clips = tmp_path / "clips.parquet"
    pq.write_table(pa.Table.from_pylist([_clip_row([frame])], schema=CLIP_SCHEMA), clips)
    decoded = decode_jpeg(_jpeg(frame))  # the frame as the faces stage reads it

    rows = {}
    for name, settings in {
        "aligned": FaceSettings(size=64, margin=0.15, min_size=16),
        "square": FaceSettings(size=64, margin=0.15, min_size=16, align=False),
    }.items():
        out = tmp_path / f"{name}.parquet"
        faces_shard(clips, out, settings)
        table = pl.read_parquet(out)
        assert table.height == 1, name
        rows[name] = (settings, table.row(0, named=True))

    settings, row = rows["aligned"]
    x, y, w, h = row["bbox"]
    points = np.asarray(row["landmarks"], np.float32).reshape(5, 2)
    assert 0.6 <= row["score"] <= 1.0
    assert ((points[:, 0] >= x) & (points[:, 0] <= x + w)).all()
    assert ((points[:, 1] >= y) & (points[:, 1] <= y + h)).all()
    det = Detection(x, y, w, h, row["score"], tuple((float(a), float(b)) for a, b in points))
    stored = decode_jpeg(row["image"]).astype(np.float32)

    def off(crop: np.ndarray) -> float:
        return float(np.abs(crop.astype(np.float32) - stored).mean())

    # the same crop up to JPEG noise; a crop 3 px off differs clearly more
    moved = replace(det, landmarks=tuple((a + 3.0, b) for a, b in det.landmarks))
    same = off(face_crop(decoded, det, 64, align=True, margin=0.15))
    assert same < 6.0 and same < 0.5 * off(face_crop(decoded, moved, 64, align=True, margin=0.15))
    # aligned: the eyes level in the crop although the head is tilted 25 degrees
    eyes = get_eye_line(stored.astype(np.uint8))
    assert abs(eyes) < 6.0, eyes
    # align: false keeps the same detection but crops the square box, tilted
    _, square = rows["square"]
    assert square["bbox"] == row["bbox"] and square["landmarks"] == row["landmarks"]
    square_img = decode_jpeg(square["image"])
    assert off_square(square_crop(decoded, det, 0.15, 64), square_img) < 6.0
    assert abs(get_eye_line(square_img)) > 15.0
    # haar (an upright face: it misses the tilted one): no landmarks, the square crop
    upright, _ = SceneRenderer(replace(spec, angle=0.0), 320, 240).frame(0, rng)
    pq.write_table(pa.Table.from_pylist([_clip_row([upright])], schema=CLIP_SCHEMA), clips)
    haar_settings = FaceSettings(detector="haar", size=64, margin=0.15, min_size=16)
    faces_shard(clips, tmp_path / "haar.parquet", haar_settings)
    haar = pl.read_parquet(tmp_path / "haar.parquet").row(0, named=True)
    assert haar["landmarks"] is None and len(haar["bbox"]) == 4
    hx, hy, hw, hh = haar["bbox"]
    square_haar = square_crop(decode_jpeg(_jpeg(upright)), Detection(hx, hy, hw, hh, 1.0), 0.15, 64)
    assert off_square(square_haar, decode_jpeg(haar["image"])) < 6.0


def off_square(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def get_eye_line(crop: np.ndarray) -> float:
    """The eyes' angle (degrees) in a crop, from the learned detector run on it enlarged."""
    import math

    from crossemotion.ingest.faces.detect import get_detector

    big = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC)
    found = get_detector("retinaface", min_size=16, max_side=None).detect(big)
    assert found, "no face in the crop"
    (lx, ly), (rx, ry) = found[0].landmarks[:2]
    return math.degrees(math.atan2(-(ry - ly), rx - lx))

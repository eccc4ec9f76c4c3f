"""The one face crop (crossemotion.ingest.faces.align): a similarity warp from five
landmarks onto the ArcFace template, else the square box crop."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from crossemotion.ingest.faces.align import (
    ARCFACE_112,
    alignment_matrix,
    face_crop,
    similarity,
    square_crop,
    template,
)
from crossemotion.ingest.faces.detect import Detection


def _rotation(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), shift[0]],
         [scale * math.sin(a), scale * math.cos(a), shift[1]]]
    )  # fmt: skip


def test_similarity_recovers_a_known_transform() -> None:
    m = _rotation(27.0, 0.6, (13.0, -4.0))
    src = ARCFACE_112 * 2.1 + 40.0
    dst = src @ m[:, :2].T + m[:, 2]
    found = similarity(src, dst)
    assert found is not None and np.allclose(found, m, atol=1e-9)
    assert similarity(np.full((5, 2), 3.0), dst) is None  # degenerate points


def test_template_points_land_in_the_crop_and_margin_zooms_out() -> None:
    tight, loose = template(64), template(64, margin=0.2)
    assert np.allclose(tight, ARCFACE_112 * 64 / 112)
    spread = lambda p: float(np.ptp(p[:, 0]))  # noqa: E731
    assert math.isclose(spread(tight) / spread(loose), 1.4, rel_tol=1e-9)
    assert ((loose > 0) & (loose < 64)).all()


def test_face_crop_warps_landmarks_onto_the_template() -> None:
    """Marks drawn at rotated template points come out at the template points."""
    size, margin = 96, 0.2
    m = _rotation(-25.0, 1.7, (120.0, 60.0))
    points = ARCFACE_112 @ m[:, :2].T + m[:, 2]
    image = np.zeros((360, 480, 3), np.uint8)
    for x, y in points:
        image[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] = 255
    det = Detection(100, 50, 200, 220, 0.99, tuple((float(x), float(y)) for x, y in points))
    crop = face_crop(image, det, size, align=True, margin=margin)
    assert crop.shape == (size, size, 3)
    for x, y in template(size, margin):
        patch = crop[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3]
        assert patch.max() > 100, (x, y)  # the mark is there
    warp = alignment_matrix(det, size, margin)
    assert warp is not None
    assert np.allclose(points @ warp[:, :2].T + warp[:, 2], template(size, margin), atol=1e-6)


def test_without_landmarks_or_align_the_crop_is_the_square_box() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    box = Detection(40, 30, 50, 60, 0.9)
    expected = square_crop(image, box, 0.2, 48)
    assert np.array_equal(face_crop(image, box, 48, margin=0.2), expected)
    marked = Detection(40, 30, 50, 60, 0.9, tuple((50.0 + 7 * i, 50.0 + 3 * i) for i in range(5)))
    assert np.array_equal(face_crop(image, marked, 48, align=False, margin=0.2), expected)
    nan = Detection(40, 30, 50, 60, 0.9, ((math.nan, 1.0),) * 5)
    assert np.array_equal(face_crop(image, nan, 48, margin=0.2), expected)


def test_ifeed_faces_aligned_where_a_face_is_found(tmp_path: Path) -> None:
    """IFEED's tight crops: the face found is warped as MELD's (box, landmarks and
    score kept, edges repeated rather than black); an image without one is
    centre-cropped as before."""
    import polars as pl

    from crossemotion.codec import decode_jpeg
    from crossemotion.ingest.faces.crops import FaceSettings
    from crossemotion.ingest.ifeed.members import build_manifest, square_face, write_face_shards
    from crossemotion.synth.faces import SceneRenderer, random_scene

    rng = np.random.default_rng(4)
    spec = replace(random_scene("Rachel", "sadness", 0.8, rng, second_face_p=0.0), angle=-22.0)
    frame, (x, y, w, h) = SceneRenderer(spec, 320, 240).frame(0, rng)
    # IFEED's framing: a little beyond the face box, taller than wide
    tight = frame[max(0, y - h // 8) : y + h + h // 8, max(0, x - w // 10) : x + w + w // 10]
    folder = tmp_path / "IFEED_Base" / "Training" / "dia3_utt1"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "frame2_Rachel_sad.jpg"), cv2.cvtColor(tight, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "frame4_Rachel_sad.jpg"), np.full((96, 80, 3), 120, np.uint8))
    records = build_manifest(tmp_path)
    aligner = FaceSettings(size=64, margin=0.15).ifeed_aligner()
    assert aligner is not None
    assert FaceSettings(align=False).ifeed_aligner() is None
    assert FaceSettings(detector="haar").ifeed_aligner() is None  # no landmarks
    written = write_face_shards(
        records, tmp_path, tmp_path / "out", face_size=64, n_shards=1, aligner=aligner
    )
    (shard,) = [p for p in written if "train" in str(p)]
    rows = {r["frame_index"]: r for r in pl.read_parquet(shard).iter_rows(named=True)}
    face, blank = rows[2], rows[4]
    assert len(face["landmarks"]) == 10 and face["score"] >= 0.6 and face["n_faces"] >= 1
    bx, by, bw, bh = face["bbox"]
    assert 0.5 * tight.shape[0] < bh <= 1.3 * tight.shape[0]
    points = np.asarray(face["landmarks"]).reshape(5, 2)
    assert ((points[:, 0] >= bx) & (points[:, 0] <= bx + bw)).all()
    crop = decode_jpeg(face["image"])
    assert crop.shape == (64, 64, 3)
    assert (crop.reshape(-1, 3).max(axis=1) < 12).mean() < 0.01  # no black bars
    # the eyes level in the aligned crop: the tilted face was turned upright
    rgb_tight = cv2.cvtColor(cv2.imread(str(folder / "frame2_Rachel_sad.jpg")), cv2.COLOR_BGR2RGB)
    det = Detection(bx, by, bw, bh, 1.0, tuple((float(a), float(b)) for a, b in points))
    again = face_crop(rgb_tight, det, 64, margin=0.15, border="replicate")
    assert np.abs(again.astype(np.float32) - crop.astype(np.float32)).mean() < 6.0
    eye_l, eye_r = template(64, 0.15)[:2]
    assert abs(eye_l[1] - eye_r[1]) < 0.5
    # no face: the centre crop of the whole image, as without an aligner
    assert blank["landmarks"] is None and blank["bbox"] == [0, 0, 80, 96]
    assert np.abs(decode_jpeg(blank["image"]).astype(int)
                  - square_face(np.full((96, 80, 3), 120, np.uint8), 64)).max() <= 2  # fmt: skip

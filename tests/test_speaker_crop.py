"""Speaker windows of the clip models: box windows, aligned windows (upright, one place
in every frame), and the same windows in training and in serving."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
import torch

from crossemotion.codec import IMAGENET_MEAN, IMAGENET_STD, encode_jpeg
from crossemotion.datasets.clips import ClipDataset
from crossemotion.datasets.speaker_crop import (
    FACE_CENTRE_112,
    FACE_SIDE_112,
    Window,
    clip_windows,
    crop_mode,
    crop_window,
    face_of,
    speaker_detections,
    window_margin,
)
from crossemotion.inference import FaceStage
from crossemotion.ingest.faces.align import alignment_matrix
from crossemotion.ingest.faces.crops import FaceSettings, clip_faces
from crossemotion.ingest.faces.detect import Detection, get_detector
from crossemotion.labels import EMOTIONS
from crossemotion.model_config import ClipConfig
from crossemotion.models.vision import clip_tensor, clip_unit
from crossemotion.serving.service import Service
from crossemotion.serving.settings import Settings

SCALE = 1.45


def test_faces_by_key_and_frame_keep_their_landmarks():
    points = [float(v) for v in range(10)]
    faces = pl.DataFrame(
        {
            "key": ["a", "a", "b"],
            "frame_index": [0, 3, 1],
            "bbox": [[10, 20, 30, 40], [12, 20, 30, 40], [0, 0, 5, 5]],
            "landmarks": [points, None, None],
        }
    )
    found = speaker_detections(faces)
    assert {k: {i: f.box for i, f in v.items()} for k, v in found.items()} == {
        "a": {0: (10, 20, 30, 40), 3: (12, 20, 30, 40)},
        "b": {1: (0, 0, 5, 5)},
    }
    assert found["a"][0].landmarks == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    assert found["a"][3].landmarks == ()
    # a shard without the column (box windows only) reads too
    assert speaker_detections(faces.drop("landmarks"))["a"][0].landmarks == ()


def test_missing_frames_take_the_nearest_box_and_one_side_per_clip():
    boxes = {1: (100, 50, 40, 40), 5: (200, 60, 50, 50)}
    windows = clip_windows(boxes, 7, scale=2.0)
    assert len(windows) == 7 and all(w is not None and not w.aligned for w in windows)
    sides = {w.box[2] for w in windows if w}
    assert sides == {90}  # median box side 45, times 2
    assert windows[0] == windows[1] == windows[2]  # frames 0 and 2 are nearest to frame 1
    assert windows[6] == windows[5]
    x, y, side, _ = windows[5].box  # type: ignore[union-attr]
    assert (x + side / 2, y + side / 2) == (225, 85)  # centred on the box


def test_clip_without_faces_keeps_full_frames():
    assert clip_windows({}, 3, 1.8) == [None, None, None]
    image = np.zeros((20, 30, 3), np.uint8)
    assert crop_window(image, None) is image


def test_window_is_moved_then_shrunk_to_stay_inside_the_frame():
    image = np.arange(100 * 160 * 3, dtype=np.uint32).reshape(100, 160, 3)
    out = crop_window(image, Window((150, -10, 40, 40), side=40))
    assert out.shape[:2] == (40, 40)
    assert np.array_equal(out, image[0:40, 120:160])
    big = crop_window(image, Window((-50, -50, 500, 500), side=500))
    assert big.shape[:2] == (100, 100)


def test_unknown_crop_mode_is_refused():
    assert crop_mode(ClipConfig()) == "full"
    with pytest.raises(ValueError, match="crop"):
        crop_mode(ClipConfig(crop="face"))


# -- aligned windows on a real photograph -----------------------------------------------


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, Detection]:
    """matplotlib's portrait of Grace Hopper (shipped with the package) and its face."""
    from matplotlib import cbook

    path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    found = get_detector("retinaface").detect(rgb)
    assert found
    return rgb, found[0]


def _placed(
    photo: tuple[np.ndarray, Detection], tilt: float, height: float, at: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A 320 x 240 frame of the photo, its face ``height`` px high at ``at``, tilted by
    ``tilt`` degrees (counter-clockwise on screen), and the photo's eyes in it (the
    photo's own landmarks, found at full size, moved as the pixels were)."""
    rgb, face = photo
    centre = (face.x + face.w / 2, face.y + face.h / 2)
    m = cv2.getRotationMatrix2D(centre, tilt, height / face.h)
    m[:, 2] += np.array(at) - np.array(centre)
    frame = cv2.warpAffine(rgb, m, (320, 240), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    return frame, _moved(m, np.array(face.landmarks[:2]))


def _frame(
    photo: tuple[np.ndarray, Detection], tilt: float, height: float, at: tuple[int, int]
) -> np.ndarray:
    return _placed(photo, tilt, height, at)[0]


def _moved(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _angle(eyes: np.ndarray) -> float:
    """The angle of the line from the left to the right eye in degrees (0: level)."""
    (lx, ly), (rx, ry) = eyes
    return math.degrees(math.atan2(ry - ly, rx - lx))


def _window_warp(window: Window) -> np.ndarray:
    """The frame -> window warp ``crop_window`` applies to an aligned window."""
    assert window.face is not None
    m = alignment_matrix(window.face, window.side, window.margin, FACE_CENTRE_112)
    assert m is not None
    return m


def _eye_line(face: Detection) -> float:
    return _angle(np.array(face.landmarks[:2]))


def test_a_tilted_face_gives_an_upright_window(photo: tuple[np.ndarray, Detection]) -> None:
    """The photo tilted by 25 degrees either way, its face 60-100 px high: the aligned
    window turns it upright. What is left of the tilt is the detector's landmark
    error in the small frame (up to 8 degrees on the eye line there, measured): the
    true eyes in the window are level within 7 degrees each, 3 at the median (the
    full-size photo aligned on its own landmarks: 1.0)."""
    detector = get_detector("retinaface", min_size=16)
    left, again_left = [], []
    for tilt in (-25.0, 25.0):
        for height in (60, 80, 100):
            frame, eyes = _placed(photo, tilt, height, (150, 125))
            (face, *_) = detector.detect(frame)
            truth = _angle(eyes)  # the photo's own eye line (-0.5 degrees) turned
            assert abs(truth + tilt) < 1 and abs(_eye_line(face) - truth) < 10
            (window,) = clip_windows({0: face}, 1, SCALE, align=True)
            assert window is not None and window.aligned
            upright = crop_window(frame, window)
            side = round(SCALE * max(face.w, face.h))
            assert upright.shape == (side, side, 3)
            left.append(abs(_angle(_moved(_window_warp(window), eyes))))
            # the window's face found again: level too, and its box about
            # 1 / crop_scale of the window, as in the box window
            (again, *_) = detector.detect(upright)
            again_left.append(abs(_eye_line(again)))
            assert 0.8 < SCALE * max(again.w, again.h) / side < 1.2
    assert max(left) < 7 and float(np.median(left)) < 3, left
    assert float(np.median(again_left)) < 4, again_left


def test_aligned_windows_hold_the_face_at_one_place(photo: tuple[np.ndarray, Detection]) -> None:
    """Frames with the face moved, turned and scaled: in every aligned window the eyes
    are level and at the same place (within 4 % of the window): the head's motion is
    taken out, as a face crop's is."""
    detector = get_detector("retinaface", min_size=16)
    placed = [_placed(photo, tilt, h, at) for tilt, h, at in
              ((0, 80, (160, 120)), (20, 70, (120, 110)), (-15, 90, (200, 130)))]  # fmt: skip
    faces = {i: detector.detect(frame)[0] for i, (frame, _) in enumerate(placed)}
    windows = clip_windows(faces, 3, SCALE, align=True)
    where = []
    for (_, eyes), window in zip(placed, windows, strict=True):
        assert window is not None
        in_window = _moved(_window_warp(window), eyes)
        assert abs(_angle(in_window)) < 4
        where.append(in_window.mean(0) / window.side)
    assert (np.ptp(np.array(where), axis=0) < 0.04).all(), where
    # box windows follow the box instead: the eyes move in them
    boxed = []
    for (_, eyes), window in zip(placed, clip_windows(faces, 3, SCALE), strict=True):
        assert window is not None
        boxed.append((eyes.mean(0) - window.box[:2]) / window.side)
    assert np.ptp(np.array(boxed), axis=0).max() > 0.04


def test_align_false_and_faces_without_landmarks_keep_the_box_window(
    photo: tuple[np.ndarray, Detection],
) -> None:
    frame = _frame(photo, 25.0, 80, (150, 125))
    face = get_detector("retinaface", min_size=16).detect(frame)[0]
    bare = Detection(face.x, face.y, face.w, face.h, face.score)  # as Haar's
    side = round(SCALE * max(face.w, face.h))
    x = round(face.x + face.w / 2 - side / 2)
    y = round(face.y + face.h / 2 - side / 2)
    old = frame[y : y + side, x : x + side]  # the window before alignment existed
    for faces, align in (({0: face}, False), ({0: bare}, True), ({0: face.box}, True)):
        (window,) = clip_windows(faces, 1, SCALE, align=align)
        assert window is not None and not window.aligned
        assert np.array_equal(crop_window(frame, window), old)


def test_window_margin_matches_crop_scale() -> None:
    # the face box (FACE_SIDE_112 template units) fills 1 / crop_scale of the window
    for scale in (1.0, 1.3, 1.8):
        zoom = 1 + 2 * window_margin(scale)
        assert zoom * 112 / FACE_SIDE_112 == pytest.approx(scale)
    with pytest.raises(ValueError, match="crop_scale"):
        clip_windows({0: (0, 0, 10, 10)}, 1, 0.0)


def test_serving_cuts_the_windows_training_cuts(photo: tuple[np.ndarray, Detection]) -> None:
    """One clip through the workflow (faces stage -> faces-shard rows -> ClipDataset) and
    through the API's path (Service._speaker_faces -> clip_unit -> clip_tensor): the same
    aligned windows; and box windows with crop_align false."""
    # one face that turns and moves a little between the sampled frames: one track,
    # the speaker's (selector: track keeps the frames of one track)
    tilts = ((0, 80, (160, 120)), (12, 76, (166, 118)), (-10, 84, (156, 124)), (5, 80, (162, 121)))
    jpegs = [encode_jpeg(_frame(photo, t, h, at)) for t, h, at in tilts]
    row = {"split": "test", "dialogue_id": 0, "utterance_id": 0, "key": "dia0_utt0",
           "file": "dia0_utt0.mp4", "character": "Ross", "speaker": "Ross",
           "label": EMOTIONS[0], "frames": jpegs}  # fmt: skip
    settings = FaceSettings(detector="retinaface", size=32, min_size=16, max_per_frame=4)
    shard = pl.DataFrame(clip_faces(row, settings.build_detector(), settings))
    assert shard.height == len(jpegs)
    clips = pl.DataFrame(
        {"id": ["c0"], "key": ["dia0_utt0"], "split": ["test"], "speaker": ["Ross"],
         "character": ["Ross"], "label": [EMOTIONS[0]], "frames": [jpegs]},
        schema_overrides={"frames": pl.List(pl.Binary)},
    )  # fmt: skip
    service = Service(Settings())
    service.stage = FaceStage.of({"detector": "retinaface", "size": 32, "min_size": 16})
    from crossemotion.codec import decode_jpeg

    decoded = [decode_jpeg(j) for j in jpegs]
    _, boxes, marks = service._speaker_faces(decoded)
    unit = clip_unit(decoded, boxes, marks)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for align in (True, False):
        cfg = ClipConfig(frames=4, size=48, crop="speaker", crop_scale=SCALE, crop_align=align)
        trained = ClipDataset(clips, cfg, boxes=speaker_detections(shard)).clip_uint8(0)
        served = clip_tensor(unit, cfg.frames, cfg.size, cfg.crop_scale, cfg.crop_align)
        served_uint8 = (served * std + mean) * 255
        diff = (trained.float() - served_uint8).abs()
        # the API's landmarks are rounded to 0.1 px (and its boxes cut to the frame)
        assert diff.mean() < 2.0, (align, float(diff.mean()))
    full = clip_tensor(unit, 4, 48, None)
    assert (full - served).abs().mean() > 0.1  # the windows are windows


def test_face_of_reads_shard_rows() -> None:
    face = face_of([1, 2, 3, 4], [float(v) for v in range(10)])
    assert face.box == (1, 2, 3, 4) and len(face.landmarks) == 5
    assert face_of([1, 2, 3, 4], [1.0, 2.0]).landmarks == ()

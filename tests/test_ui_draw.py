"""The demo UI's drawing of the faces and its shipped, offline examples."""

from __future__ import annotations

import json

import numpy as np

from crossemotion.codec import load_image
from crossemotion.serving.examples import example_files
from crossemotion.serving.service import FaceResult
from crossemotion.serving.ui import LANDMARK_COLOUR, OTHER_COLOUR, SPEAKER_COLOUR, _draw_faces


def _has(image: np.ndarray, colour: tuple[int, int, int], ys: slice, xs: slice) -> bool:
    return bool((image[ys, xs] == np.array(colour, dtype=np.uint8)).all(-1).any())


def test_the_speakers_box_is_marked_and_every_face_drawn() -> None:
    rgb = np.zeros((360, 640, 3), np.uint8)
    speaker = FaceResult((100, 100, 120, 140), True, 0.99, [], ((140.0, 150.0),) * 5, True)
    other = FaceResult((400, 80, 60, 70), True, 0.9, [], (), False)
    shown = _draw_faces(rgb, [speaker, other])
    assert shown is not rgb and not rgb.any(), "the input image is left as it was"
    # the speaker's box edge is green, the bystander's yellow, landmarks red
    assert _has(shown, SPEAKER_COLOUR, slice(100, 102), slice(100, 220))
    assert not _has(shown, OTHER_COLOUR, slice(95, 245), slice(95, 225))
    assert _has(shown, OTHER_COLOUR, slice(80, 82), slice(400, 460))
    assert _has(shown, LANDMARK_COLOUR, slice(148, 153), slice(138, 143))
    # the speaker's box is drawn thicker and labelled
    speaker_px = (shown == np.array(SPEAKER_COLOUR, np.uint8)).all(-1).sum()
    other_px = (shown == np.array(OTHER_COLOUR, np.uint8)).all(-1).sum()
    assert speaker_px > 2 * other_px


def test_an_image_without_a_detected_face_gets_no_box() -> None:
    rgb = np.full((120, 160, 3), 30, np.uint8)
    whole = FaceResult((0, 0, 160, 120), False, None, [], (), False)
    np.testing.assert_array_equal(_draw_faces(rgb, [whole]), rgb)


def test_the_examples_are_cut_from_the_demo_generator() -> None:
    ex = example_files()
    assert load_image(ex.frame).shape == (360, 640, 3)
    assert load_image(ex.face).shape[2] == 3
    assert ex.clip.read_bytes()[4:8] == b"ftyp" and ex.clip_text
    meta = json.loads((ex.frame.parent / "examples.json").read_text())
    assert meta["made_by"] == "crossemotion.serving.examples" and meta["synth_seed"] == 11

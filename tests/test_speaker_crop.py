from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from crossemotion.datasets.speaker_crop import (
    clip_windows,
    crop_mode,
    crop_window,
    speaker_boxes,
)
from crossemotion.model_config import ClipConfig


def test_boxes_by_key_and_frame():
    faces = pl.DataFrame(
        {
            "key": ["a", "a", "b"],
            "frame_index": [0, 3, 1],
            "bbox": [[10, 20, 30, 40], [12, 20, 30, 40], [0, 0, 5, 5]],
        }
    )
    assert speaker_boxes(faces) == {
        "a": {0: (10, 20, 30, 40), 3: (12, 20, 30, 40)},
        "b": {1: (0, 0, 5, 5)},
    }


def test_missing_frames_take_the_nearest_box_and_one_side_per_clip():
    boxes = {1: (100, 50, 40, 40), 5: (200, 60, 50, 50)}
    windows = clip_windows(boxes, 7, scale=2.0)
    assert len(windows) == 7
    sides = {w[2] for w in windows if w}
    assert sides == {90}  # median box side 45, times 2
    assert windows[0] == windows[1] == windows[2]  # frames 0 and 2 are nearest to frame 1
    assert windows[6] == windows[5]
    x, y, side, _ = windows[5]
    assert (x + side / 2, y + side / 2) == (225, 85)  # centred on the box


def test_clip_without_faces_keeps_full_frames():
    assert clip_windows({}, 3, 1.8) == [None, None, None]
    image = np.zeros((20, 30, 3), np.uint8)
    assert crop_window(image, None) is image


def test_window_is_moved_then_shrunk_to_stay_inside_the_frame():
    image = np.arange(100 * 160 * 3, dtype=np.uint32).reshape(100, 160, 3)
    out = crop_window(image, (150, -10, 40, 40))
    assert out.shape[:2] == (40, 40)
    assert np.array_equal(out, image[0:40, 120:160])
    big = crop_window(image, (-50, -50, 500, 500))
    assert big.shape[:2] == (100, 100)


def test_unknown_crop_mode_is_refused():
    assert crop_mode(ClipConfig()) == "full"
    with pytest.raises(ValueError, match="crop"):
        crop_mode(ClipConfig(crop="face"))

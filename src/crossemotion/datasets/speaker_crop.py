"""Speaker-centred clips: crop every frame of a clip around the speaker's face.

A video model that sees the whole frame at the small sizes a CPU can train
(48-112 px) gets the expression from a face a few dozen pixels high among
background, bystanders and clutter. With ``crop: speaker`` the clip models
see a square window around the speaker's face box instead, keeping head,
shoulders and motion (the same window size over the clip, centred per frame),
as face-track pipelines for MELD do. The boxes come from the faces shards
(the same detector and speaker heuristic as the face models); a frame without
a detected face takes the box of the nearest frame that has one, and a clip
with no face at all stays a full frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from crossemotion.model_config import ClipConfig

Box = tuple[int, int, int, int]  # x, y, w, h


def crop_mode(cfg: ClipConfig) -> str:
    mode = cfg.crop
    if mode not in ("full", "speaker"):
        raise ValueError(f"crop must be 'full' or 'speaker', not {mode!r}")
    return mode


def speaker_boxes(faces: pl.DataFrame) -> dict[str, dict[int, Box]]:
    """key -> {frame index -> speaker face box} from MELD faces shard rows."""
    out: dict[str, dict[int, Box]] = {}
    rows = faces.select("key", "frame_index", "bbox").iter_rows()
    for key, index, bbox in rows:
        if bbox is not None and len(bbox) == 4:
            x, y, w, h = (int(v) for v in bbox)
            out.setdefault(key, {})[int(index)] = (x, y, w, h)
    return out


def clip_windows(boxes: Mapping[int, Box], n_frames: int, scale: float) -> list[Box | None]:
    """One square window per frame: the nearest detected box, one side for the clip."""
    if not boxes:
        return [None] * n_frames
    known = np.array(sorted(boxes))
    side = round(scale * float(np.median([max(w, h) for _, _, w, h in boxes.values()])))
    windows: list[Box | None] = []
    for i in range(n_frames):
        x, y, w, h = boxes[int(known[np.abs(known - i).argmin()])]
        cx, cy = x + w / 2.0, y + h / 2.0
        windows.append((round(cx - side / 2), round(cy - side / 2), side, side))
    return windows


def crop_window(image: np.ndarray, window: Box | None) -> np.ndarray:
    """The window, shifted (then shrunk) to fit inside the image; None keeps the image."""
    if window is None:
        return image
    height, width = image.shape[:2]
    x, y, side, _ = window
    side = max(1, min(side, width, height))
    x = min(max(0, x), width - side)
    y = min(max(0, y), height - side)
    return image[y : y + side, x : x + side]


def detect_boxes(images: Sequence[np.ndarray], detector: object) -> dict[int, Box]:
    """Speaker box per frame with a face, for clips that come without a faces shard."""
    out: dict[int, Box] = {}
    for i, image in enumerate(images):
        found = detector.detect(image)  # type: ignore[attr-defined]
        if found:
            out[i] = tuple(int(v) for v in found[0].box)  # type: ignore[assignment]
    return out

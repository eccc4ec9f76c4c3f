"""Inference preprocessing for the vision models: raw images and clips -> batch.

The same decoding and normalisation as training (crossemotion.training.shards),
so a checkpoint sees what it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from crossemotion.data.face_detect import get_detector
from crossemotion.training.shards import frame_indices, load_image, normalize, to_uint8_chw
from crossemotion.training.speaker_crop import (
    DEFAULT_SCALE,
    clip_windows,
    crop_mode,
    crop_window,
    detect_boxes,
)

ImageInput = str | Path | bytes | np.ndarray
ClipInput = str | Path | Sequence[ImageInput]


def read_video(path: str | Path, frames: int) -> list[np.ndarray]:
    """``frames`` evenly spaced RGB frames of a video file (decodes sequentially)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    all_frames = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            all_frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not all_frames:
        raise ValueError(f"no decodable frames in {path}")
    return [all_frames[i] for i in frame_indices(len(all_frames), frames)]


def preprocess_images(units: list[ImageInput], cfg: Mapping[str, Any]) -> dict[str, Tensor]:
    size = int(cfg.get("size", 224))
    images = torch.stack([normalize(to_uint8_chw(load_image(u), size)) for u in units])
    return {"image": images}


def clip_tensor(unit: ClipInput, t: int, size: int, crop_scale: float | None = None) -> Tensor:
    """A clip -> normalised [t, 3, size, size]; ``crop_scale`` set: speaker-centred."""
    if isinstance(unit, str | Path):
        imgs = read_video(unit, t)
    else:
        decoded = [load_image(f) for f in unit]
        imgs = [decoded[i] for i in frame_indices(len(decoded), t)]
    if crop_scale is not None:
        # the training crops came from the faces stage's detector; use the same
        windows = clip_windows(detect_boxes(imgs, get_detector("haar")), len(imgs), crop_scale)
        imgs = [crop_window(img, w) for img, w in zip(imgs, windows, strict=True)]
    return normalize(torch.stack([to_uint8_chw(img, size) for img in imgs]))


def preprocess_clips(units: list[ClipInput], cfg: Mapping[str, Any]) -> dict[str, Tensor]:
    t, size = int(cfg.get("frames", 8)), int(cfg.get("size", 112))
    scale = float(cfg.get("crop_scale", DEFAULT_SCALE)) if crop_mode(cfg) == "speaker" else None
    return {"frames": torch.stack([clip_tensor(u, t, size, scale) for u in units])}

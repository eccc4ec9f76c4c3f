"""Inference preprocessing for the vision models: raw images and clips -> batch.

The same decoding and normalisation as training (crossemotion.codec),
so a checkpoint sees what it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from crossemotion.codec import load_image, normalize, to_uint8_chw
from crossemotion.datasets.clips import clip_datasets
from crossemotion.datasets.collate import stack_collate
from crossemotion.datasets.shards import frame_indices
from crossemotion.datasets.speaker_crop import (
    clip_windows,
    crop_mode,
    crop_window,
    detect_speakers,
    face_of,
)
from crossemotion.ingest.faces.detect import DEFAULT_DETECTOR, Detection, shared_detector
from crossemotion.model_config import ClipConfig, FaceConfig
from crossemotion.models.registry import ModelSpec, ShardInputs

ImageInput = str | Path | bytes | np.ndarray
# a video file, its frames, or {"frames": [...], "boxes": {frame index: speaker box},
# "landmarks": {frame index: five (x, y) points}} (frames whose faces were already
# found, as the server has them; landmarks optional)
ClipInput = str | Path | Sequence[ImageInput] | Mapping[str, Any]


def clip_unit(
    frames: Sequence[np.ndarray],
    boxes: Sequence[tuple[int, int, int, int] | None],
    landmarks: Sequence[Sequence[tuple[float, float]]] = (),
) -> dict[str, Any]:
    """A clip whose speaker was already found: the frames, and per frame the speaker's
    box (None: no face) and landmarks (empty: none), as ``clip_tensor`` reads it."""
    return {
        "frames": list(frames),
        "boxes": {i: box for i, box in enumerate(boxes) if box is not None},
        "landmarks": {i: tuple(lm) for i, lm in enumerate(landmarks) if lm},
    }


def read_video(path: str | Path, frames: int) -> list[np.ndarray]:
    """``frames`` RGB frames of a video file, sampled as the workflow samples MELD clips
    (the pipeline decoder with its default settings and limits), then evenly picked."""
    from crossemotion.ingest.video.reader import DecodeSettings, decode_clip

    result = decode_clip(path, DecodeSettings(), as_rgb=True)
    if result.status not in ("ok", "overlong") or not result.frames:
        raise ValueError(f"cannot read video {Path(path).name}: {result.status}: {result.reason}")
    return [result.frames[i] for i in frame_indices(len(result.frames), frames)]


def preprocess_images(units: list[ImageInput], cfg: FaceConfig) -> dict[str, Tensor]:
    images = torch.stack([normalize(to_uint8_chw(load_image(u), cfg.size)) for u in units])
    return {"image": images}


def clip_tensor(
    unit: ClipInput, t: int, size: int, crop_scale: float | None = None, align: bool = False
) -> Tensor:
    """A clip -> normalised [t, 3, size, size]; ``crop_scale`` set: speaker-centred,
    windows cut as training cut them (``speaker_crop.clip_windows``, aligned with ``align``)."""
    known: dict[int, Detection] | None = None
    if isinstance(unit, str | Path):
        imgs = read_video(unit, t)
    else:
        frames = unit["frames"] if isinstance(unit, Mapping) else unit
        picked = frame_indices(len(frames), t)
        imgs = [load_image(frames[i]) for i in picked]
        if isinstance(unit, Mapping) and unit.get("boxes") is not None:
            found, marks = unit["boxes"], unit.get("landmarks") or {}
            known = {
                k: face_of(found[i], [v for p in marks.get(i, ()) for v in p])
                for k, i in enumerate(picked)
                if i in found
            }
    if crop_scale is not None:
        # the training windows came from the faces stage's detector (the workflow's
        # default unless the config named another); use the same
        if known is None:
            known = detect_speakers(imgs, shared_detector(DEFAULT_DETECTOR))
        windows = clip_windows(known, len(imgs), crop_scale, align)
        imgs = [crop_window(img, w) for img, w in zip(imgs, windows, strict=True)]
    return normalize(torch.stack([to_uint8_chw(img, size) for img in imgs]))


def preprocess_clips(units: list[ClipInput], cfg: ClipConfig) -> dict[str, Tensor]:
    scale = cfg.crop_scale if crop_mode(cfg) == "speaker" else None
    return {"frames": torch.stack(
        [clip_tensor(u, cfg.frames, cfg.size, scale, cfg.crop_align) for u in units]
    )}  # fmt: skip


def clip_spec(
    name: str, build: Callable[[Any, int], nn.Module], config: type[ClipConfig]
) -> ModelSpec:
    """The spec of a clip model: MELD clips (speaker windows from the faces shards),
    stacked batches, the clip preprocessing above; only the network differs."""

    def make_datasets(cfg: ClipConfig, dataset: str, shards: ShardInputs) -> dict[str, Dataset]:
        if dataset != "meld":
            raise ValueError(f"{name} trains on MELD clips, not {dataset!r}")
        return dict(clip_datasets(cfg, shards.clips, shards.faces))

    return ModelSpec(
        name=name,
        config=config,
        build=build,
        make_datasets=make_datasets,
        collate=stack_collate,
        preprocess=preprocess_clips,
    )

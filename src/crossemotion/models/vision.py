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
    detect_boxes,
)
from crossemotion.ingest.faces.detect import shared_detector
from crossemotion.model_config import ClipConfig, FaceConfig
from crossemotion.models.registry import ModelSpec, ShardInputs

ImageInput = str | Path | bytes | np.ndarray
# a video file, its frames, or {"frames": [...], "boxes": {frame index: speaker box}}
# (frames whose faces were already found, as the server has them)
ClipInput = str | Path | Sequence[ImageInput] | Mapping[str, Any]


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


def clip_tensor(unit: ClipInput, t: int, size: int, crop_scale: float | None = None) -> Tensor:
    """A clip -> normalised [t, 3, size, size]; ``crop_scale`` set: speaker-centred."""
    known: Mapping[int, Any] | None = None
    if isinstance(unit, str | Path):
        imgs = read_video(unit, t)
    else:
        frames = unit["frames"] if isinstance(unit, Mapping) else unit
        picked = frame_indices(len(frames), t)
        imgs = [load_image(frames[i]) for i in picked]
        if isinstance(unit, Mapping) and unit.get("boxes") is not None:
            found = unit["boxes"]
            known = {k: found[i] for k, i in enumerate(picked) if i in found}
    if crop_scale is not None:
        # the training crops came from the faces stage's detector; use the same
        boxes = known if known is not None else detect_boxes(imgs, shared_detector("haar"))
        windows = clip_windows(boxes, len(imgs), crop_scale)
        imgs = [crop_window(img, w) for img, w in zip(imgs, windows, strict=True)]
    return normalize(torch.stack([to_uint8_chw(img, size) for img in imgs]))


def preprocess_clips(units: list[ClipInput], cfg: ClipConfig) -> dict[str, Tensor]:
    scale = cfg.crop_scale if crop_mode(cfg) == "speaker" else None
    return {"frames": torch.stack([clip_tensor(u, cfg.frames, cfg.size, scale) for u in units])}


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

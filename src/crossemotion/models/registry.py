"""Registry mapping config model names to builders and their data adapters.

A model module registers a ``ModelSpec`` at import time; ``get_spec`` imports
the module named in ``MODULES`` on first use so only the requested model's
dependencies are loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the workflow reads INPUTS at parse time without importing torch
    from torch import nn
    from torch.utils.data import Dataset

# config name -> module that registers it (one model per file)
MODULES: dict[str, str] = {
    "cnn_lstm": "crossemotion.models.cnn_lstm",
    "c3d": "crossemotion.models.c3d",
    "resnet50": "crossemotion.models.resnet50",
    "text": "crossemotion.models.text",
    "fusion": "crossemotion.models.fusion",
}

# config name -> shard kinds its MELD job reads (equals each ModelSpec.inputs;
# kept here so models.smk can build rule inputs without importing torch).
# resnet50 reads MELD text only to count utterances without a detected face.
INPUTS: dict[str, tuple[str, ...]] = {
    "cnn_lstm": ("clips",),
    "c3d": ("clips",),
    "resnet50": ("faces", "text"),
    "text": ("text",),
    "fusion": ("faces", "text"),
}


@dataclass(frozen=True)
class ShardInputs:
    """Shard files a training job reads, by split (train/dev/test)."""

    clips: Mapping[str, list[Path]]
    faces: Mapping[str, list[Path]]
    text: Mapping[str, list[Path]]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # (model config, number of classes) -> module with forward(batch) -> logits
    build: Callable[[Mapping[str, Any], int], nn.Module]
    # (model config, dataset name, shard inputs) -> {split: Dataset}; every
    # Dataset has a ``meta`` polars DataFrame aligned with its indices
    # (id, key, split, speaker, character, label) for predictions.parquet.
    make_datasets: Callable[[Mapping[str, Any], str, ShardInputs], dict[str, Dataset]]
    # unit that inference timing reports per: "video", "image" or "utterance"
    unit: str
    # shard kinds the model reads, for the workflow's inputs
    inputs: tuple[str, ...]
    collate: Callable[[list[Any]], Any] | None = None
    # aggregate face-level outputs to utterances by ``key`` on MELD
    aggregate_by_key: bool = False
    # inference hook: (list of raw units, model config) -> batch dict for
    # forward(). A unit is an image (path, JPEG bytes or HxWx3 RGB uint8 array)
    # for "image" models, a clip (video path or list of frames) for "video"
    # models, a str for "text", {"text": str, "images": [JPEG bytes...]} for
    # fusion. See crossemotion.inference.
    preprocess: Callable[[list[Any], Mapping[str, Any]], dict[str, Any]] | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        if name not in MODULES:
            known = ", ".join(sorted(MODULES))
            raise KeyError(f"unknown model {name!r}; known models: {known}")
        importlib.import_module(MODULES[name])
    return _REGISTRY[name]


def build_model(name: str, cfg: Mapping[str, Any], num_classes: int) -> nn.Module:
    return get_spec(name).build(cfg, num_classes)

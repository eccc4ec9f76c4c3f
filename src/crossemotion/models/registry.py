"""The model table: static facts of every model, and the builders registered beside them.

``MODELS`` holds what is known of a model without importing torch (its module,
the shard kinds it reads, its unit, its serving kind, the resources of its
jobs): the workflow reads it while the DAG is built, serving and timing read it
too. A model module registers a ``ModelSpec`` (builder, datasets, hooks) at
import time, and the spec answers the static questions from ``MODELS`` so there
is one table. ``get_spec`` imports the module on first use, so only the
requested model's dependencies are loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crossemotion.layout import ShardInputs
from crossemotion.model_config import ModelConfig

if TYPE_CHECKING:  # the workflow reads MODELS at parse time without importing torch
    import polars as pl
    from torch import nn
    from torch.utils.data import Dataset

__all__ = ["MODELS", "ModelInfo", "ModelSpec", "ShardInputs", "get_spec", "register"]


@dataclass(frozen=True)
class ModelInfo:
    """What the workflow, serving and timing know of a model without building it."""

    module: str
    # unit that inference timing reports per: "video", "image" or "utterance"
    unit: str
    # shard kinds its MELD job reads; resnet50 reads MELD text only to count
    # utterances without a detected face
    inputs: tuple[str, ...]
    # what a served checkpoint takes (crossemotion.serving.models): face, clip, text, fusion
    serving_kind: str
    # default resources of its training job when the config sets none (MB, minutes)
    mem_mb: int
    runtime: int
    # scheduling priority of its training job: the longest start first
    priority: int = 0


MODELS: dict[str, ModelInfo] = {
    "cnn_lstm": ModelInfo(
        "crossemotion.models.cnn_lstm", "video", ("clips",), "clip", 6000, 240, priority=40
    ),
    "c3d": ModelInfo(
        "crossemotion.models.c3d", "video", ("clips",), "clip", 6000, 240, priority=30
    ),
    "resnet50": ModelInfo(
        "crossemotion.models.resnet50", "image", ("faces", "text"), "face", 6000, 180
    ),
    "text": ModelInfo("crossemotion.models.text", "utterance", ("text",), "text", 6000, 180),
    "fusion": ModelInfo(
        "crossemotion.models.fusion", "utterance", ("faces", "text"), "fusion", 8000, 360
    ),
}


def model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # the model's typed config: every default of its keys (crossemotion.model_config)
    config: type[ModelConfig]
    # (model config, number of classes) -> module with forward(batch) -> logits
    build: Callable[[Any, int], nn.Module]
    # (model config, dataset name, shard inputs) -> {split: Dataset}; every
    # Dataset has a ``meta`` polars DataFrame aligned with its indices
    # (id, key, split, speaker, character, label) for predictions.parquet.
    make_datasets: Callable[[Any, str, ShardInputs], dict[str, Dataset]]
    # inference hook: (list of raw units, model config) -> batch dict for
    # forward(). A unit is an image (path, JPEG bytes or HxWx3 RGB uint8 array)
    # for "image" models, a clip (video path or list of frames) for "video"
    # models, a str (or dialogue window) for "text", {"text": str, "images":
    # [JPEG bytes...]} for fusion. See crossemotion.inference.
    preprocess: Callable[[list[Any], Any], dict[str, Any]]
    collate: Callable[[list[Any]], Any] | None = None
    # (model config, {split: prepared rows}) -> {split: Dataset}, for jobs that
    # choose the rows themselves (transfer: leakage filter, fine-tuning
    # fraction); None for a model whose items are not rows of one shard kind
    datasets_from_tables: Callable[[Any, Mapping[str, pl.DataFrame]], dict[str, Dataset]] | None = (
        None
    )
    # aggregate face-level outputs to utterances by ``key`` on MELD
    aggregate_by_key: bool = False

    def __post_init__(self) -> None:
        model_info(self.name)

    def configure(self, cfg: Mapping[str, Any] | ModelConfig, **overrides: Any) -> Any:
        """The typed config of a model section or a checkpoint's ``config``; ``overrides``
        (the global ``seed`` and ``task``) win. Unknown keys are an error naming them."""
        return self.config.from_mapping(cfg, **overrides)

    @property
    def info(self) -> ModelInfo:
        return MODELS[self.name]

    @property
    def unit(self) -> str:
        return self.info.unit

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.info.inputs


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        importlib.import_module(model_info(name).module)
    return _REGISTRY[name]


def build_model(name: str, cfg: Mapping[str, Any], num_classes: int) -> nn.Module:
    spec = get_spec(name)
    return spec.build(spec.configure(cfg), num_classes)

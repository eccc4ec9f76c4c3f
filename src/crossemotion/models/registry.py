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
from crossemotion.resources import Sizing, sizing

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
    # memory and time of its training job at the demo's and the official data's
    # size, when the config sets none (crossemotion.resources.job_resources)
    sizing: Sizing
    # scheduling priority of its training job: the longest start first
    priority: int = 0


# Training jobs: demo-sized requests (a few hundred utterances, small
# backbones on CPU) fit two jobs side by side on a 16 GB node; the full ones are
# cluster sizes for the real config (ResNet-50 / BERT-base, 13,708 utterances).
_TRAIN = sizing(3000, 60, 16000, 720)

MODELS: dict[str, ModelInfo] = {
    "cnn_lstm": ModelInfo(
        "crossemotion.models.cnn_lstm", "video", ("clips",), "clip", _TRAIN, priority=40
    ),
    "c3d": ModelInfo("crossemotion.models.c3d", "video", ("clips",), "clip", _TRAIN, priority=30),
    "resnet50": ModelInfo(
        "crossemotion.models.resnet50", "image", ("faces", "text"), "face", _TRAIN
    ),
    "text": ModelInfo(
        "crossemotion.models.text", "utterance", ("text",), "text", sizing(3000, 60, 16000, 480)
    ),
    # a face encoder and a text encoder in one job
    "fusion": ModelInfo(
        "crossemotion.models.fusion",
        "utterance",
        ("faces", "text"),
        "fusion",
        sizing(4000, 60, 24000, 960),
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

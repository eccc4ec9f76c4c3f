"""Typed model configs: every default of a model key is written once, here or in
the model's own config class.

A config is a frozen dataclass filled from a model's section of the validated
config (``models.{name}``) plus the two global keys the library needs (``seed``,
``task``). The classes here are what the layers below the models read: the
keys every model takes (training, resources, weights), and the inputs of clip,
face and text datasets. Each model subclasses one of them in its own module with
the keys of its network (``CnnLstmConfig``, ``C3DConfig``, ``ResNet50Config``,
``TextConfig``, ``FusionConfig``) and registers the class on its ``ModelSpec``.

The schema (package data) says which keys a config file may set and their
ranges; the few defaults it fills in for the workflow (``enabled``, ``gpus``,
the clip ``frames``) are read from it here, so each default still has one home.
A test keeps the schema's model keys and these fields equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from crossemotion.config import ConfigError, schema_default
from crossemotion.labels import DEFAULT_TASK
from crossemotion.layout import DEFAULT_SEED

# keys a job passes beside the model's section: the global seed and task
GLOBAL_KEYS = ("seed", "task")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Keys every model takes."""

    enabled: bool = schema_default("model_common", "enabled")
    datasets: tuple[str, ...] = ("meld",)
    # training (crossemotion.training.loop.TrainConfig reads these)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "constant"
    warmup_fraction: float = 0.1
    patience: int = 5
    # MELD is ~47% neutral: unweighted, a model learns to say "neutral"
    class_weights: bool = True
    label_smoothing: float = 0.0
    # R-Drop (Liang et al., 2021): alpha of the KL term between two dropout passes; 0 = off
    rdrop: float = 0.0
    # supervised contrastive term on the classifier's input (Gunel et al., 2021):
    # its weight (0 = off) and temperature
    supcon: float = 0.0
    supcon_temperature: float = 0.1
    # decay of an exponential moving average of the weights, which dev scores and
    # the checkpoint use instead of the raw weights (0 = off; see training.loop.WeightAverage)
    ema: float = 0.0
    # length-bucketed batches for datasets with token counts (text, fusion)
    length_buckets: bool = True
    # pretrained weights (torchvision name, None: random init) and what to do
    # when they are not cached (crossemotion.models.backbones)
    weights: str | None = None
    pretrained_fallback: str = "error"
    # resources of the job (mem_mb/runtime None: the model table's)
    threads: int = 2
    mem_mb: int | None = None
    runtime: int | None = None
    gpus: int = schema_default("model_common", "gpus")
    # library-only keys (tests, notebooks): the workflow's schema does not offer them
    grad_clip: float = 1.0
    num_workers: int = 0
    # IFEED has no dev split: this share of Training (by source key) becomes dev
    dev_fraction: float = 0.15
    # decoded items kept in memory per dataset (crossemotion.datasets.shards.cache_for)
    cache_mb: float = 2048
    # global keys
    seed: int = DEFAULT_SEED
    task: str = DEFAULT_TASK

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | ModelConfig, **overrides: Any) -> Self:
        """The typed config of a model section (a checkpoint's ``config`` too).

        ``overrides`` (the global ``seed`` and ``task``, a transfer's epochs)
        win over the section. A key the class does not know is an error naming
        it; ``None`` for a key whose default is not ``None`` means the default.
        """
        if isinstance(cfg, ModelConfig):
            cfg = dataclasses.asdict(cfg)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        merged = {**cfg, **overrides}
        unknown = sorted(set(merged) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no key {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(sorted(fields))}"
            )
        values: dict[str, Any] = {}
        for key, value in merged.items():
            if value is None and fields[key].default is not None:
                continue
            # yaml gives lists; the config is frozen and hashable
            values[key] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class ClipConfig(ModelConfig):
    """Clip models (cnn_lstm, c3d): what their datasets and inference sample."""

    frames: int = schema_default("clip_model", "frames")
    size: int = 112
    # full: whole frames; speaker: a window around the speaker's face in each frame
    crop: str = "full"
    # window side / face-box side: the head and some shoulders
    crop_scale: float = 1.8
    # speaker windows warped upright on the face's five landmarks, as the face
    # crops are (the workflow sets it from meld.faces.align); false: box windows
    crop_align: bool = True
    augment: bool = False


@dataclass(frozen=True, kw_only=True)
class FaceConfig(ModelConfig):
    """Face models: one item per face crop."""

    size: int = 224
    augment: bool = False
    # MELD: at most this many crops per utterance (evenly spaced frames); None: all
    faces_per_utterance: int | None = None


@dataclass(frozen=True, kw_only=True)
class TextInputConfig(ModelConfig):
    """Models that read utterances: the dialogue window and the tokenizer's limit."""

    encoder: str = "minilm"
    max_length: int = 128
    # turns before / after the target in the input, cut from the far end to fit
    context: int = 0
    future: int = 0
    speakers: bool = True
    pooling: str = "mean"
    # embeddings and this many bottom encoder layers frozen, run without dropout
    # and cached while training (see crossemotion.models.frozen_layers); 0 = none
    freeze_layers: int = 0

    @property
    def input_form(self) -> str:
        """The settings that decide the token ids of an item's input, as a
        file-name part: a frozen-layer cache keeps each form's rows in its own
        file, so a run never loads the rows of inputs it cannot read."""
        return f"ctx{self.context}-fut{self.future}-spk{int(self.speakers)}-len{self.max_length}"


@dataclass(frozen=True, kw_only=True)
class FusionInputConfig(TextInputConfig):
    """Utterance text plus some of its face crops."""

    faces: int = 3
    size: int = 224


def model_default(key: str) -> Any:
    """The default of a key the workflow reads before any model module is imported
    (threads, gpus, datasets, crop, crop_scale...), from the input classes above."""
    defaults = {
        getattr(cls, key)
        for cls in (ModelConfig, ClipConfig, FaceConfig, TextInputConfig, FusionInputConfig)
        if key in {f.name for f in dataclasses.fields(cls)}
    }
    if len(defaults) != 1:
        # e.g. ``size``: 112 for clips, 224 for faces; ask the model's own config
        raise KeyError(f"no single model default for {key!r}: {sorted(map(repr, defaults))}")
    return defaults.pop()

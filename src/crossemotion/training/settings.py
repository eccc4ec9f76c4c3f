"""The settings of one training or transfer job, typed and built once.

A job reads the model's own section as a typed model config
(``crossemotion.model_config``) and the config's top-level keys it needs as a
``JobSettings``: seed, task, device, demo, the frozen-layer cache, the threads
it was given and the progress interval. ``JobSettings.from_config`` takes them
from the validated config (the workflow's validation has filled in the
schema's defaults) plus what the job itself decides (the seed of its
``{seeddir}``, Snakemake's scaled ``threads``); a library caller (a test, a
notebook) builds one directly. Each default has one home: the seed is
``crossemotion.layout.DEFAULT_SEED``, the task ``crossemotion.labels.DEFAULT_TASK``,
the device and progress interval the schema's (a test keeps the schema's seed
and task defaults equal to those constants).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from crossemotion.config import ConfigError, property_default
from crossemotion.labels import DEFAULT_TASK, TASKS
from crossemotion.layout import DEFAULT_SEED


@dataclass(frozen=True, kw_only=True)
class JobSettings:
    """What a training or transfer job takes beside its model config."""

    seed: int = DEFAULT_SEED
    task: str = DEFAULT_TASK
    # auto, cpu or cuda (crossemotion.device.resolve_device)
    device: str = property_default("device")
    # true when the data is the generated demo
    demo: bool = False
    # where frozen encoder layers keep their output between runs (None: in memory,
    # one run); see crossemotion.models.frozen_layers
    frozen_cache: Path | None = None
    # the threads the job was given (Snakemake's, scaled to the cores); None: the
    # model config's ``threads``
    threads: int | None = None
    # at most this many seconds between progress lines inside an epoch
    progress_seconds: float = property_default("progress_seconds")
    # the faces stage that cut the training crops (the config's ``meld.faces``): model.pt
    # records it so that serving and ``crossemotion predict`` cut faces the same way
    # (crossemotion.inference.FaceStage); None: not recorded, inference uses the defaults
    faces: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.progress_seconds <= 0:
            raise ConfigError(f"progress_seconds must be > 0, got {self.progress_seconds}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.frozen_cache is not None and not isinstance(self.frozen_cache, Path):
            object.__setattr__(self, "frozen_cache", Path(self.frozen_cache))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **job: Any) -> Self:
        """The settings of a job of ``config`` (a whole, validated config: keys that are
        not job settings, such as the sections, are not read). ``job`` (the job's
        seed, threads, demo flag) wins over the config; a key there that is no
        setting is an error naming it. ``None`` means the default."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(job) - names)
        if unknown:
            raise ConfigError(
                f"JobSettings has no key {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(sorted(names))}"
            )
        merged = {**{k: v for k, v in config.items() if k in names}, **job}
        return cls(**{k: v for k, v in merged.items() if v is not None})

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

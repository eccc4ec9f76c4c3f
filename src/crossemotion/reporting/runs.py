"""The runs a report covers: trained models and transfer cells, as found on disk."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossemotion import layout
from crossemotion.layout import model_dir as layout_model_dir
from crossemotion.layout import seed_subdir, transfer_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One set of predictions: a model trained on ``source`` evaluated on ``dataset``.

    For a model run ``source == dataset`` and ``mode == "trained"``; a transfer
    cell has its source, target (``dataset``) and mode (zero_shot, finetune_x).
    """

    model: str
    dataset: str
    directory: Path
    source: str
    mode: str = "trained"
    seed: int | None = None

    @property
    def metrics_path(self) -> Path:
        return self.directory / layout.METRICS

    @property
    def predictions_path(self) -> Path:
        return self.directory / layout.PREDICTIONS

    @property
    def train_log_path(self) -> Path:
        return self.directory / layout.TRAIN_LOG

    @property
    def is_transfer(self) -> bool:
        return self.mode != "trained"

    def metrics(self) -> dict[str, Any]:
        """metrics.json, or {} when absent or unreadable (logged, not fatal)."""
        try:
            return json.loads(self.metrics_path.read_text())
        except (OSError, ValueError) as err:
            log.warning("cannot read %s: %s", self.metrics_path, err)
            return {}


def model_run(
    model: str,
    dataset: str,
    root: str | Path = "results",
    seed: int | None = None,
    seeds: Sequence[int] = (),
) -> Run:
    """The run of one seed (the first of ``seeds`` when ``seed`` is None)."""
    seed_dir = seed_subdir(seed, seeds) if seed is not None and seeds else ""
    directory = layout_model_dir(model, dataset, seed_dir, root)
    return Run(model, dataset, directory, source=dataset, seed=seed)


def seed_runs(model: str, dataset: str, seeds: Sequence[int], root: str | Path = "results"):
    """One run per seed, the first seed's (the contract paths) first."""
    return [model_run(model, dataset, root, seed, seeds) for seed in seeds]


def transfer_run(
    model: str,
    source: str,
    target: str,
    mode: str,
    root: str | Path = "results",
    seed: int | None = None,
    seeds: Sequence[int] = (),
) -> Run:
    """The cell of one seed (the first of ``seeds`` when ``seed`` is None)."""
    seed_dir = seed_subdir(seed, seeds) if seed is not None and seeds else ""
    directory = Path(transfer_dir(source, target, mode, seed_dir, root))
    return Run(model, target, directory, source=source, mode=mode, seed=seed)


def primary_level(dataset: str) -> str:
    """Level at which a dataset is scored by default: MELD per utterance, IFEED per image."""
    return "utterance" if dataset == "meld" else "image"

"""The runs a report covers: trained models and transfer cells, as found on disk."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    @property
    def metrics_path(self) -> Path:
        return self.directory / "metrics.json"

    @property
    def predictions_path(self) -> Path:
        return self.directory / "predictions.parquet"

    @property
    def train_log_path(self) -> Path:
        return self.directory / "train_log.csv"

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


def model_run(model: str, dataset: str, root: str | Path = "results") -> Run:
    return Run(model, dataset, Path(root) / "models" / model / dataset, source=dataset)


def transfer_run(
    model: str, source: str, target: str, mode: str, root: str | Path = "results"
) -> Run:
    directory = Path(root) / "transfer" / f"{source}_to_{target}" / mode
    return Run(model, target, directory, source=source, mode=mode)


def primary_level(dataset: str) -> str:
    """Level at which a dataset is scored by default: MELD per utterance, IFEED per image."""
    return "utterance" if dataset == "meld" else "image"

"""Checkpoint discovery and the one place that calls the prediction library.

Every loaded model is wrapped as a ``ServedModel`` whose ``predict(units)``
returns ``[N, classes]`` probabilities over its checkpoint's ``labels`` (the 7
EMOTIONS, or the 3 SENTIMENTS of a ``task: sentiment`` model). The units per kind are
what ``crossemotion.inference`` takes for that model (the same library call as
``crossemotion predict``):

- ``face``:   RGB uint8 face crops (``resnet50``)
- ``clip``:   ``{"frames": [RGB frames], "boxes": {index: speaker box}}`` (``cnn_lstm``, ``c3d``)
- ``text``:   an utterance string, or ``{"text", "speaker", "context", "future"}`` (``text``)
- ``fusion``: ``{"text": str, "images": [RGB face crops]}`` (``fusion``)
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossemotion.labels import EMOTIONS
from crossemotion.layout import CHECKPOINT, METRICS
from crossemotion.models.registry import MODELS

log = logging.getLogger(__name__)

KINDS: dict[str, str] = {name: info.serving_kind for name, info in MODELS.items()}


@dataclass
class ServedModel:
    model: str
    dataset: str
    kind: str
    path: Path
    predictor: Any
    metrics: dict[str, Any] | None = None
    # one forward at a time per model: torch modules are not documented as
    # thread-safe and the service already bounds concurrency across models
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}"

    @property
    def labels(self) -> tuple[str, ...]:
        """The checkpoint's classes, in the order of ``predict``'s columns."""
        return tuple(getattr(self.predictor, "labels", EMOTIONS))

    def predict(self, units: list[Any]) -> np.ndarray:
        if not units:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        with self.lock:
            probs = self.predictor.predict(units)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (len(units), len(self.labels)):
            raise RuntimeError(f"{self.name} returned probabilities of shape {probs.shape}")
        return probs


def discover(models_dir: Path) -> list[Path]:
    """``{models_dir}/{model}/{dataset}/model.pt`` files of known models, sorted."""
    if not models_dir.is_dir():
        return []
    found = []
    for path in sorted(models_dir.glob(f"*/*/{CHECKPOINT}")):
        if path.parent.parent.name in KINDS:
            found.append(path)
    return found


def test_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The test figures of ``metrics.json`` beside a checkpoint (None when absent)."""
    path = run_dir / METRICS
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    test = payload.get("test") or {}
    keep = ("accuracy", "weighted_f1", "macro_f1", "n")
    out = {k: test[k] for k in keep if k in test}
    return out or None


def load_model(path: Path, device: str = "auto") -> ServedModel:
    """Load one checkpoint through the prediction library (as `crossemotion predict` does)."""
    from crossemotion.inference import load_predictor

    predictor = load_predictor(path, device=device)
    model, dataset = str(predictor.name), str(predictor.dataset)
    if model not in KINDS:
        raise ValueError(f"{path}: unknown model {model!r}")
    return ServedModel(model, dataset, KINDS[model], path, predictor, test_metrics(path.parent))

"""Load a trained checkpoint and predict on new images, clips or texts.

``load_predictor(path)`` accepts a model directory (``results/models/{m}/{d}``)
or its ``model.pt`` and returns a ``Predictor`` whose ``predict(units)`` gives
class probabilities [N, classes] in the order of the checkpoint's ``labels``
(``Predictor.labels``: the 7 EMOTIONS, or the 3 SENTIMENTS of a model trained
with ``task: sentiment``). A unit is
what the model's unit is: an image (path, JPEG bytes, RGB array) for
``resnet50``, a clip (video path or list of frames) for ``cnn_lstm``/``c3d``, a
str for ``text`` (or a dialogue window ``{"text", "speaker", "context": [{"speaker",
"text"}...], "future": [...]}``, see crossemotion.datasets.text.window_of),
``{"text": str, "images": [JPEG bytes, ...]}`` (plus the window's keys) for ``fusion``.
Preprocessing is the model spec's ``preprocess`` hook with the checkpoint's own
config, i.e. the sizes the model was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossemotion import checkpoint
from crossemotion.device import autocast, resolve_device, to_device
from crossemotion.labels import EMOTIONS, task_of_classes
from crossemotion.layout import CHECKPOINT
from crossemotion.model_config import ModelConfig
from crossemotion.models.encoders import architecture_only
from crossemotion.models.registry import ModelSpec, get_spec


@dataclass
class Predictor:
    model: str  # config name, e.g. "resnet50"
    dataset: str
    cfg: ModelConfig  # the typed config the checkpoint was trained with
    net: nn.Module
    spec: ModelSpec
    device: torch.device
    batch_size: int = 16
    labels: tuple[str, ...] = EMOTIONS

    @property
    def name(self) -> str:
        return self.model

    @property
    def unit(self) -> str:
        return self.spec.unit

    @torch.no_grad()
    def predict(self, units: Sequence[Any]) -> np.ndarray:
        """Class probabilities [len(units), len(self.labels)]."""
        hook = self.spec.preprocess
        out = []
        for start in range(0, len(units), self.batch_size):
            batch = to_device(
                hook(list(units[start : start + self.batch_size]), self.cfg), self.device
            )
            with autocast(self.device):
                out.append(self.net(batch).float().softmax(-1).cpu())
        if not out:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return torch.cat(out).numpy()

    def predict_labels(self, units: Sequence[Any]) -> list[dict[str, Any]]:
        probs = self.predict(units)
        return [
            {
                "label": self.labels[int(p.argmax())],
                "probabilities": dict(zip(self.labels, map(float, p), strict=True)),
            }
            for p in probs
        ]


def checkpoint_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def load_predictor(path: str | Path, device: str = "auto") -> Predictor:
    ckpt = checkpoint.load(checkpoint_path(path))
    labels = tuple(ckpt["labels"])
    try:
        task_of_classes(labels)
    except ValueError:
        raise ValueError(f"checkpoint labels {list(labels)} are no task's class list") from None
    spec = get_spec(ckpt["model"])
    # the checkpoint holds the trained weights: never fetch pretrained ones again
    cfg = spec.configure(ckpt["config"], weights=None)
    with architecture_only():
        model = spec.build(cfg, len(labels))
    model.load_state_dict(ckpt["state_dict"])
    dev = resolve_device(device)
    model.to(dev).eval()
    return Predictor(
        model=ckpt["model"],
        dataset=ckpt["dataset"],
        cfg=cfg,
        net=model,
        spec=spec,
        device=dev,
        batch_size=cfg.batch_size,
        labels=labels,
    )

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
An ensemble's checkpoint (``models.{m}.ensemble``) loads its members and gives
the mean of their probabilities.
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
from crossemotion.evaluation.ensemble import ENSEMBLE_KIND, file_digest
from crossemotion.labels import EMOTIONS, task_of_classes
from crossemotion.layout import CHECKPOINT
from crossemotion.model_config import ModelConfig
from crossemotion.models.encoders import architecture_only
from crossemotion.models.registry import ModelSpec, get_spec


class Labelled:
    """``predict_labels`` over a ``predict`` that gives probabilities in ``labels`` order,
    and the model's name and unit."""

    model: str
    labels: tuple[str, ...]
    spec: ModelSpec

    @property
    def name(self) -> str:
        return self.model

    @property
    def unit(self) -> str:
        return self.spec.unit

    def predict(self, units: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError

    def predict_labels(self, units: Sequence[Any]) -> list[dict[str, Any]]:
        probs = self.predict(units)
        return [
            {
                "label": self.labels[int(p.argmax())],
                "probabilities": dict(zip(self.labels, map(float, p), strict=True)),
            }
            for p in probs
        ]


@dataclass
class Predictor(Labelled):
    model: str  # config name, e.g. "resnet50"
    dataset: str
    cfg: ModelConfig  # the typed config the checkpoint was trained with
    net: nn.Module
    spec: ModelSpec
    device: torch.device
    batch_size: int = 16
    labels: tuple[str, ...] = EMOTIONS

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


@dataclass
class EnsemblePredictor(Labelled):
    """The members of an ensemble checkpoint (crossemotion.evaluation.ensemble): each
    formats a unit with its own config (a dialogue window is read by a member with
    context and reduced to its utterance by one without), and the probabilities
    are the members' mean, as in the ensemble's predictions.parquet."""

    model: str
    dataset: str
    members: list[Predictor]
    labels: tuple[str, ...] = EMOTIONS

    @property
    def spec(self) -> ModelSpec:
        return self.members[0].spec

    @property
    def cfg(self) -> ModelConfig:
        return self.members[0].cfg

    @property
    def batch_size(self) -> int:
        return self.members[0].batch_size

    def predict(self, units: Sequence[Any]) -> np.ndarray:
        return np.mean([m.predict(units) for m in self.members], axis=0)


def checkpoint_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def load_predictor(path: str | Path, device: str = "auto") -> Predictor | EnsemblePredictor:
    path = checkpoint_path(path)
    ckpt = checkpoint.load(path)
    labels = tuple(ckpt["labels"])
    try:
        task_of_classes(labels)
    except ValueError:
        raise ValueError(f"checkpoint labels {list(labels)} are no task's class list") from None
    if ckpt.get("kind") == ENSEMBLE_KIND:
        return load_ensemble(path, ckpt, labels, device)
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


def load_ensemble(
    path: Path, ckpt: dict[str, Any], labels: tuple[str, ...], device: str
) -> EnsemblePredictor:
    """The members an ensemble checkpoint names, checked against the size and SHA-256
    recorded when the ensemble was made: a member retrained since then would serve
    a mix the ensemble's metrics never scored."""
    members = []
    for i, ref in enumerate(ckpt["members"]):
        member_path = path.parent / ref["checkpoint"]
        if not member_path.is_file():
            raise FileNotFoundError(f"{path}: member {i}'s checkpoint {member_path} is missing")
        if member_path.stat().st_size != ref["bytes"] or file_digest(member_path) != ref["sha256"]:
            raise ValueError(
                f"{path}: member {i}'s checkpoint {member_path} changed after the ensemble "
                "was made; rerun the ensemble's rule (ensemble_{model})"
            )
        member = load_predictor(member_path, device)
        if not isinstance(member, Predictor) or member.labels != labels:
            raise ValueError(f"{path}: member {i} ({member_path}) is no model over {labels}")
        members.append(member)
    return EnsemblePredictor(ckpt["model"], ckpt["dataset"], members, labels)

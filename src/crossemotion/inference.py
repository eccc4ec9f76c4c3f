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

Face models see faces as the workflow cut them: ``FaceStage`` is the faces
stage's detector, alignment, margin and crop size (the checkpoint's ``faces``
record when it has one, else the workflow's defaults), ``find_faces`` detects
and crops one decoded image with it, and ``predict_images`` classifies every
face of several images in one batch (``crossemotion predict`` on a frame; the
API's micro-batches call ``find_faces`` and one ``predict`` per batch too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossemotion import checkpoint
from crossemotion.device import autocast, resolve_device, to_device
from crossemotion.evaluation.ensemble import ENSEMBLE_KIND, file_digest
from crossemotion.ingest.faces.detect import Detection, FaceDetector
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
    # the checkpoint's record of the faces stage that cut its training crops (None: not recorded)
    faces: Mapping[str, Any] | None = None

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
        faces=ckpt.get("faces"),
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


# -- faces: the workflow's faces stage at inference ----------------------------------------


@dataclass(frozen=True)
class FaceStage:
    """How a face model's inputs are found and cut: the faces stage's settings
    (``meld.faces``: detector, align, margin, size, min_size, max_per_frame,
    score_threshold) and the detector's threads."""

    detector: str
    align: bool
    margin: float
    size: int
    min_size: int
    max_faces: int
    score_threshold: float
    threads: int = 1

    @classmethod
    def of(cls, recorded: Mapping[str, Any] | None = None, **overrides: Any) -> FaceStage:
        """The recorded faces settings over the workflow's defaults (the faces stage's
        own ``FaceSettings``), then ``overrides`` that are not None."""
        from crossemotion.ingest.faces.crops import FaceSettings

        s = FaceSettings.from_config(dict(recorded or {}))
        stage = cls(
            detector=s.detector,
            align=bool(s.align),
            margin=float(s.margin),
            size=int(s.size),
            min_size=int(s.min_size),
            max_faces=int(s.max_per_frame),
            score_threshold=float(s.score_threshold),
        )
        return replace(stage, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def aligned(self) -> bool:
        """Whether faces are warped onto the template: asked for, and the detector gives
        the landmarks that takes (Haar does not: its crops are square boxes)."""
        from crossemotion.ingest.faces.detect import WITH_LANDMARKS

        return self.align and self.detector in WITH_LANDMARKS

    def build_detector(self) -> FaceDetector:
        """A new detector, as the faces stage builds it (``FaceSettings.build_detector``)."""
        from crossemotion.ingest.faces.crops import FaceSettings

        return FaceSettings(
            detector=self.detector, size=self.size, margin=self.margin,
            min_size=self.min_size, max_per_frame=self.max_faces, align=self.align,
            score_threshold=self.score_threshold, threads=self.threads,
        ).build_detector()  # fmt: skip


def face_stage_of(predictor: Labelled, **overrides: Any) -> FaceStage:
    """The faces stage a face model's training crops came from (see ``FaceStage.of``)."""
    recorded = getattr(predictor, "faces", None)
    if recorded is None and isinstance(predictor, EnsemblePredictor):
        recorded = predictor.members[0].faces
    return FaceStage.of(recorded, **overrides)


@dataclass
class FoundFace:
    """One face of an image: the detector's box, landmarks and score, and the crop the
    model reads. ``detected`` False: no face was found and the whole image stands in."""

    box: tuple[int, int, int, int]
    landmarks: tuple[tuple[float, float], ...]
    score: float | None
    detected: bool
    crop: np.ndarray = field(repr=False)


def _inside(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A detector's box cut to the image: a learned detector's box of a face at the
    border reaches past it (the crop pads, the answer shows pixels that exist)."""
    x, y, w, h = box
    x0, y0 = min(max(0, x), width), min(max(0, y), height)
    x1, y1 = max(x0, min(width, x + w)), max(y0, min(height, y + h))
    return (x0, y0, x1 - x0, y1 - y0)


def find_faces(
    rgb: np.ndarray,
    detector: FaceDetector,
    stage: FaceStage,
    detections: Sequence[Detection] | None = None,
) -> list[FoundFace]:
    """The faces of one decoded RGB image, speaker first, each cut by the faces stage's
    one crop function (aligned on its landmarks when ``stage.align``); without a face,
    the whole image, centre-cut to a square as IFEED's images are (an image that is a
    tight face crop already often shows no detectable face; the model's own
    preprocessing resizes it, so a square image reaches the model untouched).
    ``detections``: the detector's answer for this image when it was already asked."""
    from crossemotion.ingest.faces.align import face_crop

    if detections is None:
        detections = detector.detect(rgb)
    found = list(detections)[: stage.max_faces]
    h, w = rgb.shape[:2]
    if not found:
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        whole = rgb[y : y + side, x : x + side]
        return [FoundFace((0, 0, int(w), int(h)), (), None, False, whole)]
    return [
        FoundFace(
            _inside(d.box, int(w), int(h)),
            tuple((round(float(x), 1), round(float(y), 1)) for x, y in d.landmarks),
            round(float(d.score), 4),
            True,
            face_crop(rgb, d, stage.size, align=stage.align, margin=stage.margin),
        )
        for d in found
    ]


def predict_images(
    predictor: Labelled,
    images: Sequence[Any],
    stage: FaceStage | None = None,
    detector: FaceDetector | None = None,
) -> list[list[tuple[FoundFace, np.ndarray]]]:
    """Every face of every image (path, bytes or RGB array; each decoded once), with its
    class probabilities: one detector pass per image, one batched classification over
    all the faces. Per image: ``[(face, probs), ...]``, speaker first. ``stage``: the
    predictor's own faces stage by default; ``detector``: one built from it already."""
    from crossemotion.codec import load_image

    stage = stage or face_stage_of(predictor)
    detector = detector or stage.build_detector()
    faces = [find_faces(load_image(img), detector, stage) for img in images]
    probs = predictor.predict([f.crop for group in faces for f in group])
    out, start = [], 0
    for group in faces:
        out.append(list(zip(group, probs[start : start + len(group)], strict=True)))
        start += len(group)
    return out

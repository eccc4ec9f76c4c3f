"""The prediction service shared by the HTTP API and the Gradio UI.

Models load once (``Service.load``, at application start-up); every predict
method is synchronous and CPU-bound, so the API runs it in a worker thread.
Results are plain dataclasses; the API turns them into its pydantic schemas.

Uploaded clips are decoded in a pool of worker processes (``decode_pool``,
one worker per concurrent prediction), each call killed at
``decode_timeout``. A clip is decoded once per request: its RGB frames and
the speaker face found in each are shared by every model that scores it
(clip models get the frames with those boxes, face and fusion models the
crops, no JPEG round trip).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from crossemotion.ingest.video.pool import WorkerPool
from crossemotion.serving import media
from crossemotion.serving.models import ServedModel, discover, load_model
from crossemotion.serving.schemas import MAX_TURNS
from crossemotion.serving.settings import Settings

log = logging.getLogger(__name__)

FACE_CROP = 160  # crop side handed to face models; each resizes to its own input size
MAX_SPEAKER_CHARS = 100
# per decode worker: address space for Python, PyAV and the frames of one clip
WORKER_MEMORY_MB = 2048


# which models each request needs: the API checks before reading the upload
NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "image": ("face", ("face",)),
    "text": ("text", ("text",)),
    "video": ("clip or face", ("clip", "face")),
    "utterance": ("fusion", ("fusion",)),
}


class NoModelError(RuntimeError):
    """No loaded model can serve this request (HTTP 503)."""


class InputError(ValueError):
    """A request that is well-formed but unusable, e.g. empty text (HTTP 422)."""


@dataclass
class Prediction:
    model: str
    dataset: str
    label: str
    probabilities: dict[str, float]

    @classmethod
    def of(cls, served: ServedModel, probs: np.ndarray) -> Prediction:
        probs = np.asarray(probs, dtype=np.float64)
        labels = served.labels  # the checkpoint's classes: emotions or sentiments
        return cls(
            served.model,
            served.dataset,
            labels[int(probs.argmax())],
            {name: round(float(p), 6) for name, p in zip(labels, probs, strict=True)},
        )


@dataclass
class Face:
    box: tuple[int, int, int, int]
    detected: bool
    score: float | None
    crop: np.ndarray = field(repr=False)


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]
    detected: bool
    score: float | None
    predictions: list[Prediction]


@dataclass
class ImageResult:
    width: int
    height: int
    faces: list[FaceResult]


@dataclass
class ClipResult:
    duration: float | None
    frames: int
    frames_with_face: int
    has_audio: bool | None
    clip_predictions: list[Prediction]
    face_predictions: list[Prediction]
    boxes: list[tuple[int, int, int, int] | None]
    text_predictions: list[Prediction] = field(default_factory=list)
    fusion: list[Prediction] = field(default_factory=list)
    # the sampled frames themselves (RGB), for display; not part of the API response
    sampled: list[np.ndarray] = field(default_factory=list, repr=False)


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: list[ServedModel] = []
        self.load_errors: dict[str, str] = {}
        self.tmp_dir: Path | None = None
        self.decode_pool: WorkerPool | None = None
        self._detector: Any = None

    # -- life cycle -------------------------------------------------------------
    def load(self) -> None:
        """Load every checkpoint under the models dir; a bad one is recorded, not fatal."""
        import torch

        from crossemotion.ingest.faces.detect import get_detector

        torch.set_num_threads(self.settings.torch_threads)
        self.tmp_dir = media.private_tmp_dir(self.settings.tmp_root)
        self.decode_pool = WorkerPool(self.settings.max_concurrency, memory_mb=WORKER_MEMORY_MB,
                                      preload=["crossemotion.serving.media",
                                               "crossemotion.ingest.video.reader"])  # fmt: skip
        self._detector = get_detector(
            self.settings.detector, min_size=self.settings.face_min_size,
            max_faces=self.settings.max_faces,
        )  # fmt: skip
        for path in discover(self.settings.models_dir):
            key = f"{path.parent.parent.name}/{path.parent.name}"
            try:
                self.models.append(load_model(path, self.settings.device))
                log.info("loaded %s from %s", key, path)
            except Exception as exc:  # one unreadable checkpoint must not take the others down
                log.exception("cannot load %s", path)
                self.load_errors[key] = f"{type(exc).__name__}: {exc}"
        if not self.models:
            log.warning("no models loaded from %s: serving in degraded mode",
                        self.settings.models_dir)  # fmt: skip

    def close(self) -> None:
        if self.decode_pool is not None:
            self.decode_pool.close()
            self.decode_pool = None
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """The FastAPI lifespan of an app that serves this service (API or demo alone).

        Loading runs in a worker thread so the event loop stays free meanwhile.
        """
        await anyio.to_thread.run_sync(self.load)
        try:
            yield
        finally:
            self.close()

    @property
    def status(self) -> str:
        return "ok" if self.models and not self.load_errors else "degraded"

    def of_kind(self, *kinds: str) -> list[ServedModel]:
        return [m for m in self.models if m.kind in kinds]

    def require(self, what: str, *kinds: str) -> list[ServedModel]:
        """The loaded models of ``kinds``; NoModelError naming what is loaded when none."""
        found = self.of_kind(*kinds)
        if not found:
            loaded = ", ".join(m.name for m in self.models) or "none"
            raise NoModelError(f"no {what} model is loaded (loaded: {loaded})")
        return found

    # -- faces ------------------------------------------------------------------
    def faces_of(self, rgb: np.ndarray) -> list[Face]:
        """Detected faces (speaker first); the whole image when none is found.

        A tight face crop (an IFEED image, say) often has no detectable face
        in it, so it is classified as a whole and reported with detected=False.
        """
        from crossemotion.ingest.faces.crops import square_crop
        from crossemotion.ingest.faces.detect import Detection

        margin = self.settings.face_margin
        found = self._detector.detect(rgb)
        if found:
            return [
                Face(d.box, True, round(d.score, 4), square_crop(rgb, d, margin, FACE_CROP))
                for d in found
            ]
        h, w = rgb.shape[:2]
        whole = Detection(0, 0, w, h, 0.0)
        return [Face(whole.box, False, None, square_crop(rgb, whole, 0.0, FACE_CROP))]

    # -- predictions ------------------------------------------------------------
    def load_image(self, data: bytes) -> np.ndarray:
        """Upload bytes -> RGB under the pixel limit: the API's and the UI's one check."""
        return media.decode_image(data, self.settings.max_image_pixels)

    def predict_image(self, data: bytes) -> ImageResult:
        self.require("face", "face")
        return self.predict_image_array(self.load_image(data))

    def predict_image_array(self, rgb: np.ndarray) -> ImageResult:
        face_models = self.require("face", "face")
        faces = self.faces_of(rgb)
        crops = [f.crop for f in faces]
        outputs = {m.name: m.predict(crops) for m in face_models}
        results = [
            FaceResult(f.box, f.detected, f.score,
                       [Prediction.of(m, outputs[m.name][i]) for m in face_models])
            for i, f in enumerate(faces)
        ]  # fmt: skip
        return ImageResult(int(rgb.shape[1]), int(rgb.shape[0]), results)

    def predict_text(
        self,
        text: str,
        speaker: str | None = None,
        context: Sequence[Mapping[str, Any]] = (),
        future: Sequence[Mapping[str, Any]] = (),
    ) -> list[Prediction]:
        """Text models on an utterance, with its speaker and dialogue turns when given.

        The unit is what crossemotion.datasets.text.window_of reads, so
        each model formats it with its training code and config.
        """
        models = self.require("text", "text")
        unit = self.dialogue_unit(text, speaker, context, future)
        return [Prediction.of(m, m.predict([unit])[0]) for m in models]

    def dialogue_unit(
        self,
        text: str,
        speaker: str | None = None,
        context: Sequence[Mapping[str, Any]] = (),
        future: Sequence[Mapping[str, Any]] = (),
    ) -> str | dict[str, Any]:
        """A cleaned utterance, or ``{"text", "speaker", "context", "future"}`` with turns."""
        text = self._clean_text(text)
        if not (speaker or context or future):
            return text
        turns: dict[str, list[dict[str, str | None]]] = {}
        for side, given in (("context", context), ("future", future)):
            if len(given) > MAX_TURNS:
                raise InputError(f"{side} has {len(given)} turns; the limit is {MAX_TURNS}")
            turns[side] = []
            for i, turn in enumerate(given):
                try:
                    cleaned = self._clean_text(str(turn.get("text") or ""))
                except InputError as err:
                    raise InputError(f"{side} turn {i + 1}: {err}") from None
                turns[side].append({"speaker": _speaker(turn.get("speaker")), "text": cleaned})
        return {"text": text, "speaker": _speaker(speaker), **turns}

    def require_for(self, request: str) -> None:
        what, kinds = NEEDS[request]
        self.require(what, *kinds)

    def predict_video(self, data: bytes) -> ClipResult:
        self.require("clip or face", "clip", "face")
        return self._clip(data, text=None)

    def predict_utterance(self, data: bytes, text: str) -> ClipResult:
        self.require("fusion", "fusion")
        return self._clip(data, text=self._clean_text(text))

    def _clean_text(self, text: str) -> str:
        text = " ".join(str(text).split())
        if not text:
            raise InputError("the text is empty")
        if len(text) > self.settings.max_text_chars:
            raise InputError(
                f"the text has {len(text)} characters; the limit is {self.settings.max_text_chars}"
            )
        return text

    def _clip(self, data: bytes, text: str | None) -> ClipResult:
        s = self.settings
        assert self.tmp_dir is not None and self.decode_pool is not None, (
            "Service.load() was not called"
        )
        clip = media.read_clip(
            data, self.tmp_dir, frames=s.clip_frames, height=s.clip_height,
            max_seconds=s.max_clip_seconds, pool=self.decode_pool,
            # the decode never outlives the request that waits for it
            timeout=min(s.decode_timeout, s.request_timeout),
        )  # fmt: skip
        speaker_crops, boxes = self._speaker_faces(clip.frames)
        # clip models in speaker-crop mode take these boxes instead of detecting again
        unit = {"frames": clip.frames,
                "boxes": {i: box for i, box in enumerate(boxes) if box is not None}}  # fmt: skip
        clip_preds = [Prediction.of(m, m.predict([unit])[0]) for m in self.of_kind("clip")]
        face_preds = []
        if speaker_crops:
            for m in self.of_kind("face"):
                face_preds.append(Prediction.of(m, m.predict(speaker_crops).mean(0)))
        result = ClipResult(clip.duration, len(clip.frames), len(speaker_crops), clip.has_audio,
                            clip_preds, face_preds, boxes, sampled=clip.frames)  # fmt: skip
        if text is not None:
            result.text_predictions = [
                Prediction.of(m, m.predict([text])[0]) for m in self.of_kind("text")
            ]
            utterance = {"text": text, "images": speaker_crops}
            result.fusion = [Prediction.of(m, m.predict([utterance])[0])
                             for m in self.of_kind("fusion")]  # fmt: skip
        return result

    def _speaker_faces(
        self, frames: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[tuple[int, int, int, int] | None]]:
        """The speaker's face (first detection) in each sampled frame that has one."""
        from crossemotion.ingest.faces.crops import square_crop

        crops, boxes = [], []
        for rgb in frames:
            found = self._detector.detect(rgb)
            if not found:
                boxes.append(None)
                continue
            boxes.append(found[0].box)
            crops.append(square_crop(rgb, found[0], self.settings.face_margin, FACE_CROP))
        return crops, boxes

    def describe(self) -> list[dict[str, Any]]:
        root = self.settings.models_dir
        out = []
        for m in self.models:
            try:
                rel = str(m.path.relative_to(root))
            except ValueError:
                rel = m.path.name
            out.append({"name": m.name, "model": m.model, "dataset": m.dataset, "kind": m.kind,
                        "checkpoint": rel, "labels": list(m.labels),
                        "test": m.metrics})  # fmt: skip
        return out


def _speaker(name: Any) -> str | None:
    """A speaker name on one line, at most MAX_SPEAKER_CHARS; None when blank."""
    name = " ".join(str(name or "").split())
    return name[:MAX_SPEAKER_CHARS] or None

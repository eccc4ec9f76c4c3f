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

Faces are found and cut as the workflow's faces stage cut the models' training
crops (``inference.FaceStage``: the face model's checkpoint record, else the
workflow's defaults; ``Settings`` may override): the same detector, the same
alignment on its five landmarks, the same crop size. Image predictions run in
micro-batches (``serving.batching``): the images that wait together are
decoded and searched for faces one by one, in ``max_concurrency`` batch
workers each with its own detector, and all their faces are classified in one
forward per model.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from crossemotion.inference import FaceStage, FoundFace, face_stage_of, find_faces
from crossemotion.ingest.faces.detect import FaceDetector
from crossemotion.ingest.video.pool import WorkerPool
from crossemotion.serving import media
from crossemotion.serving.batching import MicroBatcher
from crossemotion.serving.models import ServedModel, discover, load_model
from crossemotion.serving.schemas import MAX_TURNS
from crossemotion.serving.settings import Settings

log = logging.getLogger(__name__)

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
class FaceResult:
    box: tuple[int, int, int, int]
    detected: bool
    score: float | None
    predictions: list[Prediction]
    # the detector's five points (eyes, nose tip, mouth corners); empty for haar
    landmarks: tuple[tuple[float, float], ...] = ()
    # the speaker's face: the first one found (the detector ranks speaker-first)
    speaker: bool = False


@dataclass
class ImageResult:
    width: int
    height: int
    faces: list[FaceResult]
    detector: str = ""
    aligned: bool = False


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
        self.stage: FaceStage | None = None
        self.images: MicroBatcher[bytes | np.ndarray, ImageResult] | None = None
        self._local = threading.local()

    # -- life cycle -------------------------------------------------------------
    def load(self) -> None:
        """Load every checkpoint under the models dir; a bad one is recorded, not fatal."""
        import torch

        torch.set_num_threads(self.settings.torch_threads)
        self.tmp_dir = media.private_tmp_dir(self.settings.tmp_root)
        self.decode_pool = WorkerPool(self.settings.max_concurrency, memory_mb=WORKER_MEMORY_MB,
                                      preload=["crossemotion.serving.media",
                                               "crossemotion.ingest.video.reader"])  # fmt: skip
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
        self.stage = self._face_stage()
        if self.of_kind("face", "fusion", "clip"):
            # built now, so that an unknown or missing detector stops the start, named
            self._detector()
        log.info("faces: detector %s, %s crops of %d px, at most %d per image",
                 self.stage.detector, "aligned" if self.stage.aligned else "square",
                 self.stage.size, self.stage.max_faces)  # fmt: skip
        if self.of_kind("face"):
            s = self.settings
            self.images = MicroBatcher(
                self._image_batch, max_batch=s.batch_size, max_wait=s.batch_wait_ms / 1000,
                workers=s.max_concurrency, make_state=self.stage.build_detector, name="images",
            )  # fmt: skip

    def _face_stage(self) -> FaceStage:
        """The faces stage of the models that read faces (face, fusion, clip models in
        speaker-crop mode): the first one that recorded it; the settings override."""
        s = self.settings
        # each worker thread's detector runs on as many threads as its torch forward
        overrides = {"detector": s.detector, "align": s.face_align, "margin": s.face_margin,
                     "min_size": s.face_min_size, "max_faces": s.max_faces,
                     "threads": s.torch_threads}  # fmt: skip
        readers = self.of_kind("face", "fusion", "clip")
        recorded = [m for m in readers if getattr(m.predictor, "faces", None) is not None]
        stages = {str(face_stage_of(m.predictor)) for m in recorded}
        if len(stages) > 1:
            log.warning("the models' faces stages differ (%s); serving with the first",
                        "; ".join(sorted(stages)))  # fmt: skip
        chosen = recorded or readers
        if chosen:
            return face_stage_of(chosen[0].predictor, **overrides)
        return FaceStage.of(None, **overrides)

    def _detector(self) -> FaceDetector:
        """This thread's detector (request threads; batch workers build their own)."""
        assert self.stage is not None, "Service.load() was not called"
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self.stage.build_detector()
        return detector

    def close(self) -> None:
        if self.images is not None:
            self.images.close()
            self.images = None
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
    def faces_of(self, rgb: np.ndarray) -> list[FoundFace]:
        """Detected faces (speaker first), cut as the faces stage cuts them; the whole
        image when none is found (a tight face crop, an IFEED image say, often has no
        detectable face in it: it is classified as a whole, with detected=False)."""
        assert self.stage is not None, "Service.load() was not called"
        return find_faces(rgb, self._detector(), self.stage)

    # -- predictions ------------------------------------------------------------
    def load_image(self, data: bytes) -> np.ndarray:
        """Upload bytes -> RGB under the pixel limit: the API's and the UI's one check."""
        return media.decode_image(data, self.settings.max_image_pixels)

    def submit_image(self, image: bytes | np.ndarray) -> Future[ImageResult]:
        """Queue an upload (bytes, decoded once in its batch) or a decoded RGB image for
        the next micro-batch; the future holds its ImageResult or its error."""
        self.require("face", "face")
        assert self.images is not None, "Service.load() was not called"
        return self.images.submit(image)

    def image_workers(self) -> str:
        """The image batches now: items waiting, and each busy worker's batch and stack."""
        if self.images is None:
            return "no image batcher"
        parts = [f"{self.images.waiting} images waiting"]
        parts += self.images.busy() or ["no batch running"]
        return "; ".join(parts)

    def predict_image(self, data: bytes) -> ImageResult:
        return self.submit_image(data).result()

    def predict_image_array(self, rgb: np.ndarray) -> ImageResult:
        return self.submit_image(rgb).result()

    def _image_batch(
        self, detector: FaceDetector, items: list[bytes | np.ndarray]
    ) -> list[ImageResult | BaseException]:
        """One micro-batch: each image decoded and searched for faces on its own (a bad
        upload fails alone), then every face of the batch classified in one forward
        per face model."""
        assert self.stage is not None
        decoded: list[np.ndarray | BaseException] = []
        for item in items:
            try:
                decoded.append(self.load_image(item) if isinstance(item, bytes) else item)
            except Exception as exc:
                decoded.append(exc)
        # the detector runs image by image: RetinaFace's batched run (detect_many) was
        # no cheaper per 640x360 image on this CPU (about 48 vs 38 ms, measured), so
        # the batch's gain is the classifiers' one forward over all its faces
        found: list[tuple[np.ndarray, list[FoundFace]] | BaseException] = []
        for rgb in decoded:
            if isinstance(rgb, BaseException):
                found.append(rgb)
                continue
            try:
                found.append((rgb, find_faces(rgb, detector, self.stage)))
            except Exception as exc:
                found.append(exc)
        models = self.of_kind("face")
        crops = [f.crop for one in found if not isinstance(one, BaseException) for f in one[1]]
        outputs = {m.name: m.predict(crops) for m in models}
        results: list[ImageResult | BaseException] = []
        start = 0
        for one in found:
            if isinstance(one, BaseException):
                results.append(one)
                continue
            rgb, faces = one
            results.append(ImageResult(
                int(rgb.shape[1]), int(rgb.shape[0]),
                [FaceResult(f.box, f.detected, f.score,
                            [Prediction.of(m, outputs[m.name][start + i]) for m in models],
                            f.landmarks, speaker=i == 0 and f.detected)
                 for i, f in enumerate(faces)],
                self.stage.detector, self.stage.aligned,
            ))  # fmt: skip
            start += len(faces)
        return results

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
        speaker_crops, boxes, marks = self._speaker_faces(clip.frames, clip.envelope)
        # clip models in speaker-crop mode take these faces instead of detecting again
        # (and cut their windows from them as training did: models.vision.clip_tensor)
        from crossemotion.models.vision import clip_unit  # torch: imported when served

        unit = clip_unit(clip.frames, boxes, marks)
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
        self, frames: list[np.ndarray], envelope: list[float] | None = None
    ) -> tuple[
        list[np.ndarray],
        list[tuple[int, int, int, int] | None],
        list[tuple[tuple[float, float], ...]],
    ]:
        """The speaker's face in each sampled frame that has one, as the faces stage's
        ``selector: track`` finds it (``detect_speakers``: the face track whose mouth moves,
        with the sound's ``envelope`` where the clip has sound): its crops, and per frame
        its box (None: no face) and landmarks (empty: none)."""
        from crossemotion.datasets.speaker_crop import detect_speakers

        assert self.stage is not None, "Service.load() was not called"
        detector = self._detector()
        speakers = detect_speakers(frames, detector, envelope)
        crops, boxes, marks = [], [], []
        for index, rgb in enumerate(frames):
            face = speakers.get(index)
            if face is None:
                boxes.append(None)
                marks.append(())
                continue
            # only the speaker's face is cut: the others are not read
            speaker = find_faces(rgb, detector, self.stage, [face])[0]
            boxes.append(speaker.box)
            marks.append(speaker.landmarks)
            crops.append(speaker.crop)
        return crops, boxes, marks

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

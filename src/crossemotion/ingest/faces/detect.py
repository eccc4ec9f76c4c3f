"""Pluggable face detectors.

Every detector takes an RGB ``uint8`` image of shape ``(H, W, 3)`` and returns
``Detection`` boxes (``x, y, w, h`` in pixels, plus a score), sorted so that
the most likely *speaker* comes first: the largest face, ties broken by
closeness to the frame centre. MELD clips are cut around one speaker, whom the
camera usually frames largest and most central; the demo generator draws its
scenes that way too, so ingestion takes ``detections[0]`` as the speaker.

The default is OpenCV's Haar frontal-face cascade, which needs no download
(opencv-python-headless ships the XML files under ``cv2.data.haarcascades``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    x: int
    y: int
    w: int
    h: int
    score: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> int:
        return self.w * self.h


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, speaker-first (see module docstring)."""
        ...


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


class HaarDetector:
    """OpenCV Haar cascade; ``score`` is the cascade's final-stage weight."""

    name = "haar"

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        max_faces: int | None = None,
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

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image, got {image.shape} {image.dtype}")
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
        ranked = rank_speaker_first(found, image.shape[1], image.shape[0]) if found else []
        return ranked[: self.max_faces] if self.max_faces else ranked


_DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "haar": HaarDetector,
    "haar_alt2": lambda **kw: HaarDetector(cascade="haarcascade_frontalface_alt2.xml", **kw),
}


def available_detectors() -> list[str]:
    return sorted(_DETECTORS)


def get_detector(name: str = "haar", **kwargs: Any) -> FaceDetector:
    """Build a detector by config name (``meld.faces.detector``)."""
    try:
        factory = _DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown face detector {name!r}; available: {', '.join(available_detectors())}"
        ) from None
    return factory(**kwargs)


_PER_THREAD = threading.local()


def shared_detector(name: str = "haar", **kwargs: Any) -> FaceDetector:
    """``get_detector(name, **kwargs)`` built once per thread and settings, then reused.

    Loading a cascade parses its XML (tens of ms), too much per clip at
    inference. One per thread, not one per process: OpenCV does not promise
    that one ``CascadeClassifier`` may run in several threads at once, and
    the server predicts in threads.
    """
    key = (name, tuple(sorted(kwargs.items())))
    cache: dict[tuple[str, tuple[tuple[str, Any], ...]], FaceDetector] = (
        _PER_THREAD.__dict__.setdefault("detectors", {})
    )
    if key not in cache:
        cache[key] = get_detector(name, **kwargs)
    return cache[key]

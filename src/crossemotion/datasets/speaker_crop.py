"""Speaker-centred clips: crop every frame of a clip around the speaker's face.

A video model that sees the whole frame at the small sizes a CPU can train
(48-112 px) gets the expression from a face a few dozen pixels high among
background, bystanders and clutter. With ``crop: speaker`` the clip models
see a square window around the speaker's face instead, keeping head,
shoulders and motion, as face-track pipelines for MELD do. The faces come
from the faces shards (the same detector and speaker heuristic as the face
models); a frame without a detected face takes the face of the nearest frame
that has one, and a clip with no face at all stays a full frame. The window's
side is one per clip: ``crop_scale`` times the median longer side of the
clip's face boxes.

Two ways to cut the window, the same in training (``crossemotion.datasets.clips``)
and at inference (``crossemotion.models.vision``, the API's and ``crossemotion
predict``'s clips), both through ``crop_window``:

- aligned (``crop_align``, set by the workflow from ``meld.faces.align``) where
  the face has five landmarks: the project's one face crop
  (``crossemotion.ingest.faces.align.face_crop``) warps the landmarks onto the
  ArcFace template, zoomed out so that the face box fills ``1 / crop_scale`` of
  the window and centred on the box's place on the template. The face is
  upright, of one size and at one place in every frame of the clip; what the
  window shows beyond the face (shoulders, the head's motion against the
  scene) moves around it.
- the box window (``crop_align`` false, or a face without landmarks, as Haar's):
  the square centred on the box, moved, then shrunk, to stay inside the frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from crossemotion.ingest.faces.align import alignment_matrix, face_crop
from crossemotion.ingest.faces.detect import Detection, FaceDetector
from crossemotion.ingest.faces.tracks import speaker_of_clip
from crossemotion.model_config import ClipConfig

Box = tuple[int, int, int, int]  # x, y, w, h

# Where a learned detector's box sits on the 112 x 112 ArcFace template: its
# longer side spans FACE_SIDE_112 template units, its centre is FACE_CENTRE_112.
# Medians of RetinaFace on 59 demo speaker faces (10-90 %: 100-109 units); on
# matplotlib's photograph of Grace Hopper 98 units, centre (57.7, 64.9). They
# turn crop_scale (window side / box side) into the aligned window's zoom, so
# one crop_scale frames the head alike in both modes.
FACE_SIDE_112 = 104.0
FACE_CENTRE_112 = (56.0, 65.0)


@dataclass(frozen=True)
class Window:
    """A frame's speaker window. ``box``: the square (x, y, side, side) in the frame
    (aligned: the axis-aligned square the rotated window covers, about its centre);
    ``face`` set: cut aligned on that face's landmarks, ``side`` x ``side`` pixels
    (the clip's one side), zoomed by ``margin`` (``face_crop``'s); else the box,
    moved inside the frame."""

    box: Box
    face: Detection | None = None
    margin: float = 0.0
    side: int = 0

    @property
    def aligned(self) -> bool:
        return self.face is not None


def crop_mode(cfg: ClipConfig) -> str:
    mode = cfg.crop
    if mode not in ("full", "speaker"):
        raise ValueError(f"crop must be 'full' or 'speaker', not {mode!r}")
    return mode


def as_detection(face: Box | Detection) -> Detection:
    """A box (no landmarks) or a detection, as a detection."""
    if isinstance(face, Detection):
        return face
    x, y, w, h = (int(v) for v in face)
    return Detection(x, y, w, h, 1.0)


def face_of(bbox: Sequence[float], landmarks: Sequence[float] | None = None) -> Detection:
    """A faces-shard row's ``bbox`` and flat ``landmarks`` (x0, y0, ..., x4, y4) as a detection."""
    x, y, w, h = (int(v) for v in bbox)
    points: tuple[tuple[float, float], ...] = ()
    if landmarks is not None and len(landmarks) == 10:
        flat = [float(v) for v in landmarks]
        points = tuple((flat[i], flat[i + 1]) for i in range(0, 10, 2))
    return Detection(x, y, w, h, 1.0, points)


def speaker_detections(faces: pl.DataFrame) -> dict[str, dict[int, Detection]]:
    """key -> {frame index -> speaker face (box, landmarks when the shard has them)}
    from MELD faces shard rows."""
    out: dict[str, dict[int, Detection]] = {}
    columns = ["key", "frame_index", "bbox"]
    with_landmarks = "landmarks" in faces.columns
    rows = faces.select(*columns, "landmarks" if with_landmarks else pl.lit(None)).iter_rows()
    for key, index, bbox, landmarks in rows:
        if bbox is not None and len(bbox) == 4:
            out.setdefault(key, {})[int(index)] = face_of(bbox, landmarks)
    return out


def window_margin(scale: float) -> float:
    """``face_crop``'s margin for an aligned window ``scale`` times the face box's side."""
    zoom = scale * FACE_SIDE_112 / 112.0
    return (zoom - 1.0) / 2.0


def _aligned(face: Detection, side: int, margin: float) -> Window | None:
    """The aligned window of ``face``; None when its landmarks define no warp."""
    m = alignment_matrix(face, side, margin, FACE_CENTRE_112)
    if m is None:
        return None
    # the window's centre and side in the frame: the warp inverted
    rot_scale = m[:, :2]
    centre = np.linalg.solve(rot_scale, np.array([side / 2.0, side / 2.0]) - m[:, 2])
    frame_side = side / float(np.hypot(m[0, 0], m[0, 1]))
    box = (round(centre[0] - frame_side / 2), round(centre[1] - frame_side / 2),
           round(frame_side), round(frame_side))  # fmt: skip
    return Window(box, face, margin, side)


def clip_windows(
    faces: Mapping[int, Box | Detection], n_frames: int, scale: float, align: bool = False
) -> list[Window | None]:
    """One square window per frame, from the nearest frame with a face; one side per
    clip (``scale`` x the boxes' median longer side). ``align``: aligned on the face's
    landmarks where it has them (see the module docstring)."""
    if not faces:
        return [None] * n_frames
    if scale <= 0:
        raise ValueError(f"crop_scale must be positive, not {scale}")
    found = {int(i): as_detection(f) for i, f in faces.items()}
    known = np.array(sorted(found))
    side = max(1, round(scale * float(np.median([max(f.w, f.h) for f in found.values()]))))
    margin = window_margin(scale)
    per_face: dict[int, Window] = {}
    for i, face in found.items():
        window = _aligned(face, side, margin) if align else None
        if window is None:
            cx, cy = face.x + face.w / 2.0, face.y + face.h / 2.0
            window = Window((round(cx - side / 2), round(cy - side / 2), side, side), side=side)
        per_face[i] = window
    return [per_face[int(known[np.abs(known - i).argmin()])] for i in range(n_frames)]


def crop_window(image: np.ndarray, window: Window | None) -> np.ndarray:
    """The frame's speaker window; None keeps the image.

    Aligned: ``face_crop`` on the window's face, ``side`` x ``side`` pixels,
    black where the window leaves the frame (as the face crops of frames are).
    Box: the square, shifted (then shrunk) to fit inside the image."""
    if window is None:
        return image
    if window.face is not None:
        return face_crop(image, window.face, window.side, align=True, margin=window.margin,
                         centre=FACE_CENTRE_112)  # fmt: skip
    x, y, side, _ = window.box
    height, width = image.shape[:2]
    side = max(1, min(side, width, height))
    x = min(max(0, x), width - side)
    y = min(max(0, y), height - side)
    return image[y : y + side, x : x + side]


def detect_speakers(
    images: Sequence[np.ndarray],
    detector: FaceDetector,
    envelope: Sequence[float] | None = None,
) -> dict[int, Detection]:
    """The speaker's face per frame, for clips that come without a faces shard (the API,
    ``crossemotion predict``): as the faces stage's ``selector: track`` chooses it, the
    face track whose mouth moves (with the sound's ``envelope`` at the frames, if given)."""
    found = [detector.detect(image) for image in images]
    if not found:
        return {}
    choice = speaker_of_clip(found, images, envelope).choice
    if choice is None:
        return {}
    t = choice.track
    return {f: found[f][j] for f, j in zip(t.frames, t.detections, strict=True)}


__all__ = [
    "FACE_CENTRE_112",
    "FACE_SIDE_112",
    "Box",
    "Window",
    "clip_windows",
    "crop_mode",
    "crop_window",
    "detect_speakers",
    "face_of",
    "speaker_detections",
    "window_margin",
]

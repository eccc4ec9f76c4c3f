"""The one face crop: aligned from five landmarks, else a square around the box.

Face-recognition and facial-expression pipelines (insightface/ArcFace,
py-feat) warp every face by a similarity transform (rotation, uniform scale,
translation) that takes its five landmarks to a fixed template before any
model sees it: eyes level and at the same place in every crop, whatever the
head's tilt or the face's size. ``face_crop`` does that with the ArcFace
112 x 112 template scaled to ``size``; ``margin`` zooms out about the crop's
centre so that, as with the box crop, a share of context (hair, chin) stays
in view: margin 0 is the tight ArcFace crop, 0.2 shows 1.4 times as much.

Without landmarks (the Haar detector, ``align=False``, or points that cannot
define a transform) the crop is today's: the box grown by ``margin`` of its
larger side on every side, made square about its centre, black-padded where
it leaves the image, resized to ``size``. Every face crop of the project, in
the MELD faces shards, the IFEED faces shards (where a face is found in the
image: ``crossemotion.ingest.ifeed.members``), the API and the demo UI, comes
from this function, and so do the clip models' speaker windows
(``crossemotion.datasets.speaker_crop``): a wider crop (``margin`` from the
window's ``crop_scale``) centred on the face box's place on the template
(``centre``), so that head and shoulders stay in view as in the box window.
"""

from __future__ import annotations

import cv2
import numpy as np

from crossemotion.ingest.faces.detect import Detection

# insightface's arcface_src: the five points in a 112 x 112 crop
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


# the template's centre: the point of the 112 x 112 template that a face crop
# puts at its own centre
TEMPLATE_CENTRE = (56.0, 56.0)


def template(
    size: int, margin: float = 0.0, centre: tuple[float, float] = TEMPLATE_CENTRE
) -> np.ndarray:
    """The five template points in a ``size`` x ``size`` crop, zoomed out by ``1 + 2 margin``
    about ``centre`` (a point of the 112 template), which lands on the crop's centre."""
    zoom = 1.0 + 2.0 * margin
    if zoom <= 0:
        raise ValueError(f"margin must be above -0.5, not {margin}")
    points = 56.0 + (ARCFACE_112 - np.asarray(centre, dtype=np.float64)) / zoom
    return points * (size / 112.0)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares similarity transform (2 x 3) taking ``src`` points to ``dst`` (Umeyama).

    None when the source points are degenerate (all at one place).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s**2).sum() / len(src)
    if not np.isfinite(var) or var < 1e-6:
        return None
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((sig * sign).sum() / var)
    if not np.isfinite(scale) or scale <= 0:
        return None
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


# how a crop is filled where it leaves the image: black (frames, where the
# image's edge is the frame's), or the edge pixels repeated (IFEED's tight
# crops, whose edge cuts through the head: black bars there would be a
# dataset signature that MELD's crops never carry)
BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def square_crop(
    image: np.ndarray, det: Detection, margin: float, size: int, border: str = "constant"
) -> np.ndarray:
    """A ``size`` x ``size`` crop centred on the box, grown by ``margin``, padded per ``border``."""
    h, w = image.shape[:2]
    side = max(1, round(max(det.w, det.h) * (1 + 2 * margin)))
    cx, cy = det.x + det.w / 2, det.y + det.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + side, y0 + side
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, _border(border), value=0)
    crop = image[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def alignment_matrix(
    det: Detection, size: int, margin: float, centre: tuple[float, float] = TEMPLATE_CENTRE
) -> np.ndarray | None:
    """The 2 x 3 warp of ``det``'s landmarks onto the template; None without usable ones."""
    if len(det.landmarks) != 5:
        return None
    points = np.asarray(det.landmarks, dtype=np.float64)
    if not np.isfinite(points).all():
        return None
    return similarity(points, template(size, margin, centre))


def _border(border: str) -> int:
    try:
        return BORDERS[border]
    except KeyError:
        raise ValueError(f"border must be one of {sorted(BORDERS)}, not {border!r}") from None


def face_crop(
    image: np.ndarray,
    det: Detection,
    size: int,
    *,
    align: bool = True,
    margin: float = 0.2,
    border: str = "constant",
    centre: tuple[float, float] = TEMPLATE_CENTRE,
) -> np.ndarray:
    """The face of ``det`` as a ``size`` x ``size`` crop of ``image`` (same channels).

    ``align`` and five landmarks: warped onto the ArcFace template; otherwise
    the square box crop. Either way grown by ``margin`` (see module docstring);
    ``border`` fills what lies outside the image (``BORDERS``); ``centre``: the
    template's point put at the crop's centre (aligned crops only).
    """
    mode = _border(border)
    m = alignment_matrix(det, size, margin, centre) if align else None
    if m is None:
        return square_crop(image, det, margin, size, border)
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    if scale < 0.5:
        # shrinking more than 2x: smooth first, as INTER_AREA would, so that a
        # large face does not alias into the small crop
        sigma = 0.5 / scale - 0.5
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    return cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=0,
    )  # fmt: skip

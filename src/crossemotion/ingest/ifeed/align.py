"""Trace every IFEED image to the MELD clip, frame and face it was cut from.

IFEED's images are frames of MELD's clips, but an IFEED folder names its
source as ``dia{D}_utt{U}`` without the MELD split, and MELD restarts its
dialogue ids in every split: on the real csvs 1,740 of the 2,610 test keys
and 675 of the 1,109 dev keys also exist in train. So the key only names the
*candidates* of an image (the MELD utterances with that key, one per split at
most); its content decides among them.

Method (``method = "ncc"``: normalised cross-correlation, ``cv2.matchTemplate``
with ``TM_CCOEFF_NORMED``, which ignores a crop's brightness and contrast):

1. Each candidate clip is decoded densely (every frame of its first
   ``max_duration`` seconds, at most ``max_frames``, evenly thinned beyond
   that) at ``height`` px through ``crossemotion.ingest.video.decode.iter_frames``.
2. Coarse search: the image, as a grey template ``coarse_height`` px high, is
   slid over ``keyframes`` frames of the clip at every scale at which the crop
   would be ``min_face``..``max_face`` of the frame height (steps of
   ``scale_step``); the ``hypotheses`` best places (scale, position) go on.
3. Fine search: around each place, the frame where it fits best (grey);
   there, scale and aspect in colour at ``fine_height`` px (IFEED resizes
   crops without quite keeping their aspect), climbing while that helps;
   then every frame at that geometry, the best few fitted sub-pixel by ECC
   and scored by colour NCC at the image's size. The best value is the
   clip's score, with its frame time and the crop's box in the clip's own
   pixels. Frames of one shot that differ by a pixel of jitter score alike,
   so ``time`` is a frame that shows the crop, most often (about 3 in 4 on
   the demo) the very one.
4. Decision per image: ``no_source`` when no candidate clip exists or
   decodes; ``unmatched`` when the best score is under ``threshold``;
   ``ambiguous`` when a candidate of another split scores within ``margin`` of
   the best; else ``matched``. Unmatched and ambiguous rows still carry the
   best candidate (split, ids, time, box, score) for the report, never to be
   trusted.

The thresholds were calibrated on the demo, where every image's true source
is known (README "Tracing IFEED to MELD"): of 640 images, the 635 whose clip
exists scored 0.990-0.999 in it, and no other clip of their key scored over
0.963. Perceptual hashes and embeddings were measured against NCC there
too (``bench/align_methods.py``).

Cost is bounded per image: at most three candidate clips, each decoded once
for all images of its key, ``max_frames`` frames each, and a fixed number of
template matches per frame. Images are sharded by key (all images of a key
and so its candidate clips in one shard); shards merge into
``results/ifeed/alignment.parquet``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import polars as pl
from tqdm import tqdm

from crossemotion.codec import read_image
from crossemotion.ingest import manifest as mf
from crossemotion.ingest.video.decode import Limits, LogStream, VideoError, iter_frames, probe

log = logging.getLogger(__name__)

MATCHED, AMBIGUOUS, UNMATCHED, NO_SOURCE = "matched", "ambiguous", "unmatched", "no_source"
STATUSES = (MATCHED, AMBIGUOUS, UNMATCHED, NO_SOURCE)
MELD_SPLITS = ("train", "dev", "test")

ALIGNMENT_SCHEMA: dict[str, Any] = {
    "member": pl.String,
    "ifeed_split": pl.String,
    "key": pl.String,
    "character": pl.String,
    "status": pl.String,
    "meld_split": pl.String,
    "dialogue_id": pl.Int32,
    "utterance_id": pl.Int32,
    "time": pl.Float64,
    "x": pl.Int32,
    "y": pl.Int32,
    "w": pl.Int32,
    "h": pl.Int32,
    "score": pl.Float64,
    "method": pl.String,
    "second_split": pl.String,
    "second_score": pl.Float64,
    "candidates": pl.String,
    "frame_width": pl.Int32,
    "frame_height": pl.Int32,
    "reason": pl.String,
}


@dataclass(frozen=True)
class AlignSettings:
    """``ifeed.align`` in the config; see the module docstring."""

    shards: int = 1
    height: int = 240
    max_frames: int = 150
    max_duration: float = 30.0
    timeout: float = 120.0
    min_face: float = 0.1
    max_face: float = 1.0
    scale_step: float = 1.18
    coarse_height: int = 12
    keyframes: int = 2
    hypotheses: int = 2
    fine_height: int = 48
    # calibrated on the demo (README "Tracing IFEED to MELD"): true sources score
    # 0.990-0.999, the best other clip of the key at most 0.963
    threshold: float = 0.975
    margin: float = 0.01
    method: str = "ncc"
    threads: int = 1

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None, threads: int = 1) -> AlignSettings:
        cfg = dict(cfg or {})
        cfg.pop("threads", None)  # the job's own threads (the rule's), passed in
        known = {f.name for f in fields(cls)} - {"threads"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown ifeed.align keys: {unknown}")
        return cls(**cfg, threads=threads)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"ifeed.align.method {self.method!r}: one of {METHODS}")
        if not 0 < self.min_face < self.max_face <= 1:
            raise ValueError("ifeed.align needs 0 < min_face < max_face <= 1")
        if self.scale_step <= 1:
            raise ValueError("ifeed.align.scale_step must be > 1")
        if self.shards < 1 or self.max_frames < 1 or self.keyframes < 1:
            raise ValueError("ifeed.align shards, max_frames and keyframes must be >= 1")


# the verification score; perceptual hashes and embeddings were measured against
# it on the demo (bench/align_methods.py) and separate true from false sources less
METHODS = ("ncc",)


# ----------------------------------------------------------------------- clips


@dataclass
class ClipFrames:
    """A candidate clip decoded for matching (analysis frames at ``height`` px)."""

    split: str
    dialogue_id: int
    utterance_id: int
    file: str
    times: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # RGB float32
    grey: list[np.ndarray] = field(default_factory=list)  # float32
    native: tuple[int, int] = (0, 0)  # the clip's own (width, height)
    error: str | None = None
    pyramids: list[list[tuple[float, np.ndarray]]] = field(default_factory=list)
    key_index: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.frames)

    @property
    def to_native(self) -> float:
        return self.native[1] / self.frames[0].shape[0] if self.frames else 1.0


def scales(s: AlignSettings) -> list[float]:
    """Crop heights searched, shares of the frame height: ``min_face`` to ``max_face``
    in equal ratios of at most ``scale_step``."""
    n = math.ceil(math.log(s.max_face / s.min_face) / math.log(s.scale_step))
    step = (s.max_face / s.min_face) ** (1 / max(n, 1))
    return [s.min_face * step**k for k in range(n + 1)]


def load_clip(row: dict[str, Any], s: AlignSettings) -> ClipFrames:
    """Decode a candidate clip densely; a clip that cannot be read gets ``error``."""
    clip = ClipFrames(row["split"], int(row["dialogue_id"]), int(row["utterance_id"]),
                      str(row["file"]))  # fmt: skip
    path = Path(clip.file)
    if not path.is_file():
        clip.error = "clip file not found"
        return clip
    limits = Limits(max_duration=s.max_duration, timeout=s.timeout)
    try:
        info = probe(path, limits)
        if not info.has_video:
            clip.error = "no video stream"
            return clip
        clip.native = (info.width, info.height)
        span = min(info.video_duration or info.duration or s.max_duration, s.max_duration)
        stride = max(1, math.ceil(span * (info.fps or 25.0) / s.max_frames))
        for i, (t, rgb) in enumerate(iter_frames(path, height=s.height, limits=limits)):
            if i % stride == 0 and len(clip.frames) < s.max_frames:
                clip.times.append(float(t))
                clip.frames.append(rgb.astype(np.float32))
    except VideoError as err:
        clip.error = str(err)
        return clip
    if not clip.frames:
        clip.error = "no frame decoded"
        return clip
    clip.grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames]
    n = len(clip.frames)
    clip.key_index = sorted(
        {round(x) for x in np.linspace(0, n - 1, min(n, s.keyframes) + 2)[1:-1]}
    )
    if not clip.key_index:
        clip.key_index = [0]
    height, width = clip.grey[0].shape
    for k in clip.key_index:
        levels = []
        for share in scales(s):
            r = s.coarse_height / (share * height)
            size = (max(1, round(width * r)), max(1, round(height * r)))
            levels.append((r, cv2.resize(clip.grey[k], size, interpolation=cv2.INTER_AREA)))
        clip.pyramids.append(levels)
    return clip


# --------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Match:
    """Where an image sits best in one clip (analysis-frame coordinates)."""

    score: float
    frame: int
    box: tuple[float, float, float, float]  # x, y, w, h


def _best(result: np.ndarray) -> tuple[float, tuple[int, int]]:
    _, value, _, loc = cv2.minMaxLoc(result)
    return float(value), loc


COARSE_STRETCHES = (0.87, 1.0, 1.15)
# (scale, stretch) steps of the fine search around the best frame's place
FINE_GRIDS = ((0.93, 1.0, 1.07), (0.97, 1.0, 1.03))
MAX_CLIMB = 5
# a second coarse place is refined only when it scores nearly as well as the first
HYPOTHESIS_GAP = 0.05
COARSE_PLACES = 6
# the frame search runs in grey at this template height; the scale search in colour
FRAME_SEARCH_HEIGHT = 32
FRAMES_REFINED = 3
GEOMETRY_STRIDE = 2
RESCAN_VERIFIED = 10
# a place scoring under this before the frame scan is another face (true crops
# score >= 0.93 there on the demo, other faces of the same character ~0.9)
PRUNE = 0.8
# verification (ECC): image height, iterations, and how far a fit may bend the crop
VERIFY_HEIGHT = 96
VERIFY_GAP = 0.05
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
MAX_WARP = 0.2


def coarse(image: np.ndarray, clip: ClipFrames, s: AlignSettings) -> list[tuple[float, tuple]]:
    """The ``hypotheses`` best (score, box) of the grey image over keyframes x scales.

    A crop may have been resized to IFEED's size without keeping its aspect,
    so the template is also tried narrower and wider (``COARSE_STRETCHES``).
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    th = s.coarse_height
    templates = []
    for stretch in COARSE_STRETCHES:
        tw = max(4, round(th * image.shape[1] / image.shape[0] * stretch))
        templates.append(cv2.resize(grey, (tw, th), interpolation=cv2.INTER_AREA))
    found = []
    for key, levels in zip(clip.key_index, clip.pyramids, strict=True):
        for r, level in levels:
            for tpl in templates:
                tw = tpl.shape[1]
                if level.shape[0] < th or level.shape[1] < tw:
                    continue
                value, (x, y) = _best(cv2.matchTemplate(level, tpl, cv2.TM_CCOEFF_NORMED))
                if math.isfinite(value):
                    found.append((value, (x / r, y / r, tw / r, th / r), key))
    found.sort(key=lambda f: -f[0])
    places: list[tuple[float, tuple, int]] = []
    for value, box, key in found:
        if all(iou(box, other) < 0.5 for _, other, _ in places):
            places.append((value, box, key))
        if len(places) == COARSE_PLACES:
            break
    # the tiny template confuses faces; a 32 px look at each place sorts them
    gh = FRAME_SEARCH_HEIGHT
    gw = max(4, round(gh * image.shape[1] / image.shape[0]))
    tpl = cv2.resize(grey, (gw, gh), interpolation=cv2.INTER_AREA)
    checked = []
    for _, box, key in places:
        value, found_box = _window_match(clip.grey[key], tpl, box, gw / box[2], gh / box[3], 0.25)
        checked.append((value, found_box))
    checked.sort(key=lambda f: -f[0])
    return [c for c in checked[: s.hypotheses] if c[0] >= checked[0][0] - HYPOTHESIS_GAP]


def _window_match(
    frame: np.ndarray, tpl: np.ndarray, box: Sequence[float], sx: float, sy: float, pad: float
) -> tuple[float, tuple[float, float, float, float]]:
    """Best NCC of ``tpl`` near ``box`` (grown by ``pad`` of its side) in ``frame`` x (sx, sy)."""
    x, y, w, h = box
    margin = pad * max(w, h) + 2
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(x - margin)), max(0, int(y - margin))
    x1 = min(width, math.ceil(x + w + margin))
    y1 = min(height, math.ceil(y + h + margin))
    size = (round((x1 - x0) * sx), round((y1 - y0) * sy))
    if size[0] < tpl.shape[1] or size[1] < tpl.shape[0]:
        return -1.0, (x, y, w, h)
    window = cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    value, (lx, ly) = _best(cv2.matchTemplate(window, tpl, cv2.TM_CCOEFF_NORMED))
    if not math.isfinite(value):
        return -1.0, (x, y, w, h)
    return value, (x0 + lx / sx, y0 + ly / sy, tpl.shape[1] / sx, tpl.shape[0] / sy)


def _grid_step(frame: np.ndarray, tpl: np.ndarray, start: Match, grid: Sequence[float]
               ) -> Match:  # fmt: skip
    """The best of ``start`` and its place rescaled by ``grid`` x ``grid`` (scale x stretch)."""
    fh, fw = tpl.shape[:2]
    sx, sy = fw / start.box[2], fh / start.box[3]
    best = start
    for scale in grid:
        for stretch in grid:
            if scale == stretch == 1.0:
                continue
            value, found = _window_match(frame, tpl, start.box, sx / scale / stretch,
                                         sy / scale, 0.08)  # fmt: skip
            if value > best.score:
                best = Match(value, start.frame, found)
    return best


def fine(image: np.ndarray, clip: ClipFrames, hypothesis: tuple, s: AlignSettings
         ) -> list[Match]:  # fmt: skip
    """Refine a coarse place: the frames that fit best at its scale (grey), then
    scale and stretch on each of them (colour, ``fine_height`` px)."""
    fh = s.fine_height
    fw = max(4, round(fh * image.shape[1] / image.shape[0]))
    tpl = cv2.resize(image.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA)
    gh = FRAME_SEARCH_HEIGHT
    gw = max(4, round(gh * image.shape[1] / image.shape[0]))
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (gw, gh),
                      interpolation=cv2.INTER_AREA)  # fmt: skip
    _, box = hypothesis
    # the geometry needs one frame that shows the face; every other frame will do
    sampled = range(0, len(clip.grey), GEOMETRY_STRIDE)
    per_frame = [
        _window_match(clip.grey[i], grey, box, gw / box[2], gh / box[3], 0.2)[0] for i in sampled
    ]
    frame = sampled[int(np.argmax(per_frame))]
    value, found = _window_match(clip.frames[frame], tpl, box, fw / box[2], fh / box[3], 0.2)
    best = Match(value, frame, found)
    # scale and stretch: climb in coarse steps while that helps (the coarse
    # search's scales are ~18% apart, and a crop clipped by the frame edge
    # is stretched), then one finer step
    for _ in range(MAX_CLIMB):
        start = best
        best = _grid_step(clip.frames[frame], tpl, best, FINE_GRIDS[0])
        if best is start:
            break
    best = _grid_step(clip.frames[frame], tpl, best, FINE_GRIDS[1])
    if best.score < PRUNE:
        return [best]  # another face: not worth the frame scan and the verification
    # frames of one shot look alike up to the mouth and a pixel of jitter: with the
    # geometry found, every frame is scored in colour and the best few verified
    sx, sy = fw / best.box[2], fh / best.box[3]
    scored = []
    for i, f in enumerate(clip.frames):
        value, found = _window_match(f, tpl, best.box, sx, sy, 0.05)
        scored.append(Match(value, i, found))
    return sorted(scored, key=lambda m: -m.score)[:FRAMES_REFINED]


def fit_region(
    image: np.ndarray, clip: ClipFrames, m: Match
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]] | None:
    """Sub-pixel fit of the image onto its place (ECC): (frame region, image, box).

    The discrete search leaves the crop a pixel or a few percent of scale off,
    which costs a true match more correlation than separates it from the same
    face in another clip; ECC's gradient steps remove that. The frame around
    the place is first brought to the image's scale by area averaging, as a
    crop is shrunk to IFEED's size (sampling it point-wise would alias). Both
    come back at the image's size (at most ``VERIFY_HEIGHT`` px high). None when
    the fit fails or needs more than ``MAX_WARP`` of rotation, shear or
    rescaling: not this crop.
    """
    scale = min(1.0, VERIFY_HEIGHT / image.shape[0])
    size = (max(4, round(image.shape[1] * scale)), max(4, round(image.shape[0] * scale)))
    img = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    x, y, w, h = m.box
    f = size[1] / h  # frame px -> image px
    frame = clip.frames[m.frame]
    pad = 0.15 * max(w, h) + 2
    wx0, wy0 = max(0, int(x - pad)), max(0, int(y - pad))
    wx1 = min(frame.shape[1], math.ceil(x + w + pad))
    wy1 = min(frame.shape[0], math.ceil(y + h + pad))
    if wx1 - wx0 < 4 or wy1 - wy0 < 4:
        return None
    wsize = (max(1, round((wx1 - wx0) * f)), max(1, round((wy1 - wy0) * f)))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    window = cv2.resize(frame[wy0:wy1, wx0:wx1], wsize, interpolation=interp)
    fx, fy = wsize[0] / (wx1 - wx0), wsize[1] / (wy1 - wy0)
    sx, sy = w * fx / size[0], h * fy / size[1]
    warp = np.float32([[sx, 0, (x - wx0) * fx + 0.5 * sx - 0.5],
                       [0, sy, (y - wy0) * fy + 0.5 * sy - 0.5]])  # fmt: skip
    start = warp.copy()
    try:
        _, warp = cv2.findTransformECC(
            cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.cvtColor(window, cv2.COLOR_RGB2GRAY),
            warp, cv2.MOTION_AFFINE, ECC_CRITERIA, None, 3,
        )  # fmt: skip
    except cv2.error:
        return None
    linear = np.linalg.solve(start[:, :2], warp[:, :2])
    if np.abs(linear - np.eye(2)).max() > MAX_WARP:
        return None
    # an IFEED crop is an axis-aligned cut, resized: keep ECC's scales and shift,
    # drop the rotation and shear it may have used to bend another clip's face on
    middle = np.float32([size[0] / 2 - 0.5, size[1] / 2 - 0.5])
    centre = warp[:, :2] @ middle + warp[:, 2]
    warp = np.float32([[warp[0, 0], 0, 0], [0, warp[1, 1], 0]])
    warp[:, 2] = centre - warp[:, :2] @ middle
    region = cv2.warpAffine(window, warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    corners = np.float32([[-0.5, -0.5], [size[0] - 0.5, size[1] - 0.5]])
    mapped = corners @ warp[:, :2].T + warp[:, 2]  # window px
    (x0, y0), (x1, y1) = mapped / np.float32([fx, fy]) + np.float32([wx0, wy0])
    return region, img, (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def verify(image: np.ndarray, clip: ClipFrames, m: Match) -> Match:
    """The place's score after the fit (``fit_region``): colour NCC at the image's size.

    Where the fit fails the discrete score stands.
    """
    fitted = fit_region(image, clip, m)
    if fitted is None:
        return m
    region, img, box = fitted
    return Match(ncc(region, img), m.frame, box)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally sized images, over all channels at once
    (one mean: a crop's colour balance counts, its brightness and contrast do not)."""
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    # elementwise sums, not BLAS dot products: BLAS threads spin on a busy machine
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / denom if denom > 0 else 0.0


def match_clip(image: np.ndarray, clip: ClipFrames, s: AlignSettings) -> Match:
    """The image's best place in the clip, its score verified (``verify``)."""
    found = [m for h in coarse(image, clip, s) for m in fine(image, clip, h, s)]
    if not found:
        return Match(-1.0, 0, (0.0, 0.0, 0.0, 0.0))
    top = max(m.score for m in found)
    # only places that could still win are worth the affine fit
    contenders = [m for m in found if m.score >= top - VERIFY_GAP]
    checked = {m.frame for m in contenders if m.score >= PRUNE}
    best = max((verify(image, clip, m) if m.score >= PRUNE else m for m in contenders),
               key=lambda m: m.score)  # fmt: skip
    if best.score < PRUNE:
        return best
    # second round: the verified box is exact for its shot, so every frame is
    # compared at full image size there, and the best unverified ones verified
    scale = min(1.0, VERIFY_HEIGHT / image.shape[0])
    size = (max(4, round(image.shape[1] * scale)), max(4, round(image.shape[0] * scale)))
    tpl = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    sx, sy = size[0] / best.box[2], size[1] / best.box[3]
    scan = []
    for i, frame in enumerate(clip.frames):
        if i not in checked:
            value, box = _window_match(frame, tpl, best.box, sx, sy, 0.03)
            scan.append(Match(value, i, box))
    for m in sorted(scan, key=lambda m: -m.score)[:RESCAN_VERIFIED]:
        checked_m = verify(image, clip, m)
        if checked_m.score > best.score:
            best = checked_m
    return best


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------- decision


def decide(
    scored: Sequence[tuple[ClipFrames, Match]], s: AlignSettings
) -> tuple[str, tuple[ClipFrames, Match] | None, tuple[ClipFrames, Match] | None]:
    """(status, best, runner-up of another split) from each decodable candidate's match."""
    if not scored:
        return NO_SOURCE, None, None
    ranked = sorted(scored, key=lambda cm: -cm[1].score)
    best = ranked[0]
    second = next((cm for cm in ranked[1:] if cm[0].split != best[0].split), None)
    if best[1].score < s.threshold:
        return UNMATCHED, best, second
    if second is not None and best[1].score - second[1].score < s.margin:
        return AMBIGUOUS, best, second
    return MATCHED, best, second


def align_key(
    key: str,
    images: Sequence[dict[str, Any]],
    candidates: Sequence[dict[str, Any]],
    ifeed_root: Path,
    s: AlignSettings,
) -> list[dict[str, Any]]:
    """Alignment rows for the IFEED images of one key (one per image)."""
    clips = [load_clip(c, s) for c in candidates]
    good = [c for c in clips if c.ok]
    failed = "; ".join(f"{c.split} {Path(c.file).name}: {c.error}" for c in clips if not c.ok)
    rows = []
    for img in images:
        base = {
            "member": img["member"], "ifeed_split": img["split"], "key": key,
            "character": img.get("character"), "method": s.method,
        }  # fmt: skip
        image = read_image(ifeed_root / img["member"])
        if image is None:
            rows.append({**base, "status": UNMATCHED, "reason": "image does not decode"})
            continue
        scored = [(c, match_clip(image, c, s)) for c in good]
        status, best, second = decide(scored, s)
        reason = []
        if not candidates:
            reason.append("no MELD clip has this key")
        if failed:
            reason.append(f"candidates that do not decode: {failed}")
        row = {
            **base,
            "status": status,
            "reason": "; ".join(reason) or None,
            "candidates": ";".join(f"{c.split}:{m.score:.3f}" for c, m in scored) or None,
        }
        if best is not None:
            clip, m = best
            k = clip.to_native
            x, y, w, h = m.box
            row.update(
                meld_split=clip.split, dialogue_id=clip.dialogue_id,
                utterance_id=clip.utterance_id, time=round(clip.times[m.frame], 4),
                x=round(x * k), y=round(y * k), w=round(w * k), h=round(h * k),
                score=round(m.score, 4), frame_width=clip.native[0],
                frame_height=clip.native[1],
            )  # fmt: skip
        if second is not None:
            row.update(second_split=second[0].split, second_score=round(second[1].score, 4))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------- shards


def shard_of_key(key: str | None, n_shards: int) -> int:
    """Stable shard of a key: every image of a key (and so its candidate clips) in one."""
    digest = hashlib.sha1((key or "").encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_shards


def candidates_by_key(index: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """key -> the MELD index rows with a clip file (at most one per split), split order."""
    rows = index.filter(
        pl.col("file").is_not_null()
        & pl.col("key").is_not_null()
        & (pl.col("status") != mf.MISSING)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    cols = ["split", "dialogue_id", "utterance_id", "key", "file"]
    for row in rows.select(cols).unique(["split", "key"]).iter_rows(named=True):
        out.setdefault(row["key"], []).append(row)
    order = {s: i for i, s in enumerate(MELD_SPLITS)}
    for found in out.values():
        found.sort(key=lambda r: order.get(r["split"], len(order)))
    return out


def usable_images(manifest: pl.DataFrame) -> pl.DataFrame:
    """The IFEED images the workflow uses (manifest status ok): one alignment row each."""
    return (
        manifest.filter(pl.col("status") == mf.OK)
        .select("member", "split", "key", "character")
        .sort("member")
    )


def align_shard(
    manifest: pl.DataFrame,
    index: pl.DataFrame,
    ifeed_root: str | Path,
    shard: int,
    s: AlignSettings,
    progress: bool | None = None,
) -> pl.DataFrame:
    """Alignment rows of the images whose key falls in ``shard`` (of ``s.shards``)."""
    images = usable_images(manifest)
    images = images.filter(
        pl.col("key").map_elements(lambda k: shard_of_key(k, s.shards), return_dtype=pl.Int64,
                                   skip_nulls=False) == shard
    )  # fmt: skip
    by_key: dict[str, list[dict[str, Any]]] = {}
    for img in images.iter_rows(named=True):
        by_key.setdefault(img["key"] or "", []).append(img)
    cands = candidates_by_key(index)
    root = Path(ifeed_root)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    # log lines in job logs (no terminal there); a bar when run by hand
    bar = tqdm(total=images.height, desc=f"align shard {shard}", unit="img", mininterval=10,
               ascii=True, file=None if progress else LogStream(log),
               disable=progress is False)  # fmt: skip
    cv2.setNumThreads(1)  # the thread pool is the parallelism

    def one(key: str) -> list[dict[str, Any]]:
        return align_key(key, by_key[key], cands.get(key, []) if key else [], root, s)

    with ThreadPoolExecutor(max_workers=max(1, s.threads)) as pool:
        for key_rows in pool.map(one, sorted(by_key)):
            rows += key_rows
            bar.update(len(key_rows))
    bar.close()
    log.info("shard %d: %d images of %d keys in %.1f s", shard, len(rows), len(by_key),
             time.perf_counter() - t0)  # fmt: skip
    return alignment_frame(rows)


def alignment_frame(rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
    rows = [{c: r.get(c) for c in ALIGNMENT_SCHEMA} for r in rows]
    return pl.DataFrame(rows, schema=ALIGNMENT_SCHEMA).sort("member")


def merge_shards(paths: Sequence[str | Path]) -> pl.DataFrame:
    """The shards' rows as one table; a member in two shards is a sharding bug."""
    if not paths:
        return alignment_frame([])
    frame = pl.concat([pl.read_parquet(p) for p in paths], how="vertical_relaxed")
    frame = frame.select([pl.col(c).cast(t) for c, t in ALIGNMENT_SCHEMA.items()]).sort("member")
    dupes = frame.filter(pl.col("member").is_duplicated())["member"].unique().to_list()
    if dupes:
        raise ValueError(f"alignment shards overlap on {len(dupes)} members, e.g. {dupes[:3]}")
    return frame


# ---------------------------------------------------------------------- report


def folder_table(frame: pl.DataFrame) -> pl.DataFrame:
    """Images per IFEED folder: matched (in all and per MELD split) and the other statuses."""
    rows = []
    for split in sorted(frame["ifeed_split"].drop_nulls().unique().to_list()):
        part = frame.filter(pl.col("ifeed_split") == split)
        matched = part.filter(pl.col("status") == MATCHED)
        row: dict[str, Any] = {"ifeed_folder": split, "images": part.height,
                               "matched": matched.height}  # fmt: skip
        row.update({f"matched_meld_{m}": int((matched["meld_split"] == m).sum())
                    for m in MELD_SPLITS})  # fmt: skip
        row.update({st: int((part["status"] == st).sum()) for st in STATUSES[1:]})
        row["matched_share"] = matched.height / part.height if part.height else None
        rows.append(row)
    return pl.DataFrame(rows)


def _share(n: int, total: int) -> str:
    return f"{n} ({n / total:.0%})" if total else "0"


def alignment_markdown(frame: pl.DataFrame, s: AlignSettings, limit: int = 30) -> str:
    """results/ifeed/alignment.md: where IFEED's images come from, and how sure that is."""
    total = frame.height
    lines = [
        "# IFEED images traced to MELD clips",
        "",
        f"Method `{s.method}`: an image is `matched` when its best candidate clip scores "
        f">= {s.threshold:g} and beats every candidate of another MELD split by >= {s.margin:g}; "
        "`ambiguous` when a candidate of another split comes within the margin; `unmatched` "
        f"when no candidate reaches {s.threshold:g}; `no_source` when no MELD clip with its key "
        "exists or decodes. Candidates: the MELD clips with the image's `dia{D}_utt{U}` in "
        f"any split, decoded at {s.height} px, at most {s.max_frames} frames of the first "
        f"{s.max_duration:g} s.",
        "",
        f"Images: {total}; "
        + ", ".join(
            f"{st}: {_share(int((frame['status'] == st).sum()), total)}" for st in STATUSES
        ),
        "",
        "## Matched share per IFEED folder and MELD split",
        "",
        "| IFEED folder | images | matched | MELD train | MELD dev | MELD test | ambiguous | "
        "unmatched | no_source |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split in sorted(frame["ifeed_split"].drop_nulls().unique().to_list()):
        part = frame.filter(pl.col("ifeed_split") == split)
        n = part.height
        matched = part.filter(pl.col("status") == MATCHED)
        cells = [_share(matched.height, n)]
        cells += [_share(int((matched["meld_split"] == m).sum()), n) for m in MELD_SPLITS]
        cells += [_share(int((part["status"] == st).sum()), n) for st in STATUSES[1:]]
        lines.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Scores", "", "Best candidate's score by status (min / 1% / 50% / max):", ""]
    lines += ["| status | n | min | q01 | median | max |", "|---|---:|---:|---:|---:|---:|"]
    for st in STATUSES:
        sc = frame.filter((pl.col("status") == st) & pl.col("score").is_not_null())["score"]
        if sc.len():
            q = [sc.min(), sc.quantile(0.01), sc.median(), sc.max()]
            lines.append(f"| {st} | {sc.len()} | " + " | ".join(f"{v:.3f}" for v in q) + " |")
    second = frame.filter(pl.col("status") == MATCHED)["second_score"].drop_nulls()
    if second.len():
        lines += ["", f"Runner-up of another split behind matched images: max {second.max():.3f}, "
                  f"median {second.median():.3f} ({second.len()} images with one)."]  # fmt: skip
    bins = [0.0, 0.5, 0.8, 0.9, 0.95, s.threshold, 0.99, 1.0001]
    counts = np.histogram(frame["score"].drop_nulls().to_numpy(), bins=bins)[0]
    lines += ["", "| best score | images |", "|---|---:|"]
    lines += [f"| [{a:.3f}, {min(b, 1.0):.3f}{']' if b > 1 else ')'} | {c} |"
              for a, b, c in zip(bins[:-1], bins[1:], counts, strict=True)]  # fmt: skip
    for st, title in ((AMBIGUOUS, "Ambiguous"), (UNMATCHED, "Unmatched"), (NO_SOURCE, "No source")):
        part = frame.filter(pl.col("status") == st)
        if not part.height:
            continue
        lines += ["", f"## {title} ({part.height})", "", "| member | candidates | reason |",
                  "|---|---|---|"]  # fmt: skip
        for r in part.head(limit).iter_rows(named=True):
            reason = (r["reason"] or "").replace("|", "\\|")
            lines.append(f"| {r['member']} | {r['candidates'] or '–'} | {reason or '–'} |")
        if part.height > limit:
            lines.append(f"| … {part.height - limit} more | | |")
    split_folders = (
        frame.filter(pl.col("status") == MATCHED)
        .group_by("ifeed_split", "key")
        .agg(pl.col("meld_split").n_unique().alias("n"))
        .filter(pl.col("n") > 1)
    )
    lines += ["", f"IFEED folders whose matched images come from two or more MELD splits: "
              f"{split_folders.height} (a folder names a key, not a clip)."]  # fmt: skip
    return "\n".join(lines) + "\n"

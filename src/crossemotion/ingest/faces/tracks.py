"""Face tracks through a clip, speaking activity per track, and the speaker track.

The faces stage (``crossemotion.ingest.faces.crops``, ``selector: track``) and the
clip models' inference (``datasets.speaker_crop.detect_speakers``) both choose
their speaker with ``speaker_of_clip``.

Tracks (``link_tracks``). A clip's sampled frames each have their detections
(box, five landmarks, score). Frame by frame, every open track (last seen at
most ``max_gap`` frames ago) is matched to at most one detection of the
frame, by the Hungarian method (``scipy.optimize.linear_sum_assignment``) on
a cost that mixes box overlap and landmark distance:

    cost = (1 - IoU) + landmark distance / face size (when both have landmarks)
           + gap_cost x frames skipped

A pair is allowed only where the boxes overlap (IoU >= ``min_iou``) or the
landmarks lie close (mean distance <= ``max_landmark_distance`` face sizes),
and the faces are of like size (ratio within ``max_size_ratio``): sampled
frames are a fraction of a second apart, in which a head moves little; a cut to
another shot ends the tracks. Unmatched detections open new tracks. A face
the detector misses for up to ``max_gap`` frames keeps its track.

Speaking activity (``speaking_activity``). The two mouth-corner landmarks
define the mouth box: a similarity warp takes the corners to fixed points of
a small grey patch (``MOUTH_PATCH``), so the patch covers the same part of the
face at any size or tilt (face size normalised away). Mouth motion is the
mean absolute change of that patch between consecutive frames of the track
(grey levels / 255). Where the clip has sound, the motion of each step is
correlated in time (Pearson) with the sound's RMS envelope at those frames
(``crossemotion.ingest.video.audio``): a talking mouth moves while the sound
is loud and rests in the pauses.

The speaker (``speaker_track``). Each track gets a score from its activity,
mean size, centrality and duration, each on [0, 1] within the clip; the
highest wins, and the confidence says by how much, and for how long the face
was seen. Activity dominates: a listener in a close-up reaction shot is larger
than the speaker, but does not move their mouth in time with the voice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crossemotion.ingest.faces.detect import Detection, Point

Box = tuple[int, int, int, int]

# the mouth patch: the two mouth corners land on _MOUTH_CORNERS, so the patch spans
# 1.5 corner distances across and one from above the upper lip to below the
# lower lip (more below the corners, where an opening jaw goes)
MOUTH_PATCH = (24, 16)  # width, height
_MOUTH_CORNERS = ((4.0, 7.0), (20.0, 7.0))
PATCH_BLUR = 1.0  # Gaussian sigma, patch pixels


@dataclass(frozen=True)
class TrackSettings:
    max_gap: int = 2  # frames a face may be missed and keep its track
    min_iou: float = 0.2
    max_landmark_distance: float = 0.5  # mean landmark distance, in face sizes
    max_size_ratio: float = 1.6  # larger / smaller face side
    gap_cost: float = 0.1  # added per skipped frame: a fresh match is preferred


@dataclass
class Track:
    """One face followed through a clip's sampled frames.

    ``frames``: the sampled frame indices where it was detected (ascending;
    gaps are frames it was missed in); ``detections``: its index in each of
    those frames' detection lists, so a faces-shard row can get its
    ``track_id``. Boxes are (x, y, w, h); landmarks five (x, y) points or empty.
    """

    track_id: int
    frames: list[int] = field(default_factory=list)
    detections: list[int] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    landmarks: list[tuple[Point, ...]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frame: int, index: int, d: Detection) -> None:
        self.frames.append(frame)
        self.detections.append(index)
        self.boxes.append(d.box)
        self.landmarks.append(tuple(d.landmarks))
        self.scores.append(float(d.score))

    def index_at(self, frame: int) -> int | None:
        """The track's detection index in ``frame``, or None where it was not seen."""
        try:
            return self.detections[self.frames.index(frame)]
        except ValueError:
            return None


@dataclass(frozen=True)
class TrackSummary:
    track_id: int
    length: int  # frames with a detection
    span: int  # first to last frame, gaps included
    first: int
    last: int
    mean_size: float  # mean of sqrt(box area), pixels
    centrality: float  # 1 at the frame centre, 0 at a corner (mean over the frames)
    mean_score: float


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _side(box: Box) -> float:
    return math.sqrt(max(box[2] * box[3], 1))


def _landmark_distance(a: tuple[Point, ...], b: tuple[Point, ...], size: float) -> float | None:
    """Mean distance of corresponding landmarks in face sizes; None unless both have five."""
    if len(a) != 5 or len(b) != 5:
        return None
    pa, pb = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(pa - pb, axis=1).mean()) / max(size, 1.0)


def _pair_cost(track: Track, d: Detection, gap: int, s: TrackSettings) -> float | None:
    """The cost of continuing ``track`` with ``d`` after ``gap`` missed frames; None if
    the pair is not allowed."""
    last = track.boxes[-1]
    big, small = max(_side(last), _side(d.box)), min(_side(last), _side(d.box))
    if big > s.max_size_ratio * small:
        return None
    iou = _iou(last, d.box)
    dist = _landmark_distance(track.landmarks[-1], tuple(d.landmarks), 0.5 * (big + small))
    close = dist is not None and dist <= s.max_landmark_distance
    if iou < s.min_iou and not close:
        return None
    return (1.0 - iou) + (dist if dist is not None else 0.0) + s.gap_cost * gap


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost pairs (row, column) among the allowed (finite) entries."""
    from scipy.optimize import linear_sum_assignment

    allowed = np.isfinite(cost)
    if not allowed.any():
        return []
    # forbidden pairs get a cost above any allowed assignment's total, then are dropped
    big = float(cost[allowed].sum()) + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, cost, big))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


def link_tracks(
    frames: Sequence[Sequence[Detection]], settings: TrackSettings = TrackSettings()
) -> list[Track]:
    """Tracks from per-frame detections (``frames[i]``: the faces of sampled frame i).

    Track ids number the tracks in the order they start (0, 1, ...); every
    detection belongs to exactly one track.
    """
    if settings.max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {settings.max_gap}")
    tracks: list[Track] = []
    for f, found in enumerate(frames):
        open_tracks = [t for t in tracks if f - t.frames[-1] - 1 <= settings.max_gap]
        cost = np.full((len(open_tracks), len(found)), np.inf)
        for i, t in enumerate(open_tracks):
            gap = f - t.frames[-1] - 1
            for j, d in enumerate(found):
                c = _pair_cost(t, d, gap, settings)
                if c is not None:
                    cost[i, j] = c
        taken: set[int] = set()
        for i, j in _assign(cost):
            open_tracks[i].add(f, j, found[j])
            taken.add(j)
        for j, d in enumerate(found):
            if j not in taken:
                track = Track(len(tracks))
                track.add(f, j, d)
                tracks.append(track)
    return tracks


def summarize(track: Track, width: int, height: int) -> TrackSummary:
    """Length, mean size, centrality and mean score of a track in a ``width`` x ``height`` clip."""
    half_diag = math.hypot(width, height) / 2 or 1.0
    centres = [(x + w / 2, y + h / 2) for x, y, w, h in track.boxes]
    off = [math.hypot(cx - width / 2, cy - height / 2) / half_diag for cx, cy in centres]
    return TrackSummary(
        track_id=track.track_id,
        length=len(track),
        span=track.frames[-1] - track.frames[0] + 1,
        first=track.frames[0],
        last=track.frames[-1],
        mean_size=float(np.mean([_side(b) for b in track.boxes])),
        centrality=float(max(0.0, 1.0 - float(np.mean(off)))),
        mean_score=float(np.mean(track.scores)),
    )


def track_ids(tracks: Sequence[Track], n_frames: int) -> list[dict[int, int]]:
    """Per frame: detection index -> track id (what a faces-shard row's ``track_id`` is)."""
    out: list[dict[int, int]] = [{} for _ in range(n_frames)]
    for t in tracks:
        for f, j in zip(t.frames, t.detections, strict=True):
            out[f][j] = t.track_id
    return out


# --------------------------------------------------------------------------- activity


@dataclass(frozen=True)
class Activity:
    """How much a track's mouth moves, and with the sound.

    ``steps``: mouth motion between consecutive detections of the track (grey
    change / 255 of the mouth patch); ``motion``: their mean (0 for a track
    without two frames with landmarks); ``audio_corr``: Pearson correlation of
    the steps with the sound's energy there (None without sound, or with fewer
    than three steps, or where either does not vary).
    """

    track_id: int
    steps: tuple[float, ...]
    motion: float
    audio_corr: float | None


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def mouth_patch(frame: np.ndarray, landmarks: Sequence[Point]) -> np.ndarray | None:
    """The grey mouth region, warped so that the mouth corners (landmarks 3 and 4) land
    on fixed points of a ``MOUTH_PATCH`` patch (float32, 0-255); None without landmarks
    or with corners that coincide."""
    import cv2

    if len(landmarks) != 5:
        return None
    src = np.asarray(landmarks[3:5], np.float64)
    dst = np.asarray(_MOUTH_CORNERS, np.float64)
    v_src, v_dst = src[1] - src[0], dst[1] - dst[0]
    norm = float(np.hypot(*v_src))
    if norm < 1.0:
        return None
    # similarity transform corners -> template corners (rotation, scale, shift)
    scale = float(np.hypot(*v_dst)) / norm
    angle = math.atan2(v_dst[1], v_dst[0]) - math.atan2(v_src[1], v_src[0])
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    shift = dst[0] - rot @ src[0]
    grey = _grey(frame)
    # only the mouth's neighbourhood is smoothed and warped, not the whole frame
    mid, reach = src.mean(axis=0), 1.2 * norm
    x0, y0 = max(0, int(mid[0] - reach)), max(0, int(mid[1] - reach))
    x1 = min(grey.shape[1], math.ceil(mid[0] + reach) + 1)
    y1 = min(grey.shape[0], math.ceil(mid[1] + reach) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    roi = grey[y0:y1, x0:x1].astype(np.float32)
    if scale < 1.0:
        # warpAffine samples bilinearly: a large mouth shrunk onto the patch would
        # alias, and its aliasing flickers with sub-pixel landmark jitter
        roi = cv2.GaussianBlur(roi, (0, 0), 0.5 / scale)
    m = np.hstack([rot, (shift + rot @ np.array([x0, y0], np.float64))[:, None]])
    patch = cv2.warpAffine(roi, m, MOUTH_PATCH, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    # one patch pixel of smoothing: compression noise and the landmarks' sub-pixel
    # jitter change single pixels; an opening mouth changes whole regions
    patch = cv2.GaussianBlur(patch, (0, 0), PATCH_BLUR)
    return patch.astype(np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 3 or float(a.std()) < 1e-9 or float(b.std()) < 1e-12:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _same_frame(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and bool(np.array_equal(a, b)))


def speaking_activity(
    track: Track,
    frames: Sequence[np.ndarray],
    envelope: Sequence[float] | np.ndarray | None = None,
) -> Activity:
    """Mouth motion of ``track`` in the clip's sampled ``frames`` (RGB or grey arrays, the
    ones the detections came from), and its correlation with the sound's ``envelope``
    (one RMS value per sampled frame, ``audio.rms_envelope`` at the frame times).

    A step between frames a and b is paired with the mean energy at a and b.
    A frame equal to the one before it (the same decoded frame picked for two
    sample times) adds no step.
    """
    env = None if envelope is None else np.asarray(envelope, np.float64)
    if env is not None and env.size != len(frames):
        raise ValueError(f"envelope has {env.size} values for {len(frames)} frames")
    steps: list[float] = []
    energy: list[float] = []
    prev: tuple[int, np.ndarray] | None = None
    for f, marks in zip(track.frames, track.landmarks, strict=True):
        patch = mouth_patch(frames[f], marks)
        if patch is None:
            prev = None
            continue
        if prev is not None and _same_frame(frames[prev[0]], frames[f]):
            # one decoded frame sampled twice (the reader's ``exact: false`` takes the
            # nearest decoded frame): no time passed between them, no step to measure
            continue
        if prev is not None:
            steps.append(float(np.abs(patch - prev[1]).mean()) / 255.0)
            if env is not None:
                energy.append(0.5 * float(env[prev[0]] + env[f]))
        prev = (f, patch)
    arr = np.asarray(steps)
    corr = _corr(arr, np.asarray(energy)) if env is not None else None
    return Activity(track.track_id, tuple(steps), float(arr.mean()) if steps else 0.0, corr)


# --------------------------------------------------------------------------- speaker


@dataclass(frozen=True)
class SpeakerWeights:
    """How the speaker score mixes its parts (each on [0, 1] within the clip)."""

    activity: float = 0.6
    size: float = 0.15
    centrality: float = 0.1
    duration: float = 0.15
    # mouth motion below this (grey change / 255 per step) is the noise of a still
    # mouth (detector jitter, compression), not speech: activity is measured
    # against at least this much, so in a clip where nobody speaks the
    # stillest mouth is not promoted to "speaking"
    motion_floor: float = 0.02


@dataclass(frozen=True)
class SpeakerChoice:
    """The chosen track, how sure (0-1), and every track's score and speaking part."""

    track: Track
    confidence: float
    scores: dict[int, float]
    speaking: dict[int, float]
    used_audio: bool


def speaking_score(a: Activity, top_motion: float, floor: float) -> float:
    """A track's speaking part on [0, 1]: its motion relative to the clip's most moving
    mouth (at least ``floor``), halved where the motion does not follow the sound."""
    motion = a.motion / max(top_motion, floor)
    if a.audio_corr is None:
        return float(min(1.0, motion))
    return float(min(1.0, motion) * (0.5 + 0.5 * max(0.0, a.audio_corr)))


def speaker_track(
    tracks: Sequence[Track],
    activity: Sequence[Activity] | dict[int, Activity],
    frame_size: tuple[int, int],
    n_frames: int | None = None,
    weights: SpeakerWeights = SpeakerWeights(),
) -> SpeakerChoice | None:
    """The clip's speaker track among ``tracks``; None when there is none.

    ``activity``: ``speaking_activity`` per track (by id; a track without one
    counts as silent). ``frame_size``: (width, height) of the frames the boxes
    are in. ``n_frames``: the clip's sampled frames (default: the last frame any
    track reaches + 1), for the duration part.

    Score = weighted sum of speaking (``speaking_score``), size (mean face side
    / the largest track's), centrality (``summarize``) and duration (frames
    seen / ``n_frames``); where no track has any activity (no landmarks, or
    single frames) the speaking weight is dropped and the rest decide.
    Confidence = the winner's lead over the runner-up (relative to its own
    score; 1 for a lone track) times how much of the clip the winner spans
    (its frames / half the clip's, at most 1): a face seen in one frame is a
    weak claim however alone it is.
    """
    if not tracks:
        return None
    by_id = activity if isinstance(activity, dict) else {a.track_id: a for a in activity}
    width, height = frame_size
    frames_total = n_frames or max(t.frames[-1] for t in tracks) + 1
    summaries = {t.track_id: summarize(t, width, height) for t in tracks}
    motions = [by_id[t.track_id].motion for t in tracks if t.track_id in by_id]
    top_motion = max(motions, default=0.0)
    has_activity = top_motion > 0.0
    used_audio = any(
        by_id[t.track_id].audio_corr is not None for t in tracks if t.track_id in by_id
    )
    top_size = max(s.mean_size for s in summaries.values()) or 1.0
    w_act = weights.activity if has_activity else 0.0
    total_w = w_act + weights.size + weights.centrality + weights.duration
    scores: dict[int, float] = {}
    speaking: dict[int, float] = {}
    for t in tracks:
        s = summaries[t.track_id]
        a = by_id.get(t.track_id)
        speak = speaking_score(a, top_motion, weights.motion_floor) if a is not None else 0.0
        speaking[t.track_id] = speak
        scores[t.track_id] = (
            w_act * speak
            + weights.size * s.mean_size / top_size
            + weights.centrality * s.centrality
            + weights.duration * min(1.0, s.length / frames_total)
        ) / total_w
    ranked = sorted(tracks, key=lambda t: (-scores[t.track_id], t.track_id))
    best = ranked[0]
    first = scores[best.track_id]
    lead = 1.0 if len(ranked) == 1 else (first - scores[ranked[1].track_id]) / max(first, 1e-9)
    seen = min(1.0, len(best) / max(0.5 * frames_total, 1.0))
    confidence = float(np.clip(lead * seen, 0.0, 1.0))
    return SpeakerChoice(best, confidence, scores, speaking, used_audio)


@dataclass(frozen=True)
class ClipTracks:
    """A clip's tracks, each track's activity, and the speaker choice (None: no face)."""

    tracks: list[Track]
    activity: dict[int, Activity]
    choice: SpeakerChoice | None


def speaker_of_clip(
    found: Sequence[Sequence[Detection]],
    frames: Sequence[np.ndarray],
    envelope: Sequence[float] | np.ndarray | None = None,
    settings: TrackSettings = TrackSettings(),
    weights: SpeakerWeights = SpeakerWeights(),
) -> ClipTracks:
    """Link ``found`` (each sampled frame's faces) into tracks, measure each track's
    speaking activity in ``frames`` (with the sound's ``envelope`` where given) and
    choose the speaker track."""
    tracks = link_tracks(found, settings)
    activity = {t.track_id: speaking_activity(t, frames, envelope) for t in tracks}
    height, width = frames[0].shape[:2] if len(frames) else (1, 1)
    choice = speaker_track(tracks, activity, (width, height), len(frames), weights)
    return ClipTracks(tracks, activity, choice)

"""Face tracks, speaking activity and the speaker track (crossemotion.ingest.faces.tracks).

Unit cases on made-up detections (ids stable, gaps bridged up to ``max_gap``, cuts
split), then generated clips encoded with PyAV and read back through the
project's reader: a real face (Grace Hopper's portrait, shipped with matplotlib)
pasted twice, a smaller one whose mouth opens and closes in speech bursts and a
larger, more central one whose mouth stays shut; with a sound track whose
loudness follows the moving mouth, without one, and with a corrupt one; a clip
with no face; a face in one sampled frame only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from crossemotion.ingest.faces.detect import Detection, get_detector
from crossemotion.ingest.faces.tracks import (
    MOUTH_PATCH,
    Activity,
    Track,
    TrackSettings,
    link_tracks,
    mouth_patch,
    speaker_track,
    speaking_activity,
    summarize,
    track_ids,
)
from crossemotion.ingest.video.audio import AudioError, clip_envelope
from crossemotion.ingest.video.reader import DecodeSettings, decode_clip
from crossemotion.synth.faces import background
from tests.test_audio import corrupt_audio, voice, write_clip

# ------------------------------------------------------------------ made-up detections


def det(x: float, y: float, size: float = 40.0, score: float = 0.9) -> Detection:
    """A face box at (x, y) with five landmarks placed as on a frontal face."""
    s = size
    marks = ((x + 0.3 * s, y + 0.4 * s), (x + 0.7 * s, y + 0.4 * s), (x + 0.5 * s, y + 0.6 * s),
             (x + 0.35 * s, y + 0.8 * s), (x + 0.65 * s, y + 0.8 * s))  # fmt: skip
    return Detection(round(x), round(y), round(s), round(s), score, marks)


def test_two_faces_keep_their_ids_and_a_one_frame_gap_is_bridged() -> None:
    """A walks right, B stands; the list order flips (the detector ranks by size) and A
    is missed in frame 3: still two tracks, A seen in 0-2 and 4-5."""
    frames: list[list[Detection]] = []
    for f in range(6):
        a = det(20 + 4 * f, 50, size=40 + 2 * f)
        b = det(200, 60, size=48)
        if f == 3:
            frames.append([b])
        else:
            frames.append([b, a] if f < 3 else [a, b])
    tracks = link_tracks(frames)
    assert len(tracks) == 2
    a_track = next(t for t in tracks if t.boxes[0][0] < 100)
    b_track = next(t for t in tracks if t.boxes[0][0] >= 100)
    assert a_track.frames == [0, 1, 2, 4, 5]
    assert b_track.frames == [0, 1, 2, 3, 4, 5]
    assert all(x < 100 for x, _, _, _ in a_track.boxes)
    assert [t.track_id for t in tracks] == [0, 1]
    ids = track_ids(tracks, 6)
    # frame 1 lists B first, frame 4 lists A first: the ids follow the faces
    assert ids[1] == {0: b_track.track_id, 1: a_track.track_id}
    assert ids[4] == {0: a_track.track_id, 1: b_track.track_id}
    assert ids[3] == {0: b_track.track_id}
    assert a_track.index_at(3) is None and a_track.index_at(4) == 0


def test_gap_longer_than_max_gap_starts_a_new_track() -> None:
    frames = [[det(50, 50)], [], [], [], [det(52, 50)]]
    assert [t.frames for t in link_tracks(frames)] == [[0], [4]]  # 3 missed > 2
    assert [t.frames for t in link_tracks(frames, TrackSettings(max_gap=3))] == [[0, 4]]
    one_gap = [[det(50, 50)], [], [det(52, 50)]]
    assert len(link_tracks(one_gap, TrackSettings(max_gap=0))) == 2
    with pytest.raises(ValueError, match="max_gap"):
        link_tracks(one_gap, TrackSettings(max_gap=-1))


def test_a_cut_or_a_different_size_ends_the_track() -> None:
    # the same place but three times the size (a cut to a close-up): a new track
    assert len(link_tracks([[det(50, 50, 40)], [det(30, 30, 120)]])) == 2
    # a jump across the frame: no overlap, landmarks far apart
    assert len(link_tracks([[det(20, 50)], [det(250, 50)]])) == 2
    # without landmarks (Haar) box overlap alone links
    plain = [[Detection(50, 50, 40, 40, 1.0)], [Detection(54, 52, 40, 40, 1.0)]]
    assert [t.frames for t in link_tracks(plain)] == [[0, 1]]


def test_summary_length_size_centrality_score() -> None:
    frames = [[det(140, 100, 40, 0.8)], [], [det(140, 100, 40, 1.0)]]
    (track,) = link_tracks(frames)
    s = summarize(track, 320, 240)
    assert (s.length, s.span, s.first, s.last) == (2, 3, 0, 2)
    assert s.mean_size == pytest.approx(40.0)
    assert s.centrality == pytest.approx(1.0)  # the box centre is the frame centre
    assert s.mean_score == pytest.approx(0.9)
    corner = summarize(link_tracks([[det(0, 0, 2)]])[0], 320, 240)
    assert corner.centrality < 0.02


def _track(tid: int, box: tuple[int, int, int, int], n: int) -> Track:
    t = Track(tid)
    for f in range(n):
        t.add(f, 0, Detection(*box, 1.0))
    return t


def test_speaker_choice_weighs_activity_over_size() -> None:
    small = _track(0, (20, 20, 40, 40), 8)
    large = _track(1, (120, 80, 80, 80), 8)
    moving = Activity(0, (0.06,) * 7, 0.06, None)
    still = Activity(1, (0.005,) * 7, 0.005, None)
    choice = speaker_track([small, large], [moving, still], (320, 240))
    assert choice is not None and choice.track is small and not choice.used_audio
    assert choice.speaking[0] == 1.0 and choice.speaking[1] < 0.1
    # nobody moves their mouth beyond the floor: size and centrality decide
    quiet = [Activity(0, (0.004,) * 7, 0.004, None), still]
    assert speaker_track([small, large], quiet, (320, 240)).track is large  # type: ignore[union-attr]
    # no activity at all (no landmarks): the speaking weight is dropped
    blind = speaker_track([small, large], [], (320, 240))
    assert blind is not None and blind.track is large and blind.speaking == {0: 0.0, 1: 0.0}
    # motion out of time with the sound counts half
    anti = [Activity(0, (0.06,) * 7, 0.06, -0.8), Activity(1, (0.05,) * 7, 0.05, 0.9)]
    with_sound = speaker_track([small, large], anti, (320, 240))
    assert with_sound is not None and with_sound.used_audio and with_sound.track is large
    assert speaker_track([], [], (320, 240)) is None


def test_lone_short_track_has_low_confidence() -> None:
    long = speaker_track([_track(0, (100, 80, 60, 60), 16)], [], (320, 240), n_frames=16)
    short = speaker_track([_track(0, (100, 80, 60, 60), 1)], [], (320, 240), n_frames=16)
    assert long is not None and long.confidence == pytest.approx(1.0)
    assert short is not None and short.confidence == pytest.approx(1 / 8)


# ------------------------------------------------------------------ generated clips

WIDTH, HEIGHT, FPS, SECONDS, SAMPLES = 480, 270, 10, 4.0, 16
SLOT = SECONDS / SAMPLES  # one sampled frame per 0.25 s slot, at its centre
# slots where the speaker talks: the mouth opens wide and half in turn, the sound is loud
SPEECH = set(range(2, 6)) | set(range(9, 14))


@lru_cache(maxsize=1)
def _photo() -> tuple[np.ndarray, Detection]:
    from matplotlib import cbook

    path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    found = get_detector("retinaface").detect(photo)
    assert found and len(found[0].landmarks) == 5
    return photo, found[0]


def openness(slot: int) -> float:
    if slot not in SPEECH:
        return 0.0
    return 1.0 if slot % 2 == 0 else 0.4


@lru_cache(maxsize=8)
def _head(opening: float, face_height: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The portrait's head, mouth drawn open by ``opening`` (0 shut: the photo as it
    is), scaled so the face is ``face_height`` px: RGB, alpha, face centre in it."""
    photo, face = _photo()
    img = photo.copy()
    (lx, ly), (rx, ry) = face.landmarks[3], face.landmarks[4]
    d = math.hypot(rx - lx, ry - ly)
    if opening > 0:
        centre = (round((lx + rx) / 2), round((ly + ry) / 2 + 0.06 * d))
        axes = (round(0.42 * d), max(1, round(opening * 0.3 * d)))
        cv2.ellipse(img, centre, axes, 0, 0, 360, (70, 22, 30), -1, cv2.LINE_AA)
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    x0, y0 = int(max(0, cx - 1.1 * face.w)), int(max(0, cy - 1.2 * face.h))
    x1, y1 = int(min(img.shape[1], cx + 1.1 * face.w)), int(min(img.shape[0], cy + 1.5 * face.h))
    cut = img[y0:y1, x0:x1]
    mask = np.zeros(cut.shape[:2], np.float32)
    cv2.ellipse(mask, (int(cx - x0), int(cy - y0)), (int(1.05 * face.w), int(1.4 * face.h)),
                0, 0, 360, 1.0, -1)  # fmt: skip
    mask = cv2.GaussianBlur(mask, (0, 0), 0.05 * face.h)
    k = face_height / face.h
    size = (round(cut.shape[1] * k), round(cut.shape[0] * k))
    rgb = cv2.resize(cut, size, interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
    return rgb, alpha, (cx - x0) * k, (cy - y0) * k


def _paste(canvas: np.ndarray, head: tuple[np.ndarray, np.ndarray, float, float],
           where: tuple[float, float]) -> None:  # fmt: skip
    rgb, alpha, fx, fy = head
    x0, y0 = round(where[0] - fx), round(where[1] - fy)
    h, w = alpha.shape
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(canvas.shape[1], x0 + w), min(canvas.shape[0], y0 + h)
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    part = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
    src = rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].astype(np.float32)
    canvas[cy0:cy1, cx0:cx1] = (part * (1 - a) + src * a).astype(np.uint8)


@dataclass(frozen=True)
class Scene:
    speaker: tuple[float, float] | None = (120.0, 135.0)  # face centre
    speaker_height: int = 60
    listener: tuple[float, float] | None = (300.0, 140.0)  # larger and more central
    listener_height: int = 96
    # sampled slots in which the speaker is out of the picture
    speaker_hidden: frozenset[int] = frozenset()


def make_clip(path: Path, scene: Scene, sound: str = "follows") -> Path:
    """A SECONDS-long clip of ``scene``; ``sound``: "follows" (loud in SPEECH), "none"."""
    rng = np.random.default_rng(7)
    bg = background(WIDTH, HEIGHT, np.random.default_rng(3))
    frames = []
    for i in range(int(SECONDS * FPS)):
        slot = int((i + 0.5) / FPS / SLOT)
        canvas = bg.copy()
        # both heads sway by a pixel or so: the listener's mouth is still, not frozen
        jitter = rng.normal(0, 0.7, 4)
        if scene.listener is not None:
            head = _head(0.0, scene.listener_height)
            _paste(canvas, head, (scene.listener[0] + jitter[0], scene.listener[1] + jitter[1]))
        if scene.speaker is not None and slot not in scene.speaker_hidden:
            head = _head(openness(slot), scene.speaker_height)
            _paste(canvas, head, (scene.speaker[0] + jitter[2], scene.speaker[1] + jitter[3]))
        frames.append(canvas)
    audio = None
    if sound == "follows":
        rate = 16_000
        t = np.arange(int(SECONDS * rate)) / rate
        talking = np.isin((t // SLOT).astype(int), sorted(SPEECH))
        audio = voice(np.where(talking, 0.4, 0.003), rate)
    return write_clip(path, frames, fps=FPS, audio=audio)


@dataclass
class Analysed:
    frames: list[np.ndarray]
    times: list[float]
    detections: list[list[Detection]]
    tracks: list[Track]


def analyse(path: Path) -> Analysed:
    """Sampled by the decode stage's code (full height, RGB), detected, linked.

    ``exact``: each sample is the frame on display at its time, so that a sample
    shows its own slot's mouth (the demo's ``exact: false`` may take a frame of
    the next slot, which blurs the test's timing, not the method).
    """
    settings = DecodeSettings(frames=SAMPLES, height=HEIGHT, exact=True)
    result = decode_clip(path, settings, as_rgb=True)
    assert result.status == "ok", result.reason
    detector = get_detector("retinaface", min_size=16)
    found = [detector.detect(f) for f in result.frames]
    return Analysed(result.frames, result.timestamps, found, link_tracks(found))


def _near(track: Track, where: tuple[float, float], tol: float = 15.0) -> bool:
    return all(math.hypot(x + w / 2 - where[0], y + h / 2 - where[1]) < tol
               for x, y, w, h in track.boxes)  # fmt: skip


@pytest.mark.parametrize("sound", ["follows", "none"])
def test_moving_mouth_is_the_speaker_though_smaller(tmp_path: Path, sound: str) -> None:
    scene = Scene()
    path = make_clip(tmp_path / f"{sound}.mp4", scene, sound)
    clip = analyse(path)
    # the frame-by-frame heuristic (largest, then central) takes the listener
    assert all(_near_first(found, scene.listener) for found in clip.detections)
    assert len(clip.tracks) == 2
    speaker = next(t for t in clip.tracks if _near(t, scene.speaker))  # type: ignore[arg-type]
    listener = next(t for t in clip.tracks if _near(t, scene.listener))  # type: ignore[arg-type]
    assert speaker.frames == listener.frames == list(range(SAMPLES))  # ids stable throughout
    envelope = clip_envelope(path, clip.times)
    assert (envelope is None) == (sound == "none")
    activity = [speaking_activity(t, clip.frames, envelope) for t in clip.tracks]
    by_id = {a.track_id: a for a in activity}
    for a in activity:
        print(f"sound {sound}: track {a.track_id} motion {a.motion:.4f} corr {a.audio_corr}")
    assert by_id[speaker.track_id].motion > 3 * by_id[listener.track_id].motion
    choice = speaker_track(clip.tracks, activity, (WIDTH, HEIGHT), SAMPLES)
    assert choice is not None and choice.track is speaker
    assert choice.used_audio == (sound == "follows")
    assert choice.confidence > 0.3
    if sound == "follows":
        assert by_id[speaker.track_id].audio_corr is not None
        assert by_id[speaker.track_id].audio_corr > 0.6  # type: ignore[operator]
    else:
        assert all(a.audio_corr is None for a in activity)


def _near_first(found: list[Detection], where: tuple[float, float] | None) -> bool:
    assert where is not None and found
    d = found[0]
    return math.hypot(d.x + d.w / 2 - where[0], d.y + d.h / 2 - where[1]) < 15


def test_corrupt_audio_is_a_clear_error_and_motion_alone_still_chooses(tmp_path: Path) -> None:
    scene = Scene()
    good = make_clip(tmp_path / "good.mp4", scene)
    bad = corrupt_audio(good, tmp_path / "bad_audio.mp4")
    clip = analyse(bad)  # the picture is intact
    with pytest.raises(AudioError, match="corrupt audio stream"):
        clip_envelope(bad, clip.times)
    activity = [speaking_activity(t, clip.frames) for t in clip.tracks]
    choice = speaker_track(clip.tracks, activity, (WIDTH, HEIGHT), SAMPLES)
    assert choice is not None and _near(choice.track, scene.speaker)  # type: ignore[arg-type]
    assert not choice.used_audio


def test_one_frame_gap_in_a_clip_is_bridged(tmp_path: Path) -> None:
    """The speaker is out of the picture for one sampled frame: one track, not two."""
    scene = Scene(listener=None, speaker_hidden=frozenset({7}))
    clip = analyse(make_clip(tmp_path / "gap.mp4", scene))
    assert [len(f) for f in clip.detections] == [0 if i == 7 else 1 for i in range(SAMPLES)]
    (track,) = clip.tracks
    assert track.frames == [i for i in range(SAMPLES) if i != 7]
    # motion is measured across the gap too (frames 6 -> 8): one step fewer than frames
    assert len(speaking_activity(track, clip.frames).steps) == SAMPLES - 2


def test_clip_without_a_face(tmp_path: Path) -> None:
    clip = analyse(make_clip(tmp_path / "empty.mp4", Scene(speaker=None, listener=None)))
    assert clip.tracks == [] and all(f == [] for f in clip.detections)
    assert speaker_track(clip.tracks, [], (WIDTH, HEIGHT), SAMPLES) is None


def test_face_in_one_frame_only(tmp_path: Path) -> None:
    scene = Scene(listener=None, speaker_hidden=frozenset(range(SAMPLES)) - {5})
    path = make_clip(tmp_path / "flash.mp4", scene)
    clip = analyse(path)
    (track,) = clip.tracks
    assert track.frames == [5]
    activity = speaking_activity(track, clip.frames, clip_envelope(path, clip.times))
    assert activity.steps == () and activity.motion == 0.0 and activity.audio_corr is None
    choice = speaker_track(clip.tracks, [activity], (WIDTH, HEIGHT), SAMPLES)
    assert choice is not None and choice.track is track
    assert choice.confidence == pytest.approx(1 / 8)  # seen in 1 of 16 frames


def test_mouth_patch_is_normalised_by_face_size_and_tilt() -> None:
    """A head that moves a little between frames (3 px, 5 % larger, 4 degrees) changes
    its mouth patch far less than opening the mouth does, at 50 and at 120 px and
    tilted; and opening the mouth changes the patch about as much at either size (a
    raw pixel count would grow with the face's area, 5.8 times)."""
    detector = get_detector("retinaface", min_size=16)

    def patch(height: int, tilt: float, opening: float, moved: bool) -> np.ndarray:
        rgb, alpha, fx, fy = _head(opening, height)
        m = cv2.getRotationMatrix2D((fx, fy), tilt + (4.0 if moved else 0.0),
                                    1.05 if moved else 1.0)  # fmt: skip
        head = (cv2.warpAffine(rgb, m, rgb.shape[1::-1]),
                cv2.warpAffine(alpha, m, alpha.shape[1::-1]), fx, fy)  # fmt: skip
        canvas = background(WIDTH, HEIGHT, np.random.default_rng(1))
        _paste(canvas, head, (243.0, 134.0) if moved else (240.0, 135.0))
        found = detector.detect(canvas)
        assert found, (height, tilt, opening)
        out = mouth_patch(canvas, found[0].landmarks)
        assert out is not None and out.shape == MOUTH_PATCH[::-1]
        assert mouth_patch(canvas, ()) is None
        return out

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).mean()) / 255

    opened: dict[int, list[float]] = {}
    for height in (50, 120):
        for tilt in (0.0, 20.0):
            shut = patch(height, tilt, 0.0, False)
            moved = diff(shut, patch(height, tilt, 0.0, True))
            opening = diff(shut, patch(height, tilt, 1.0, False))
            opened.setdefault(height, []).append(opening)
            print(f"{height} px, tilt {tilt:g}: head moved {moved:.3f}, mouth opened {opening:.3f}")
            assert opening > 2.5 * moved
    small, large = np.mean(opened[50]), np.mean(opened[120])
    assert 0.5 < small / large < 2.0


def test_a_frame_sampled_twice_adds_no_step(tmp_path: Path) -> None:
    """The reader's ``exact: false`` may hand one decoded frame for two sample times
    (the same array): that pair is no step of mouth motion, not a still mouth."""
    clip = analyse(make_clip(tmp_path / "c.mp4", Scene(listener=None)))
    (track,) = clip.tracks
    frames = list(clip.frames)
    frames[3] = frames[2]  # sample 3 got sample 2's frame
    frames[9] = frames[8].copy()  # the same picture decoded twice (equal, not the same)
    full = speaking_activity(track, clip.frames)
    repeated = speaking_activity(track, frames)
    assert len(full.steps) == SAMPLES - 1 and len(repeated.steps) == SAMPLES - 3

"""One demo clip: its job (what to render) and its frames, shared by the MELD and IFEED writers.

``synth.meld`` writes the clips and ``synth.ifeed`` cuts IFEED's images from
the same frames; both read the job and the rendered frames from here, so
neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from crossemotion.labels import CAST
from crossemotion.synth import faces

# Drawn expression differs from the label towards its confusable neighbour.
CONFUSABLE = {
    "anger": "disgust",
    "disgust": "anger",
    "fear": "surprise",
    "surprise": "fear",
    "sadness": "neutral",
    "joy": "neutral",
    "neutral": "sadness",
}

# share of shots that are hard for a frontal-face detector (faces.HARD_KINDS:
# tilted beyond 20 degrees, under 40 px, three-quarter views)
HARD_SHARE = 0.24
# share of two-face shots that are reaction shots (faces.listener_larger): the
# listener larger and more central than the speaker; small (wide) shots are left
# as they are, their speaker being too small to shrink further
LISTENER_LARGER_SHARE = 0.4
# the clip's speech draws (reaction shot, syllables) come from their own stream
# of the clip's seed, so every draw that came before them, the frame jitter
# included, stays as it was
SPEECH_STREAM = 36


@dataclass
class ClipJob:
    split: str
    key: str
    file: str  # member name inside the split tar
    speaker: str
    face_emotion: str
    intensity: float
    duration: float
    fps: int
    audio: bool = True
    corrupt: bool = False
    # absent from the archive (rendered only for the IFEED images cut from it)
    missing: bool = False
    overlong: bool = False
    annotated: bool = True
    seed: tuple[int, ...] = ()
    dialogue_id: int = 0
    utterance_id: int = 0
    # IFEED images to cut from this clip's frames (synth.ifeed.Capture)
    captures: list[Any] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return max(1, round(self.duration * self.fps))


def scene_of(job: ClipJob) -> tuple[faces.SceneSpec, str | None, np.random.Generator]:
    """The clip's shot (drawn from its seed), its cast bystander, and the frame rng after it.

    The shot carries the speaker's syllables (``faces.syllables``, one per frame)
    and, for ``LISTENER_LARGER_SHARE`` of the two-face shots that are not small
    ones, is a reaction shot (``faces.listener_larger``).
    """
    rng = np.random.default_rng(list(job.seed))
    others = [c for c in CAST if c != job.speaker]  # one person is never in a shot twice
    bystander = str(rng.choice(others)) if rng.random() < 0.5 else None
    spec = faces.random_scene(
        job.speaker, job.face_emotion, job.intensity, rng, bystander=bystander,
        hard_p=HARD_SHARE,
    )  # fmt: skip
    speech_rng = np.random.default_rng([*job.seed, SPEECH_STREAM])
    # the shot's kind first, drawn for every clip alike, and its geometry: neither
    # depends on the clip's length, which the syllables after them do
    reaction = speech_rng.random() < LISTENER_LARGER_SHARE
    if reaction and spec.other_look is not None and spec.hard != "small":
        spec = faces.listener_larger(spec, speech_rng)
    spec = replace(spec, speech=faces.syllables(job.n_frames, speech_rng))
    return spec, (bystander if spec.other_look is not None else None), rng


Box = tuple[int, int, int, int]


def render_frames(
    job: ClipJob, width: int, height: int
) -> tuple[np.ndarray, list[tuple[Box, Box | None]]]:
    """Every frame of the clip (n, H, W, 3) and per frame the speaker's and bystander's boxes."""
    spec, _, rng = scene_of(job)
    renderer = faces.SceneRenderer(spec, width, height)
    frames = np.empty((job.n_frames, height, width, 3), np.uint8)
    boxes: list[tuple[Box, Box | None]] = []
    for i in range(job.n_frames):
        frames[i], speaker_box, other_box = renderer.frame_boxes(i, rng)
        boxes.append((speaker_box, other_box))
    return frames, boxes

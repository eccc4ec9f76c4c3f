"""The reference speaker selector: the face most like the speaker's IFEED faces wins."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from crossemotion.codec import encode_jpeg
from crossemotion.ingest.faces.crops import FaceSettings, clip_faces
from crossemotion.ingest.faces.detect import get_detector
from crossemotion.ingest.faces.references import References, describe, face_region
from crossemotion.synth import faces


def _head(name: str, emotion: str, size: int, rng: np.random.Generator):
    expr = faces.expression_for(emotion, float(rng.uniform(0.5, 1.0)), rng)
    return faces.render_head(faces.look_for(name), expr, size)


def _two_faces(rng: np.random.Generator) -> np.ndarray:
    """Joey large on the left, Ross smaller on the right: the geometric rule picks Joey."""
    canvas = faces.background(320, 240, np.random.default_rng(5))
    for name, size, cx in (("Joey", 110, 85), ("Ross", 80, 245)):
        patch, box = _head(name, "neutral", size, rng)
        p = faces.place(patch, box, 1.0, 0.0, cx, 110)
        faces._paste(canvas, p.patch, p.x0, p.y0)
    return canvas


def _references(rng: np.random.Generator) -> References:
    """Descriptors of each member's face cut from frames, as IFEED's images are."""
    rows = []
    for i, name in enumerate(("Joey", "Ross", "Monica")):
        for j, emotion in enumerate(("neutral", "joy", "anger", "surprise")):
            canvas = faces.background(320, 240, np.random.default_rng(100 + 10 * i + j))
            patch, box = _head(name, emotion, int(rng.integers(70, 120)), rng)
            p = faces.place(patch, box, 1.0, float(rng.normal(0, 3)), 160, 120)
            faces._paste(canvas, p.patch, p.x0, p.y0)
            rows.append({"character": name, "member": f"{name}-{emotion}",
                         "descriptor": describe(face_region(canvas, p.box)).tolist()})  # fmt: skip
    return References(pl.DataFrame(rows))


def test_reference_selector_picks_the_speaker_not_the_largest_face() -> None:
    rng = np.random.default_rng(3)
    frame = _two_faces(rng)
    found = get_detector("haar", min_size=24).detect(frame)
    assert len(found) >= 2
    joey = found[0]
    assert joey.x + joey.w / 2 < 160  # largest first: the bystander on the left
    refs = _references(rng)
    ross = refs.pick(frame, found, "Ross")
    assert ross.x + ross.w / 2 > 160
    assert refs.margin(face_region(frame, ross.box), "Ross") > 0
    # Joey speaking: the geometric choice stands; a speaker without references too
    assert refs.pick(frame, found, "Joey") == joey
    assert refs.pick(frame, found, "Phoebe") == joey
    # through the faces stage: one clip, one frame, speaker Ross
    row = {"split": "test", "key": "dia1_utt0", "dialogue_id": 1, "utterance_id": 0,
           "file": "x.mp4", "character": "Ross", "speaker": "Ross", "label": "neutral",
           "frames": [encode_jpeg(frame, 95)]}  # fmt: skip
    # selector: largest ignores the references; selector: reference uses them
    settings = FaceSettings(size=32, min_size=24, max_per_frame=4, selector="largest")
    detector = settings.build_detector()
    plain = clip_faces(row, detector, settings, refs)[0]["bbox"]
    by_reference = replace(settings, selector="reference")
    chosen = clip_faces(row, detector, by_reference, refs)[0]["bbox"]
    assert plain[0] + plain[2] / 2 < 160 < chosen[0] + chosen[2] / 2

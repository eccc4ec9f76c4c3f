"""A small IFEED_Base.zip in the real layout, with junk members to report.

``IFEED_Base/{Training,Testing}/dia{D}_utt{U}/frame{K}_{Character}_{Label}.jpg``:
tight face crops of the six cast members. Some source keys are MELD dev/test
utterances of the demo (Training) or MELD train utterances (Testing), as in
the real data, so the overlap report has something to find.
"""

from __future__ import annotations

import cv2
import numpy as np

from crossemotion.labels import CAST, EMOTIONS, IFEED_NAMES
from crossemotion.synth import faces
from crossemotion.synth.meld import Utterance

FOLDERS = {"train": "Training", "test": "Testing"}
VARIANTS = {
    "anger": "angry",
    "fear": "fea",
    "joy": "happy",
    "sadness": "sad",
    "surprise": "surprise",
}
OVERLAP_SHARE = {"train": 0.2, "test": 0.15}
LABEL_NOISE = 0.05  # hand-annotated stills are cleaner than MELD's utterance labels


def face_crop(character: str, emotion: str, face_size: int, rng: np.random.Generator) -> np.ndarray:
    """A tight, slightly off-centre, non-square crop around a drawn face (RGB)."""
    shown = emotion if rng.random() >= LABEL_NOISE else "neutral"
    expr = faces.expression_for(shown, float(rng.uniform(0.6, 1.0)), rng)
    size = int(face_size * 1.6)
    patch, box = faces.render_head(faces.look_for(character), expr, size)
    canvas = faces.background(patch.shape[1] + 2 * size, patch.shape[0] + 2 * size, rng)
    placed = faces.place(
        patch, box, 1.0, float(rng.normal(0, 4.0)), canvas.shape[1] / 2, canvas.shape[0] / 2
    )
    faces._paste(canvas, placed.patch, placed.x0, placed.y0)
    x, y, w, h = placed.box
    m = rng.uniform(-0.06, 0.1, 4)
    x0, y0 = int(x - m[0] * w), int(y - m[1] * h)
    x1, y1 = int(x + w + m[2] * w), int(y + h + m[3] * h)
    crop = canvas[max(0, y0) : y1, max(0, x0) : x1]
    out_w = int(face_size * rng.uniform(0.85, 1.0))
    out_h = int(face_size * rng.uniform(1.0, 1.2))
    crop = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return faces.finish(
        crop,
        float(rng.uniform(0.75, 1.2)),
        float(rng.choice([0.0, 0.6])),
        float(rng.uniform(0, 4)),
        rng,
    )


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _sources(
    split: str, n: int, overlap: list[Utterance], rng: np.random.Generator
) -> list[tuple[str, str, str, bool]]:
    """(key, character, emotion, overlaps) per folder, 1-4 frames each, covering n images."""
    labels = [EMOTIONS[i % len(EMOTIONS)] for i in range(n)]
    rng.shuffle(labels)
    shared = [u for u in overlap if u.speaker in CAST]
    rng.shuffle(shared)  # type: ignore[arg-type]
    out: list[tuple[str, str, str, bool]] = []
    dia = 500 if split == "train" else 900  # beyond the demo's MELD dialogue ids
    want_shared = round(OVERLAP_SHARE[split] * n)
    while len(out) < n:
        frames = int(rng.integers(1, 5))
        if shared and sum(o[3] for o in out) < want_shared:
            u = shared.pop()
            key, char, emo, hit = u.key, u.speaker, u.emotion, True
        else:
            key = f"dia{dia}_utt{int(rng.integers(0, 15))}"
            dia += 1
            char, emo, hit = str(rng.choice(list(CAST))), labels[len(out)], False
        out += [(key, char, emo, hit)] * min(frames, n - len(out))
    return out


def build_ifeed_members(
    counts: dict[str, int], plan: dict[str, list[Utterance]], face_size: int, seed: int
) -> tuple[list[tuple[str, bytes | None]], dict]:
    members: list[tuple[str, bytes | None]] = [("IFEED_Base", None)]
    images: dict[str, list[dict]] = {}
    for si, split in enumerate(("train", "test")):
        rng = np.random.default_rng([seed, 303, si])
        folder = f"IFEED_Base/{FOLDERS[split]}"
        members.append((folder, None))
        overlap = (
            plan.get("dev", []) + plan.get("test", [])
            if split == "train"
            else plan.get("train", [])
        )
        listed: list[dict] = []
        seen_dirs: set[str] = set()
        for k, (key, char, emo, hit) in enumerate(
            _sources(split, int(counts.get(split, 0)), overlap, rng)
        ):
            label = IFEED_NAMES[emo]
            if k % 37 == 5 and emo in VARIANTS:  # the spellings public loaders meet
                label = VARIANTS[emo]
            d = f"{folder}/{key}"
            if d not in seen_dirs:
                seen_dirs.add(d)
                members.append((d, None))
            name = f"{d}/frame{k * 3 + int(rng.integers(0, 3))}_{char}_{label}.jpg"
            members.append((name, _jpeg(face_crop(char, emo, face_size, rng))))
            listed.append(
                {
                    "member": name,
                    "key": key,
                    "character": char,
                    "label": emo,
                    "spelling": label,
                    "overlap": hit,
                }
            )
        images[split] = listed
    junk_rng = np.random.default_rng([seed, 304])
    good = _jpeg(face_crop("Ross", "neutral", face_size, junk_rng))
    junk = {
        "unknown_label": "IFEED_Base/Training/dia700_utt1/frame7_Joey_Confused.jpg",
        "unparsable": "IFEED_Base/Training/dia700_utt1/snapshot.jpg",
        "undecodable": "IFEED_Base/Training/dia700_utt2/frame4_Rachel_Happy.jpg",
        "macosx": "__MACOSX/IFEED_Base/Training/._dia700_utt1",
        "dotfile": "IFEED_Base/Testing/.DS_Store",
    }
    members += [
        ("IFEED_Base/Training/dia700_utt1", None),
        (junk["unknown_label"], good),
        (junk["unparsable"], good),
        ("IFEED_Base/Training/dia700_utt2", None),
        (junk["undecodable"], b"\xff\xd8\xff\xe0 truncated " + junk_rng.bytes(200)),
        (junk["macosx"], b"\x00\x05\x16\x07 AppleDouble"),
        (junk["dotfile"], b"\x00\x00\x00\x01Bud1"),
    ]
    summary = {
        "images": {s: len(v) for s, v in images.items()},
        "overlap": {s: sorted({i["key"] for i in v if i["overlap"]}) for s, v in images.items()},
        "variants": [
            i["member"]
            for v in images.values()
            for i in v
            if i["spelling"] != IFEED_NAMES[i["label"]]
        ],
        "junk": junk,
        "members": images,
    }
    return members, summary

"""A small IFEED_Base.zip in the real layout, cut from the demo MELD clips' frames.

``IFEED_Base/{Training,Testing}/dia{D}_utt{U}/frame{K}_{Character}_{Label}.jpg``:
tight crops of a cast member's face in frame ``K`` of MELD clip ``dia{D}_utt{U}``
of *some* MELD split (train, dev or test; the folder does not say which, and
the demo's dialogue ids restart per split, so a key names up to three clips).
The face is the clip's speaker or a cast bystander; the crop is cut from the
very frame that is H.264-encoded into the clip, with IFEED-like margins,
resized to about IFEED's size with a few percent of jitter per side and
JPEG-compressed. The label is the expression drawn in that frame, with a
little annotator noise. A few images come from clips that are missing or
corrupt in the MELD archive, so no clip can confirm them.

The true source of every image (MELD split, dialogue, utterance, frame,
time, crop box in the frame) goes to ``ifeed_truth.parquet`` beside the
archives: for tests of the alignment, never read by the workflow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from crossemotion.codec import encode_jpeg
from crossemotion.labels import CAST, IFEED_NAMES
from crossemotion.synth.clips import CONFUSABLE, ClipJob, scene_of

FOLDERS = {"train": "Training", "test": "Testing"}
VARIANTS = {
    "anger": "angry",
    "fear": "fea",
    "joy": "happy",
    "sadness": "sad",
    "surprise": "surprise",
}
LABEL_NOISE = 0.05  # hand-annotated stills are cleaner than MELD's utterance labels
# IFEED images are about 140 x 170 px (w x h); demo sizes scale with face_size
ASPECT = 140 / 170
SIZE_JITTER = 0.03
MARGINS = (-0.06, 0.08)  # crop side beyond the face box, share of its width
# the crop's aspect vs the output's: IFEED resizes crops without quite keeping it
ASPECT_JITTER = (0.9, 1.1)
FRAMES_PER_FOLDER = (1, 4)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Capture:
    """One IFEED image to cut from frame ``frame_index`` of a clip."""

    member: str
    ifeed_split: str
    frame_index: int
    role: str  # speaker | bystander
    character: str
    shown: str  # the expression drawn in the frame
    label: str  # the label the image carries (canonical name)
    spelling: str  # the label as written in the file name
    size: tuple[int, int]  # output (w, h)
    margins: tuple[float, float, float, float]  # left, right, aspect, top share (crop_box)


@dataclass(frozen=True)
class _Source:
    job: ClipJob
    role: str
    character: str
    shown: str


def _sources(jobs: Sequence[ClipJob]) -> list[_Source]:
    """Cast faces the clips show: their speakers and cast bystanders.

    Unannotated and overlong clips are left out (IFEED folders name annotated
    utterances; an overlong clip's frames beyond the decode bound could not
    be checked anyway).
    """
    out = []
    for job in jobs:
        if not job.annotated or job.overlong:
            continue
        if job.speaker in CAST:
            out.append(_Source(job, "speaker", job.speaker, job.face_emotion))
        spec, bystander, _ = scene_of(job)
        if bystander in CAST and spec.other_emotion:
            out.append(_Source(job, "bystander", str(bystander), spec.other_emotion))
    return out


def _noisy_label(shown: str, rng: np.random.Generator) -> str:
    return CONFUSABLE[shown] if rng.random() < LABEL_NOISE else shown


def plan_captures(
    jobs: Sequence[ClipJob], counts: dict[str, int], face_size: int, seed: int
) -> list[Capture]:
    """Attach IFEED captures to ``jobs`` (in place) and return them all.

    Faces of the missing/corrupt clips come first (into Training); the rest
    are drawn with weights inverse to their expression's frequency, so the
    classes are about balanced as in IFEED. Each drawn face gives a folder of
    1-4 frames of one clip; a face drawn again later gives more frames.
    """
    rng = np.random.default_rng([seed, 303])
    sources = _sources(jobs)
    if not sources:
        return []
    freq = Counter(s.shown for s in sources)
    weights = np.array([1.0 / freq[s.shown] for s in sources])
    order = [
        int(i)
        for i in rng.choice(len(sources), len(sources), replace=False, p=weights / weights.sum())
    ]
    # one face of each missing/corrupt clip
    broken = list(
        {
            id(s.job): i
            for i, s in reversed(list(enumerate(sources)))
            if s.job.missing or s.job.corrupt
        }.values()
    )
    order = broken + [i for i in order if i not in broken]
    remaining = {s: int(counts.get(s, 0)) for s in FOLDERS}
    used: dict[int, set[int]] = {}
    names: set[str] = set()
    captures: list[Capture] = []
    first = True
    while sum(remaining.values()) > 0:
        progress = False
        for i in order:
            if sum(remaining.values()) == 0:
                break
            if i in broken and not first:
                continue  # a few images without a clip, not a share that grows
            src = sources[i]
            if i in broken and remaining["train"] > 0:
                split = "train"
            else:
                open_splits = [s for s, n in remaining.items() if n > 0]
                share = np.array([remaining[s] for s in open_splits], float)
                split = open_splits[int(rng.choice(len(open_splits), p=share / share.sum()))]
            taken = used.setdefault(i, set())
            free = [f for f in range(src.job.n_frames) if f not in taken]
            if not free:
                continue
            # two or more frames of each broken clip: "a few" images, not one
            low = 2 if i in broken else FRAMES_PER_FOLDER[0]
            k = min(
                int(rng.integers(low, FRAMES_PER_FOLDER[1] + 1)),
                remaining[split],
                len(free),
            )
            for f in sorted(int(x) for x in rng.choice(free, k, replace=False)):
                cap = _capture(src, split, f, len(captures), face_size, rng)
                if cap.member in names:  # same key, frame and face from another MELD split
                    continue
                names.add(cap.member)
                taken.add(f)
                src.job.captures.append(cap)
                captures.append(cap)
                remaining[split] -= 1
                progress = True
        first = False
        if not progress:
            break
    return captures


def _capture(
    src: _Source, split: str, frame: int, n: int, face_size: int, rng: np.random.Generator
) -> Capture:
    label = _noisy_label(src.shown, rng)
    spelling = IFEED_NAMES[label]
    if n % 37 == 5 and label in VARIANTS:  # the spellings public loaders meet
        spelling = VARIANTS[label]
    jitter = rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER, 2)
    size = (round(face_size * ASPECT * jitter[0]), round(face_size * jitter[1]))
    m = rng.uniform(*MARGINS, 2)
    margins = (
        float(m[0]),
        float(m[1]),
        float(rng.uniform(*ASPECT_JITTER)),
        float(rng.uniform(0.3, 0.7)),
    )
    key = f"dia{src.job.dialogue_id}_utt{src.job.utterance_id}"
    member = f"IFEED_Base/{FOLDERS[split]}/{key}/frame{frame}_{src.character}_{spelling}.jpg"
    return Capture(
        member, split, frame, src.role, src.character, src.shown, label, spelling, size, margins
    )


def crop_box(face: Box, cap: Capture, width: int, height: int) -> Box:
    """The crop around a face box: IFEED's aspect (a little off), clipped to the frame.

    The crop's base width is the face box's width, or its height times the output
    aspect (``cap.size``'s, times ``cap.margins[2]``) where that is more, so the
    whole face is in the crop; the sides move by ``cap.margins[0]``/``[1]`` of that
    width; the height follows from the output aspect, and the extra (or missing)
    height is shared above/below as ``cap.margins[3]`` says.
    """
    x, y, w, h = face
    left, right, aspect, top = cap.margins
    out_aspect = cap.size[0] / cap.size[1] * aspect
    # the crop holds the whole face box, as a face cropper's does: a face narrower
    # than the output's aspect (a turned head) widens the crop, not shortens it
    side = max(w, h * out_aspect)
    cx = x + w / 2
    x0 = cx - side / 2 - left * side
    x1 = cx + side / 2 + right * side
    crop_h = (x1 - x0) / out_aspect
    y0 = y - top * (crop_h - h)
    x0i, y0i = max(0, round(x0)), max(0, round(y0))
    x1i, y1i = min(width, round(x1)), min(height, round(y0 + crop_h))
    return x0i, y0i, max(1, x1i - x0i), max(1, y1i - y0i)


def cut_captures(
    job: ClipJob, frames: np.ndarray, boxes: Sequence[tuple[Box, Box | None]]
) -> list[tuple[Capture, bytes, Box]]:
    """The job's IFEED images, cut from its rendered frames: (capture, JPEG, crop box)."""
    out = []
    height, width = frames.shape[1:3]
    for cap in job.captures:
        speaker, other = boxes[cap.frame_index]
        face = speaker if cap.role == "speaker" else other
        if face is None:
            raise RuntimeError(f"{job.key}: frame {cap.frame_index} has no {cap.role}")
        box = crop_box(face, cap, width, height)
        x, y, w, h = box
        crop = frames[cap.frame_index, y : y + h, x : x + w]
        interp = cv2.INTER_AREA if w > cap.size[0] else cv2.INTER_LINEAR
        out.append((cap, encode_jpeg(cv2.resize(crop, cap.size, interpolation=interp)), box))
    return out


def truth_row(job: ClipJob, cap: Capture, box: Box, width: int, height: int) -> dict:
    """Where an IFEED image really comes from (ifeed_truth.parquet)."""
    status = "missing" if job.missing else "corrupt" if job.corrupt else "ok"
    return {
        "member": cap.member,
        "ifeed_split": cap.ifeed_split,
        "character": cap.character,
        "role": cap.role,
        "label": cap.label,
        "shown": cap.shown,
        "meld_split": job.split,
        "dialogue_id": job.dialogue_id,
        "utterance_id": job.utterance_id,
        "key": job.key,
        "clip_file": job.file,
        "clip_status": status,
        "speaker": job.speaker,
        "frame_index": cap.frame_index,
        "time": round(cap.frame_index / job.fps, 6),
        "fps": float(job.fps),
        "x": box[0],
        "y": box[1],
        "w": box[2],
        "h": box[3],
        "frame_width": width,
        "frame_height": height,
    }


JUNK = {
    "unknown_label": "IFEED_Base/Training/dia700_utt1/frame7_Joey_Confused.jpg",
    "unparsable": "IFEED_Base/Training/dia700_utt1/snapshot.jpg",
    "undecodable": "IFEED_Base/Training/dia700_utt2/frame4_Rachel_Happy.jpg",
    "macosx": "__MACOSX/IFEED_Base/Training/._dia700_utt1",
    "dotfile": "IFEED_Base/Testing/.DS_Store",
}


def build_ifeed_members(
    images: Sequence[tuple[ClipJob, Capture, bytes, Box]], seed: int
) -> tuple[list[tuple[str, bytes | None]], dict]:
    """Zip members (folders, images in name order, junk) and the summary."""
    members: list[tuple[str, bytes | None]] = [("IFEED_Base", None)]
    by_split = {
        s: sorted((c.member, data) for _, c, data, _ in images if c.ifeed_split == s)
        for s in FOLDERS
    }
    for split, listed in by_split.items():
        members.append((f"IFEED_Base/{FOLDERS[split]}", None))
        seen: set[str] = set()
        for name, data in listed:
            folder = name.rsplit("/", 1)[0]
            if folder not in seen:
                seen.add(folder)
                members.append((folder, None))
            members.append((name, data))
    junk_rng = np.random.default_rng([seed, 304])
    # a decodable face for the junk members that fail on their names
    good = images[0][2] if images else encode_jpeg(np.full((96, 80, 3), 128, np.uint8))
    members += [
        ("IFEED_Base/Training/dia700_utt1", None),
        (JUNK["unknown_label"], good),
        (JUNK["unparsable"], good),
        ("IFEED_Base/Training/dia700_utt2", None),
        (JUNK["undecodable"], b"\xff\xd8\xff\xe0 truncated " + junk_rng.bytes(200)),
        (JUNK["macosx"], b"\x00\x05\x16\x07 AppleDouble"),
        (JUNK["dotfile"], b"\x00\x00\x00\x01Bud1"),
    ]
    listing = {
        s: [
            {
                "member": c.member,
                "key": job.key,
                "meld_split": job.split,
                "character": c.character,
                "label": c.label,
                "spelling": c.spelling,
                "role": c.role,
            }
            for job, c, _, _ in sorted(images, key=lambda i: i[1].member)
            if c.ifeed_split == s
        ]
        for s in FOLDERS
    }
    summary = {
        "images": {s: len(v) for s, v in listing.items()},
        "meld_sources": {
            s: dict(sorted(Counter(i["meld_split"] for i in v).items())) for s, v in listing.items()
        },
        "without_clip": sorted(c.member for job, c, _, _ in images if job.missing or job.corrupt),
        "variants": [
            i["member"]
            for v in listing.values()
            for i in v
            if i["spelling"] != IFEED_NAMES[i["label"]]
        ],
        "junk": JUNK,
        "members": listing,
    }
    return members, summary

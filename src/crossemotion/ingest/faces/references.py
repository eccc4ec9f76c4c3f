"""Appearance references of the cast, from the aligned IFEED faces (optional selector).

The default speaker choice of the MELD faces stage is geometric: the largest
face, near-ties to the most central (``face_detect.rank_speaker_first``).
With ``meld.faces.selector: reference`` the faces stage instead asks which
detected face looks most like the utterance's speaker: every IFEED image the
alignment matched to a MELD clip is a face of a known cast member, so each
member gets up to ``per_character`` reference descriptors, and a detected
face scores its nearest-neighbour similarity to the speaker's references
minus that to any other cast member's. The geometric choice stands when it
looks more like the speaker than like anyone else (and for speakers outside
the cast or without references); otherwise the face that does, if any, wins.

The descriptor is deliberately simple and needs no weights: a hue-saturation
histogram of the face (skin, hair) and an 8 x 8
normalised grey thumbnail (the layout of the features), each L2-normalised.
It tells the demo's drawn cast apart; on the real data a face embedding
would do better, and the selector stays off by default.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from crossemotion.codec import read_image
from crossemotion.ingest.faces.detect import Detection
from crossemotion.ingest.ifeed.align import MATCHED
from crossemotion.labels import CAST

log = logging.getLogger(__name__)

SELECTORS = ("largest", "reference")
HIST_BINS = (16, 8)
THUMB = 8
TOP_K = 3


def describe(face: np.ndarray) -> np.ndarray:
    """Descriptor of an RGB face crop (any size): [HS histogram, grey thumbnail], unit norm.

    Only the box's inner part counts: a detector's box (and an IFEED crop)
    reaches past the cheeks into the background, which says nothing of who it is.
    """
    h, w = face.shape[:2]
    inner = face[
        round(0.05 * h) : max(round(0.95 * h), 1), round(0.15 * w) : max(round(0.85 * w), 1)
    ]
    small = cv2.resize(inner if inner.size else face, (32, 32), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(HIST_BINS), [0, 180, 0, 256]).ravel()
    hist = np.sqrt(hist / max(float(hist.sum()), 1.0))  # Hellinger: cosine on sqrt-frequencies
    grey = cv2.resize(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (THUMB, THUMB),
                      interpolation=cv2.INTER_AREA).astype(np.float32).ravel()  # fmt: skip
    grey = (grey - grey.mean()) / (grey.std() + 1e-6)
    parts = [hist / (np.linalg.norm(hist) + 1e-9), grey / (np.linalg.norm(grey) + 1e-9)]
    out = np.concatenate(parts).astype(np.float32)
    return out / (np.linalg.norm(out) + 1e-9)


def face_region(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The part of ``image`` inside ``box`` (x, y, w, h), clipped to it."""
    h, w = image.shape[:2]
    x, y, bw, bh = (round(v) for v in box)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + bw), min(h, y + bh)
    return image[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else image


def _square_centre(image: np.ndarray) -> np.ndarray:
    """An IFEED crop is taller than a detector's face box: its central square."""
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return image[y : y + side, x : x + side]


def build_references(
    alignment: pl.DataFrame, ifeed_root: str | Path, per_character: int = 60, seed: int = 0
) -> pl.DataFrame:
    """(character, member, descriptor) of up to ``per_character`` matched IFEED faces each."""
    rows = []
    rng = np.random.default_rng(seed)
    matched = alignment.filter(
        (pl.col("status") == MATCHED) & pl.col("character").is_in(list(CAST))
    ).sort("member")
    for character in CAST:
        members = matched.filter(pl.col("character") == character)["member"].to_list()
        if len(members) > per_character:
            members = sorted(rng.choice(members, per_character, replace=False).tolist())
        for member in members:
            rgb = read_image(Path(ifeed_root) / member)
            if rgb is None:
                continue
            face = _square_centre(rgb)
            rows.append({"character": character, "member": member,
                         "descriptor": describe(face).tolist()})  # fmt: skip
    schema = {"character": pl.String, "member": pl.String, "descriptor": pl.List(pl.Float32)}
    return pl.DataFrame(rows, schema=schema)


class References:
    """Nearest-neighbour appearance scores of detected faces against the cast's references."""

    def __init__(self, table: pl.DataFrame) -> None:
        self.by_character: dict[str, np.ndarray] = {}
        for character in CAST:
            part = table.filter(pl.col("character") == character)["descriptor"].to_list()
            if part:
                self.by_character[character] = np.asarray(part, dtype=np.float32)

    @classmethod
    def read(cls, path: str | Path) -> References:
        return cls(pl.read_parquet(path))

    def __bool__(self) -> bool:
        return bool(self.by_character)

    def _similarity(self, descriptor: np.ndarray, character: str) -> float:
        refs = self.by_character[character]
        sims = refs @ descriptor
        return float(np.sort(sims)[-TOP_K:].mean())

    def margin(self, face: np.ndarray, character: str) -> float:
        """Similarity to ``character``'s references minus the best other cast member's."""
        d = describe(face)
        own = self._similarity(d, character)
        others = [self._similarity(d, c) for c in self.by_character if c != character]
        return own - max(others, default=-1.0)

    def pick(self, image: np.ndarray, found: Sequence[Detection], character: str | None
             ) -> Detection:  # fmt: skip
        """The detected face that looks most like ``character`` (else the geometric first)."""
        if not found or character not in self.by_character or len(found) == 1:
            return found[0]
        margins = [self.margin(face_region(image, d.box), character) for d in found]
        if margins[0] > 0:
            return found[0]  # the geometric choice looks like the speaker: it stands
        best = int(np.argmax(margins))
        return found[best] if margins[best] > 0 else found[0]

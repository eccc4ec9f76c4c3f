"""Speaker-face yardstick: does the MELD face selection pick the speaker's face?

An aligned IFEED image names a cast member and gives that person's face box
in a MELD frame (``results/ifeed/alignment.parquet``); MELD names the
utterance's speaker. Where the two agree, the IFEED box is the speaker's face
at that moment, so it scores what the workflow picks as the speaker:

* ``primary``: the face the faces shards keep for the sampled frame nearest
  in time to the IFEED frame that has a face (the face models' input);
* ``window``: the ``crop: speaker`` window of the clip models at the nearest
  sampled frame (``crossemotion.datasets.speaker_crop.clip_windows``), taken
  at the face size it was built from (its side over ``crop_scale``, with the
  detector boxes' median aspect).

A hit is IoU >= 0.5 with the IFEED box (both in the clip's own pixels). A
clip without any detected face counts as a miss for both. Only ``matched``
images count; bystanders (IFEED character != speaker) are left out.

Detectors side by side. The configured detector's faces are the faces shards'.
Each comparison detector (``report.speaker_faces.compare_detectors``) runs the
faces stage's own code (``crossemotion.ingest.faces.crops.clip_faces``, the
same settings but the detector) on the same decoded frames of the clips
shards, only the clips the yardstick scores, in the same job; the table has
one block of rows per detector (``detector``, ``detector_role``: configured or
comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from crossemotion.datasets.speaker_crop import clip_windows, face_of
from crossemotion.ingest.faces.detect import Detection
from crossemotion.ingest.ifeed.align import MATCHED, iou
from crossemotion.labels import CAST

if TYPE_CHECKING:
    from crossemotion.ingest.faces.crops import FaceSettings
    from crossemotion.ingest.faces.references import References

HIT_IOU = 0.5
CONFIGURED, COMPARISON = "configured", "comparison"
COLUMNS = (
    "detector",
    "detector_role",
    "split",
    "character",
    "n",
    "primary_hits",
    "primary_rate",
    "window_hits",
    "window_rate",
    "no_face",
)


def _read(paths: Sequence[str | Path], columns: list[str]) -> pl.DataFrame:
    frames = [pl.read_parquet(p, columns=columns) for p in paths]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


# (MELD split, clip key) -> {sampled frame index -> the speaker's face}
ClipFaces = dict[tuple[str, str], dict[int, Detection]]


def matched_speakers(alignment: pl.DataFrame, index: pl.DataFrame) -> pl.DataFrame:
    """The matched IFEED images of the utterance's speaker (cast members only)."""
    speakers = index.select(
        pl.col("split").alias("meld_split"), "dialogue_id", "utterance_id",
        pl.col("key").alias("meld_key"), pl.col("character").alias("speaker_character"),
    )  # fmt: skip
    return (
        alignment.filter(pl.col("status") == MATCHED)
        .join(speakers, on=["meld_split", "dialogue_id", "utterance_id"], how="inner")
        .filter(
            (pl.col("character") == pl.col("speaker_character"))
            & pl.col("character").is_in(list(CAST))
        )
    )


def shard_faces(faces: Sequence[str | Path]) -> ClipFaces:
    """The speaker's face per sampled frame, as the faces shards keep it."""
    rows = _read(faces, ["split", "key", "frame_index", "bbox", "landmarks"])
    out: ClipFaces = {}
    for split, key, index_, bbox, landmarks in rows.iter_rows():
        if bbox is not None and len(bbox) == 4:
            out.setdefault((split, key), {})[int(index_)] = face_of(bbox, landmarks)
    return out


# the clips-shard columns the faces stage reads (crops.clip_faces)
_CLIP_COLUMNS = ["split", "dialogue_id", "utterance_id", "key", "file", "character",
                 "speaker", "label", "frames"]  # fmt: skip


def detected_faces(
    clips: Sequence[str | Path],
    settings: FaceSettings,
    wanted: set[tuple[str, str]],
    references: References | None = None,
) -> ClipFaces:
    """The speaker's face per sampled frame of the ``wanted`` clips as the faces stage
    would keep it with ``settings`` (its detector, speaker choice and limits): the
    same code as the faces shards, on the same decoded frames."""
    from crossemotion.ingest.faces.crops import clip_faces

    detector = settings.build_detector()
    out: ClipFaces = {}
    for path in clips:
        table = pl.read_parquet(path, columns=_CLIP_COLUMNS)
        keep = [(sp, k) in wanted for sp, k in zip(table["split"], table["key"], strict=True)]
        for row in table.filter(pl.Series(keep, dtype=pl.Boolean)).iter_rows(named=True):
            per_frame = out.setdefault((row["split"], row["key"]), {})
            for face in clip_faces(row, detector, settings, references):
                per_frame[int(face["frame_index"])] = face_of(face["bbox"], face["landmarks"])
    return out


def speaker_items(
    alignment: pl.DataFrame,
    index: pl.DataFrame,
    faces: Sequence[str | Path] | ClipFaces,
    clips: Sequence[str | Path],
    crop_scale: float,
    align: bool = False,
) -> pl.DataFrame:
    """One row per matched IFEED image of the utterance's speaker, with both verdicts.

    ``faces``: the faces shards' paths, or the faces per clip (``detected_faces``);
    ``align``: the clip models' windows are aligned (``crop_align``)."""
    items = matched_speakers(alignment, index)
    boxes = faces if isinstance(faces, dict) else shard_faces(faces)
    clip_rows = _read(clips, ["split", "key", "timestamps", "width", "height"])
    samples = {(r["split"], r["key"]): r for r in clip_rows.iter_rows(named=True)}
    out = []
    for row in items.iter_rows(named=True):
        where = (row["meld_split"], row["meld_key"])
        verdicts = _verdicts(row, boxes.get(where, {}), samples.get(where), crop_scale, align)
        out.append({**row, **verdicts})
    schema = {**items.schema, **VERDICT_SCHEMA}
    return pl.DataFrame(out, schema=schema)


def compared_items(
    alignment: pl.DataFrame,
    index: pl.DataFrame,
    faces: Sequence[str | Path],
    clips: Sequence[str | Path],
    crop_scale: float,
    settings: FaceSettings,
    compare: Sequence[str] = (),
    align: bool = False,
    references: References | None = None,
) -> pl.DataFrame:
    """``speaker_items`` of the configured detector (``settings.detector``, the faces
    shards) and of each ``compare`` detector (``detected_faces``, the same settings
    otherwise) on the same images, stacked, with ``detector`` and ``detector_role`` first."""
    from dataclasses import replace

    runs: list[tuple[str, str, Sequence[str | Path] | ClipFaces]] = [
        (settings.detector, CONFIGURED, faces)
    ]
    if compare:
        scored = matched_speakers(alignment, index)
        wanted = set(zip(scored["meld_split"], scored["meld_key"], strict=True))
    for name in compare:
        if name == settings.detector:
            raise ValueError(f"compare_detectors lists the configured detector {name!r}")
        other = replace(settings, detector=name)
        runs.append((name, COMPARISON, detected_faces(clips, other, wanted, references)))
    parts = []
    for name, role, found in runs:
        items = speaker_items(alignment, index, found, clips, crop_scale, align)
        parts.append(items.select(pl.lit(name).alias("detector"),
                                  pl.lit(role).alias("detector_role"), pl.all()))  # fmt: skip
    return pl.concat(parts)


VERDICT_SCHEMA: dict[str, Any] = {
    "sample": pl.Int32,
    "time_gap": pl.Float64,
    "primary_iou": pl.Float64,
    "window_iou": pl.Float64,
    "primary_hit": pl.Boolean,
    "window_hit": pl.Boolean,
    "no_face": pl.Boolean,
}


def _verdicts(
    row: dict[str, Any],
    boxes: dict[int, Detection],
    clip: dict[str, Any] | None,
    crop_scale: float,
    align: bool,
) -> dict[str, Any]:
    miss = {"sample": None, "time_gap": None, "primary_iou": 0.0, "window_iou": 0.0,
            "primary_hit": False, "window_hit": False, "no_face": True}  # fmt: skip
    if clip is None or not clip["timestamps"] or not boxes:
        return miss
    times = np.asarray(clip["timestamps"], dtype=float)
    # the shard's boxes are in decoded-frame pixels; the IFEED box in the clip's own
    k = float(row["frame_height"]) / float(clip["height"]) if clip["height"] else 1.0
    ifeed = (row["x"], row["y"], row["w"], row["h"])
    nearest = int(np.abs(times - row["time"]).argmin())
    with_face = sorted(
        boxes, key=lambda i: (abs(times[i] - row["time"]) if i < len(times) else 1e9, i)
    )
    x, y, w, h = boxes[with_face[0]].box
    primary = iou([x * k, y * k, w * k, h * k], ifeed)
    window = clip_windows(boxes, len(times), crop_scale, align)[nearest]
    window_iou = 0.0
    if window is not None:
        # the window's square in the frame (aligned: about the warp's centre)
        wx, wy, side, _ = window.box
        # the face the window was built around: its side over crop_scale is the
        # boxes' median longer side; the face keeps the boxes' median aspect
        # (a learned detector's box is taller than wide, brow to chin)
        aspect = float(np.median([f.w / f.h for f in boxes.values() if f.h > 0] or [1.0]))
        core_h = side / crop_scale / max(1.0, aspect)
        core_w = core_h * aspect
        cx, cy = wx + side / 2, wy + side / 2
        core = [(cx - core_w / 2) * k, (cy - core_h / 2) * k, core_w * k, core_h * k]
        window_iou = iou(core, ifeed)
    return {
        "sample": nearest,
        "time_gap": float(abs(times[with_face[0]] - row["time"])),
        "primary_iou": primary,
        "window_iou": window_iou,
        "primary_hit": primary >= HIT_IOU,
        "window_hit": window_iou >= HIT_IOU,
        "no_face": False,
    }


def speaker_table(items: pl.DataFrame) -> pd.DataFrame:
    """Hit rates per detector (the configured one first) by MELD split x character,
    with an ``all`` row per split and overall. Items without a ``detector`` column
    (``speaker_items``) are one unnamed detector's."""
    rows = []
    frame = items.to_pandas() if items.height else pd.DataFrame(columns=list(items.columns))
    if "detector" not in frame.columns:
        frame = frame.assign(detector="", detector_role=CONFIGURED)
    # the configured detector first, then the comparisons in the order given
    runs = list(dict.fromkeys(zip(frame["detector"], frame["detector_role"], strict=True)))
    runs.sort(key=lambda run: run[1] != CONFIGURED)
    if not runs:
        runs = [("", CONFIGURED)]
    for detector, role in runs:
        of_run = frame[(frame["detector"] == detector) & (frame["detector_role"] == role)]
        for split in ("train", "dev", "test", "all"):
            part = of_run if split == "all" else of_run[of_run["meld_split"] == split]
            if split != "all" and part.empty:
                continue
            for character in [*CAST, "all"]:
                sub = part if character == "all" else part[part["character"] == character]
                if sub.empty and character != "all":
                    continue
                n = len(sub)
                ph, wh = int(sub["primary_hit"].sum()), int(sub["window_hit"].sum())
                rows.append({
                    "detector": detector, "detector_role": role, "split": split,
                    "character": character, "n": n,
                    "primary_hits": ph, "primary_rate": ph / n if n else None,
                    "window_hits": wh, "window_rate": wh / n if n else None,
                    "no_face": int(sub["no_face"].sum()),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))

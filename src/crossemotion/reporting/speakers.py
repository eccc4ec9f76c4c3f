"""Per-utterance speaker table: how each MELD utterance's speaker face was chosen.

The faces stage writes, per MELD clips shard, a speakers shard with one row per
clip (``crossemotion.ingest.faces.crops.SPEAKER_SCHEMA``): the selector, the
status (``ok``, ``no_face``, ``one_frame``) and its reason, the sound's status,
the method (``audio+motion``, ``motion``, ``geometry``, ``single``, ``none``),
the face tracks and the chosen one with its speaking score and confidence. The
faces shards hold the primary face per sampled frame with its ``track_id``.

``speakers_table``: one row per utterance, those columns and three checks:

* ``ifeed_boxes`` / ``ifeed_agree`` / ``ifeed_iou``: the aligned IFEED images of
  the utterance's speaker (``results/ifeed/alignment.parquet``, status matched,
  the image's character is the utterance's and a cast member) give the speaker's
  face box in the clip. Each is checked against the primary face the faces shard
  keeps at the sampled frame nearest in time that has one (under ``selector:
  track`` the chosen track's face); a check passes at IoU >= 0.5 (both boxes in
  the clip's own pixels). ``ifeed_agree`` is true when every box of the
  utterance passes, false when one fails (a clip with no face kept fails), null
  without a box; ``ifeed_iou`` the lowest IoU.
* ``max_faces``: the most faces the detector found in one sampled frame with a
  primary face (the faces shard's ``n_faces``).
* ``primary_tracks``: how many tracks the primary faces come from (null
  track ids count as one more each: a face on no track is no evidence of one).

``speakers_by_character``: per MELD split (and all) and character (the six cast,
``Other``, all): utterances, speaker found (status ok) and its share, mean
confidence, IFEED-checked utterances and their agreement rate, and among clips
with two or more faces in a frame the share whose primary faces all come from
one track (within one utterance the same person in every frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq

from crossemotion.ingest.ifeed.align import MATCHED, iou
from crossemotion.labels import CAST, OTHER

# a check passes as a yardstick hit does (HIT_IOU)
from crossemotion.reporting.speaker_faces import HIT_IOU

SPLITS = ("train", "dev", "test")
ALL = "all"
STATUS_OK = "ok"

# the speakers-shard columns the table keeps, in its order
SPEAKER_COLUMNS = ("split", "dialogue_id", "utterance_id", "key", "character", "selector",
                   "status", "reason", "audio", "audio_reason", "method", "n_tracks",
                   "speaker_track", "speaking", "confidence")  # fmt: skip
CHECK_SCHEMA: dict[str, Any] = {
    "ifeed_boxes": pl.Int32,
    "ifeed_agree": pl.Boolean,
    "ifeed_iou": pl.Float64,
    "max_faces": pl.Int32,
    "primary_tracks": pl.Int32,
}
BY_CHARACTER_COLUMNS = ("split", "character", "utterances", "found", "found_share",
                        "mean_confidence", "ifeed_checked", "ifeed_agreement",
                        "multi_face_clips", "one_track", "one_track_share")  # fmt: skip


def _read(paths: Sequence[str | Path], columns: Sequence[str]) -> pl.DataFrame:
    """The ``columns`` a shard has (older shards lack some), stacked; absent ones null."""
    frames = []
    for path in paths:
        present = set(pq.read_schema(path).names)
        frame = pl.read_parquet(path, columns=[c for c in columns if c in present])
        frames.append(frame.with_columns(pl.lit(None).alias(c) for c in columns
                                         if c not in present))  # fmt: skip
    if not frames:
        return pl.DataFrame()
    return pl.concat([f.select(columns) for f in frames], how="vertical_relaxed")


def read_inputs(
    speakers: Sequence[str | Path], faces: Sequence[str | Path], clips: Sequence[str | Path]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The speakers, faces (boxes only) and clips (sample times only) shards' columns
    the tables read: no image or frame bytes are loaded."""
    return (
        _read(speakers, SPEAKER_COLUMNS),
        _read(faces, ["split", "key", "frame_index", "bbox", "n_faces", "track_id"]),
        _read(clips, ["split", "key", "timestamps", "height"]),
    )


def speaker_boxes(alignment: pl.DataFrame, speakers: pl.DataFrame) -> pl.DataFrame:
    """The matched IFEED images of each utterance's speaker (cast members only), keyed
    by the speakers shards' (split, key)."""
    keys = speakers.select("split", "dialogue_id", "utterance_id", "key",
                           pl.col("character").alias("speaker_character"))  # fmt: skip
    return (
        alignment.filter(pl.col("status") == MATCHED)
        .rename({"key": "ifeed_key"})
        .join(
            keys,
            left_on=["meld_split", "dialogue_id", "utterance_id"],
            right_on=["split", "dialogue_id", "utterance_id"],
            how="inner",
        )
        .filter(
            (pl.col("character") == pl.col("speaker_character"))
            & pl.col("character").is_in(list(CAST))
        )
        .select(
            pl.col("meld_split").alias("split"), "key", "time", "x", "y", "w", "h", "frame_height"
        )
    )


def _checks(
    boxes: list[dict[str, Any]],
    faces: list[dict[str, Any]],
    sample: dict[str, Any] | None,
) -> dict[str, Any]:
    """The IFEED check and the face counts of one clip (see the module docstring)."""
    tracks = [f["track_id"] for f in faces]
    distinct = len({t for t in tracks if t is not None}) + sum(t is None for t in tracks)
    out: dict[str, Any] = {
        "ifeed_boxes": len(boxes),
        "ifeed_agree": None,
        "ifeed_iou": None,
        "max_faces": max((int(f["n_faces"] or 0) for f in faces), default=0),
        "primary_tracks": distinct,
    }
    if not boxes:
        return out
    times = np.asarray((sample or {}).get("timestamps") or [], dtype=float)
    # only the frames whose time is known can be nearest to the IFEED frame
    timed = [f for f in faces if 0 <= int(f["frame_index"]) < len(times)]
    overlaps = []
    for box in boxes:
        if not timed or sample is None:
            overlaps.append(0.0)  # no face kept: the speaker was not found
            continue
        face = min(timed, key=lambda f: (abs(times[int(f["frame_index"])] - box["time"]),
                                         int(f["frame_index"])))  # fmt: skip
        # the shard's boxes are in decoded-frame pixels, the IFEED box in the clip's own
        k = float(box["frame_height"]) / float(sample["height"]) if sample["height"] else 1.0
        x, y, w, h = (float(v) * k for v in face["bbox"])
        overlaps.append(iou([x, y, w, h], [box["x"], box["y"], box["w"], box["h"]]))
    out["ifeed_iou"] = float(min(overlaps))
    out["ifeed_agree"] = bool(min(overlaps) >= HIT_IOU)
    return out


def speakers_table(
    speakers: pl.DataFrame,
    faces: pl.DataFrame,
    alignment: pl.DataFrame,
    clips: pl.DataFrame,
) -> pl.DataFrame:
    """One row per utterance of the speakers shards, with the IFEED check and the face
    counts. ``faces``: the faces shards' split, key, frame_index, bbox, n_faces,
    track_id; ``clips``: the clips shards' split, key, timestamps, height."""
    boxes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in speaker_boxes(alignment, speakers).iter_rows(named=True):
        boxes.setdefault((row["split"], row["key"]), []).append(row)
    per_clip: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in faces.iter_rows(named=True):
        if row["bbox"] is not None and len(row["bbox"]) == 4:
            per_clip.setdefault((row["split"], row["key"]), []).append(row)
    samples = {(r["split"], r["key"]): r for r in clips.iter_rows(named=True)}
    checks = [
        _checks(boxes.get(where, []), per_clip.get(where, []), samples.get(where))
        for where in zip(speakers["split"], speakers["key"], strict=True)
    ]
    table = speakers.select(SPEAKER_COLUMNS).with_columns(
        pl.col("character").fill_null(OTHER),
        pl.col(["dialogue_id", "utterance_id", "n_tracks", "speaker_track"]).cast(pl.Int32),
        pl.col(["speaking", "confidence"]).cast(pl.Float64),
    )
    return pl.concat([table, pl.DataFrame(checks, schema=CHECK_SCHEMA)], how="horizontal").sort(
        ["split", "dialogue_id", "utterance_id"]
    )


def _summary(part: pl.DataFrame) -> dict[str, Any]:
    n = part.height
    found = int((part["status"] == STATUS_OK).sum()) if n else 0
    checked = part.filter(pl.col("ifeed_agree").is_not_null())
    multi = part.filter(pl.col("max_faces") >= 2)
    one = int((multi["primary_tracks"] == 1).sum()) if multi.height else 0
    confidence = part["confidence"].drop_nulls() if n else pl.Series([], dtype=pl.Float64)
    return {
        "utterances": n,
        "found": found,
        "found_share": found / n if n else None,
        "mean_confidence": float(confidence.mean()) if confidence.len() else None,
        "ifeed_checked": checked.height,
        "ifeed_agreement": float(checked["ifeed_agree"].mean()) if checked.height else None,
        "multi_face_clips": multi.height,
        "one_track": one,
        "one_track_share": one / multi.height if multi.height else None,
    }


def speakers_by_character(table: pl.DataFrame) -> pd.DataFrame:
    """Per split (and all) x character (the cast, Other, all) of ``speakers_table``;
    a character without utterances in a split is left out, the all rows never."""
    rows = []
    named = table.with_columns(
        pl.when(pl.col("character").is_in(list(CAST)))
        .then(pl.col("character"))
        .otherwise(pl.lit(OTHER))
        .alias("character")
    )
    for split in (*SPLITS, ALL):
        part = named if split == ALL else named.filter(pl.col("split") == split)
        if split != ALL and not part.height:
            continue
        for character in (*CAST, OTHER, ALL):
            sub = part if character == ALL else part.filter(pl.col("character") == character)
            if character != ALL and not sub.height:
                continue
            rows.append({"split": split, "character": character, **_summary(sub)})
    return pd.DataFrame(rows, columns=list(BY_CHARACTER_COLUMNS))


def as_pandas(table: pl.DataFrame) -> pd.DataFrame:
    """``speakers_table`` for ``write_table``: integer columns stay integers where
    they hold nulls (``speaker_track`` of a clip without face), not floats."""
    frame = table.to_pandas()
    for name, dtype in table.schema.items():
        if dtype.is_integer():
            frame[name] = frame[name].astype("Int64")
    return frame

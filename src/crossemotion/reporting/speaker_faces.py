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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crossemotion.datasets.speaker_crop import clip_windows
from crossemotion.ingest.ifeed.align import MATCHED, iou
from crossemotion.labels import CAST

HIT_IOU = 0.5
COLUMNS = (
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


def speaker_items(
    alignment: pl.DataFrame,
    index: pl.DataFrame,
    faces: Sequence[str | Path],
    clips: Sequence[str | Path],
    crop_scale: float,
) -> pl.DataFrame:
    """One row per matched IFEED image of the utterance's speaker, with both verdicts."""
    speakers = index.select(
        pl.col("split").alias("meld_split"), "dialogue_id", "utterance_id",
        pl.col("key").alias("meld_key"), pl.col("character").alias("speaker_character"),
    )  # fmt: skip
    items = (
        alignment.filter(pl.col("status") == MATCHED)
        .join(speakers, on=["meld_split", "dialogue_id", "utterance_id"], how="inner")
        .filter(
            (pl.col("character") == pl.col("speaker_character"))
            & pl.col("character").is_in(list(CAST))
        )
    )
    face_rows = _read(faces, ["split", "key", "frame_index", "bbox"])
    clip_rows = _read(clips, ["split", "key", "timestamps", "width", "height"])
    boxes: dict[tuple[str, str], dict[int, tuple[int, int, int, int]]] = {}
    for split, key, index_, bbox in face_rows.iter_rows():
        if bbox is not None and len(bbox) == 4:
            boxes.setdefault((split, key), {})[int(index_)] = tuple(int(v) for v in bbox)  # type: ignore[assignment]
    samples = {(r["split"], r["key"]): r for r in clip_rows.iter_rows(named=True)}
    out = []
    for row in items.iter_rows(named=True):
        where = (row["meld_split"], row["meld_key"])
        out.append({**row, **_verdicts(row, boxes.get(where, {}), samples.get(where), crop_scale)})
    schema = {**items.schema, **VERDICT_SCHEMA}
    return pl.DataFrame(out, schema=schema)


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
    boxes: dict[int, tuple[int, int, int, int]],
    clip: dict[str, Any] | None,
    crop_scale: float,
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
    x, y, w, h = boxes[with_face[0]]
    primary = iou([x * k, y * k, w * k, h * k], ifeed)
    window = clip_windows(boxes, len(times), crop_scale)[nearest]
    window_iou = 0.0
    if window is not None:
        wx, wy, side, _ = window
        # the face the window was built around: its side over crop_scale is the
        # boxes' median longer side; the face keeps the boxes' median aspect
        # (a learned detector's box is taller than wide, brow to chin)
        aspect = float(np.median([w / h for _, _, w, h in boxes.values() if h > 0] or [1.0]))
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
    """Hit rates by MELD split x character, with an ``all`` row per split and overall."""
    rows = []
    frame = items.to_pandas() if items.height else pd.DataFrame(columns=list(items.columns))
    for split in ("train", "dev", "test", "all"):
        part = frame if split == "all" else frame[frame["meld_split"] == split]
        if split != "all" and part.empty:
            continue
        for character in [*CAST, "all"]:
            sub = part if character == "all" else part[part["character"] == character]
            if sub.empty and character != "all":
                continue
            n = len(sub)
            ph, wh = int(sub["primary_hit"].sum()), int(sub["window_hit"].sum())
            rows.append({
                "split": split, "character": character, "n": n,
                "primary_hits": ph, "primary_rate": ph / n if n else None,
                "window_hits": wh, "window_rate": wh / n if n else None,
                "no_face": int(sub["no_face"].sum()),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))

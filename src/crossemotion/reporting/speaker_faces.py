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

Selectors side by side, the same way: each ``report.speaker_faces.compare_selectors``
selector (``largest``, ``reference``, ``track``) runs the faces stage's code with
the configured detector and that ``selector`` on the same frames, one block of
rows each (``selector``, ``selector_role``). A comparison selector equal to the
configured one is the configured block already and is not run twice.

Clip kinds. Each scored image is a ``listener_larger`` clip when, in the
sampled frame nearest to the IFEED frame, the configured detector finds a face
other than the speaker's (the face overlapping the IFEED box most, IoU >= 0.2;
else the IFEED box itself) with a larger area: the shots where the largest face is the
listener's. Every other image is ``other``. The kind is measured on the frames,
so it works on real MELD as on the demo, and it is one kind per image for every
block, so the blocks compare on the same images. Each block has ``clip_kind``
rows ``all``, ``listener_larger`` and ``other`` (the last two for all characters).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq

from crossemotion.codec import decode_jpeg
from crossemotion.datasets.speaker_crop import clip_windows, face_of
from crossemotion.ingest.faces.detect import Detection, FaceDetector
from crossemotion.ingest.ifeed.align import MATCHED, iou
from crossemotion.labels import CAST

if TYPE_CHECKING:
    from crossemotion.ingest.faces.crops import FaceSettings
    from crossemotion.ingest.faces.references import References

HIT_IOU = 0.5
CONFIGURED, COMPARISON = "configured", "comparison"
ALL, LISTENER_LARGER, OTHER = "all", "listener_larger", "other"
# the detected face overlapping the IFEED box by this much is the speaker's own face
# (for the clip kind only; a hit still needs HIT_IOU)
SAME_FACE_IOU = 0.2
CLIP_KINDS = (ALL, LISTENER_LARGER, OTHER)
# the selector of items scored without one (``speaker_items`` alone)
UNNAMED = ""
COLUMNS = (
    "detector",
    "detector_role",
    "selector",
    "selector_role",
    "split",
    "character",
    "clip_kind",
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


# the clips-shard columns the faces stage reads (crops.clip_faces); the sound's
# only where the shard has them (shards from before the sound was kept do not)
_CLIP_COLUMNS = ["split", "dialogue_id", "utterance_id", "key", "file", "character",
                 "speaker", "label", "frames", "audio_rms", "audio_status",
                 "audio_reason"]  # fmt: skip


def _wanted_rows(
    clips: Sequence[str | Path], wanted: set[tuple[str, str]], columns: list[str]
) -> Iterator[dict[str, Any]]:
    """The clips-shard rows of the ``wanted`` (split, key) clips, one shard in memory at a time."""
    for path in clips:
        present = set(pq.read_schema(path).names)
        ids = pl.read_parquet(path, columns=["split", "key"])
        keys = [k for sp, k in zip(ids["split"], ids["key"], strict=True) if (sp, k) in wanted]
        if not keys:
            continue  # no frame bytes read for a shard the yardstick does not score
        read = [c for c in columns if c in present]
        table = pl.DataFrame(pq.read_table(path, columns=read, filters=[("key", "in", keys)]))
        keep = [(sp, k) in wanted for sp, k in zip(table["split"], table["key"], strict=True)]
        yield from table.filter(pl.Series(keep, dtype=pl.Boolean)).iter_rows(named=True)


def speaker_faces_of(
    row: dict[str, Any],
    detector: FaceDetector,
    settings: FaceSettings,
    references: References | None = None,
) -> dict[int, Detection]:
    """The speaker's face per sampled frame of one clips-shard row as the faces stage
    picks it with ``settings``. The one call of the faces stage's code here, so a
    change of its signature is one edit. ``largest`` is geometry alone: it never
    gets the references, which the other selectors may use."""
    from crossemotion.ingest.faces.crops import clip_faces

    refs = None if settings.selector == "largest" else references
    return {
        int(face["frame_index"]): face_of(face["bbox"], face["landmarks"])
        for face in clip_faces(row, detector, settings, refs)
    }


def detected_faces(
    clips: Sequence[str | Path],
    settings: FaceSettings,
    wanted: set[tuple[str, str]],
    references: References | None = None,
) -> ClipFaces:
    """The speaker's face per sampled frame of the ``wanted`` clips as the faces stage
    would keep it with ``settings`` (its detector, speaker choice and limits): the
    same code as the faces shards, on the same decoded frames."""
    detector = settings.build_detector()
    out: ClipFaces = {}
    for row in _wanted_rows(clips, wanted, _CLIP_COLUMNS):
        out[(row["split"], row["key"])] = speaker_faces_of(row, detector, settings, references)
    return out


def clip_kind(found: Sequence[Detection], speaker_box: Sequence[float]) -> str:
    """``listener_larger`` when a face of ``found`` other than the speaker's is larger
    than the speaker's, else ``other``. The speaker's face is the one of ``found``
    overlapping ``speaker_box`` (the IFEED box in the same pixels) most, if by
    ``SAME_FACE_IOU`` at least: a detector frames a face otherwise than IFEED's crop
    (a turned head, a small face), which makes it a miss but not another person;
    where none overlaps so, the box itself stands for it."""
    overlaps = [iou(list(f.box), speaker_box) for f in found]
    best = int(np.argmax(overlaps)) if overlaps else -1
    if best >= 0 and overlaps[best] >= SAME_FACE_IOU:
        speaker_area = float(found[best].w * found[best].h)
        others = [f for i, f in enumerate(found) if i != best]
    else:
        speaker_area = float(speaker_box[2] * speaker_box[3])
        others = list(found)
    return LISTENER_LARGER if any(f.w * f.h > speaker_area for f in others) else OTHER


def clip_kinds(
    items: pl.DataFrame, clips: Sequence[str | Path], detector: FaceDetector
) -> pl.DataFrame:
    """``member`` -> ``clip_kind`` of each item (``matched_speakers`` rows): every face
    ``detector`` finds in the sampled frame nearest to the IFEED frame, against the
    IFEED box scaled to the decoded frame's pixels. An image whose clip was not
    decoded (or whose frame does not decode) is ``other``: nothing larger was seen."""
    by_clip: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in items.iter_rows(named=True):
        by_clip.setdefault((row["meld_split"], row["meld_key"]), []).append(row)
    kinds = {m: OTHER for m in items["member"]} if items.height else {}
    columns = ["split", "key", "frames", "timestamps", "height"]
    for clip in _wanted_rows(clips, set(by_clip), columns):
        times = np.asarray(clip["timestamps"] or [], dtype=float)
        frames = clip["frames"] or []
        for row in by_clip[(clip["split"], clip["key"])]:
            if not len(times) or not frames:
                continue
            nearest = int(np.abs(times - row["time"]).argmin())
            if nearest >= len(frames):
                continue
            try:
                image = decode_jpeg(frames[nearest])
            except ValueError:
                continue
            # the IFEED box is in the clip's own pixels, the frame decoded smaller
            k = float(clip["height"]) / float(row["frame_height"]) if row["frame_height"] else 1.0
            box = [row["x"] * k, row["y"] * k, row["w"] * k, row["h"] * k]
            kinds[row["member"]] = clip_kind(detector.detect(image), box)
    return pl.DataFrame(
        {"member": list(kinds), "clip_kind": list(kinds.values())},
        schema={"member": pl.String, "clip_kind": pl.String},
    )


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
    selectors: Sequence[str] = (),
) -> pl.DataFrame:
    """``speaker_items`` of the configured detector and selector (``settings``, the
    faces shards), of each ``compare`` detector and of each comparison selector of
    ``selectors`` (``detected_faces``, the same settings otherwise) on the same
    images, stacked, with ``detector``, ``detector_role``, ``selector`` and
    ``selector_role`` first and each image's ``clip_kind`` last."""
    from dataclasses import replace

    Run = tuple[str, str, str, str, Sequence[str | Path] | ClipFaces]
    runs: list[Run] = [(settings.detector, CONFIGURED, settings.selector, CONFIGURED, faces)]
    scored = matched_speakers(alignment, index)
    wanted = set(zip(scored["meld_split"], scored["meld_key"], strict=True))
    for name in compare:
        if name == settings.detector:
            raise ValueError(f"compare_detectors lists the configured detector {name!r}")
        other = replace(settings, detector=name)
        found = detected_faces(clips, other, wanted, references)
        runs.append((name, COMPARISON, settings.selector, CONFIGURED, found))
    # the configured selector's block is the faces shards' already (the default
    # comparison, largest, is the configured selector where that is largest)
    for selector in dict.fromkeys(selectors):
        if selector == settings.selector:
            continue
        if selector == "reference" and references is None:
            raise ValueError("compare_selectors lists reference: it needs the cast's references")
        other = replace(settings, selector=selector)
        found = detected_faces(clips, other, wanted, references)
        runs.append((settings.detector, CONFIGURED, selector, COMPARISON, found))
    kinds = clip_kinds(scored, clips, settings.build_detector())
    parts = []
    for name, role, selector, selector_role, found in runs:
        items = speaker_items(alignment, index, found, clips, crop_scale, align)
        parts.append(
            items.select(
                pl.lit(name).alias("detector"), pl.lit(role).alias("detector_role"),
                pl.lit(selector).alias("selector"), pl.lit(selector_role).alias("selector_role"),
                pl.all(),
            ).join(kinds, on="member", how="left", maintain_order="left")
            .with_columns(pl.col("clip_kind").fill_null(OTHER))
        )  # fmt: skip
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


def _rates(sub: pd.DataFrame) -> dict[str, Any]:
    n = len(sub)
    ph, wh = int(sub["primary_hit"].sum()), int(sub["window_hit"].sum())
    return {"n": n, "primary_hits": ph, "primary_rate": ph / n if n else None,
            "window_hits": wh, "window_rate": wh / n if n else None,
            "no_face": int(sub["no_face"].sum())}  # fmt: skip


def speaker_table(items: pl.DataFrame) -> pd.DataFrame:
    """Hit rates per block (the configured detector and selector first, then the
    comparison detectors, then the comparison selectors) by MELD split x character,
    with an ``all`` row per split and overall, and after each split's ``all`` row
    one row per clip kind where the items have ``clip_kind`` (``compared_items``).
    Items without a ``detector`` or ``selector`` column (``speaker_items``) are one
    unnamed detector's or selector's."""
    rows = []
    frame = items.to_pandas() if items.height else pd.DataFrame(columns=list(items.columns))
    if "detector" not in frame.columns:
        frame = frame.assign(detector="", detector_role=CONFIGURED)
    if "selector" not in frame.columns:
        frame = frame.assign(selector=UNNAMED, selector_role=CONFIGURED)
    keys = ["detector", "detector_role", "selector", "selector_role"]
    runs = list(dict.fromkeys(frame[keys].itertuples(index=False, name=None)))
    # both configured first, then comparison detectors, then comparison selectors
    runs.sort(key=lambda run: (run[1] != CONFIGURED or run[3] != CONFIGURED, run[3] != CONFIGURED))
    if not runs:
        runs = [("", CONFIGURED, UNNAMED, CONFIGURED)]
    kinds = [LISTENER_LARGER, OTHER] if "clip_kind" in frame.columns else []
    for run in runs:
        of_run = frame[(frame[keys] == pd.Series(run, index=keys)).all(axis=1)]
        head = dict(zip(keys, run, strict=True))
        for split in ("train", "dev", "test", ALL):
            part = of_run if split == ALL else of_run[of_run["meld_split"] == split]
            if split != ALL and part.empty:
                continue
            for character in [*CAST, ALL]:
                sub = part if character == ALL else part[part["character"] == character]
                if sub.empty and character != ALL:
                    continue
                rows.append({**head, "split": split, "character": character,
                             "clip_kind": ALL, **_rates(sub)})  # fmt: skip
            for kind in kinds:
                rows.append({**head, "split": split, "character": ALL, "clip_kind": kind,
                             **_rates(part[part["clip_kind"] == kind])})  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))

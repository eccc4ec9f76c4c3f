"""MELD index: find split folders and csvs in an unpacked tree, read the
annotations, match clips to utterances.

Copies of MELD.Raw differ in where things sit (the train csv inside
``train.tar.gz``, the others beside the tars; some copies flatten it), so
nothing here depends on depth: split folders are found by name
(``train_splits``, ``dev_splits_complete``, ``output_repeated_splits_test``)
and csvs by ``{split}_sent_emo.csv`` anywhere in the tree.

The index has one row per annotated utterance and one per extra clip, with a
status that speaks of the item (``ok``, ``missing``, ``empty``,
``unannotated``, ``unknown_label``, ``unparsable_name``); decoding later
refines ``ok`` rows into ``ok``/``corrupt``/``no_video``/``overlong``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from crossemotion import labels
from crossemotion.ingest import manifest as mf
from crossemotion.ingest.meld.text import clean_text

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "dev", "test")
SPLIT_DIRS: dict[str, str] = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}
CLIP_SUFFIXES = frozenset({".mp4", ".m4a", ".m4v", ".mov", ".mkv", ".avi", ".webm"})
# Some test clips carry this prefix in the official archive.
_CLIP_RE = re.compile(r"^(final_videos_test)?dia(\d+)_utt(\d+)$", re.IGNORECASE)
_TIME_RE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?\s*$")

# csv header (normalised: lower case, alphanumerics only) -> index column
_CSV_COLUMNS = {
    "srno": "sr_no",
    "utterance": "raw_text",
    "speaker": "speaker",
    "emotion": "raw_label",
    "sentiment": "sentiment",
    "dialogueid": "dialogue_id",
    "utteranceid": "utterance_id",
    "season": "season",
    "episode": "episode",
    "starttime": "start_time",
    "endtime": "end_time",
}
_REQUIRED = ("raw_text", "speaker", "raw_label", "dialogue_id", "utterance_id")

INDEX_SCHEMA: dict[str, Any] = {
    "split": pl.String,
    "dialogue_id": pl.Int32,
    "utterance_id": pl.Int32,
    "key": pl.String,
    "file": pl.String,
    "status": pl.String,
    "reason": pl.String,
    "sr_no": pl.Int64,
    "speaker": pl.String,
    "character": pl.String,
    "raw_label": pl.String,
    "label": pl.String,
    "sentiment": pl.String,
    "text": pl.String,
    "season": pl.Int32,
    "episode": pl.Int32,
    "start_time": pl.String,
    "end_time": pl.String,
    "start_seconds": pl.Float64,
    "end_seconds": pl.Float64,
}

TEXT_COLUMNS: tuple[str, ...] = (
    "split",
    "dialogue_id",
    "utterance_id",
    "key",
    "speaker",
    "character",
    "label",
    "sentiment",
    "text",
    "season",
    "episode",
    "start_time",
    "end_time",
)


class MeldLayoutError(RuntimeError):
    """The unpacked tree or the annotations lack something the index needs."""


def utterance_key(dialogue_id: int, utterance_id: int) -> str:
    return f"dia{dialogue_id}_utt{utterance_id}"


def shard_of(dialogue_id: int, n_shards: int) -> int:
    """Shards by dialogue so that a dialogue's utterances stay together."""
    return int(dialogue_id) % int(n_shards)


def parse_clip_name(name: str) -> tuple[int, int] | None:
    """``dia12_utt3.mp4`` or ``final_videos_testdia12_utt3.mp4`` -> (12, 3)."""
    m = _CLIP_RE.match(Path(name).stem)
    return (int(m.group(2)), int(m.group(3))) if m else None


def parse_time(text: str | None) -> float | None:
    """``hh:mm:ss,mmm`` -> seconds; None when it does not parse."""
    if not text:
        return None
    m = _TIME_RE.match(text)
    if not m:
        return None
    h, mnt, s, ms = m.groups()
    return int(h) * 3600 + int(mnt) * 60 + int(s) + int((ms or "0").ljust(3, "0")) / 1000


@dataclass
class Layout:
    """What was found in an unpacked tree."""

    clip_dirs: dict[str, Path] = field(default_factory=dict)
    csvs: dict[str, Path] = field(default_factory=dict)


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def locate(root: str | Path) -> Layout:
    """Find each split's clip folder and csv anywhere under ``root``.

    Where a name occurs more than once the folder holding the most clips
    (and the csv at the shallowest depth) wins, so stray copies do not.
    """
    root = Path(root)
    if not root.is_dir():
        raise MeldLayoutError(f"MELD tree {root} does not exist or is not a folder")
    dirs: dict[str, list[tuple[int, Path]]] = {s: [] for s in SPLITS}
    csvs: dict[str, list[Path]] = {s: [] for s in SPLITS}
    by_dirname = {v.lower(): k for k, v in SPLIT_DIRS.items()}
    by_csvname = {f"{s}_sent_emo.csv": s for s in SPLITS}
    for cur, subdirs, files in os.walk(root):
        rel = Path(cur).relative_to(root).parts
        subdirs[:] = [d for d in subdirs if not _hidden((d,))]
        if _hidden(rel):
            continue
        split = by_dirname.get(Path(cur).name.lower())
        if split is not None:
            n = sum(1 for f in files if Path(f).suffix.lower() in CLIP_SUFFIXES)
            dirs[split].append((n, Path(cur)))
        for f in files:
            s = by_csvname.get(f.lower())
            if s is not None:
                csvs[s].append(Path(cur) / f)
    layout = Layout()
    for s in SPLITS:
        if dirs[s]:
            layout.clip_dirs[s] = max(dirs[s], key=lambda t: (t[0], -len(t[1].parts)))[1]
        if csvs[s]:
            layout.csvs[s] = min(csvs[s], key=lambda p: (len(p.parts), str(p)))
    log.info(
        "MELD layout under %s: clips %s, csvs %s",
        root,
        {k: str(v) for k, v in layout.clip_dirs.items()},
        {k: str(v) for k, v in layout.csvs.items()},
    )
    return layout


def _decode_bytes(raw: bytes) -> str:
    # utf-8 first (the official csvs); cp1252 copies exist and text.py repairs the rest
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _norm_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def read_annotations(path: str | Path, split: str) -> pl.DataFrame:
    """One row per utterance of a ``*_sent_emo.csv``, in the index schema.

    Rows whose ids do not parse are logged and left out (there is no key to
    report them under); an unknown emotion keeps its row with status
    ``unknown_label``.
    """
    text = _decode_bytes(Path(path).read_bytes())
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise MeldLayoutError(f"{path}: empty annotation file") from None
    cols = {
        i: _CSV_COLUMNS[_norm_header(h)]
        for i, h in enumerate(header)
        if _norm_header(h) in _CSV_COLUMNS
    }
    missing = [c for c in _REQUIRED if c not in cols.values()]
    if missing:
        raise MeldLayoutError(f"{path}: columns {missing} not found in header {header}")
    rows: list[dict[str, Any]] = []
    seen: set[tuple[int, int]] = set()
    bad = 0
    for line_no, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        rec = {name: (values[i] if i < len(values) else None) for i, name in cols.items()}
        dia, utt = _int_or_none(rec.get("dialogue_id")), _int_or_none(rec.get("utterance_id"))
        if dia is None or utt is None:
            bad += 1
            log.warning(
                "%s line %d: unparsable ids %r/%r, row left out",
                path,
                line_no,
                rec.get("dialogue_id"),
                rec.get("utterance_id"),
            )
            continue
        if (dia, utt) in seen:
            log.warning(
                "%s line %d: duplicate %s, first row kept", path, line_no, utterance_key(dia, utt)
            )
            continue
        seen.add((dia, utt))
        rows.append(_annotation_row(rec, split, dia, utt))
    log.info("%s: %d utterances (%d unparsable rows)", path, len(rows), bad)
    return pl.DataFrame(rows, schema=INDEX_SCHEMA)


def _annotation_row(rec: Mapping[str, Any], split: str, dia: int, utt: int) -> dict[str, Any]:
    raw_label = (rec.get("raw_label") or "").strip()
    label = labels.try_normalize_label(raw_label)
    speaker = clean_text(rec.get("speaker"))
    start, end = (rec.get("start_time") or "").strip(), (rec.get("end_time") or "").strip()
    return {
        "split": split,
        "dialogue_id": dia,
        "utterance_id": utt,
        "key": utterance_key(dia, utt),
        "file": None,
        "status": mf.OK if label else mf.UNKNOWN_LABEL,
        "reason": None if label else f"unknown emotion label {raw_label!r}",
        "sr_no": _int_or_none(rec.get("sr_no")),
        "speaker": speaker,
        "character": labels.character_of(speaker),
        "raw_label": raw_label,
        "label": label,
        "sentiment": (rec.get("sentiment") or "").strip().lower() or None,
        "text": clean_text(rec.get("raw_text")),
        "season": _int_or_none(rec.get("season")),
        "episode": _int_or_none(rec.get("episode")),
        "start_time": start or None,
        "end_time": end or None,
        "start_seconds": parse_time(start),
        "end_seconds": parse_time(end),
    }


def scan_clips(folder: Path) -> tuple[dict[tuple[int, int], Path], list[Path]]:
    """Clips in a split folder by (dialogue, utterance), plus unparsable names.

    When both ``dia1_utt0.mp4`` and a prefixed copy exist the plain one wins.
    """
    found: dict[tuple[int, int], Path] = {}
    unparsable: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in CLIP_SUFFIXES:
            continue
        ids = parse_clip_name(path.name)
        if ids is None:
            unparsable.append(path)
        elif ids not in found or not _CLIP_RE.match(path.stem).group(1):  # type: ignore[union-attr]
            found[ids] = path
    return found, unparsable


def _match_split(ann: pl.DataFrame, split: str, folder: Path | None) -> pl.DataFrame:
    """Attach clip files to annotation rows; add rows for extra clips."""
    if folder is None:
        reason = f"split folder {SPLIT_DIRS[split]!r} not found in the unpacked archive"
        return ann.with_columns(
            pl.when(pl.col("status") == mf.OK)
            .then(pl.lit(mf.MISSING))
            .otherwise(pl.col("status"))
            .alias("status"),
            pl.when(pl.col("status") == mf.OK)
            .then(pl.lit(reason))
            .otherwise(pl.col("reason"))
            .alias("reason"),
        )
    clips, unparsable = scan_clips(folder)
    rows = ann.to_dicts()
    for row in rows:
        path = clips.pop((row["dialogue_id"], row["utterance_id"]), None)
        row["file"] = str(path) if path else None
        if row["status"] != mf.OK:
            continue
        if path is None:
            row["status"], row["reason"] = mf.MISSING, "no clip for this utterance"
        elif path.stat().st_size == 0:
            row["status"], row["reason"] = mf.EMPTY, "zero-byte clip file"
    for (dia, utt), path in sorted(clips.items()):
        rows.append(_extra_row(split, path, dia, utt, mf.UNANNOTATED, "clip has no annotation row"))
    for path in unparsable:
        rows.append(
            _extra_row(split, path, None, None, mf.UNPARSABLE, "clip name is not dia{D}_utt{U}")
        )
    return pl.DataFrame(rows, schema=INDEX_SCHEMA)


def _extra_row(
    split: str, path: Path, dia: int | None, utt: int | None, status: str, reason: str
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(INDEX_SCHEMA)
    row.update(
        split=split,
        dialogue_id=dia,
        utterance_id=utt,
        file=str(path),
        status=status,
        reason=reason,
        key=utterance_key(dia, utt) if dia is not None else None,
    )
    return row


def build_index(
    root: str | Path | None,
    annotations: Mapping[str, str | Path | None] | None = None,
) -> pl.DataFrame:
    """The MELD index over an unpacked tree (or annotations alone when ``root`` is None).

    ``annotations`` maps a split to a local csv that overrides the archive's.
    """
    annotations = dict(annotations or {})
    layout = locate(root) if root is not None else Layout()
    parts = []
    for split in SPLITS:
        csv_path = annotations.get(split) or layout.csvs.get(split)
        if csv_path is None:
            where = f"in {root}" if root is not None else "(text-only run without an archive)"
            raise MeldLayoutError(
                f"no annotations for MELD {split}: {split}_sent_emo.csv not found {where}; "
                f"set meld.annotations.{split} to a csv path or URL"
            )
        ann = read_annotations(csv_path, split)
        if root is None:
            ann = ann.with_columns(
                pl.when(pl.col("status") == mf.OK)
                .then(pl.lit("text only: clips not indexed"))
                .otherwise(pl.col("reason"))
                .alias("reason")
            )
            parts.append(ann)
        else:
            parts.append(_match_split(ann, split, layout.clip_dirs.get(split)))
    index = pl.concat(parts, how="vertical")
    return index.sort("split", "dialogue_id", "utterance_id", "file", nulls_last=True)


def text_rows(index: pl.DataFrame, split: str) -> pl.DataFrame:
    """Annotated utterances of a split with a known label (clip or not)."""
    return (
        index.filter((pl.col("split") == split) & pl.col("label").is_not_null())
        .select(TEXT_COLUMNS)
        .sort("dialogue_id", "utterance_id")
    )


def decodable_rows(index: pl.DataFrame, split: str, shard: int, n_shards: int) -> pl.DataFrame:
    """Index rows of one shard that decoding should open (annotated, labelled, file present)."""
    return index.filter(
        (pl.col("split") == split)
        & (pl.col("status") == mf.OK)
        & pl.col("file").is_not_null()
        & ((pl.col("dialogue_id") % n_shards) == shard)
    ).sort("dialogue_id", "utterance_id")

"""IFEED ingestion: parse archive members, build the manifest, write faces shards.

IFEED_Base.zip unpacks to ``IFEED_Base/{Training,Testing}/dia{D}_utt{U}/`` holding
``frame{N}_{Character}_{Label}.jpg``. Other copies of the record nest differently,
so nothing here depends on depth: the split comes from any path component
naming train/test, the source key from the innermost ``dia{D}_utt{U}`` in the
path, and the label from the last ``_`` field of the file name (as public loaders
read it). Anything that does not fit gets a manifest status, never a guess.

Faces shards share the MELD faces schema (``FACE_SHARD_SCHEMA``) so every face
model reads both datasets the same way. Which MELD clip an image was cut from
is decided by its content, not its key (``crossemotion.ingest.ifeed.align``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from crossemotion import labels
from crossemotion.codec import encode_jpeg, read_image
from crossemotion.ingest import manifest as mf
from crossemotion.ingest.faces.align import face_crop
from crossemotion.ingest.faces.detect import Detection, FaceDetector
from crossemotion.io import write_parquet, write_text
from crossemotion.layout import shard_name

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

_SPLIT_TOKENS = {"train": "train", "training": "train", "test": "test", "testing": "test"}
_KEY_RE = re.compile(r"dia(\d+)_utt(\d+)", re.IGNORECASE)
_FRAME_RE = re.compile(r"^frame-?(\d+)$", re.IGNORECASE)
_LABEL_RE = re.compile(r"^[A-Za-z]+$")
_CAST_LOWER = {name.lower(): name for name in labels.CAST}

# The faces shard contract (docs/architecture.md), shared with MELD faces.
FACE_SHARD_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("id", pa.string()),
        ("key", pa.string()),
        ("dialogue_id", pa.int32()),
        ("utterance_id", pa.int32()),
        ("source", pa.string()),
        ("frame_index", pa.int32()),
        ("character", pa.string()),
        ("speaker", pa.string()),
        ("label", pa.string()),
        ("image", pa.binary()),
        ("bbox", pa.list_(pa.int32())),
        ("score", pa.float32()),
        ("n_faces", pa.int32()),
        # the detector's five landmarks (x0, y0, ..., x4, y4) in the source
        # image's pixels beside its bbox and score, so a face can be re-cropped
        # without detecting again; null where the detector gives none (haar)
        ("landmarks", pa.list_(pa.float32())),
        # MELD: the face track the face belongs to within its clip
        # (crossemotion.ingest.faces.tracks); null for IFEED's single images
        ("track_id", pa.int32()),
    ]
)

MANIFEST_SCHEMA = pa.schema(
    [
        ("member", pa.string()),
        ("split", pa.string()),
        ("key", pa.string()),
        ("dialogue_id", pa.int32()),
        ("utterance_id", pa.int32()),
        ("frame_index", pa.int32()),
        ("character", pa.string()),
        ("speaker", pa.string()),
        ("raw_label", pa.string()),
        ("label", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("size", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("shard", pa.int32()),
    ]
)


@dataclass
class ParsedMember:
    """What a member's path says about it; ``status`` is ok or why it is not."""

    member: str
    split: str | None = None
    key: str | None = None
    dialogue_id: int | None = None
    utterance_id: int | None = None
    frame_index: int | None = None
    character: str | None = None
    speaker: str | None = None
    raw_label: str | None = None
    label: str | None = None
    status: str = mf.OK
    reason: str = ""
    size: int | None = None
    width: int | None = None
    height: int | None = None
    shard: int | None = None


# --------------------------------------------------------------------------- parsing


def split_of(parts: Sequence[str]) -> str | None:
    """The innermost folder naming a split (Training, testing, IFEED_Train, ...)."""
    for part in reversed(parts):
        for token in re.split(r"[^a-z]+", part.lower()):
            if token in _SPLIT_TOKENS:
                return _SPLIT_TOKENS[token]
    return None


def key_of(parts: Sequence[str]) -> tuple[str, int, int] | None:
    """The innermost ``dia{D}_utt{U}`` in the path, normalised (``dia007`` -> ``dia7``)."""
    for part in reversed(parts):
        matches = list(_KEY_RE.finditer(part))
        if matches:
            d, u = int(matches[-1].group(1)), int(matches[-1].group(2))
            return f"dia{d}_utt{u}", d, u
    return None


def _cast_folder(parts: Sequence[str]) -> str | None:
    for part in reversed(parts):
        if part.lower() in _CAST_LOWER:
            return _CAST_LOWER[part.lower()]
    return None


def parse_member(path: str | PurePosixPath) -> ParsedMember:
    """Parse one archive member path (relative, '/'-separated) without reading it."""
    pure = PurePosixPath(str(path).replace("\\", "/"))
    rec = ParsedMember(member=pure.as_posix())
    folders = pure.parts[:-1]
    if any(p.startswith(".") or p == "__MACOSX" for p in pure.parts):
        return _with(rec, mf.SKIPPED, "metadata entry (__MACOSX or dotfile)")
    if pure.suffix.lower() not in IMAGE_SUFFIXES:
        return _with(rec, mf.SKIPPED, f"not an image ({pure.suffix or 'no extension'})")

    rec.split = split_of(folders)
    key = key_of([*folders, pure.stem])
    if key:
        rec.key, rec.dialogue_id, rec.utterance_id = key

    # The key may sit in the file name too; drop it before splitting fields.
    # An empty last field (``frame3_Rachel_.jpg``) stays, to be reported below.
    *head, last = _KEY_RE.sub("", pure.stem).split("_")
    fields = [f for f in head if f] + [last]
    if "_" not in pure.stem or fields == [""]:
        return _with(rec, mf.UNPARSABLE, f"file name {pure.name!r} has no '_'-separated label")
    rec.raw_label = fields[-1]
    rest = fields[:-1]
    frame_pos = next((i for i, f in enumerate(rest) if _FRAME_RE.match(f)), None)
    if frame_pos is None:
        frame_pos = next((i for i, f in enumerate(rest) if f.isdigit()), None)
    if frame_pos is not None:
        rec.frame_index = int(re.sub(r"\D", "", rest.pop(frame_pos)))
    rec.speaker = " ".join(rest) or _cast_folder(folders)
    rec.character = labels.character_of(rec.speaker)

    if rec.split is None:
        return _with(rec, mf.UNPARSABLE, "no Training/Testing (train/test) folder in the path")
    if not _LABEL_RE.match(rec.raw_label):
        return _with(rec, mf.UNPARSABLE, f"label field {rec.raw_label!r} is not a word")
    try:
        rec.label = labels.normalize_label(rec.raw_label)
    except labels.UnknownLabelError as err:
        return _with(rec, mf.UNKNOWN_LABEL, str(err))
    return rec


def _with(rec: ParsedMember, status: str, reason: str) -> ParsedMember:
    rec.status, rec.reason = status, reason
    return rec


# -------------------------------------------------------------------------- manifest


def iter_members(unpacked_dir: Path) -> Iterator[Path]:
    """Every regular file under the extraction folder, in a stable order."""
    yield from sorted(p for p in unpacked_dir.rglob("*") if p.is_file() and not p.is_symlink())


def load_unpack_report(path: str | Path | None) -> list[tuple[str, str, str]]:
    """(member, status, reason) of each member the unpacker skipped or refused: status
    ``bad_name`` where the unpacker says so (a name that does not decode), else ``skipped``.

    Reads the report defensively: any list of dicts carrying a member-like
    field, or a ``{member: reason}`` mapping under a skipped/refused key, at
    any depth; a missing or unreadable report yields nothing but a warning.
    """
    if path is None or not Path(path).exists():
        return []
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        log.warning("unpack report %s unreadable (%s); no skipped members added", path, err)
        return []
    return list(dict.fromkeys(_report_entries(payload, context="")))


_MEMBER_FIELDS = ("member", "name", "path", "file", "entry")
_LIST_KEYS = ("skipped", "refused", "rejected", "ignored", "errors")


def _report_entries(obj: Any, context: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(obj, dict):
        member = next((obj[f] for f in _MEMBER_FIELDS if isinstance(obj.get(f), str)), None)
        if member is not None and context:
            reason = obj.get("reason") or obj.get("why") or obj.get("error") or context
            archive = obj.get("archive")
            label = f"{Path(str(archive)).name}:{member}" if archive else member
            status = mf.BAD_NAME if obj.get("status") == mf.BAD_NAME else mf.SKIPPED
            yield label, status, f"{context}: {reason}" if reason != context else context
            return
        for k, v in obj.items():
            here = k if k in _LIST_KEYS else context
            if here and isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
                for member_name, reason in v.items():
                    yield member_name, mf.SKIPPED, f"{here}: {reason}"
            else:
                yield from _report_entries(v, here)
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, str) and context:
                yield item, mf.SKIPPED, context
            else:
                yield from _report_entries(item, context)


def build_manifest(
    unpacked_dir: str | Path, unpack_report: str | Path | None = None
) -> list[ParsedMember]:
    """One record per file in the extraction folder plus each member the unpacker left out."""
    root = Path(unpacked_dir)
    records: list[ParsedMember] = []
    for file in iter_members(root):
        rec = parse_member(file.relative_to(root).as_posix())
        rec.size = file.stat().st_size
        if rec.size == 0 and rec.status != mf.SKIPPED:
            _with(rec, mf.EMPTY, "zero-byte file")
        records.append(rec)
    for member, status, reason in load_unpack_report(unpack_report):
        rec = ParsedMember(member=member, split=split_of(PurePosixPath(member).parts[:-1]))
        records.append(_with(rec, status, reason))
    return records


def manifest_frame(records: Iterable[ParsedMember]) -> pl.DataFrame:
    rows = [asdict(r) for r in records]
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return pl.from_arrow(table)  # type: ignore[return-value]


def summary_markdown(frame: pl.DataFrame, bad_share: float | None = None) -> str:
    """Counts by split x status x label, for people reading results/ifeed/."""
    counts = (
        frame.with_columns(
            pl.col("split").fill_null("(none)"),
            pl.col("label").fill_null(pl.col("raw_label")).fill_null("(none)"),
        )
        .group_by("split", "status", "label")
        .len()
        .sort("split", "status", "label")
    )
    lines = ["# IFEED ingestion summary", ""]
    totals = frame.group_by("status").len().sort("status")
    lines.append(
        "Members considered: "
        + f"{frame.height}; "
        + ", ".join(f"{s}: {n}" for s, n in totals.iter_rows())
    )
    if bad_share is not None:
        lines.append(f"\nShare of bad items (skipped members excluded): {bad_share:.2%}")
    lines += ["", "| split | status | label | n |", "|---|---|---|---:|"]
    lines += [f"| {s} | {st} | {lb} | {n} |" for s, st, lb, n in counts.iter_rows()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- shards


def shard_of(rec: ParsedMember, n_shards: int) -> int:
    """Stable shard of a member: all frames of one utterance share a shard.

    Members without a key group by their folder, which keeps one clip's frames
    together in the layouts seen so far.
    """
    group = rec.key or str(PurePosixPath(rec.member).parent)
    digest = hashlib.sha1(group.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_shards


def square_face(image: np.ndarray, size: int, fit: str = "crop") -> np.ndarray:
    """Resize to ``size``x``size``.

    Default ``crop``: centre-crop to the shorter side, then resize. IFEED images
    are already tight face crops, and padding bars would be a dataset signature
    that MELD's square face crops never carry, which a transfer model could
    learn. ``pad`` (black borders, whole image kept) is there for layouts whose
    crops are far from square.
    """
    h, w = image.shape[:2]
    if fit == "pad":
        side = max(h, w)
        canvas = np.zeros((side, side, 3), dtype=image.dtype)
        y, x = (side - h) // 2, (side - w) // 2
        canvas[y : y + h, x : x + w] = image
        square = canvas
    elif fit == "crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        square = image[y : y + side, x : x + side]
    else:
        raise ValueError(f"fit must be 'crop' or 'pad', not {fit!r}")
    interp = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


@dataclass(frozen=True)
class Aligner:
    """Align IFEED's faces as MELD's: detect in each image, warp the face found.

    IFEED images are tight face crops; where the detector finds the face its
    five landmarks take it onto the template by ``face_crop``, as every MELD
    face crop, so both datasets' crops frame a face alike. An image without a
    face found keeps the centre crop (``square_face``).
    """

    detector: FaceDetector
    margin: float = 0.2


def _encode_face(
    path: Path, size: int, quality: int, fit: str, aligner: Aligner | None = None
) -> tuple[bytes | None, int, int, str, Detection | None, int]:
    """(jpeg, width, height, error, face, faces found) for one image; never raises on bad data."""
    try:
        image = read_image(path, bgr=True)
    except (OSError, cv2.error) as err:
        return None, 0, 0, f"unreadable: {err}", None, 0
    if image is None or image.size == 0:
        return None, 0, 0, "OpenCV cannot decode the image", None, 0
    h, w = image.shape[:2]
    face, found = None, []
    if aligner is not None and image.ndim == 3 and image.shape[2] == 3:
        found = aligner.detector.detect(np.ascontiguousarray(image[:, :, ::-1]))
        face = found[0] if found and len(found[0].landmarks) == 5 else None
    try:
        # OpenCV reads the file as BGR and the crop stays BGR up to the encoder
        if face is not None and aligner is not None:
            crop = face_crop(image, face, size, align=True, margin=aligner.margin,
                             border="replicate")  # fmt: skip
        else:
            crop = square_face(image, size, fit)
        return encode_jpeg(crop, quality, bgr=True), w, h, "", face, len(found)
    except RuntimeError:
        return None, w, h, "JPEG re-encoding failed", None, 0


def _face_row(
    rec: ParsedMember, jpeg: bytes, face: Detection | None = None, n_faces: int = 1
) -> dict[str, Any]:
    if face is not None:  # the detector's box, score and landmarks in the image
        where = {"bbox": list(face.box), "score": float(face.score), "n_faces": n_faces,
                 "landmarks": face.landmark_list()}  # fmt: skip
    else:  # the whole image is the face crop
        where = {"bbox": [0, 0, rec.width, rec.height], "score": 1.0, "n_faces": 1,
                 "landmarks": None}  # fmt: skip
    return {
        "dataset": "ifeed",
        "split": rec.split,
        "id": rec.member,
        "key": rec.key,
        "dialogue_id": rec.dialogue_id,
        "utterance_id": rec.utterance_id,
        "source": rec.member,
        "frame_index": rec.frame_index,
        "character": rec.character,
        "speaker": rec.speaker,
        "label": rec.label,
        "image": jpeg,
        **where,
    }


def shard_path(out_dir: str | Path, split: str, shard: int) -> Path:
    # named as the workflow's rule names its outputs (crossemotion.layout)
    return Path(out_dir) / split / shard_name(shard)


def write_face_shards(
    records: list[ParsedMember],
    unpacked_dir: str | Path,
    out_dir: str | Path,
    *,
    face_size: int,
    n_shards: int,
    jpeg_quality: int = 90,
    fit: str = "crop",
    threads: int = 1,
    aligner: Aligner | None = None,
) -> list[Path]:
    """Decode every parsed-ok image, write ``{out_dir}/{split}/part-NNNN.parquet``.

    Updates ``records`` in place (width, height, shard; undecodable images get
    their status). Every split x shard file is written, empty ones with the
    schema, so each Snakemake output exists. ``aligner``: align the faces
    found (``Aligner``); without it every image is centre-cropped.
    """
    root = Path(unpacked_dir)
    cv2.setNumThreads(1)  # the thread pool is the parallelism; avoid oversubscription
    groups: dict[tuple[str, int], list[ParsedMember]] = {
        (s, i): [] for s in SPLITS for i in range(n_shards)
    }
    for rec in records:
        if rec.status == mf.OK and rec.split in SPLITS:
            rec.shard = shard_of(rec, n_shards)
            groups[(rec.split, rec.shard)].append(rec)

    written: list[Path] = []
    if aligner is not None and not getattr(aligner.detector, "thread_safe", False):
        threads = 1  # one detector instance may not be shared between threads
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for (split, shard), members in groups.items():
            members.sort(key=lambda r: r.member)
            results = pool.map(
                lambda r: _encode_face(root / r.member, face_size, jpeg_quality, fit, aligner),
                members,
            )
            rows = []
            progress = tqdm(
                zip(members, results, strict=True),
                total=len(members),
                desc=f"IFEED {split} part-{shard:04d}",
                unit="img",
                mininterval=5,
                disable=None,  # no bar when stderr is not a terminal (job logs)
            )
            for rec, (jpeg, w, h, err, face, n_faces) in progress:
                rec.width, rec.height = (w, h) if w else (None, None)
                if jpeg is None:
                    _with(rec, mf.UNDECODABLE, err)
                    rec.shard = None
                    continue
                rows.append(_face_row(rec, jpeg, face, n_faces))
            target = shard_path(out_dir, split, shard)
            write_parquet(target, pa.Table.from_pylist(rows, schema=FACE_SHARD_SCHEMA))
            log.info("%s: %d faces of %d members", target, len(rows), len(members))
            written.append(target)
    return written


def ingest(
    unpacked_dir: str | Path,
    unpack_report: str | Path | None,
    shards_dir: str | Path,
    manifest_path: str | Path,
    summary_path: str | Path,
    *,
    face_size: int,
    n_shards: int,
    max_bad_fraction: float,
    jpeg_quality: int = 90,
    threads: int = 1,
    aligner: Aligner | None = None,
) -> pl.DataFrame:
    """The whole IFEED stage: manifest, faces shards, summary; budget enforced last.

    The manifest and summary are written before the budget check so a failing
    run still leaves the reasons behind for the user to read.
    """
    records = build_manifest(unpacked_dir, unpack_report)
    write_face_shards(
        records,
        unpacked_dir,
        shards_dir,
        face_size=face_size,
        n_shards=n_shards,
        jpeg_quality=jpeg_quality,
        threads=threads,
        aligner=aligner,
    )
    frame = manifest_frame(records)
    bad_share: float | None = None
    try:
        bad_share = mf.check_bad_fraction(frame["status"].to_list(), max_bad_fraction, "IFEED")
    finally:
        write_text(summary_path, summary_markdown(frame, bad_share))
        write_parquet(manifest_path, frame)
    log.info("IFEED manifest: %d members, bad share %.2f%%", frame.height, 100 * (bad_share or 0))
    return frame

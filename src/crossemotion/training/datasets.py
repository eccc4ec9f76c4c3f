"""Datasets over MELD clips shards and MELD/IFEED faces shards.

Items are dicts of tensors: ``frames`` float [T, 3, S, S] for clips, ``image``
float [3, S, S] for faces, plus ``label`` (int64). Every dataset carries
``meta`` (polars, aligned with indices: id, key, split, speaker, character,
label), ``labels`` (int64 numpy) for class weights and metrics, and
``classes`` (the task's class list, see ``crossemotion.labels.TASKS``; the
config's ``task`` picks the label column, see ``shards.task_labels``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from crossemotion.labels import EMOTIONS
from crossemotion.training.shards import (
    DEV_FRACTION,
    augment_image,
    cache_for,
    classes_of,
    decode_jpeg,
    frame_indices,
    label_indices,
    meta_frame,
    normalize,
    read_shards,
    stratified_group_split,
    task_labels,
    to_uint8_chw,
)
from crossemotion.training.speaker_crop import (
    DEFAULT_SCALE,
    Box,
    clip_windows,
    crop_mode,
    crop_window,
    speaker_boxes,
)

log = logging.getLogger(__name__)

BOX_COLUMNS = ["key", "frame_index", "bbox"]


class ClipDataset(Dataset):
    """One item per MELD clip: uint8 ``frames`` [T, 3, S, S] sampled evenly over the clip.

    Normalisation happens per batch in ``stack_collate``.
    """

    def __init__(
        self,
        frame: pl.DataFrame,
        cfg: Mapping[str, Any],
        augment: bool = False,
        boxes: Mapping[str, Mapping[int, Box]] | None = None,
    ) -> None:
        frame = frame.filter(pl.col("frames").list.len() > 0)
        self.frames: list[list[bytes]] = frame["frames"].to_list()
        # speaker-centred crops (crop: speaker): face boxes per clip key
        self.boxes = [boxes.get(k, {}) for k in frame["key"].to_list()] if boxes else None
        self.crop_scale = float(cfg.get("crop_scale", DEFAULT_SCALE))
        self.t = int(cfg.get("frames", 8))
        self.size = int(cfg.get("size", 112))
        self.augment = augment
        self.classes = classes_of(cfg)
        self.labels = label_indices(frame["label"].to_list(), self.classes)
        self.meta = meta_frame(frame, self.classes)
        self.cache = cache_for(cfg)

    def __len__(self) -> int:
        return len(self.frames)

    def clip_uint8(self, index: int) -> Tensor:
        cached = self.cache.get(index) if self.cache else None
        if cached is not None:
            return cached
        jpegs = self.frames[index]
        picks = frame_indices(len(jpegs), self.t)
        if self.boxes is None:
            images = [decode_jpeg(jpegs[i]) for i in picks]
        else:
            windows = clip_windows(self.boxes[index], len(jpegs), self.crop_scale)
            images = [crop_window(decode_jpeg(jpegs[i]), windows[i]) for i in picks]
        clip = torch.stack([to_uint8_chw(img, self.size) for img in images])
        if self.cache:
            self.cache.put(index, clip)
        return clip

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        clip = self.clip_uint8(index)
        if self.augment:
            # one flip/shift for the whole clip keeps motion consistent
            clip = augment_image(clip)
        return {"frames": clip, "label": torch.tensor(self.labels[index])}


class FaceDataset(Dataset):
    """One item per face crop: uint8 ``image`` [3, S, S], normalised by ``stack_collate``."""

    def __init__(self, frame: pl.DataFrame, cfg: Mapping[str, Any], augment: bool = False) -> None:
        self.images: list[bytes] = frame["image"].to_list()
        self.size = int(cfg.get("size", 224))
        self.augment = augment
        self.classes = classes_of(cfg)
        self.labels = label_indices(frame["label"].to_list(), self.classes)
        self.meta = meta_frame(frame, self.classes)
        self.cache = cache_for(cfg)

    def __len__(self) -> int:
        return len(self.images)

    def image_uint8(self, index: int) -> Tensor:
        cached = self.cache.get(index) if self.cache else None
        if cached is not None:
            return cached
        img = to_uint8_chw(decode_jpeg(self.images[index]), self.size)
        if self.cache:
            self.cache.put(index, img)
        return img

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        img = self.image_uint8(index)
        if self.augment:
            img = augment_image(img)
        return {"image": img, "label": torch.tensor(self.labels[index])}


def _drop_bad_jpegs(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Rows whose JPEG does not decode are logged and left out, not fatal."""
    ok = []
    for value in frame[column].to_list():
        try:
            if isinstance(value, list):
                for item in value:
                    decode_jpeg(item)
            else:
                decode_jpeg(value)
            ok.append(True)
        except (ValueError, TypeError):
            ok.append(False)
    bad = len(ok) - sum(ok)
    if bad:
        log.warning("dropping %d of %d rows with undecodable %s", bad, len(ok), column)
    return frame.filter(pl.Series(ok))


def clip_datasets(
    cfg: Mapping[str, Any],
    paths: Mapping[str, Sequence[str | Path]],
    faces: Mapping[str, Sequence[str | Path]] | None = None,
) -> dict[str, ClipDataset]:
    """Clip datasets per split; ``crop: speaker`` also needs the MELD faces shards."""
    speaker = crop_mode(cfg) == "speaker"
    if speaker and not (faces and all(faces.get(s) for s in ("train", "dev", "test"))):
        raise ValueError("crop: speaker needs the MELD faces shards of every split")
    out = {}
    for split in ("train", "dev", "test"):
        frame = task_labels(_drop_bad_jpegs(read_shards(paths[split]), "frames"), cfg.get("task"))
        boxes = None
        if speaker and faces:
            boxes = speaker_boxes(
                pl.concat([pl.read_parquet(p, columns=BOX_COLUMNS) for p in faces[split]])
            )
        out[split] = ClipDataset(
            frame, cfg, augment=split == "train" and bool(cfg.get("augment", False)), boxes=boxes
        )
    return out


def face_splits(
    paths: Mapping[str, Sequence[str | Path]], seed: int, dev_fraction: float = DEV_FRACTION
) -> dict[str, pl.DataFrame]:
    """train/dev/test face frames; a missing dev split is carved out of train."""
    frames = {split: _drop_bad_jpegs(read_shards(p), "image") for split, p in paths.items() if p}
    if "dev" not in frames:
        frames["train"], frames["dev"] = stratified_group_split(
            frames["train"], dev_fraction, seed=seed
        )
        frames["dev"] = frames["dev"].with_columns(pl.lit("dev").alias("split"))
        log.info(
            "no dev split: held out %d of %d training faces (by source key) as dev",
            frames["dev"].height,
            frames["dev"].height + frames["train"].height,
        )
    return frames


def cap_faces_per_key(frame: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    """At most ``limit`` MELD faces per utterance, evenly spaced over its frames.

    Neighbouring frames of a clip are near-duplicates, so a few per utterance
    keep most of the signal at a fraction of the cost. IFEED rows (distinct
    stills) are never dropped.
    """
    if not limit or frame.is_empty():
        return frame
    ranked = frame.with_columns(
        pl.col("frame_index").rank("ordinal").over("key").alias("_rank"),
        pl.len().over("key").alias("_n"),
    )
    # positions round((i + 0.5) * n / limit) for i < limit, 1-based ranks
    picks = pl.int_ranges(0, pl.min_horizontal(pl.col("_n"), limit))
    wanted = ((picks.list.eval(pl.element() * 2 + 1) * pl.col("_n")) // (2 * limit) + 1).alias(
        "_wanted"
    )
    keep = (pl.col("dataset") != "meld") | pl.col("_rank").is_in(pl.col("_wanted"))
    capped = ranked.with_columns(wanted).filter(keep)
    return capped.drop("_rank", "_n", "_wanted")


def face_datasets(
    cfg: Mapping[str, Any],
    paths: Mapping[str, Sequence[str | Path]],
    seed: int,
    text: Mapping[str, Sequence[str | Path]] | None = None,
) -> dict[str, FaceDataset]:
    """Face datasets per split; ``text`` (MELD text shards) labels faces for ``task: sentiment``."""
    frames = face_splits(paths, seed, float(cfg.get("dev_fraction", DEV_FRACTION)))
    task = cfg.get("task")
    if classes_of(cfg) != EMOTIONS:
        sentiments = None
        if text:
            sentiments = pl.concat(
                [read_shards(p, columns=["key", "sentiment"]) for p in text.values() if p]
            )
        frames = {split: task_labels(f, task, sentiments) for split, f in frames.items()}
    limit = cfg.get("faces_per_utterance")
    frames = {split: cap_faces_per_key(f, limit) for split, f in frames.items()}
    augment = bool(cfg.get("augment", False))
    return {
        split: FaceDataset(frames[split], cfg, augment=split == "train" and augment)
        for split in ("train", "dev", "test")
    }


def stack_collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack items; uint8 images/clips are normalised here, once per batch.

    Items stay uint8 up to this point: stacking moves a quarter of the bytes
    of float32, and one vectorised normalisation per batch replaces a handful
    of temporaries per item (the per-item version made the in-memory Parquet
    loader no faster than reading JPEG files).
    """
    batch = {key: torch.stack([it[key] for it in items]) for key in items[0]}
    for key in ("image", "frames"):
        if key in batch and batch[key].dtype == torch.uint8:
            batch[key] = normalize(batch[key])
    return batch


def labels_of(ds: Dataset) -> np.ndarray:
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return np.asarray(labels, dtype=np.int64)
    classes = getattr(ds, "classes", EMOTIONS)
    return label_indices(ds.meta["label"].to_list(), classes)  # type: ignore[attr-defined]

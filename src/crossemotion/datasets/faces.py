"""Datasets over MELD/IFEED faces shards: one item per face crop.

Items are ``image`` uint8 [3, S, S] (normalised per batch by
``crossemotion.datasets.collate.stack_collate``) and ``label``; ``meta``,
``labels`` and ``classes`` as in crossemotion.datasets.clips.

Each JPEG is decoded once, when the dataset is built: an image that does not
decode is left out there (logged) and the others fill the decode cache. The
check runs on the rows the dataset keeps, i.e. after IFEED's dev split and
the per-utterance cap; the faces stages encode every image they write, so
their shards hold no undecodable image and the rows are those of a check
before the split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from crossemotion.codec import decode_jpeg, to_uint8_chw
from crossemotion.datasets.shards import (
    DEV_FRACTION,
    augment_image,
    cache_for,
    cached_item,
    check_and_cache,
    classes_of,
    label_indices,
    meta_frame,
    read_shards,
    stratified_group_split,
    task_labels,
)
from crossemotion.labels import EMOTIONS
from crossemotion.model_config import FaceConfig

log = logging.getLogger(__name__)


class FaceDataset(Dataset):
    """One item per face crop: uint8 ``image`` [3, S, S]; undecodable images are left out."""

    def __init__(self, frame: pl.DataFrame, cfg: FaceConfig, augment: bool = False) -> None:
        self.size = cfg.size
        self.augment = augment
        self.cache = cache_for(cfg)
        images: list[bytes] = frame["image"].to_list()
        ok = check_and_cache(len(images), lambda row: self.build(images[row]), self.cache, "image")
        frame = frame.filter(pl.Series(ok, dtype=pl.Boolean))
        self.images = [img for img, keep in zip(images, ok, strict=True) if keep]
        self.classes = classes_of(cfg)
        self.labels = label_indices(frame["label"].to_list(), self.classes)
        self.meta = meta_frame(frame, self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def build(self, data: bytes) -> Tensor:
        return to_uint8_chw(decode_jpeg(data), self.size)

    def image_uint8(self, index: int) -> Tensor:
        return cached_item(self.cache, index, lambda: self.build(self.images[index]))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        img = self.image_uint8(index)
        if self.augment:
            img = augment_image(img)
        return {"image": img, "label": torch.tensor(self.labels[index])}


def face_splits(
    paths: Mapping[str, Sequence[str | Path]], seed: int, dev_fraction: float = DEV_FRACTION
) -> dict[str, pl.DataFrame]:
    """train/dev/test face frames; a missing dev split is carved out of train."""
    frames = {split: read_shards(p) for split, p in paths.items() if p}
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


def face_tables(
    cfg: FaceConfig,
    paths: Mapping[str, Sequence[str | Path]],
    seed: int,
    text: Mapping[str, Sequence[str | Path]] | None = None,
) -> dict[str, pl.DataFrame]:
    """train/dev/test face rows as a training job reads them: the task's labels (``text``,
    MELD's text shards, labels faces for ``task: sentiment``) and the per-utterance cap."""
    frames = face_splits(paths, seed, cfg.dev_fraction)
    if classes_of(cfg) != EMOTIONS:
        sentiments = None
        if text:
            sentiments = pl.concat(
                [read_shards(p, columns=["key", "sentiment"]) for p in text.values() if p]
            )
        frames = {split: task_labels(f, cfg.task, sentiments) for split, f in frames.items()}
    return {split: cap_faces_per_key(f, cfg.faces_per_utterance) for split, f in frames.items()}


def face_datasets_from_tables(
    cfg: FaceConfig, tables: Mapping[str, pl.DataFrame]
) -> dict[str, FaceDataset]:
    """One dataset per split of prepared face rows; only train is augmented (``augment``)."""
    return {
        split: FaceDataset(frame, cfg, augment=split == "train" and cfg.augment)
        for split, frame in tables.items()
    }


def face_datasets(
    cfg: FaceConfig,
    paths: Mapping[str, Sequence[str | Path]],
    seed: int,
    text: Mapping[str, Sequence[str | Path]] | None = None,
) -> dict[str, FaceDataset]:
    """Face datasets per split; ``text`` (MELD text shards) labels faces for ``task: sentiment``."""
    tables = face_tables(cfg, paths, seed, text)
    return face_datasets_from_tables(cfg, {s: tables[s] for s in ("train", "dev", "test")})

"""Reading shards, labels, augmentation, the decode cache and IFEED's deterministic dev split.

Images are kept as uint8 tensors once decoded (by the check that builds a
dataset, ``check_and_cache``) so that no epoch decodes them again; the cache
is bounded (``cache_mb`` of the model config, 0 disables it)
so real MELD/IFEED sizes fall back to decoding on the fly instead of
exhausting memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from crossemotion.labels import EMOTIONS, normalize_class, task_classes
from crossemotion.layout import DEFAULT_SEED
from crossemotion.model_config import ModelConfig

log = logging.getLogger(__name__)

META_COLUMNS = ("id", "key", "split", "speaker", "character", "label")
# fraction of IFEED's training images held out as dev (IFEED has no dev split)
DEV_FRACTION: float = ModelConfig.dev_fraction


def read_shards(paths: Sequence[str | Path], columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Concatenate Parquet shards; an empty shard (no rows) is fine."""
    if not paths:
        raise ValueError("no shard files given")
    frames = [pl.read_parquet(p, columns=list(columns) if columns else None) for p in paths]
    return pl.concat(frames, how="diagonal_relaxed")


def label_indices(labels: Sequence[Any], classes: Sequence[str] = EMOTIONS) -> np.ndarray:
    """Class indices (positions in ``classes``) of label names in any known spelling."""
    names = tuple(classes)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[normalize_class(str(v), names)] for v in labels], dtype=np.int64)


def classes_of(cfg: ModelConfig) -> tuple[str, ...]:
    """The class list of the config's ``task``."""
    return task_classes(cfg.task)


def task_labels(
    frame: pl.DataFrame, task: str | None, sentiment_by_key: pl.DataFrame | None = None
) -> pl.DataFrame:
    """``frame`` with ``label`` holding the task's class of each row.

    The emotion task keeps the shards' ``label``. The sentiment task takes
    MELD's ``sentiment`` column: from the rows themselves (text and clips
    shards carry it) or, for faces shards (which do not), from
    ``sentiment_by_key`` (columns key, sentiment; the text shards) by
    utterance key. IFEED rows have no sentiment and fail here.
    """
    classes = task_classes(task)
    if classes == EMOTIONS:
        return frame
    # IFEED faces keep their MELD source key: a lookup by key would mislabel them
    if "dataset" in frame.columns and frame.filter(pl.col("dataset") != "meld").height:
        raise ValueError("the sentiment task is MELD-only: IFEED has no sentiment labels")
    if "sentiment" not in frame.columns:
        if sentiment_by_key is None or "key" not in frame.columns:
            raise ValueError(
                "the sentiment task needs MELD's Sentiment column, which these rows lack "
                "(IFEED has no sentiment labels)"
            )
        lookup = sentiment_by_key.select("key", "sentiment").unique("key", keep="first")
        frame = frame.join(lookup, on="key", how="left", maintain_order="left")
    missing = frame.filter(pl.col("sentiment").is_null()).height
    if missing:
        raise ValueError(
            f"the sentiment task: {missing} of {frame.height} rows have no MELD sentiment "
            "(IFEED rows, or faces whose utterance is not in the text shards)"
        )
    return frame.with_columns(pl.col("sentiment").alias("label"))


def meta_frame(frame: pl.DataFrame, classes: Sequence[str] = EMOTIONS) -> pl.DataFrame:
    """The identity columns predictions.parquet carries; labels canonical in ``classes``."""
    if "id" not in frame.columns:
        frame = frame.with_columns(pl.col("key").alias("id"))
    for col in META_COLUMNS:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(col))
    return frame.select([pl.col(c).cast(pl.Utf8) for c in META_COLUMNS]).with_columns(
        pl.col("label").map_elements(
            lambda v: normalize_class(v, tuple(classes)), return_dtype=pl.Utf8
        )
    )


def frame_indices(n: int, t: int) -> list[int]:
    """``t`` evenly spaced indices into ``n`` frames (repeats when n < t)."""
    if n <= 0:
        raise ValueError("clip has no frames")
    if t == 1:
        return [n // 2]
    return [min(n - 1, round(i * (n - 1) / (t - 1))) for i in range(t)]


def augment_image(img: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random horizontal flip + small random resized crop on uint8 [..., 3, S, S].

    Uses torch's RNG (seeded by the loop, saved in resume checkpoints) so an
    augmented run stays reproducible.
    """
    size = img.shape[-1]
    if torch.rand(1, generator=generator).item() < 0.5:
        img = img.flip(-1)
    pad = max(1, size // 10)
    padded = torch.nn.functional.pad(img.float(), (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + size, dx : dx + size].round().to(torch.uint8)


class DecodeCache:
    """Bounded memo of decoded uint8 tensors by item index."""

    def __init__(self, budget_mb: float) -> None:
        self.budget = int(budget_mb * 2**20)
        self.used = 0
        self.items: dict[int, Tensor] = {}
        self.full_logged = False

    def get(self, index: int) -> Tensor | None:
        return self.items.get(index)

    def put(self, index: int, value: Tensor) -> None:
        nbytes = value.numel() * value.element_size()
        if self.used + nbytes > self.budget:
            if not self.full_logged:
                log.info(
                    "decode cache full (%d MB); decoding the rest on the fly", self.budget >> 20
                )
                self.full_logged = True
            return
        self.items[index] = value
        self.used += nbytes


def cached_item(cache: DecodeCache | None, index: int, build: Callable[[], Tensor]) -> Tensor:
    """The cached tensor of item ``index``, else ``build()`` (kept when the budget allows)."""
    item = cache.get(index) if cache else None
    if item is None:
        item = build()
        if cache:
            cache.put(index, item)
    return item


def cache_for(cfg: ModelConfig) -> DecodeCache | None:
    return DecodeCache(cfg.cache_mb) if cfg.cache_mb > 0 else None


def check_and_cache(
    n: int, build: Callable[[int], Tensor], cache: DecodeCache | None, what: str
) -> list[bool]:
    """Build every item once, at dataset build: which of the ``n`` rows decode.

    ``build(row)`` decodes a row (raising ValueError or TypeError when it
    cannot) into the item's uint8 tensor. Rows that fail are logged and left
    out, not fatal; the others go into ``cache`` under the index they will
    have once the failed rows are gone, so the check's decoding is the only
    one (epochs decode again only what the cache's budget could not hold).
    """
    ok: list[bool] = []
    kept = 0
    for row in range(n):
        try:
            item = build(row)
        except (ValueError, TypeError):
            ok.append(False)
            continue
        if cache is not None:
            cache.put(kept, item)
        kept += 1
        ok.append(True)
    bad = n - kept
    if bad:
        log.warning("dropping %d of %d rows with undecodable %s", bad, n, what)
    return ok


def stratified_group_split(
    frame: pl.DataFrame,
    fraction: float = DEV_FRACTION,
    seed: int = DEFAULT_SEED,
    group: str = "key",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Deterministic stratified split of ``frame`` into (train, dev) by groups.

    IFEED ships only Training/Testing, so model selection needs a dev set cut
    from Training. Whole groups (source utterance ``key``; the row ``id`` when
    the key is null) move together, so frames of one utterance never straddle
    train and dev. Groups are stratified by their majority label: per label,
    a seeded shuffle of its groups sends round(fraction * n_groups) of them
    (at least one when a label has two or more groups) to dev.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"dev fraction must be in (0, 1), got {fraction}")
    ids = (
        frame["id"].cast(pl.Utf8)
        if "id" in frame.columns
        else pl.Series([str(i) for i in range(frame.height)])
    )
    keys = frame[group].cast(pl.Utf8) if group in frame.columns else ids
    groups = pl.DataFrame({"g": keys.fill_null(ids), "label": frame["label"].cast(pl.Utf8)})
    per_group = (
        groups.group_by("g").agg(pl.col("label").mode().sort().first().alias("label")).sort("g")
    )
    rng = np.random.default_rng(seed)
    dev_groups: set[str] = set()
    for label in sorted(per_group["label"].unique().to_list()):
        members = per_group.filter(pl.col("label") == label)["g"].to_list()
        n_dev = round(fraction * len(members))
        if n_dev == 0 and len(members) >= 2:
            n_dev = 1
        order = rng.permutation(len(members))
        dev_groups.update(members[i] for i in order[:n_dev])
    is_dev = groups["g"].is_in(sorted(dev_groups))
    return frame.filter(~is_dev), frame.filter(is_dev)


def labels_of(ds: object) -> np.ndarray:
    """A dataset's class indices: its ``labels``, else those of its ``meta`` labels."""
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return np.asarray(labels, dtype=np.int64)
    classes = getattr(ds, "classes", EMOTIONS)
    return label_indices(ds.meta["label"].to_list(), classes)  # type: ignore[attr-defined]


def class_counts(labels: np.ndarray, n_classes: int = len(EMOTIONS)) -> np.ndarray:
    return np.bincount(labels, minlength=n_classes)

"""Seed statistics and the paired bootstrap of a weighted-F1 difference.

Researchers on MELD report a mean over seeds (EmoBERTa and MMSA use 5) and
compare two models on the same test items. A paired bootstrap resamples the
items once per round and scores both models on that same resample, so the
interval reflects the difference between the models rather than the spread of
either one alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ROUNDS = 1000
CI_SEED = 20261126
LEVEL = 0.95


@dataclass(frozen=True)
class SeedSummary:
    """Mean and sample standard deviation over seeds (sd is None for one seed)."""

    mean: float | None
    sd: float | None
    n_seeds: int
    values: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        if self.mean is None:
            return "–"
        if self.sd is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


def seed_summary(values: Sequence[float | None]) -> SeedSummary:
    kept = tuple(float(v) for v in values if v is not None and not math.isnan(float(v)))
    if not kept:
        return SeedSummary(None, None, 0, ())
    arr = np.asarray(kept)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else None
    return SeedSummary(float(arr.mean()), sd, arr.size, kept)


@dataclass(frozen=True)
class PairedInterval:
    """Weighted-F1 of ``a`` minus ``b`` on the same items, with a percentile CI."""

    difference: float
    low: float
    high: float
    n: int
    rounds: int
    level: float

    @property
    def significant(self) -> bool:
        # the interval excludes 0: the difference holds at this level
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def _weighted_f1(labels: np.ndarray, preds: np.ndarray, k: int) -> float:
    """sklearn's weighted F1 (zero_division=0) from one bincount: ~50x cheaper per round."""
    confusion = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    denom = support + confusion.sum(axis=0)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float((f1 * support).sum() / labels.size)


def paired_bootstrap(
    labels: Sequence[int] | np.ndarray,
    preds_a: Sequence[int] | np.ndarray,
    preds_b: Sequence[int] | np.ndarray,
    rounds: int = ROUNDS,
    seed: int = CI_SEED,
    level: float = LEVEL,
) -> PairedInterval:
    """Percentile CI of wF1(a) - wF1(b), resampling items with replacement.

    ``labels`` holds N items; ``preds_a``/``preds_b`` are aligned with them,
    either [N] or [seeds, N]: with several seeds the statistic is the mean
    over seeds of each model's weighted F1, and every round resamples the
    same items for all seeds of both models.
    """
    y = np.asarray(labels, dtype=np.int64)
    a = np.atleast_2d(np.asarray(preds_a, dtype=np.int64))
    b = np.atleast_2d(np.asarray(preds_b, dtype=np.int64))
    if y.ndim != 1 or a.shape[1:] != y.shape or b.shape[1:] != y.shape:
        raise ValueError(
            f"paired bootstrap needs predictions aligned with the labels, got labels "
            f"{y.shape}, a {a.shape}, b {b.shape}"
        )
    if y.size == 0:
        raise ValueError("paired bootstrap needs at least one item")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    k = int(max(y.max(), a.max(), b.max())) + 1

    def mean_diff(idx: np.ndarray | slice) -> float:
        ys = y[idx]
        wa = np.mean([_weighted_f1(ys, row[idx], k) for row in a])
        wb = np.mean([_weighted_f1(ys, row[idx], k) for row in b])
        return float(wa - wb)

    rng = np.random.default_rng(seed)
    diffs = np.array([mean_diff(rng.integers(0, y.size, y.size)) for _ in range(rounds)])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return PairedInterval(
        difference=mean_diff(slice(None)),
        low=float(low),
        high=float(high),
        n=int(y.size),
        rounds=rounds,
        level=level,
    )

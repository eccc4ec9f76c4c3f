"""Seed statistics and the paired bootstrap, against direct recomputation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from crossemotion.evaluation.bootstrap import _weighted_f1, paired_bootstrap, seed_summary


def test_weighted_f1_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 7, 300)
        p = np.where(rng.random(300) < 0.5, y, rng.integers(0, 7, 300))
        expected = f1_score(y, p, average="weighted", zero_division=0)
        assert _weighted_f1(y, p, 7) == pytest.approx(expected, abs=1e-12)


def test_seed_summary_mean_and_sample_sd() -> None:
    s = seed_summary([0.60, 0.62, 0.64])
    assert s.mean == pytest.approx(0.62)
    assert s.sd == pytest.approx(0.02)
    assert s.n_seeds == 3
    assert s.text() == "0.620 ± 0.020"
    one = seed_summary([0.5, None])
    assert one.sd is None and one.n_seeds == 1 and one.text() == "0.500"
    assert seed_summary([]).mean is None


def test_paired_bootstrap_separates_a_better_model() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 800)
    good = np.where(rng.random(800) < 0.8, y, rng.integers(0, 7, 800))
    bad = np.where(rng.random(800) < 0.4, y, rng.integers(0, 7, 800))
    ci = paired_bootstrap(y, good, bad, rounds=500)
    assert ci.low <= ci.difference <= ci.high
    assert ci.low > 0 and ci.significant
    assert ci.difference == pytest.approx(
        f1_score(y, good, average="weighted") - f1_score(y, bad, average="weighted")
    )
    # the same seed gives the same interval; a model against itself differs by exactly 0
    assert paired_bootstrap(y, good, bad, rounds=500) == ci
    same = paired_bootstrap(y, good, good, rounds=200)
    assert (same.low, same.high, same.significant) == (0.0, 0.0, False)


def test_paired_bootstrap_rejects_unaligned_input() -> None:
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap([0, 1], [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [], [])


def test_paired_bootstrap_over_seeds_is_the_mean_difference() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 400)
    a = np.stack([np.where(rng.random(400) < 0.7, y, rng.integers(0, 3, 400)) for _ in range(3)])
    b = np.stack([np.where(rng.random(400) < 0.5, y, rng.integers(0, 3, 400)) for _ in range(3)])
    ci = paired_bootstrap(y, a, b, rounds=300)
    want = np.mean([f1_score(y, r, average="weighted") for r in a]) - np.mean(
        [f1_score(y, r, average="weighted") for r in b]
    )
    assert ci.difference == pytest.approx(want)
    assert ci.low < ci.difference < ci.high

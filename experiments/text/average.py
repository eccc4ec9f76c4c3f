"""Average the class probabilities of finished text runs: dev and test weighted F1.

Runs that read the same utterances differently (the utterance alone, the
utterance in its dialogue) make different mistakes; this scores the mean of
their probabilities beside each run alone, from the runs' own
``predictions.parquet`` (no model is loaded). Rows are matched on
``(split, key)``: MELD's dialogue ids restart in every split, so a key alone
names one utterance per split, not one overall.

    python -m experiments.text.average --runs RUN_DIR RUN_DIR [...] --out average.json

Dev decides whether an average is worth adopting; its test scores are
recorded beside, for after the choice. Over several seeds, give one
``--runs`` per seed and, with ``--against``, each seed's baseline run (e.g.
the config alone): the record then holds each seed's scores, the means over
seeds, and a paired bootstrap CI of (mean average - mean baseline) that
resamples the same utterances for every seed of both (``paired_bootstrap``,
the benchmark table's CI):

    python -m experiments.text.average --runs A13 B13 --runs A14 B14 --runs A15 B15 \
        --against A13 A14 A15 --out pair.json

A baseline can be an average itself: give one ``--against-group`` per seed
instead (``--against-group A13 B13 --against-group A14 B14 ...``).
Runs kept in the repository (``experiments.text.kept``) hold no labels; ``--labels
SHARDS`` joins them from the text shards built from the csvs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import f1_score

from crossemotion.evaluation.bootstrap import paired_bootstrap
from crossemotion.evaluation.ensemble import aligned, frame_prob_columns
from experiments.text.kept import task_of, with_labels

SPLITS = ("dev", "test")


def weighted_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(labels, pred, average="weighted"))


def probs_f1(labels: Sequence[str], probs: np.ndarray, classes: Sequence[str]) -> float:
    """Weighted F1 of the most probable class (``classes``: the p_* columns)."""
    names = np.array([c.removeprefix("p_") for c in classes])
    return weighted_f1(np.array(labels), names[probs.argmax(1)])


def score(runs: Sequence[Path], labels: Path | None = None) -> dict[str, Any]:
    """Per split: each run's weighted F1 and that of the mean of their probabilities."""
    first, probs = aligned([read_run(run, labels) for run in runs])
    return scores(runs, first, probs)


def read_run(run: Path, labels: Path | None = None) -> pl.DataFrame:
    """A run's predictions; a kept run's get their labels from the ``labels`` shards."""
    frame = pl.read_parquet(Path(run) / "predictions.parquet")
    if "label" in frame.columns:
        return frame
    if labels is None:
        raise ValueError(f"{run} holds no labels (a kept run): give --labels SHARDS")
    return with_labels(frame, labels, task_of(Path(run)))


def scores(
    runs: Sequence[Path], first: pl.DataFrame, probs: Sequence[np.ndarray]
) -> dict[str, Any]:
    """``score`` of runs already aligned (``first``'s rows, ``probs`` per run)."""
    classes = frame_prob_columns(first)
    record: dict[str, Any] = {"runs": [str(r) for r in runs]}
    for split in SPLITS:
        mask = (first["split"] == split).to_numpy()
        if not mask.any():
            raise ValueError(f"the runs have no {split} predictions")
        labels = first.filter(pl.Series(mask))["label"].to_list()
        record[split] = {
            "n": int(mask.sum()),
            "runs": [probs_f1(labels, p[mask], classes) for p in probs],
            "average": probs_f1(labels, np.mean([p[mask] for p in probs], axis=0), classes),
        }
    return record


def compare(
    groups: Sequence[Sequence[Path]],
    against: Sequence[Path | Sequence[Path]],
    labels: Path | None = None,
) -> dict[str, Any]:
    """One average per group (a seed's runs) against that seed's baseline (a run,
    or a group of runs averaged): per seed, the means over seeds, and per split a
    paired bootstrap CI of the difference between the mean weighted F1s."""
    if len(against) != len(groups):
        raise ValueError(f"{len(groups)} groups of runs but {len(against)} baselines")
    bases = [[b] if isinstance(b, (str, Path)) else list(b) for b in against]
    paths = [*(p for group in groups for p in group), *(p for base in bases for p in base)]
    first, probs = aligned([read_run(p, labels) for p in paths])
    classes = frame_prob_columns(first)
    index = {c.removeprefix("p_"): i for i, c in enumerate(classes)}
    starts = np.cumsum([0, *(len(g) for g in groups)])
    base_starts = starts[-1] + np.cumsum([0, *(len(b) for b in bases)])
    record: dict[str, Any] = {
        "seeds": [
            scores(group, first, probs[lo:hi])
            for group, (lo, hi) in zip(groups, pairwise(starts), strict=True)
        ]
    }
    record["against"] = [str(b[0]) if len(b) == 1 else [str(p) for p in b] for b in bases]
    for split in SPLITS:
        mask = (first["split"] == split).to_numpy()
        names = first.filter(pl.Series(mask))["label"].to_list()
        labels = np.array([index[x] for x in names])
        averaged = [
            np.mean([p[mask] for p in probs[lo:hi]], axis=0).argmax(1)
            for lo, hi in pairwise(starts)
        ]
        base_probs = [
            np.mean([p[mask] for p in probs[lo:hi]], axis=0) for lo, hi in pairwise(base_starts)
        ]
        baseline = [p.argmax(1) for p in base_probs]
        seeds = record["seeds"]
        record[split] = {
            "average": float(np.mean([r[split]["average"] for r in seeds])),
            "baseline": float(np.mean([probs_f1(names, p, classes) for p in base_probs])),
            "ci": paired_bootstrap(labels, averaged, baseline).as_dict(),
        }
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, nargs="+", action="append", required=True,
        help="finished run dirs to average; once per seed with --against",
    )  # fmt: skip
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument(
        "--against", type=Path, nargs="+", help="each --runs group's baseline run, in order"
    )
    baseline.add_argument(
        "--against-group", type=Path, nargs="+", action="append",
        help="a --runs group's baseline runs, averaged; once per group, in order",
    )  # fmt: skip
    parser.add_argument(
        "--labels", type=Path, help="text shards (results/shards/meld/text) for kept runs' labels"
    )
    parser.add_argument("--out", type=Path, help="write the record here as JSON")
    args = parser.parse_args(argv)
    against = args.against or args.against_group
    if against is None and len(args.runs) > 1:
        parser.error("several --runs groups (seeds) are compared --against their baselines")
    if against is None:
        record = score(args.runs[0], args.labels)
        for split in SPLITS:
            alone = ", ".join(f"{v:.4f}" for v in record[split]["runs"])
            print(f"{split}: average {record[split]['average']:.4f} (alone: {alone})")
    else:
        record = compare(args.runs, against, args.labels)
        for split in SPLITS:
            ci = record[split]["ci"]
            print(
                f"{split}: average {record[split]['average']:.4f}, baseline "
                f"{record[split]['baseline']:.4f} (means over {len(args.runs)} seeds); "
                f"difference {ci['difference']:+.4f}, 95% CI [{ci['low']:+.4f}, "
                f"{ci['high']:+.4f}]{' significant' if ci['significant'] else ''}"
            )
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

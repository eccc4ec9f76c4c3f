"""Average the class probabilities of finished text runs: dev and test weighted F1.

Runs that read the same utterances differently (the utterance alone, the
utterance in its dialogue) make different mistakes; this scores the mean of
their probabilities beside each run alone, from the runs' own
``predictions.parquet`` (no model is loaded). Rows are matched on
``(split, key)``: MELD's dialogue ids restart in every split, so a key alone
names one utterance per split, not one overall.

    python -m bench.text_average --runs RUN_DIR RUN_DIR [...] --out average.json

Dev decides whether an average is worth adopting; its test scores are
recorded beside, for after the choice.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.text_dialogue import weighted_f1

SPLITS = ("dev", "test")


def prob_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("p_")]


def aligned(frames: Sequence[pl.DataFrame]) -> tuple[pl.DataFrame, list[np.ndarray]]:
    """The first frame's rows and every frame's probabilities in that row order.

    Refuses runs over other utterances, other labels or other classes: an
    average is only meaningful over the same items scored against the same truth.
    """
    if len(frames) < 2:
        raise ValueError(f"averaging needs two runs or more, got {len(frames)}")
    first = frames[0]
    classes = prob_columns(first)
    if not classes:
        raise ValueError("predictions have no p_* probability columns")
    base = first.select("split", "key", "label").with_row_index("_row")
    probs = []
    for i, frame in enumerate(frames):
        if prob_columns(frame) != classes:
            raise ValueError(f"run {i} has classes {prob_columns(frame)}, run 0 {classes}")
        if frame.height != first.height:
            raise ValueError(f"run {i} has {frame.height} predictions, run 0 {first.height}")
        other = frame.select("split", "key", pl.col("label").alias("_label"), *classes)
        joined = base.join(other, on=["split", "key"], how="left").sort("_row")
        if joined["_label"].null_count() or joined.height != first.height:
            raise ValueError(f"run {i} scores other utterances than run 0")
        if (joined["_label"] != joined["label"]).any():
            raise ValueError(f"run {i} has other labels than run 0 for the same utterances")
        probs.append(joined.select(classes).to_numpy())
    return first, probs


def probs_f1(labels: Sequence[str], probs: np.ndarray, classes: Sequence[str]) -> float:
    """Weighted F1 of the most probable class (``classes``: the p_* columns)."""
    names = np.array([c.removeprefix("p_") for c in classes])
    return weighted_f1(np.array(labels), names[probs.argmax(1)])


def score(runs: Sequence[Path]) -> dict[str, Any]:
    """Per split: each run's weighted F1 and that of the mean of their probabilities."""
    frames = [pl.read_parquet(Path(run) / "predictions.parquet") for run in runs]
    first, probs = aligned(frames)
    classes = prob_columns(first)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="finished run dirs")
    parser.add_argument("--out", type=Path, help="write the record here as JSON")
    args = parser.parse_args(argv)
    record = score(args.runs)
    for split in SPLITS:
        alone = ", ".join(f"{v:.4f}" for v in record[split]["runs"])
        print(f"{split}: average {record[split]['average']:.4f} (alone: {alone})")
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

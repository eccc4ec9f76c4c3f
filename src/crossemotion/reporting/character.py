"""Character-wise analysis: scores per cast member against the model's overall figure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from crossemotion.labels import CHARACTERS, OTHER, character_of
from crossemotion.reporting.runs import Run, primary_level
from crossemotion.reporting.scores import (
    classification_scores,
    label_distribution,
    read_predictions,
)

COLUMNS: tuple[str, ...] = (
    "model",
    "dataset",
    "source",
    "mode",
    "character",
    "n",
    "accuracy",
    "weighted_f1",
    "macro_f1",
    "delta_accuracy",
    "delta_weighted_f1",
    "delta_macro_f1",
    "label_distribution",
)


# scores and their deltas: averaged over seeds (n and the label mix are per item)
SEED_MEAN_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c.endswith(("accuracy", "f1")))


def _delta(part: float | None, whole: float | None) -> float | None:
    return None if part is None or whole is None else part - whole


def _characters(frame: pd.DataFrame) -> pd.Series:
    """Canonical cast names; anything else (or missing) is Other."""
    return (
        frame["character"]
        .map(lambda c: c if c in CHARACTERS else character_of(c if isinstance(c, str) else None))
        .fillna(OTHER)
    )


def character_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Seven rows (all of CHARACTERS, n=0 with null scores when absent) for one run."""
    overall = classification_scores(frame["label"], frame["prediction"])
    chars = _characters(frame) if len(frame) else pd.Series([], dtype="object")
    rows = []
    for name in CHARACTERS:
        part = frame[chars == name]
        scores = classification_scores(part["label"], part["prediction"])
        rows.append(
            {
                "character": name,
                **scores,
                "delta_accuracy": _delta(scores["accuracy"], overall["accuracy"]),
                "delta_weighted_f1": _delta(scores["weighted_f1"], overall["weighted_f1"]),
                "delta_macro_f1": _delta(scores["macro_f1"], overall["macro_f1"]),
                "label_distribution": label_distribution(part["label"]),
            }
        )
    return rows


def character_table(runs: Iterable[Run]) -> pd.DataFrame:
    """All runs' character rows from their predictions' test split; the seeds of one
    model (same model, dataset, source, mode) are averaged, with ``n_seeds``."""
    rows = []
    for run in runs:
        frame = read_predictions(run.predictions_path, "test", level=primary_level(run.dataset))
        for row in character_rows(frame):
            rows.append(
                {
                    "model": run.model,
                    "dataset": run.dataset,
                    "source": run.source,
                    "mode": run.mode,
                    **row,
                }
            )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    keys = ["model", "dataset", "source", "mode", "character"]
    # the items are the same for every seed: n and the label mix are too
    agg = {col: "mean" for col in SEED_MEAN_COLUMNS}
    agg |= {"n": "first", "label_distribution": "first"}
    seeds = table.groupby(keys, sort=False, dropna=False).size().rename("n_seeds")
    out = table.groupby(keys, sort=False, dropna=False).agg(agg).join(seeds).reset_index()
    return out[[*COLUMNS, "n_seeds"]]

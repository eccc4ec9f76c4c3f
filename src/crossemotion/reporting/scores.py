"""Scores recomputed from predictions.parquet: the one place tables get numbers from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crossemotion.labels import EMOTIONS

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in EMOTIONS)


def _as_names(values: pd.Series) -> pd.Series:
    """Class names whether a writer stored names or class indices."""
    if pd.api.types.is_integer_dtype(values):
        return values.map(lambda i: EMOTIONS[int(i)])
    return values.astype(str).str.strip().str.lower()


def classification_scores(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, weighted and macro F1 over the classes present in truth or prediction.

    Empty input gives n=0 and null scores rather than sklearn's warnings/NaNs,
    so a character absent from a split still gets its row.
    """
    from sklearn.metrics import accuracy_score, f1_score

    y_true = list(y_true)
    y_pred = list(y_pred)
    if not y_true:
        return {"n": 0, "accuracy": None, "weighted_f1": None, "macro_f1": None}
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def label_distribution(labels: Sequence[str]) -> str:
    """Compact 'class:count' string in canonical class order, e.g. 'joy:3 neutral:9'."""
    counts = pd.Series(list(labels), dtype="object").value_counts()
    return " ".join(f"{name}:{int(counts[name])}" for name in EMOTIONS if name in counts)


def read_predictions(
    path: str | Path, split: str = "test", level: str | None = None
) -> pd.DataFrame:
    """Test (or dev) rows of a predictions.parquet with labels as class names.

    When the file carries a ``level`` column (MELD targets scored per face and
    per utterance) ``level`` selects the rows; otherwise all rows of the split.
    """
    frame = pd.read_parquet(path)
    missing = {"label", "prediction"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: predictions lack columns {sorted(missing)}")
    if "split" in frame.columns:
        frame = frame[frame["split"].astype(str) == split]
    if level is not None and "level" in frame.columns:
        frame = frame[frame["level"].astype(str) == level]
    frame = frame.copy()
    frame["label"] = _as_names(frame["label"])
    frame["prediction"] = _as_names(frame["prediction"])
    if "character" not in frame.columns:
        frame["character"] = "Other"
    return frame.reset_index(drop=True)


def levels_in(path: str | Path) -> list[str]:
    """Levels present in a predictions file ([] when it has no level column)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    if "level" not in names:
        return []
    frame = pd.read_parquet(path, columns=["level"])
    return sorted(frame["level"].dropna().astype(str).unique())

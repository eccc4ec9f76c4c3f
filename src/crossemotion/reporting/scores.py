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
    """n, accuracy, weighted and macro F1 of class-name sequences.

    Delegates to the models' own metric code (crossemotion.evaluation.metrics)
    so tables and metrics.json agree by construction; empty input gives n=0
    and null scores, so a character absent from a split still gets its row.
    """
    from crossemotion.evaluation.metrics import classification_metrics
    from crossemotion.labels import EMOTION_TO_INDEX

    scores = classification_metrics(
        [EMOTION_TO_INDEX[name] for name in y_true], [EMOTION_TO_INDEX[name] for name in y_pred]
    )
    return {key: scores[key] for key in ("n", "accuracy", "weighted_f1", "macro_f1")}


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
    unknown = (set(frame["label"]) | set(frame["prediction"])) - set(EMOTIONS)
    if unknown:
        raise ValueError(f"{path}: labels outside the 7 classes: {sorted(unknown)}")
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

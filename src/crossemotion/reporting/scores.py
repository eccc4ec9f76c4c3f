"""Scores recomputed from predictions.parquet: the one place tables get numbers from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crossemotion.labels import (
    EMOTIONS,
    TASKS,
    UnknownLabelError,
    classes_containing,
    prob_columns,
)


def prediction_classes(columns: Sequence[str]) -> tuple[str, ...] | None:
    """The task's class list a predictions file declares by its ``p_{class}`` columns."""
    probs = [c for c in columns if c.startswith("p_")]
    for classes in TASKS.values():
        if probs == prob_columns(classes):
            return classes
    return None


def _as_names(values: pd.Series, classes: Sequence[str] = EMOTIONS) -> pd.Series:
    """Class names whether a writer stored names or class indices."""
    if pd.api.types.is_integer_dtype(values):
        return values.map(lambda i: classes[int(i)])
    return values.astype(str).str.strip().str.lower()


def classification_scores(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str] | None = None
) -> dict[str, Any]:
    """n, accuracy, weighted and macro F1 of class-name sequences.

    Delegates to the models' own metric code (crossemotion.evaluation.metrics)
    so tables and metrics.json agree by construction; empty input gives n=0
    and null scores, so a character absent from a split still gets its row.
    ``classes`` defaults to the task class list holding every name (these four
    figures do not depend on classes absent from both sequences).
    """
    from crossemotion.evaluation.metrics import classification_metrics

    y_true, y_pred = list(y_true), list(y_pred)
    names = tuple(classes) if classes else classes_containing([*y_true, *y_pred])
    index = {name: i for i, name in enumerate(names)}
    scores = classification_metrics(
        [index[name] for name in y_true], [index[name] for name in y_pred], names
    )
    return {key: scores[key] for key in ("n", "accuracy", "weighted_f1", "macro_f1")}


def label_distribution(labels: Sequence[str]) -> str:
    """Compact 'class:count' string in canonical class order, e.g. 'joy:3 neutral:9'."""
    counts = pd.Series(list(labels), dtype="object").value_counts()
    order = classes_containing(list(counts.index)) if len(counts) else EMOTIONS
    return " ".join(f"{name}:{int(counts[name])}" for name in order if name in counts)


def read_predictions(
    path: str | Path, split: str = "test", level: str | None = None
) -> pd.DataFrame:
    """Test (or dev) rows of a predictions.parquet with labels as class names.

    The classes are the task's (emotion or sentiment) that the file's
    ``p_{class}`` columns declare; labels outside them are an error.

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
    declared = prediction_classes(list(frame.columns))
    frame["label"] = _as_names(frame["label"], declared or EMOTIONS)
    frame["prediction"] = _as_names(frame["prediction"], declared or EMOTIONS)
    names = set(frame["label"]) | set(frame["prediction"])
    if declared is not None:
        unknown = names - set(declared)
        if unknown:
            raise ValueError(
                f"{path}: labels outside its classes {list(declared)}: {sorted(unknown)}"
            )
    else:
        try:
            classes_containing(names)
        except UnknownLabelError:
            raise ValueError(
                f"{path}: labels {sorted(names)} are not the classes of one task"
            ) from None
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

"""Classification metrics over a task's classes (sklearn); the 7 emotions by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from crossemotion.labels import EMOTIONS

CLASS_IDS = list(range(len(EMOTIONS)))


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    preds: Sequence[int] | np.ndarray,
    classes: Sequence[str] = EMOTIONS,
) -> dict[str, Any]:
    """accuracy, weighted/macro F1, per-class P/R/F1/support, confusion (rows = true), n.

    Macro F1 averages over the classes present in the labels or predictions,
    as sklearn does; every class of ``classes`` (indices are positions in it)
    still gets a per_class entry (support 0 when absent) so tables line up
    across datasets.
    """
    ids = list(range(len(classes)))
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(preds, dtype=np.int64)
    if y.size == 0:
        return {
            "accuracy": None,
            "weighted_f1": None,
            "macro_f1": None,
            "per_class": {},
            "confusion": [],
            "n": 0,
        }
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, p)),
        "weighted_f1": float(f1_score(y, p, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion": confusion_matrix(y, p, labels=ids).tolist(),
        "n": int(y.size),
    }


def majority_baseline(
    train_labels: np.ndarray, test_labels: np.ndarray, classes: Sequence[str] = EMOTIONS
) -> dict[str, Any]:
    """Always predicting the most frequent training class, scored on test."""
    majority = int(
        np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(classes)).argmax()
    )
    preds = np.full(len(test_labels), majority)
    scores = classification_metrics(test_labels, preds, classes)
    return {
        "class": classes[majority],
        "accuracy": scores["accuracy"],
        "weighted_f1": scores["weighted_f1"],
        "macro_f1": scores["macro_f1"],
    }

"""One scorer for the training runner and transfer: probabilities in, run outputs out.

A ``Scorer`` turns a model's probabilities on a split into the levels it is
reported at: face models on MELD (``aggregate``) become one row per utterance
(``aggregate_faces``: the mean of the utterance's face probabilities; an
utterance without a detected face gets ``prior``) beside the face rows; every
other model stays at its own unit. ``write_run`` writes a run directory with
metrics.json last, each file atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from crossemotion import checkpoint, layout
from crossemotion.datasets.shards import (
    label_indices,
    labels_of,
    meta_frame,
    read_shards,
    task_labels,
)
from crossemotion.evaluation.metrics import classification_metrics
from crossemotion.io import atomic_path, write_json, write_parquet
from crossemotion.labels import DEFAULT_TASK, EMOTIONS, prob_columns, task_classes
from crossemotion.models.registry import ModelSpec, ShardInputs

# train_log.csv's columns (crossemotion.training.loop's epoch rows), for a run that trained none
LOG_COLUMNS = (
    "epoch",
    "train_loss",
    "dev_accuracy",
    "dev_weighted_f1",
    "lr",
    "seconds",
    "best",
)
EVAL_SPLITS = ("dev", "test")


PROB_COLUMNS = prob_columns(EMOTIONS)


def prediction_frame(
    meta: pl.DataFrame, probs: np.ndarray, classes: tuple[str, ...] = EMOTIONS
) -> pl.DataFrame:
    pred = [classes[i] for i in probs.argmax(1)] if len(probs) else []
    return meta.with_columns(
        pl.Series("prediction", pred, dtype=pl.Utf8),
        *[
            pl.Series(c, probs[:, i].astype(np.float64))
            for i, c in enumerate(prob_columns(classes))
        ],
    )


def aggregate_faces(
    face_meta: pl.DataFrame,
    probs: np.ndarray,
    utterances: pl.DataFrame | None,
    prior: np.ndarray,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Face rows -> one row per utterance (mean probabilities), with ``n_faces``.

    ``utterances`` (meta of every utterance of the split) brings in the ones
    without a detected face, which get ``prior`` as probabilities.
    """
    faces = (
        face_meta.select("key")
        .with_columns(pl.Series("_row", np.arange(face_meta.height)))
        .filter(pl.col("key").is_not_null())
    )
    groups = {
        k: np.asarray(rows, dtype=np.int64)
        for k, rows in faces.group_by("key", maintain_order=True).agg("_row").iter_rows()
    }
    if utterances is None:
        utterances = (
            face_meta.filter(pl.col("key").is_not_null())
            .unique("key", keep="first", maintain_order=True)
            .with_columns(pl.col("key").alias("id"))
        )
    utterances = utterances.with_columns(pl.col("key").alias("id"))
    out = np.empty((utterances.height, len(prior)), dtype=np.float64)
    n_faces = np.zeros(utterances.height, dtype=np.int32)
    for i, key in enumerate(utterances["key"].to_list()):
        rows = groups.get(key)
        if rows is None or len(rows) == 0:
            out[i] = prior
        else:
            out[i] = probs[rows].mean(0)
            n_faces[i] = len(rows)
    return utterances.with_columns(pl.Series("n_faces", n_faces)), out


def utterance_meta(
    paths: Sequence[str | Path] | None, task: str = DEFAULT_TASK
) -> pl.DataFrame | None:
    """Meta of every utterance in MELD text shards (None without shards)."""
    if not paths:
        return None
    classes = task_classes(task)
    columns = ["key", "split", "speaker", "character", "label"]
    if classes != EMOTIONS:
        columns.append("sentiment")
    return meta_frame(task_labels(read_shards(paths, columns=columns), task), classes)


def class_prior(labels: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return counts / max(1.0, counts.sum())


# (meta, probabilities, label indices) of one split at one level
Scored = tuple[pl.DataFrame, np.ndarray, np.ndarray]


class Scorer:
    """Model probabilities on a split -> {level: (meta, probs)}; ``primary`` is the reported one.

    With ``aggregate`` the levels are ``utterance`` (primary) and ``face``;
    without, the one level ``primary`` (the model's unit, or ``image``).
    """

    task: str = DEFAULT_TASK
    # the labels of the majority baseline (set by for_run)
    train_labels: np.ndarray

    def __init__(
        self,
        datasets: Mapping[str, Any],
        *,
        classes: tuple[str, ...] = EMOTIONS,
        aggregate: bool = False,
        primary: str = "utterance",
        utterances: Mapping[str, pl.DataFrame | None] | None = None,
    ) -> None:
        self.datasets = datasets
        self.classes = classes
        self.aggregate = aggregate
        self.primary = "utterance" if aggregate else primary
        self.utterances: dict[str, pl.DataFrame | None] = dict(utterances or {})
        self.prior = np.full(len(classes), 1.0 / len(classes))

    @classmethod
    def for_run(
        cls,
        spec: ModelSpec,
        dataset: str,
        datasets: Mapping[str, Any],
        inputs: ShardInputs,
        task: str = DEFAULT_TASK,
    ) -> Scorer:
        """The training runner's scorer; ``train_labels`` are the majority baseline's.

        Aggregated runs count the training utterances (with or without faces),
        else the training items.
        """
        aggregate = spec.aggregate_by_key and dataset == "meld"
        utterances = (
            {
                split: utterance_meta(inputs.text.get(split), task)
                for split in ("train", *EVAL_SPLITS)
            }
            if aggregate
            else {}
        )
        scorer = cls(
            datasets,
            classes=task_classes(task),
            aggregate=aggregate,
            primary=spec.unit,
            utterances=utterances,
        )
        scorer.task = task
        train_utts = utterances.get("train")
        scorer.train_labels = (
            scorer.labels(train_utts) if train_utts is not None else labels_of(datasets["train"])
        )
        scorer.set_prior(scorer.train_labels)
        return scorer

    def set_prior(self, labels: np.ndarray) -> None:
        self.prior = class_prior(labels, len(self.classes))

    def labels(self, meta: pl.DataFrame) -> np.ndarray:
        return label_indices(meta["label"].to_list(), self.classes)

    def levels(self, split: str, probs: np.ndarray) -> dict[str, tuple[pl.DataFrame, np.ndarray]]:
        meta = self.datasets[split].meta
        if not self.aggregate:
            return {self.primary: (meta, probs)}
        return {
            "utterance": aggregate_faces(meta, probs, self.utterances.get(split), self.prior),
            "face": (meta, probs),
        }

    def dev_score(self, probs: np.ndarray) -> dict[str, float]:
        meta, p = self.levels("dev", probs)[self.primary]
        m = classification_metrics(self.labels(meta), p.argmax(1), self.classes)
        return {"accuracy": m["accuracy"] or 0.0, "weighted_f1": m["weighted_f1"] or 0.0}

    def score(self, predict: Callable[[Any], np.ndarray]) -> dict[str, dict[str, Scored]]:
        """{split: {level: (meta, probs, labels)}} of dev and test; ``predict(dataset)``."""
        return {
            split: {
                level: (meta, p, self.labels(meta))
                for level, (meta, p) in self.levels(split, predict(self.datasets[split])).items()
            }
            for split in EVAL_SPLITS
        }


def write_run(
    out_dir: Path,
    metrics: Mapping[str, Any],
    predictions: pl.DataFrame,
    train_log: Sequence[Mapping[str, Any]],
    model: Mapping[str, Any] | None = None,
) -> None:
    """model.pt (when given), predictions.parquet, train_log.csv, then metrics.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is not None:
        checkpoint.save(out_dir / layout.CHECKPOINT, dict(model))
    write_parquet(out_dir / layout.PREDICTIONS, predictions)
    frame = (
        pl.DataFrame(list(train_log))
        if train_log
        else pl.DataFrame(schema={c: pl.Utf8 for c in LOG_COLUMNS})
    )
    with atomic_path(out_dir / layout.TRAIN_LOG, suffix=".csv") as tmp:
        frame.write_csv(tmp)
    # metrics.json last: it is the rule's target, so its presence means "all done"
    write_json(out_dir / layout.METRICS, metrics)

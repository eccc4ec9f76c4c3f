"""One training job: shards in, ``results/models/{model}/{dataset}/`` out.

``train_and_evaluate`` builds the datasets and the model from the registry,
fits, reloads the best epoch, evaluates dev and test, times inference, and
writes model.pt, metrics.json, predictions.parquet and train_log.csv. The
resume state lives in ``{out_dir}/.resume/`` (not a declared output, so a
failed job's Snakemake clean-up keeps it) and is deleted once the outputs are
written.

Face models on MELD (``aggregate_by_key``) are scored per utterance: the face
probabilities of an utterance are averaged. Utterances in which no face was
detected are *not* dropped: they get the training class prior as their
probabilities (so they count, usually as errors, in the main metrics, which
cover every utterance like the other MELD models), and metrics.json reports
the coverage and the metrics over utterances with faces separately.

The global config's ``task`` (``emotion``, default, or ``sentiment``: MELD's
negative/neutral/positive) picks the classes: the datasets' labels, the
model's output width, the metrics' per-class entries and confusion matrix, the
``p_{class}`` columns of predictions.parquet, the majority baseline and the
checkpoint's ``labels`` (which decide the classes at inference).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from crossemotion import checkpoint
from crossemotion.codec import IMAGENET_MEAN, IMAGENET_STD
from crossemotion.config import config_hash
from crossemotion.datasets.shards import (
    label_indices,
    labels_of,
    meta_frame,
    read_shards,
    task_labels,
)
from crossemotion.device import resolve_device, seed_everything
from crossemotion.evaluation.metrics import classification_metrics, majority_baseline
from crossemotion.evaluation.timing import measure_inference
from crossemotion.io import atomic_path, write_json, write_parquet
from crossemotion.labels import DEFAULT_TASK, EMOTIONS, task_classes
from crossemotion.models.registry import ModelSpec, ShardInputs, get_spec
from crossemotion.training.loop import FitResult, TrainConfig, fit, predict_probs

log = logging.getLogger(__name__)

PROB_COLUMNS = [f"p_{name}" for name in EMOTIONS]


def prob_columns(classes: tuple[str, ...] = EMOTIONS) -> list[str]:
    """predictions.parquet's probability columns of a class list (``p_anger``, ``p_negative``)."""
    return [f"p_{name}" for name in classes]


RESUME_DIR = ".resume"


def inputs_fingerprint(inputs: ShardInputs) -> list[tuple[str, int, int]]:
    """Name, size and mtime of every input: a resume state of other data is stale."""
    out = []
    for kind in (inputs.clips, inputs.faces, inputs.text):
        for paths in kind.values():
            for p in paths:
                st = os.stat(p)
                out.append((str(p), st.st_size, st.st_mtime_ns))
    return sorted(out)


def preprocess_info(spec: ModelSpec, cfg: Mapping[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "unit": spec.unit,
        "inputs": list(spec.inputs),
        "aggregate_by_key": spec.aggregate_by_key,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    for key in (
        "size",
        "frames",
        "max_length",
        "context",
        "future",
        "speakers",
        "encoder",
        "faces",
    ):
        if key in cfg:
            info[key] = cfg[key]
    return info


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


def _utterance_meta(
    inputs: ShardInputs, split: str, task: str = DEFAULT_TASK
) -> pl.DataFrame | None:
    paths = inputs.text.get(split)
    if not paths:
        return None
    classes = task_classes(task)
    columns = ["key", "split", "speaker", "character", "label"]
    if classes != EMOTIONS:
        columns.append("sentiment")
    return meta_frame(task_labels(read_shards(paths, columns=columns), task), classes)


class Evaluator:
    """Turns model probabilities on a split into (meta, probs) at the reported level."""

    def __init__(
        self,
        spec: ModelSpec,
        dataset: str,
        datasets: Mapping[str, Any],
        inputs: ShardInputs,
        task: str = DEFAULT_TASK,
    ) -> None:
        self.aggregate = spec.aggregate_by_key and dataset == "meld"
        self.datasets = datasets
        self.task = task
        self.classes = task_classes(task)
        self.utterances: dict[str, pl.DataFrame | None] = {}
        train_labels = labels_of(datasets["train"])
        if self.aggregate:
            for split in ("train", "dev", "test"):
                self.utterances[split] = _utterance_meta(inputs, split, task)
            train_utts = self.utterances["train"]
            if train_utts is not None:
                train_labels = label_indices(train_utts["label"].to_list(), self.classes)
        self.train_labels = train_labels
        counts = np.bincount(train_labels, minlength=len(self.classes)).astype(np.float64)
        self.prior = counts / max(1.0, counts.sum())

    def level(self, probs: np.ndarray, split: str) -> tuple[pl.DataFrame, np.ndarray]:
        meta = self.datasets[split].meta
        if not self.aggregate:
            return meta, probs
        return aggregate_faces(meta, probs, self.utterances.get(split), self.prior)

    def labels(self, meta: pl.DataFrame) -> np.ndarray:
        return label_indices(meta["label"].to_list(), self.classes)

    def dev_score(self, probs: np.ndarray) -> dict[str, float]:
        meta, p = self.level(probs, "dev")
        m = classification_metrics(self.labels(meta), p.argmax(1), self.classes)
        return {"accuracy": m["accuracy"] or 0.0, "weighted_f1": m["weighted_f1"] or 0.0}


def train_and_evaluate(
    model_name: str,
    dataset: str,
    model_cfg: Mapping[str, Any],
    global_cfg: Mapping[str, Any],
    inputs: ShardInputs,
    out_dir: str | Path,
    *,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` on ``dataset``; write the four outputs; return metrics.

    ``threads`` (default: the model config's ``threads``) is what the job was
    given, e.g. Snakemake's scaled-down ``threads``.
    """
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    model_cfg = dict(model_cfg)
    seed = int(global_cfg.get("seed", 13))
    task = str(global_cfg.get("task") or DEFAULT_TASK)
    classes = task_classes(task)
    threads = int(threads or model_cfg.get("threads", 1))
    torch.set_num_threads(threads)
    device = resolve_device(global_cfg.get("device", "auto"))
    seed_everything(seed)
    spec = get_spec(model_name)
    datasets = spec.make_datasets({**model_cfg, "seed": seed, "task": task}, dataset, inputs)
    for split in ("train", "dev", "test"):
        if len(datasets[split]) == 0:
            raise ValueError(f"{model_name}/{dataset}: the {split} split has no items")
    log.info(
        "%s on %s: %s items (train/dev/test), device %s, %d threads",
        model_name, dataset, "/".join(str(len(datasets[s])) for s in ("train", "dev", "test")),
        device, threads,
    )  # fmt: skip
    seed_everything(seed)
    model = spec.build(model_cfg, len(classes))
    evaluator = Evaluator(spec, dataset, datasets, inputs, task)
    tcfg = TrainConfig.from_cfg(model_cfg, seed)
    key = config_hash(
        {"model": model_name, "dataset": dataset, "cfg": model_cfg, "seed": seed,
         "device": device.type, "inputs": inputs_fingerprint(inputs),
         # only when not the default, so emotion runs keep their resume keys
         **({"task": task} if task != DEFAULT_TASK else {})}
    )  # fmt: skip
    state_dir = out_dir / RESUME_DIR
    result = fit(
        model, datasets["train"], datasets["dev"], tcfg,
        collate=spec.collate, device=device, state_dir=state_dir, config_key=key,
        dev_score=evaluator.dev_score if evaluator.aggregate else None,
        on_epoch_end=on_epoch_end, progress=progress,
    )  # fmt: skip
    model.load_state_dict(result.best_state)
    metrics = evaluate_and_write(
        spec, dataset, model, model_cfg, datasets, evaluator, result, tcfg, device, out_dir, seed
    )
    checkpoint.clear_resume(state_dir)
    log.info(
        "%s/%s: test acc %.4f wF1 %.4f (majority wF1 %.4f) in %.1fs",
        model_name, dataset, metrics["test"]["accuracy"], metrics["test"]["weighted_f1"],
        metrics["baseline"]["weighted_f1"], time.perf_counter() - t_start,
    )  # fmt: skip
    return metrics


def evaluate_and_write(
    spec: ModelSpec,
    dataset: str,
    model: torch.nn.Module,
    model_cfg: Mapping[str, Any],
    datasets: Mapping[str, Any],
    evaluator: Evaluator,
    result: FitResult,
    tcfg: TrainConfig,
    device: torch.device,
    out_dir: Path,
    seed: int,
) -> dict[str, Any]:
    classes = evaluator.classes
    metrics: dict[str, Any] = {
        "model": spec.name,
        "dataset": dataset,
        "task": evaluator.task,
        "classes": list(classes),
    }
    frames = []
    face_level: dict[str, Any] = {}
    coverage: dict[str, Any] = {}
    with_faces: dict[str, Any] = {}
    for split in ("dev", "test"):
        probs = predict_probs(model, datasets[split], spec.collate, tcfg.batch_size, device)
        meta, level_probs = evaluator.level(probs, split)
        labels = evaluator.labels(meta)
        metrics[split] = classification_metrics(labels, level_probs.argmax(1), classes)
        frames.append(prediction_frame(meta, level_probs, classes))
        if evaluator.aggregate:
            face_labels = labels_of(datasets[split])
            face_level[split] = classification_metrics(face_labels, probs.argmax(1), classes)
            has = meta["n_faces"].to_numpy() > 0
            coverage[split] = {
                "with_faces": int(has.sum()),
                "total": len(has),
                "fraction": float(has.mean()) if len(has) else 0.0,
            }
            with_faces[split] = classification_metrics(
                labels[has], level_probs[has].argmax(1), classes
            )
    test_labels = evaluator.labels(frames[-1])
    metrics["level"] = "utterance" if evaluator.aggregate else spec.unit
    if evaluator.aggregate:
        metrics["face_level"] = face_level
        metrics["coverage"] = coverage
        metrics["with_faces"] = with_faces
        metrics["no_face_policy"] = (
            "utterances without a detected face get the training class prior"
        )
    metrics["baseline"] = majority_baseline(evaluator.train_labels, test_labels, classes)
    metrics["inference"] = measure_inference(
        model, datasets["test"], spec.collate, spec.unit, tcfg.batch_size, device
    )
    metrics["train"] = {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_dev_score": result.best_score,
        "seconds": round(result.seconds, 3),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "n_train": len(datasets["train"]),
        "resumed_from_epoch": result.resumed_from,
    }
    metrics["seed"] = seed
    metrics["config"] = dict(model_cfg)
    write_outputs(
        spec,
        dataset,
        model,
        model_cfg,
        result,
        metrics,
        pl.concat(frames, how="diagonal_relaxed"),
        out_dir,
    )
    return metrics


def write_outputs(
    spec: ModelSpec,
    dataset: str,
    model: torch.nn.Module,
    model_cfg: Mapping[str, Any],
    result: FitResult,
    metrics: dict[str, Any],
    predictions: pl.DataFrame,
    out_dir: Path,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.save(
        out_dir / "model.pt",
        {
            "format": 1,
            "model": spec.name,
            "dataset": dataset,
            "config": dict(model_cfg),
            "task": metrics["task"],
            "labels": list(metrics["classes"]),
            "state_dict": checkpoint.cpu_state_dict(model),
            "preprocess": preprocess_info(spec, model_cfg),
            "epoch": result.best_epoch,
            "metrics": {
                s: {k: metrics[s][k] for k in ("accuracy", "weighted_f1", "n")}
                for s in ("dev", "test")
            },
        },
    )
    write_parquet(out_dir / "predictions.parquet", predictions)
    with atomic_path(out_dir / "train_log.csv", suffix=".csv") as tmp:
        pl.DataFrame(result.log).write_csv(tmp)
    # metrics.json last: it is the rule's target, so its presence means "all done"
    write_json(out_dir / "metrics.json", metrics)

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

The job settings' ``task`` (``emotion``, default, or ``sentiment``: MELD's
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

import polars as pl
import torch
from torch import nn

from crossemotion import checkpoint
from crossemotion.codec import IMAGENET_MEAN, IMAGENET_STD
from crossemotion.config import config_hash, ensemble_members
from crossemotion.device import resolve_device, seed_everything
from crossemotion.evaluation.ensemble import combine_runs
from crossemotion.evaluation.metrics import classification_metrics, majority_baseline
from crossemotion.evaluation.scoring import Scorer, prediction_frame, write_run
from crossemotion.evaluation.timing import measure_inference
from crossemotion.labels import DEFAULT_TASK, task_classes
from crossemotion.layout import member_subdir
from crossemotion.model_config import ModelConfig, TextInputConfig
from crossemotion.models.frozen_layers import frozen_layer_cache
from crossemotion.models.registry import MODELS, ModelSpec, ShardInputs, get_spec
from crossemotion.models.text import embedded_encoder
from crossemotion.training.loop import FitResult, TrainConfig, fit, predict_probs
from crossemotion.training.settings import JobSettings

log = logging.getLogger(__name__)

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


def preprocess_info(spec: ModelSpec, cfg: ModelConfig) -> dict[str, Any]:
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
        if hasattr(cfg, key):
            info[key] = getattr(cfg, key)
    return info


def train_and_evaluate(
    model_name: str,
    dataset: str,
    model_cfg: Mapping[str, Any],
    job: JobSettings,
    inputs: ShardInputs,
    out_dir: str | Path,
    *,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` on ``dataset``; write the four outputs; return metrics.

    A section with an ``ensemble`` trains each member into
    ``{out_dir}/members/member{k}/`` and writes the mean of their probabilities
    as the run (crossemotion.evaluation.ensemble).

    ``job`` holds the seed, task, device, the frozen-layer cache (see
    crossemotion.models.frozen_layers), the threads the job was given (None:
    the model config's ``threads``) and the progress interval
    (crossemotion.training.settings). ``progress`` turns the terminal's bars on
    or off (None: tqdm decides); the log's progress lines are always written.
    """
    out_dir = Path(out_dir)
    members = ensemble_members(model_name, model_cfg, validate=False)
    if members:
        # the workflow trains each member as its own job; a library caller gets them in a row
        dirs = [out_dir / member_subdir(i) for i in range(len(members))]
        for member, member_dir in zip(members, dirs, strict=True):
            train_and_evaluate(
                model_name, dataset, member, job, inputs, member_dir,
                on_epoch_end=on_epoch_end, progress=progress,
            )  # fmt: skip
        return combine_runs(out_dir, dirs, model_cfg)
    t_start = time.perf_counter()
    model_cfg = dict(model_cfg)
    seed, task = job.seed, job.task
    classes = task_classes(task)
    spec = get_spec(model_name)
    cfg = spec.configure(model_cfg, seed=seed, task=task)
    threads = job.threads or cfg.threads
    torch.set_num_threads(threads)
    device = resolve_device(job.device)
    seed_everything(seed)
    datasets = spec.make_datasets(cfg, dataset, inputs)
    for split in ("train", "dev", "test"):
        if len(datasets[split]) == 0:
            raise ValueError(f"{model_name}/{dataset}: the {split} split has no items")
    log.info(
        "%s on %s: %s items (train/dev/test), device %s, %d threads",
        model_name, dataset, "/".join(str(len(datasets[s])) for s in ("train", "dev", "test")),
        device, threads,
    )  # fmt: skip
    seed_everything(seed)
    model = spec.build(cfg, len(classes))
    scorer = Scorer.for_run(spec, dataset, datasets, inputs, task)
    tcfg = TrainConfig.of(cfg)
    key = config_hash(
        {"model": model_name, "dataset": dataset, "cfg": model_cfg, "seed": seed,
         "device": device.type, "inputs": inputs_fingerprint(inputs),
         # only when not the default, so emotion runs keep their resume keys
         **({"task": task} if task != DEFAULT_TASK else {})}
    )  # fmt: skip
    state_dir = out_dir / RESUME_DIR
    # only while fitting: the final scoring and the inference timing run every layer
    form = cfg.input_form if isinstance(cfg, TextInputConfig) else ""
    with frozen_layer_cache(model, job.frozen_cache, device, form) as caches:

        def epoch_end(epoch: int, row: dict[str, Any]) -> None:
            # the first epoch computed every train and dev row: on disk now, a
            # job killed later (a time limit) leaves them to its rerun
            caches.flush()
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)

        result = fit(
            model, datasets["train"], datasets["dev"], tcfg,
            collate=spec.collate, device=device, state_dir=state_dir, config_key=key,
            dev_score=scorer.dev_score if scorer.aggregate else None,
            on_epoch_end=epoch_end, progress=progress, progress_seconds=job.progress_seconds,
        )  # fmt: skip
    model.load_state_dict(result.best_state)
    metrics = evaluate_and_write(
        spec, dataset, model, model_cfg, datasets, scorer, result, tcfg, device, out_dir, cfg,
        faces=job.faces,
    )  # fmt: skip
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
    scorer: Scorer,
    result: FitResult,
    tcfg: TrainConfig,
    device: torch.device,
    out_dir: Path,
    cfg: ModelConfig,
    *,
    faces: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score dev/test, time inference, write the run; ``model_cfg`` is the section as the
    config gave it (recorded), ``cfg`` its typed form (the checkpoint's preprocessing)."""
    classes = scorer.classes
    metrics: dict[str, Any] = {
        "model": spec.name,
        "dataset": dataset,
        "task": scorer.task,
        "classes": list(classes),
    }
    frames = []
    face_level: dict[str, Any] = {}
    coverage: dict[str, Any] = {}
    with_faces: dict[str, Any] = {}
    scored = scorer.score(
        lambda ds: predict_probs(model, ds, spec.collate, tcfg.batch_size, device)
    )
    for split, levels in scored.items():
        meta, level_probs, labels = levels[scorer.primary]
        metrics[split] = classification_metrics(labels, level_probs.argmax(1), classes)
        frames.append(prediction_frame(meta, level_probs, classes))
        if scorer.aggregate:
            _, probs, face_labels = levels["face"]
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
    test_labels = scorer.labels(frames[-1])
    metrics["level"] = scorer.primary
    if scorer.aggregate:
        metrics["face_level"] = face_level
        metrics["coverage"] = coverage
        metrics["with_faces"] = with_faces
        metrics["no_face_policy"] = (
            "utterances without a detected face get the training class prior"
        )
    metrics["baseline"] = majority_baseline(scorer.train_labels, test_labels, classes)
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
    metrics["seed"] = cfg.seed
    metrics["config"] = dict(model_cfg)
    write_run(
        out_dir,
        metrics,
        pl.concat(frames, how="diagonal_relaxed"),
        result.log,
        model=checkpoint_payload(spec, model, cfg, metrics, result.best_epoch, faces),
    )
    return metrics


def checkpoint_payload(
    spec: ModelSpec,
    model: nn.Module,
    cfg: ModelConfig,
    metrics: Mapping[str, Any],
    epoch: int,
    faces: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """model.pt's content: the best epoch's weights and what inference needs to use them
    (the config section as given, from ``metrics``, the typed one's preprocessing, and for
    a model that sees faces the faces stage that cut them)."""
    sees_faces = MODELS[spec.name].serving_kind != "text"
    return {
        "faces": dict(faces) if faces is not None and sees_faces else None,
        "format": 1,
        "model": spec.name,
        "dataset": metrics["dataset"],
        "config": dict(metrics["config"]),
        "task": metrics["task"],
        "labels": list(metrics["classes"]),
        "state_dict": checkpoint.cpu_state_dict(model),
        "preprocess": preprocess_info(spec, cfg),
        # a text encoder's architecture and tokenizer: built from model.pt alone
        checkpoint.ENCODER: embedded_encoder(model, cfg)
        if isinstance(cfg, TextInputConfig)
        else None,
        "epoch": epoch,
        "metrics": {
            s: {k: metrics[s][k] for k in ("accuracy", "weighted_f1", "n")} for s in ("dev", "test")
        },
    }

"""An ensemble's run from its members' runs: the mean of their class probabilities.

Members read the same utterances differently (the utterance alone, the
utterance in its dialogue) and make different mistakes, so the mean of their
probabilities can beat each of them (docs/text-benchmark.md, rounds 16-17).
``combine_runs`` writes the ensemble's run directory with the files of any
training run (``layout.TRAIN_FILES``), so tables, figures and serving read it
like one model:

- predictions.parquet: the first member's rows, each class probability the
  members' mean, the prediction its most probable class;
- metrics.json: dev/test metrics recomputed from those probabilities, the
  members' own scores under ``ensemble``, training cost and inference time
  summed over the members (they run one after another);
- model.pt: no weights, but each member checkpoint's path relative to the
  run, its size and SHA-256 (``crossemotion.inference`` loads and checks them);
- train_log.csv: the members' epoch rows with a ``member`` column.

Rows are matched on ``(split, key)``: MELD's dialogue ids restart in every
split, so a key names one utterance per split, not one overall.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from crossemotion import layout
from crossemotion.evaluation.metrics import classification_metrics
from crossemotion.evaluation.scoring import EVAL_SPLITS, write_run

ENSEMBLE_KIND = "ensemble"
COMBINATION = "mean of the members' class probabilities"


def frame_prob_columns(frame: pl.DataFrame) -> list[str]:
    """The ``p_{class}`` columns of a predictions frame, in its order."""
    return [c for c in frame.columns if c.startswith("p_")]


def aligned(frames: Sequence[pl.DataFrame]) -> tuple[pl.DataFrame, list[np.ndarray]]:
    """The first frame's rows and every frame's probabilities in that row order.

    Refuses runs over other utterances, other labels or other classes: an
    average is only meaningful over the same items scored against the same truth.
    """
    if len(frames) < 2:
        raise ValueError(f"averaging needs two runs or more, got {len(frames)}")
    first = frames[0]
    classes = frame_prob_columns(first)
    if not classes:
        raise ValueError("predictions have no p_* probability columns")
    base = first.select("split", "key", "label").with_row_index("_row")
    probs = []
    for i, frame in enumerate(frames):
        if frame_prob_columns(frame) != classes:
            raise ValueError(f"run {i} has classes {frame_prob_columns(frame)}, run 0 {classes}")
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


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _sum(values: Sequence[Any]) -> Any:
    """The sum of numbers, None when a member lacks one (a sum without it would lie)."""
    if any(not isinstance(v, int | float) for v in values):
        return None
    return round(sum(values), 3)


def _inference(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    timings = [m.get("inference") or {} for m in members]
    out = dict(timings[0])
    for key in ("ms_per_unit_batch1", "ms_per_unit_batch"):
        out[key] = _sum([t.get(key) for t in timings])
    out["from"] = "sum of the members' timings: they run one after another"
    return out


def _train(members: Sequence[Mapping[str, Any]], dev_score: float | None) -> dict[str, Any]:
    trains = [m.get("train") or {} for m in members]
    return {
        "epochs_run": _sum([t.get("epochs_run") for t in trains]),
        # each member has its own: see ensemble.members
        "best_epoch": None,
        "best_dev_score": dev_score,
        "seconds": _sum([t.get("seconds") for t in trains]),
        "parameters": _sum([t.get("parameters") for t in trains]),
        "trainable_parameters": _sum([t.get("trainable_parameters") for t in trains]),
        "n_train": trains[0].get("n_train"),
        "resumed_from_epoch": None,
    }


def _same(members: Sequence[Mapping[str, Any]], key: str) -> Any:
    values = [m.get(key) for m in members]
    if any(v != values[0] for v in values):
        raise ValueError(f"the members differ in {key}: {values}")
    return values[0]


def combine_runs(
    out_dir: str | Path,
    member_dirs: Sequence[str | Path],
    section: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the ensemble's run into ``out_dir`` from its members' runs; return its metrics.

    ``member_dirs`` must lie inside ``out_dir`` (the checkpoint names them
    relative to it, so the run folder moves as one). ``section`` is the
    model's config section as given, ``ensemble`` included (recorded).
    """
    out_dir = Path(out_dir)
    dirs = [Path(d) for d in member_dirs]
    metrics = [json.loads((d / layout.METRICS).read_text()) for d in dirs]
    for key in ("model", "dataset", "task", "classes", "seed", "level"):
        _same(metrics, key)
    # the majority baseline is the training labels', the same for every member
    _same(metrics, "baseline")
    frames = [pl.read_parquet(d / layout.PREDICTIONS) for d in dirs]
    first, probs = aligned(frames)
    mean = np.mean(probs, axis=0)
    classes = list(metrics[0]["classes"])
    if frame_prob_columns(first) != [f"p_{c}" for c in classes]:
        raise ValueError(f"{dirs[0]}: probability columns do not match classes {classes}")
    predictions = first.with_columns(
        pl.Series("prediction", [classes[i] for i in mean.argmax(1)], dtype=pl.Utf8),
        *[pl.Series(f"p_{c}", mean[:, i]) for i, c in enumerate(classes)],
    )
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, Any] = {k: metrics[0][k] for k in ("model", "dataset", "task", "classes")}
    for split in EVAL_SPLITS:
        rows = predictions.filter(pl.col("split") == split)
        out[split] = classification_metrics(
            [index[v] for v in rows["label"]], [index[v] for v in rows["prediction"]], classes
        )
    out["level"] = metrics[0]["level"]
    out["baseline"] = metrics[0]["baseline"]
    out["inference"] = _inference(metrics)
    out["train"] = _train(metrics, out["dev"]["weighted_f1"])
    out["seed"] = metrics[0]["seed"]
    out["config"] = dict(section)
    members = []
    for d, m in zip(dirs, metrics, strict=True):
        ckpt = d / layout.CHECKPOINT
        try:
            rel = ckpt.resolve().relative_to(out_dir.resolve())
        except ValueError:
            raise ValueError(f"member {d} is not inside the ensemble's run {out_dir}") from None
        members.append({
            "checkpoint": rel.as_posix(),
            "bytes": ckpt.stat().st_size,
            "sha256": file_digest(ckpt),
            "config": m.get("config"),
            "dev_weighted_f1": m["dev"]["weighted_f1"],
            "test_weighted_f1": m["test"]["weighted_f1"],
            "best_epoch": (m.get("train") or {}).get("best_epoch"),
            "train_seconds": (m.get("train") or {}).get("seconds"),
        })  # fmt: skip
    out["ensemble"] = {"combination": COMBINATION, "members": members}
    log_rows = []
    for i, d in enumerate(dirs):
        log = pl.read_csv(d / layout.TRAIN_LOG)
        log_rows += [{"member": i, **row} for row in log.to_dicts()]
    payload = {
        "format": 1,
        "kind": ENSEMBLE_KIND,
        "model": out["model"],
        "dataset": out["dataset"],
        "config": dict(section),
        "task": out["task"],
        "labels": classes,
        "members": [
            {k: m[k] for k in ("checkpoint", "bytes", "sha256", "config")} for m in members
        ],
        "metrics": {
            s: {k: out[s][k] for k in ("accuracy", "weighted_f1", "n")} for s in EVAL_SPLITS
        },
    }
    write_run(out_dir, out, predictions, log_rows, model=payload)
    return out

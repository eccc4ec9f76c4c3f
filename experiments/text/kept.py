"""Keep finished text runs' class probabilities in the repository, without annotations.

A real-data run takes 15-90 minutes on the project's 2-core CPU, and a
session's machine keeps nothing after it ends; a round whose runs span
sessions (docs/text-benchmark.md, round 17) keeps each finished run here,
so a later session can average runs it did not train. A kept run is a folder
with

- ``predictions.parquet``: ``split``, ``key`` and the ``p_*`` columns only.
  Labels, speakers and text are MELD's annotations, which the repository
  never holds; ``with_labels`` joins the labels back from the text shards
  built from the csvs;
- ``record.json``: the run's task, seed, dev/test scores, training cost, config
  and dev score per epoch.

    python -m experiments.text.kept RUN_DIR DEST       # keep one run
    python -m experiments.text.average --labels SHARDS --runs DEST ...  # read kept runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import polars as pl

from crossemotion.evaluation.ensemble import frame_prob_columns
from crossemotion.evaluation.scoring import utterance_meta
from crossemotion.labels import DEFAULT_TASK

PREDICTIONS = "predictions.parquet"
RECORD = "record.json"
SCORES = ("n", "accuracy", "weighted_f1", "macro_f1")


def kept_record(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a kept run says about itself: no per-utterance annotation."""
    train = metrics.get("train") or {}
    return {
        "task": metrics.get("task", DEFAULT_TASK),
        "seed": metrics.get("seed"),
        "config": metrics.get("config"),
        **{s: {k: (metrics.get(s) or {}).get(k) for k in SCORES} for s in ("dev", "test")},
        "train_seconds": train.get("seconds"),
        "best_epoch": train.get("best_epoch"),
    }


def keep(run: Path, dest: Path) -> Path:
    """Write ``run``'s probabilities and record into ``dest`` (temp names, then renames)."""
    frame = pl.read_parquet(run / PREDICTIONS)
    probs = frame_prob_columns(frame)
    if not probs or not {"split", "key"} <= set(frame.columns):
        raise ValueError(f"{run / PREDICTIONS} has no split/key/p_* columns to keep")
    metrics = json.loads((run / "metrics.json").read_text())
    record = kept_record(metrics)
    if (run / "train_log.csv").is_file():
        log = pl.read_csv(run / "train_log.csv")
        record["epochs"] = log.select(
            [c for c in ("epoch", "dev_weighted_f1", "seconds") if c in log.columns]
        ).to_dicts()
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / (PREDICTIONS + ".tmp")
    frame.select("split", "key", *probs).write_parquet(tmp, compression="zstd")
    tmp.replace(dest / PREDICTIONS)
    tmp = dest / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(dest / RECORD)
    return dest


def task_of(run: Path) -> str:
    record = run / RECORD
    return json.loads(record.read_text())["task"] if record.is_file() else DEFAULT_TASK


def with_labels(frame: pl.DataFrame, shards: Path, task: str = DEFAULT_TASK) -> pl.DataFrame:
    """A kept run's predictions with each utterance's label from the text shards.

    Refuses rows that the shards do not hold (runs of other csvs) rather than
    scoring them against nothing.
    """
    if "label" in frame.columns:
        return frame
    meta = utterance_meta(sorted(Path(shards).glob("*/part-*.parquet")), task)
    if meta is None:
        raise FileNotFoundError(f"no text shards under {shards}")
    joined = frame.join(meta.select("split", "key", "label"), on=["split", "key"], how="left")
    if missing := joined["label"].null_count():
        raise ValueError(f"{missing} predicted utterances are not in the text shards {shards}")
    return joined.select("split", "key", "label", *frame_prob_columns(frame))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run's folder")
    parser.add_argument("dest", type=Path, help="where the kept run goes")
    args = parser.parse_args(argv)
    dest = keep(args.run, args.dest)
    print(f"kept {args.run} in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The dialogue stacker on cross-fitted encoder outputs (a test of text-benchmark.md section 4).

Not part of ``make bench``. ``bench.text_dialogue``'s stacker learned on the
training utterances' vectors from an encoder fine-tuned on those very
utterances (it fits them: train weighted F1 0.74-0.76 against 0.59 on dev),
so the stacker could lean on them and learn little about the dialogue; its dev
gain did not carry to test. Cross-fitting removes that: the training dialogues
are split into ``--folds`` folds (by dialogue, shuffled with the seed); for
each fold an encoder is fine-tuned on the other folds by the ``train_text``
job's own code (``crossemotion.training.runner.train_and_evaluate``, the
config's keys, its epoch chosen on dev) and encodes its held-out fold, dev and
test. The stacker (``bench.text_dialogue.DialogueGRU``) then learns on
held-out outputs only, and reads dev and test through every fold's encoder,
its probabilities averaged over the folds. Inputs compared on dev: the
encoders' log-probabilities, their pooled vectors, both. Beside them the fold
encoders alone (their probabilities averaged), the baseline the stacker must
beat. Test is read at the dev-chosen epoch and never used to choose.

    python -m bench.text_crossfit --shards results/shards/meld/text --out crossfit \\
        --device auto --workers 15 --threads 1 --records crossfit.json

Writes ``{out}/crossfit.json`` (or ``--records``, rewritten as each run
finishes) and ``{out}/logits-seed{S}.npz`` (every fold encoder's logits: the
held-out ones for train, all folds' for dev and test), small enough to rerun
a logits-only stacker elsewhere.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.text_dialogue import SPLITS, read_split
from bench.text_sweep import (
    MINILM,
    SEEDS,
    Records,
    add_run_arguments,
    base_text_config,
    device_name,
    pool_run,
)

INPUTS = ("logits", "vectors", "both")


def dialogue_folds(dialogue_ids: Sequence[int], folds: int, seed: int) -> np.ndarray:
    """Each row's fold: whole dialogues, shuffled with ``seed``, dealt round-robin."""
    unique = np.unique(np.asarray(dialogue_ids))
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} training dialogues cannot fill {folds} folds")
    order = np.random.default_rng(seed).permutation(unique)
    fold_of = {int(d): i % folds for i, d in enumerate(order)}
    return np.asarray([fold_of[int(d)] for d in dialogue_ids], dtype=np.int64)


def _fold_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune one fold's encoder, then encode its held-out fold, dev and test."""
    import torch

    from bench.text_dialogue import load_text_checkpoint
    from crossemotion.models.registry import ShardInputs
    from crossemotion.training.runner import train_and_evaluate

    shards = Path(job["shards"])
    out = Path(job["out_dir"])
    train = read_split(shards, "train")
    folds = dialogue_folds(train["dialogue_id"].to_list(), job["folds"], job["seed"])
    held_out = train.filter(pl.Series(folds == job["fold"]))
    fold_train = out / "shard" / "part-0000.parquet"
    fold_train.parent.mkdir(parents=True, exist_ok=True)
    train.filter(pl.Series(folds != job["fold"])).write_parquet(fold_train)
    t0 = time.perf_counter()
    metrics = train_and_evaluate(
        "text",
        "meld",
        job["model_cfg"],
        {
            "seed": job["seed"],
            "device": job["device"],
            "demo": False,
            "task": "emotion",
            "frozen_cache": job.get("frozen_cache"),
        },
        ShardInputs(
            clips={},
            faces={},
            text={
                "train": [fold_train],
                **{s: sorted((shards / s).glob("part-*.parquet")) for s in ("dev", "test")},
            },
        ),
        out,
        progress=False,
        threads=job["threads"],
    )
    torch.set_num_threads(job["threads"])
    predictor = load_text_checkpoint(out)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        frame = held_out if split == "train" else read_split(shards, split)
        arrays.update(_encoded(predictor, frame, split))
    np.savez(out / "encoded.npz", **arrays)
    return {
        "seed": job["seed"],
        "fold": job["fold"],
        "train_rows": len(train) - len(held_out),
        "dev": metrics["dev"]["weighted_f1"],
        "test": metrics["test"]["weighted_f1"],
        "best_epoch": metrics["train"]["best_epoch"],
        "seconds": time.perf_counter() - t0,
        "device": job["device_name"],
    }


def _encoded(predictor: Any, frame: pl.DataFrame, split: str) -> dict[str, np.ndarray]:
    from bench.text_dialogue import encode_split

    features, logits, labels = encode_split(predictor, frame)
    return {
        f"{split}_features": features.astype(np.float16),
        f"{split}_logits": logits,
        f"{split}_labels": labels,
        f"{split}_keys": frame.select("dialogue_id", "utterance_id").to_numpy(),
    }


def load_folds(out: Path, seed: int, folds: int) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(out / f"seed{seed}" / f"fold{k}" / "encoded.npz")) for k in range(folds)]


def stacker_inputs(encoded: Mapping[str, np.ndarray], split: str, inputs: str) -> np.ndarray:
    """The stacker's per-utterance input: log-probabilities, vectors or both."""
    parts = []
    if inputs in ("vectors", "both"):
        parts.append(encoded[f"{split}_features"].astype(np.float32))
    if inputs in ("logits", "both"):
        logits = encoded[f"{split}_logits"].astype(np.float32)
        shifted = logits - logits.max(1, keepdims=True)
        parts.append(shifted - np.log(np.exp(shifted).sum(1, keepdims=True)))
    return np.concatenate(parts, 1)


def assemble(
    out: Path, shards: Path, seed: int, folds: int, inputs: str
) -> tuple[Any, list[Any], list[Any]]:
    """(train, dev versions, test versions) as ``bench.text_dialogue.Split``s: train from
    each utterance's held-out encoder, dev and test once per fold encoder."""
    from bench.text_dialogue import Split, dialogue_groups

    frames = {s: read_split(shards, s) for s in SPLITS}
    groups = {
        s: dialogue_groups(f["dialogue_id"].to_list(), f["speaker"].to_list())
        for s, f in frames.items()
    }
    encoded = load_folds(out, seed, folds)
    train_keys = frames["train"].select("dialogue_id", "utterance_id").to_numpy()
    row = {tuple(k): i for i, k in enumerate(train_keys.tolist())}
    n = len(train_keys)
    features: np.ndarray | None = None
    logits = np.zeros((n, encoded[0]["train_logits"].shape[1]), dtype=np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    for enc in encoded:
        idx = np.asarray([row[tuple(k)] for k in enc["train_keys"].tolist()])
        x = stacker_inputs(enc, "train", inputs)
        if features is None:
            features = np.zeros((n, x.shape[1]), dtype=np.float32)
        features[idx] = x
        logits[idx] = enc["train_logits"]
        labels[idx] = enc["train_labels"]
    if (labels < 0).any() or features is None:
        raise ValueError(f"seed {seed}: the folds' held-out rows do not cover the training split")
    train = Split(features, logits, labels, groups["train"])
    versions = {
        s: [
            Split(stacker_inputs(enc, s, inputs), enc[f"{s}_logits"], enc[f"{s}_labels"], groups[s])
            for enc in encoded
        ]
        for s in ("dev", "test")
    }
    return train, versions["dev"], versions["test"]


def _stacker_job(job: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    from bench.text_dialogue import train_stacker

    torch.set_num_threads(job["threads"])
    train, dev, test = assemble(
        Path(job["out"]), Path(job["shards"]), job["seed"], job["folds"], job["inputs"]
    )
    run = train_stacker(train, dev, test, job["seed"], job["epochs"], job["lr"], job["batch"])
    return {"kind": "stacker", "inputs": job["inputs"], "encoder_seed": job["seed"], **run}


def fold_ensemble(out: Path, seed: int, folds: int) -> dict[str, Any]:
    """The fold encoders alone, their probabilities averaged: the stacker's baseline."""
    from bench.text_dialogue import weighted_f1

    encoded = load_folds(out, seed, folds)
    record: dict[str, Any] = {"kind": "fold_ensemble", "encoder_seed": seed}
    for split in ("dev", "test"):
        probs = np.mean([np.exp(stacker_inputs(e, split, "logits")) for e in encoded], axis=0)
        record[split] = weighted_f1(encoded[0][f"{split}_labels"], probs.argmax(1))
    return record


def save_logits(out: Path, seed: int, folds: int) -> Path:
    encoded = load_folds(out, seed, folds)
    arrays = {
        f"fold{k}_{split}_{what}": e[f"{split}_{what}"]
        for k, e in enumerate(encoded)
        for split in SPLITS
        for what in ("logits", "labels", "keys")
    }
    path = out / f"logits-seed{seed}.npz"
    np.savez_compressed(path, **arrays)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--epochs", type=int, help="override the encoder's epochs (smoke runs)")
    parser.add_argument("--stacker-epochs", type=int, default=15)
    parser.add_argument("--stacker-lr", type=float, default=1e-3)
    parser.add_argument("--stacker-batch", type=int, default=16, help="dialogues per step")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--records", type=Path, help="default: {out}/crossfit.json")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    args.out.mkdir(parents=True, exist_ok=True)
    records = Records(args.records or args.out / "crossfit.json")

    def done(r: dict[str, Any]) -> None:
        records.add(r)
        print(json.dumps(r, default=str), flush=True)

    device = device_name(args.device)
    model_cfg = {
        **base_text_config(),
        **MINILM,
        **({"epochs": args.epochs} if args.epochs else {}),
    }
    encoders = [
        {
            "shards": str(args.shards),
            "model_cfg": model_cfg,
            "seed": seed,
            "fold": k,
            "folds": args.folds,
            "device": args.device,
            "device_name": device,
            "threads": args.threads,
            "out_dir": str(args.out / f"seed{seed}" / f"fold{k}"),
            "frozen_cache": str(args.frozen_cache) if args.frozen_cache else None,
        }
        for seed in args.seeds
        for k in range(args.folds)
    ]
    pool_run(_fold_job, encoders, args.workers, lambda r: done({"kind": "encoder", **r}))
    for seed in args.seeds:
        done(fold_ensemble(args.out, seed, args.folds))
        save_logits(args.out, seed, args.folds)
    stackers = [
        {
            "out": str(args.out),
            "shards": str(args.shards),
            "seed": seed,
            "folds": args.folds,
            "inputs": inputs,
            "epochs": args.stacker_epochs,
            "lr": args.stacker_lr,
            "batch": args.stacker_batch,
            "threads": 1,
        }
        for inputs in args.inputs
        for seed in args.seeds
    ]
    pool_run(_stacker_job, stackers, args.workers, done)
    summary(records.runs)
    return 0


def summary(records: list[dict[str, Any]]) -> None:
    """Mean ± sd over encoder seeds of each row: dev decides, test beside it."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["kind"] != "encoder":
            rows.setdefault(r.get("inputs", "fold encoders alone"), []).append(r)
    for name, runs in sorted(rows.items(), key=lambda kv: -np.mean([r["dev"] for r in kv[1]])):
        dev = [r["dev"] for r in runs]
        test = [r["test"] for r in runs]
        print(
            f"{name:20} dev {np.mean(dev):.4f} ± {np.std(dev, ddof=1) if len(dev) > 1 else 0:.4f}"
            f"  test {np.mean(test):.4f} ± {np.std(test, ddof=1) if len(test) > 1 else 0:.4f}"
            f"  (seeds {[r['encoder_seed'] for r in runs]})",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())

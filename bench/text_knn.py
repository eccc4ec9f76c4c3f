"""Nearest-neighbour interpolation over trained ``text`` checkpoints.

Not part of ``make bench``. kNN-LM (Khandelwal et al. 2020) mixes a model's
output with a vote of the training items nearest to the input in the model's
own representation space; for classification the vote is a distribution over
the labels of the ``k`` nearest training utterances, weighted by their
softmaxed cosine similarity over a temperature. The mixture
``(1 - lambda) * model + lambda * vote`` can recover labels the linear head
smooths away (MELD's short, repeated utterances). For each checkpoint on its
own, ``k``, the temperature and ``lambda`` are chosen on **dev** weighted F1
(``lambda = 0``, the checkpoint alone, is in the grid); test is reported for
the chosen setting only, never used to choose.

    python -m bench.text_knn --shards results/shards/meld/text \\
        --checkpoints finalists/emotion/ctx0_nospeaker/seed{13,14,15} --out knn.json

Writes one record per checkpoint (its dev/test weighted F1 alone and with the
chosen neighbours, the choice, seconds) to ``--out`` through a temp name.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.text_dialogue import load_splits, weighted_f1
from crossemotion.evaluation.bootstrap import SeedSummary, seed_summary

K_GRID = (8, 16, 32, 64, 128)
TEMPERATURE_GRID = (0.02, 0.05, 0.1)
LAMBDA_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)


def neighbours(
    train: np.ndarray, query: np.ndarray, k: int, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar training rows of every query row: (similarities,
    indices), both [N, k], most similar first."""
    if not 0 < k <= len(train):
        raise ValueError(f"k must be in 1..{len(train)} (training rows), got {k}")
    bank = nn.functional.normalize(torch.from_numpy(train).float(), dim=1)
    sims, idx = [], []
    for start in range(0, len(query), chunk):
        q = nn.functional.normalize(torch.from_numpy(query[start : start + chunk]).float(), dim=1)
        top = (q @ bank.T).topk(k, dim=1)
        sims.append(top.values.numpy())
        idx.append(top.indices.numpy())
    return np.concatenate(sims), np.concatenate(idx)


def vote(
    sims: np.ndarray, idx: np.ndarray, labels: np.ndarray, k: int, temperature: float, classes: int
) -> np.ndarray:
    """Label distribution [N, classes] of the first ``k`` neighbours, each weighted by
    the softmax of its similarity over ``temperature``."""
    s = sims[:, :k] / temperature
    w = np.exp(s - s.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    out = np.zeros((len(sims), classes))
    np.add.at(out, (np.arange(len(sims))[:, None], labels[idx[:, :k]]), w)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.from_numpy(logits).softmax(1).numpy()


def choose_on_dev(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    dev_features: np.ndarray,
    dev_logits: np.ndarray,
    dev_labels: np.ndarray,
) -> dict[str, Any]:
    """The (k, temperature, lambda) of the grids with the best dev weighted F1; ties go
    to the first in grid order, so the checkpoint alone (lambda 0) wins a tie."""
    classes = dev_logits.shape[1]
    sims, idx = neighbours(train_features, dev_features, min(max(K_GRID), len(train_features)))
    model = softmax(dev_logits)
    best: dict[str, Any] = {"dev": -1.0}
    for k, temperature in itertools.product(K_GRID, TEMPERATURE_GRID):
        if k > sims.shape[1]:
            continue
        knn = vote(sims, idx, train_labels, k, temperature, classes)
        for lam in LAMBDA_GRID:
            score = weighted_f1(dev_labels, ((1 - lam) * model + lam * knn).argmax(1))
            if score > best["dev"]:
                best = {"k": k, "temperature": temperature, "lambda": lam, "dev": score}
    return best


def apply(
    choice: dict[str, Any],
    train_features: np.ndarray,
    train_labels: np.ndarray,
    features: np.ndarray,
    logits: np.ndarray,
) -> np.ndarray:
    """Mixed probabilities [N, classes] of a split at the chosen setting."""
    sims, idx = neighbours(train_features, features, choice["k"])
    knn = vote(sims, idx, train_labels, choice["k"], choice["temperature"], logits.shape[1])
    return (1 - choice["lambda"]) * softmax(logits) + choice["lambda"] * knn


def evaluate_checkpoint(checkpoint: Path, shards: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = load_splits([checkpoint], shards)
    train, dev, test = data["train"], data["dev"], data["test"]
    choice = choose_on_dev(train.features, train.labels, dev.features, dev.logits, dev.labels)
    mixed = apply(choice, train.features, train.labels, test.features, test.logits)
    return {
        "checkpoint": str(checkpoint),
        "alone": {
            "dev": weighted_f1(dev.labels, dev.logits.argmax(1)),
            "test": weighted_f1(test.labels, test.logits.argmax(1)),
        },
        "choice": {k: choice[k] for k in ("k", "temperature", "lambda")},
        "knn": {"dev": choice["dev"], "test": weighted_f1(test.labels, mixed.argmax(1))},
        "seconds": time.perf_counter() - t0,
    }


def summary(records: Sequence[dict[str, Any]]) -> dict[str, SeedSummary]:
    """Mean and sd over checkpoints of each score (the seed tables' summary)."""
    return {
        f"{which}_{split}": seed_summary([r[which][split] for r in records])
        for which, split in itertools.product(("alone", "knn"), ("dev", "test"))
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, required=True, help="results/shards/meld/text")
    parser.add_argument(
        "--checkpoints", type=Path, nargs="+", required=True, help="text run folders or model.pt"
    )
    parser.add_argument("--out", type=Path, required=True, help="a JSON file")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    records = []
    for checkpoint in args.checkpoints:
        r = evaluate_checkpoint(checkpoint, args.shards)
        records.append(r)
        print(
            f"{checkpoint}: alone dev {r['alone']['dev']:.4f} test {r['alone']['test']:.4f}; "
            f"k {r['choice']['k']} T {r['choice']['temperature']} lambda {r['choice']['lambda']}: "
            f"dev {r['knn']['dev']:.4f} test {r['knn']['test']:.4f} ({r['seconds']:.0f} s)",
            flush=True,
        )
    means = summary(records)
    result = {
        "runs": records,
        "summary": {name: {"mean": m.mean, "sd": m.sd} for name, m in means.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    for name, m in means.items():
        print(f"{name}: {m.text(4)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

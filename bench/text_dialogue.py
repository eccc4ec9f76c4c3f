"""A dialogue-level stacker over trained ``text`` checkpoints (a variant the sweep lacks).

Not part of ``make bench``. The utterance models of ``bench.text_sweep`` see at
most three past turns through the encoder's input. This experiment asks
whether a model over the whole dialogue adds to them: each checkpoint's
pooled encoder output (frozen) is taken for every utterance; the vectors of
several checkpoints are concatenated; a bidirectional GRU runs over each
dialogue's utterances (with the speaker's order of appearance in the dialogue
as a one-hot) and classifies every utterance. The epoch is chosen on dev
weighted F1; test is reported beside it, never used to choose.

    python -m bench.text_dialogue --shards results/shards/meld/text \\
        --checkpoints sweep/emotion/ctx3/seed13 --out dialogue.json

Writes one record per GRU seed (dev/test weighted F1, best epoch, seconds)
and the checkpoints' own utterance-level scores (their logits averaged).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from sklearn.metrics import f1_score
from torch import Tensor, nn

from crossemotion.datasets.buckets import length_order, ordered_batches
from crossemotion.datasets.shards import read_shards
from crossemotion.datasets.text import TextDataset, collate_text
from crossemotion.device import seed_everything
from crossemotion.inference import Predictor, load_predictor
from crossemotion.models.text import tokenizer_for

SPLITS = ("train", "dev", "test")
# speakers past this rank in a dialogue share the last slot
SPEAKER_SLOTS = 8


@dataclass
class Split:
    features: np.ndarray  # [N, D] pooled encoder outputs, checkpoints concatenated
    logits: np.ndarray  # [N, C] the checkpoints' summed head outputs
    labels: np.ndarray  # [N]
    dialogues: list[tuple[np.ndarray, np.ndarray]]  # (row indices, speaker slots) per dialogue


def dialogue_groups(
    dialogue_ids: Sequence[int], speakers: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows (already in dialogue, utterance order) grouped by dialogue, with speaker slots."""
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    start = 0
    for end in range(1, len(dialogue_ids) + 1):
        if end == len(dialogue_ids) or dialogue_ids[end] != dialogue_ids[start]:
            slots: dict[str, int] = {}
            rank = [
                min(slots.setdefault(speakers[i], len(slots)), SPEAKER_SLOTS - 1)
                for i in range(start, end)
            ]
            groups.append((np.arange(start, end), np.asarray(rank, dtype=np.int64)))
            start = end
    return groups


def load_text_checkpoint(path: Path) -> Predictor:
    predictor = load_predictor(path, device="cpu")
    if predictor.model != "text":
        raise ValueError(f"{path}: a {predictor.model!r} checkpoint; the stacker reads text ones")
    return predictor


@torch.no_grad()
def encode_split(
    predictor: Predictor, frame: pl.DataFrame, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pooled features, logits, label indices) of one checkpoint, in dialogue order."""
    net = predictor.net
    ds = TextDataset(frame, predictor.cfg, tokenizer_for(predictor.cfg))
    features = np.zeros((len(ds), net.text.width), dtype=np.float32)
    logits = np.zeros((len(ds), len(ds.classes)), dtype=np.float32)
    for batch_idx in ordered_batches(length_order(ds.lengths), batch_size):
        _, pooled = net.text(collate_text([ds[i] for i in batch_idx]))
        features[batch_idx] = pooled.numpy()
        logits[batch_idx] = net.head(pooled).numpy()
    return features, logits, np.asarray(ds.labels)


def read_split(shards: Path, split: str) -> pl.DataFrame:
    """One split's text shards in the row order TextDataset (and so encode_split) keeps."""
    return read_shards(sorted((shards / split).glob("part-*.parquet"))).sort(
        "dialogue_id", "utterance_id"
    )


def load_splits(checkpoints: Sequence[Path], shards: Path) -> dict[str, Split]:
    predictors = [load_text_checkpoint(c) for c in checkpoints]
    out = {}
    for split in SPLITS:
        frame = read_split(shards, split)
        encoded = [encode_split(p, frame) for p in predictors]
        labels = encoded[0][2]
        if any(not np.array_equal(e[2], labels) for e in encoded):
            raise ValueError(
                "the checkpoints disagree on the labels: were they trained on one task?"
            )
        out[split] = Split(
            features=np.concatenate([e[0] for e in encoded], axis=1),
            logits=np.sum([e[1] for e in encoded], axis=0),
            labels=labels,
            dialogues=dialogue_groups(frame["dialogue_id"].to_list(), frame["speaker"].to_list()),
        )
    return out


class DialogueGRU(nn.Module):
    def __init__(self, width: int, classes: int, hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden + SPEAKER_SLOTS, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(3 * hidden, classes)

    def forward(self, features: Tensor, speakers: Tensor) -> Tensor:
        z = self.project(features)
        turns, _ = self.gru(
            torch.cat([z, nn.functional.one_hot(speakers, SPEAKER_SLOTS).float()], -1)
        )
        # the utterance's own vector beside its dialogue state
        return self.head(self.dropout(torch.cat([turns, z], -1)))


def dialogue_batches(split: Split, order: Sequence[int], size: int):
    for start in range(0, len(order), size):
        group = [split.dialogues[i] for i in order[start : start + size]]
        longest = max(len(rows) for rows, _ in group)
        x = np.zeros((len(group), longest, split.features.shape[1]), dtype=np.float32)
        s = np.zeros((len(group), longest), dtype=np.int64)
        y = np.full((len(group), longest), -100, dtype=np.int64)
        for r, (rows, slots) in enumerate(group):
            x[r, : len(rows)] = split.features[rows]
            s[r, : len(rows)] = slots
            y[r, : len(rows)] = split.labels[rows]
        yield torch.from_numpy(x), torch.from_numpy(s), torch.from_numpy(y), group


@torch.no_grad()
def predict_proba(model: DialogueGRU, split: Split) -> np.ndarray:
    """Class probabilities of every utterance, in the split's row order."""
    model.eval()
    probs = np.zeros((len(split.labels), model.head.out_features), dtype=np.float32)
    for x, s, _, group in dialogue_batches(split, range(len(split.dialogues)), 64):
        out = model(x, s).softmax(-1).numpy()
        for r, (rows, _) in enumerate(group):
            probs[rows] = out[r, : len(rows)]
    return probs


def predict(model: DialogueGRU, versions: Sequence[Split]) -> np.ndarray:
    """Labels from the probabilities averaged over versions of one split (the same
    utterances encoded by different checkpoints: one, or one per cross-fitting fold)."""
    return np.mean([predict_proba(model, v) for v in versions], axis=0).argmax(1)


def weighted_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(labels, pred, average="weighted"))


def train_stacker(
    train: Split,
    dev: Sequence[Split],
    test: Sequence[Split],
    seed: int,
    epochs: int,
    lr: float,
    batch: int,
) -> dict[str, Any]:
    """A GRU trained on ``train``; the epoch chosen by dev weighted F1, test read
    at that epoch. ``dev``/``test`` are one or more versions of the split (see
    ``predict``)."""
    seed_everything(seed)
    classes = train.logits.shape[1]
    model = DialogueGRU(train.features.shape[1], classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    best: dict[str, Any] = {"dev": -1.0}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for x, s, y, _ in dialogue_batches(train, rng.permutation(len(train.dialogues)), batch):
            loss = nn.functional.cross_entropy(model(x, s).reshape(-1, classes), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = weighted_f1(dev[0].labels, predict(model, dev))
        if score > best["dev"]:
            test_score = weighted_f1(test[0].labels, predict(model, test))
            best = {"dev": score, "test": test_score, "epoch": epoch}
    return {"seed": seed, **best, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, required=True, help="results/shards/meld/text")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        nargs="+",
        required=True,
        help="text run folders or model.pt files",
    )
    parser.add_argument("--out", type=Path, required=True, help="a JSON file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16, help="dialogues per step")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_splits(args.checkpoints, args.shards)
    encode_seconds = time.perf_counter() - t0
    record: dict[str, Any] = {
        "checkpoints": [str(c) for c in args.checkpoints],
        "encode_seconds": encode_seconds,
        # the checkpoints alone (logits summed): the baseline the stacker must beat
        "utterance": {
            s: weighted_f1(d.labels, d.logits.argmax(1)) for s, d in data.items() if s != "train"
        },
        "stacker": [
            train_stacker(
                data["train"], [data["dev"]], [data["test"]], s, args.epochs, args.lr, args.batch
            )
            for s in args.seeds
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(args.out)
    for run in record["stacker"]:
        print(
            f"seed {run['seed']}: dev wF1 {run['dev']:.4f} "
            f"test wF1 {run['test']:.4f} (epoch {run['epoch']})"
        )
    print(
        f"checkpoints alone: dev {record['utterance']['dev']:.4f} "
        f"test {record['utterance']['test']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

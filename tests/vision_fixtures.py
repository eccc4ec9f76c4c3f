"""Small synthetic MELD/IFEED shards (right schema, class-dependent pixels) for model tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import polars as pl

from crossemotion.labels import EMOTIONS, IFEED_NAMES
from crossemotion.models.registry import ShardInputs
from crossemotion.training.settings import JobSettings

CAST = ["Ross", "Rachel", "Monica", "Joey"]


def class_image(label: int, size: int, rng: np.random.Generator, phase: int = 0) -> np.ndarray:
    """Noise plus a bright square whose position encodes the class."""
    img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    cell = size // 4
    r, c = divmod(label, 4)
    y, x = r * cell + phase % 2, c * cell
    img[y : y + cell, x : x + cell] = (220, 200 - 20 * label, 40 * label % 255)
    return img


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _utterances(split: str, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(i % len(EMOTIONS)) if i % 3 else 4  # neutral-heavy, like MELD
        dia, utt = i // 3 + 100 * ("train", "dev", "test").index(split), i % 3
        speaker = CAST[int(rng.integers(len(CAST)))]
        rows.append(
            {"split": split, "dialogue_id": dia, "utterance_id": utt, "key": f"dia{dia}_utt{utt}",
             "speaker": speaker, "character": speaker, "label": EMOTIONS[label],
             "text": f"utterance {i}", "_label": label}
        )  # fmt: skip
    return rows


def write_meld_shards(
    root: Path, sizes: dict[str, int] | None = None, frames: int = 4, size: int = 32, seed: int = 0
) -> ShardInputs:
    sizes = sizes or {"train": 42, "dev": 14, "test": 14}
    clips, faces, text = {}, {}, {}
    rng = np.random.default_rng(seed)
    for split, n in sizes.items():
        utts = _utterances(split, n, seed + len(split))
        clip_rows, face_rows = [], []
        for u in utts:
            imgs = [class_image(u["_label"], size, rng, t) for t in range(frames)]
            base = {k: v for k, v in u.items() if k != "_label"}
            clip_rows.append({**base, "timestamps": [0.1 * t for t in range(frames)],
                              "frames": [jpeg(im) for im in imgs]})  # fmt: skip
            # every 7th utterance has no detected face
            if u["dialogue_id"] % 7 == 3 and u["utterance_id"] == 0:
                continue
            for t in range(2):
                face_rows.append(
                    {"dataset": "meld", "split": split, "id": f"{u['key']}_f{t}", "key": u["key"],
                     "character": u["character"], "speaker": u["speaker"], "label": u["label"],
                     "image": jpeg(imgs[t])}
                )  # fmt: skip
        paths = {}
        for kind, rows in (("clips", clip_rows), ("faces", face_rows), ("text", [
            {k: v for k, v in u.items() if k != "_label"} for u in utts
        ])):  # fmt: skip
            path = root / "shards" / "meld" / kind / split / "part-0000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(rows).write_parquet(path)
            paths[kind] = [path]
        clips[split], faces[split], text[split] = paths["clips"], paths["faces"], paths["text"]
    return ShardInputs(clips=clips, faces=faces, text=text)


def write_ifeed_shards(
    root: Path, sizes: dict[str, int] | None = None, size: int = 32, seed: int = 0
) -> ShardInputs:
    sizes = sizes or {"train": 84, "test": 28}
    rng = np.random.default_rng(seed)
    faces = {}
    for split, n in sizes.items():
        rows = []
        for i in range(n):
            label = i % len(EMOTIONS)
            key = f"dia{i // 2}_utt{i % 5}"  # two frames per source utterance
            name = IFEED_NAMES[EMOTIONS[label]]
            rows.append(
                {"dataset": "ifeed", "split": split, "id": f"{split}/{i}/{name}",
                 "key": key, "character": CAST[i % 4], "speaker": None, "label": EMOTIONS[label],
                 "image": jpeg(class_image(label, size, rng))}
            )  # fmt: skip
        path = root / "shards" / "ifeed" / "faces" / split / "part-0000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(rows).write_parquet(path)
        faces[split] = [path]
    return ShardInputs(clips={}, faces=faces, text={})


TINY = {
    "c3d": {"channels": [4, 8], "frames": 4, "size": 32, "dropout": 0.1, "epochs": 3,
            "batch_size": 8, "lr": 0.003, "patience": 3, "threads": 1},
    "cnn_lstm": {"backbone": "resnet18", "weights": None, "hidden": 8, "frames": 2, "size": 32,
                 "epochs": 1, "batch_size": 8, "lr": 0.001, "threads": 1},
    "resnet50": {"arch": "resnet18", "weights": None, "size": 32, "augment": True, "epochs": 2,
                 "batch_size": 16, "lr": 0.001, "threads": 1},
}  # fmt: skip
GLOBAL = JobSettings(seed=5, device="cpu")


def api_dialogue_units(text_shard: Path) -> dict[str, dict]:
    """A text shard's utterances as the API takes them, by key: one turn either side."""
    shard = pl.read_parquet(text_shard).sort("dialogue_id", "utterance_id")
    units = {}
    for dialogue in shard.partition_by("dialogue_id", maintain_order=True):
        turns = [
            {"speaker": s, "text": t}
            for s, t in zip(dialogue["speaker"], dialogue["text"], strict=True)
        ]
        for i, key in enumerate(dialogue["key"]):
            units[key] = {**turns[i], "context": turns[max(0, i - 1) : i],
                          "future": turns[i + 1 : i + 2]}  # fmt: skip
    return units


def strip_volatile(metrics: dict) -> dict:
    """Metrics without wall-clock figures (timing differs run to run)."""
    out = {k: v for k, v in metrics.items() if k != "inference"}
    volatile = ("seconds", "resumed_from_epoch")
    out["train"] = {k: v for k, v in metrics["train"].items() if k not in volatile}
    return out

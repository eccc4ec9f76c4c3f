"""Datasets over MELD text shards (and text + faces shards for fusion).

Text is tokenized once at construction; items hold unpadded token ids and the
collate functions pad each batch to its own longest sequence (dynamic padding),
which is what keeps CPU fine-tuning affordable.

Dialogue context (``context: N``) prepends the N previous utterances of the same
dialogue, speaker names first ("Ross: ... [SEP] Rachel: ..."), as the first
segment of a sentence pair whose second segment is the target utterance. When
the pair is too long the context is cut from the left (its oldest tokens), so
the target and the most recent turns always survive.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from crossemotion.labels import EMOTION_TO_INDEX, normalize_label

META_COLUMNS = ("id", "key", "split", "speaker", "character", "label")
CONTEXT_SEP = " [SEP] "


def read_shards(paths: Sequence[str | Path]) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in paths]
    if not frames:
        raise ValueError("no shard files given")
    return pl.concat(frames, how="diagonal_relaxed")


def label_index(label: Any) -> int:
    if isinstance(label, int | np.integer):
        return int(label)
    return EMOTION_TO_INDEX[normalize_label(str(label))]


def turn(speaker: str | None, text: str) -> str:
    return f"{speaker}: {text}" if speaker else text


def build_contexts(frame: pl.DataFrame, context: int) -> list[str]:
    """Per row: the ``context`` previous turns of its dialogue, oldest first.

    Order within a dialogue is by ``utterance_id``; rows of other dialogues
    (and later utterances) never leak in. Returns "" where there is none.
    """
    if context <= 0:
        return [""] * frame.height
    rows = frame.select("dialogue_id", "utterance_id", "speaker", "text").with_row_index("_row")
    out = [""] * frame.height
    for group in rows.sort("dialogue_id", "utterance_id").partition_by("dialogue_id"):
        turns = [turn(s, t) for s, t in zip(group["speaker"], group["text"], strict=True)]
        for pos, row in enumerate(group["_row"]):
            out[row] = CONTEXT_SEP.join(turns[max(0, pos - context) : pos])
    return out


def encode_pair(tokenizer: Any, target: str, context: str, max_length: int) -> dict[str, list[int]]:
    """Token ids for [CLS] context [SEP] target [SEP], context cut from the left.

    Built by hand (BERT layout) because transformers 5 tokenizers no longer
    expose build_inputs_with_special_tokens and left-only truncation of the
    first segment is not a built-in strategy.
    """
    cls, sep = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
    tgt = tokenizer.encode(target, add_special_tokens=False)
    if context:
        tgt = tgt[: max_length - 4]
        room = max_length - 3 - len(tgt)
        ctx = tokenizer.encode(context, add_special_tokens=False)
        ctx = ctx[len(ctx) - room :] if room > 0 else []
        if ctx:
            first = [cls, *ctx, sep]
            second = [*tgt, sep]
            return {
                "input_ids": first + second,
                "token_type_ids": [0] * len(first) + [1] * len(second),
            }
    ids = [cls, *tgt[: max_length - 2], sep]
    return {"input_ids": ids, "token_type_ids": [0] * len(ids)}


def preprocess_text(
    texts: Sequence[str],
    cfg: Mapping[str, Any],
    tokenizer: Any,
    contexts: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """Raw utterances (and optional context strings) -> a padded model batch.

    The inference hook: ``model(preprocess_text(["Oh my God!"], cfg, tok))``.
    """
    contexts = contexts if contexts is not None else [""] * len(texts)
    items = [
        encode_pair(tokenizer, t, c, int(cfg.get("max_length", 128)))
        for t, c in zip(texts, contexts, strict=True)
    ]
    return pad_text([{k: torch.tensor(v) for k, v in it.items()} for it in items], tokenizer)


def pad_text(items: Sequence[Mapping[str, Tensor]], tokenizer: Any = None) -> dict[str, Tensor]:
    pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0)
    width = max(int(it["input_ids"].numel()) for it in items)
    batch = len(items)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    types = torch.zeros((batch, width), dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, it in enumerate(items):
        n = int(it["input_ids"].numel())
        ids[i, :n] = it["input_ids"]
        types[i, :n] = it["token_type_ids"]
        mask[i, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def collate_text(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Pads token ids (pad id 0, BERT's and MiniLM's) and stacks the rest."""
    batch = pad_text(items)
    for key in items[0]:
        if key not in ("input_ids", "token_type_ids"):
            batch[key] = torch.stack([it[key] for it in items])
    return batch


def meta_frame(frame: pl.DataFrame) -> pl.DataFrame:
    if "id" not in frame.columns:
        frame = frame.with_columns(pl.col("key").alias("id"))
    for col in META_COLUMNS:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(col))
    return frame.select(META_COLUMNS)


class TextDataset(Dataset):
    """One item per utterance: token ids, token types and the label index."""

    def __init__(self, frame: pl.DataFrame, cfg: Mapping[str, Any], tokenizer: Any) -> None:
        frame = frame.sort("dialogue_id", "utterance_id")
        contexts = build_contexts(frame, int(cfg.get("context", 0)))
        max_length = int(cfg.get("max_length", 128))
        texts = [str(t or "") for t in frame["text"]]
        self.encoded = [
            encode_pair(tokenizer, t, c, max_length) for t, c in zip(texts, contexts, strict=True)
        ]
        self.labels = [label_index(v) for v in frame["label"]]
        # token counts, for length-bucketed samplers
        self.lengths = [len(e["input_ids"]) for e in self.encoded]
        self.meta = meta_frame(frame)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        enc = self.encoded[index]
        return {
            "input_ids": torch.tensor(enc["input_ids"], dtype=torch.long),
            "token_type_ids": torch.tensor(enc["token_type_ids"], dtype=torch.long),
            "label": torch.tensor(self.labels[index], dtype=torch.long),
        }


def decode_image(data: bytes, size: int) -> Tensor:
    """JPEG bytes -> normalized float [3, size, size] (ImageNet statistics)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB").resize((size, size))
    arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (arr - mean) / std


def evenly_spaced(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) for i in range(k)] if k > 1 else [n // 2]


class FusionDataset(Dataset):
    """One item per utterance: its text tokens and up to ``faces`` face crops.

    Faces are picked from the utterance's crops at evenly spaced frames (the
    best-scoring crop per frame); utterances without a face get an all-false
    ``face_mask`` so the fusion layer attends to text only.
    """

    def __init__(
        self,
        frame: pl.DataFrame,
        faces: pl.DataFrame | None,
        cfg: Mapping[str, Any],
        tokenizer: Any,
    ) -> None:
        self.text = TextDataset(frame, cfg, tokenizer)
        self.meta = self.text.meta
        self.k = int(cfg.get("faces", 3))
        self.size = int(cfg.get("size", 224))
        by_key = select_faces(faces, self.k) if faces is not None else {}
        self.images = [by_key.get(k, []) for k in self.meta["key"]]

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = self.text[index]
        crops = self.images[index]
        faces = torch.zeros((self.k, 3, self.size, self.size))
        mask = torch.zeros(self.k, dtype=torch.bool)
        for slot, data in enumerate(crops):
            faces[slot] = decode_image(data, self.size)
            mask[slot] = True
        item["faces"] = faces
        item["face_mask"] = mask
        return item


def select_faces(faces: pl.DataFrame, k: int) -> dict[str, list[bytes]]:
    """key -> up to k JPEGs: best crop per frame, frames evenly spaced."""
    best = (
        faces.filter(pl.col("key").is_not_null())
        .sort("score", descending=True)
        .unique(subset=["key", "frame_index"], keep="first", maintain_order=True)
        .sort("key", "frame_index")
    )
    out: dict[str, list[bytes]] = {}
    for group in best.partition_by("key"):
        images = group["image"].to_list()
        out[str(group["key"][0])] = [images[i] for i in evenly_spaced(len(images), k)]
    return out


def collate_fusion(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return collate_text(items)


def text_datasets(
    cfg: Mapping[str, Any], paths: Mapping[str, Sequence[str | Path]], tokenizer: Any
) -> dict[str, TextDataset]:
    return {split: TextDataset(read_shards(paths[split]), cfg, tokenizer) for split in paths}


def fusion_datasets(
    cfg: Mapping[str, Any],
    text_paths: Mapping[str, Sequence[str | Path]],
    face_paths: Mapping[str, Sequence[str | Path]],
    tokenizer: Any,
) -> dict[str, FusionDataset]:
    out = {}
    for split, paths in text_paths.items():
        faces = read_shards(face_paths[split]) if face_paths.get(split) else None
        out[split] = FusionDataset(read_shards(paths), faces, cfg, tokenizer)
    return out

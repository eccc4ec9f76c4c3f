"""Datasets over MELD text shards (and text + faces shards for fusion).

Text is tokenized once at construction; items hold unpadded token ids and the
collate functions pad each batch to its own longest sequence (dynamic padding);
``lengths`` lets the training loop batch similar lengths together (see
crossemotion.datasets.buckets), which is what keeps CPU fine-tuning affordable.

Dialogue context. ``context: N`` takes the N previous turns of the utterance's
dialogue, ``future: M`` the M next ones, and ``speakers`` (default true) puts
each turn's speaker name first ("Ross: We were on a break!"), the target's
own turn included. One model input is

    [CLS] past turns [SEP] target turn [SEP] future turns [SEP]

with token type 1 on the target turn and its [SEP] and 0 elsewhere; a side
with no turns is left out with its [SEP]. The target is marked by the segment
(token type) rather than by marker tokens: BERT-family encoders were
pretrained with two segments, so type 1 has a trained embedding, whereas the
vocabulary's spare tokens ([unused0]...) never occurred in pretraining and
their embeddings would have to be learnt from MELD's 10k utterances; [SEP]
already exists and bounds the target on both sides. Turns within the past or
future are joined by a space, their speaker names marking where a turn starts.
A model without context (N = M = 0) gets the plain single-segment form
[CLS] target [SEP] with token type 0, as in pretraining.

Truncation keeps the target whole (it is cut only when it alone exceeds
``max_length``) and cuts the context from its far end: the past loses its
oldest tokens, the future its latest ones. When both sides do not fit, the
past gets at least half of the room left by the target (more when the future
needs less), the future the rest.

``encode_dialogue`` is the one formatting function: the datasets call it for
every utterance and ``preprocess_text`` (inference, serving) for requests of
the form ``{"text", "speaker", "context": [{"speaker", "text"}...],
"future": [...]}``, so a served model sees what it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from crossemotion.codec import pil_face_tensor
from crossemotion.datasets.shards import (
    classes_of,
    label_indices,
    meta_frame,
    read_shards,
    task_labels,
)
from crossemotion.model_config import FusionInputConfig, TextInputConfig


@dataclass(frozen=True)
class Turn:
    """One utterance of a dialogue: its speaker (may be unknown) and text."""

    speaker: str | None
    text: str

    def render(self, speakers: bool) -> str:
        return f"{self.speaker}: {self.text}" if speakers and self.speaker else self.text


@dataclass(frozen=True)
class DialogueWindow:
    """The target turn with the turns before it (oldest first) and after it."""

    target: Turn
    past: tuple[Turn, ...] = ()
    future: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class DialogueFormat:
    """How a model turns a dialogue window into tokens (its config's keys)."""

    past: int = TextInputConfig.context
    future: int = TextInputConfig.future
    speakers: bool = TextInputConfig.speakers
    max_length: int = TextInputConfig.max_length

    @classmethod
    def from_cfg(cls, cfg: TextInputConfig) -> DialogueFormat:
        fmt = cls(
            past=cfg.context, future=cfg.future, speakers=cfg.speakers, max_length=cfg.max_length
        )
        if fmt.past < 0 or fmt.future < 0:
            raise ValueError(f"context and future must be >= 0, got {fmt.past} and {fmt.future}")
        if fmt.max_length < 3:
            raise ValueError(f"max_length must be at least 3, got {fmt.max_length}")
        return fmt

    @property
    def uses_context(self) -> bool:
        return self.past > 0 or self.future > 0


def _turn(value: Any) -> Turn:
    if isinstance(value, Turn):
        return value
    if isinstance(value, str):
        return Turn(None, value)
    if isinstance(value, Mapping) and isinstance(value.get("text"), str):
        speaker = value.get("speaker")
        return Turn(str(speaker) if speaker else None, value["text"])
    raise ValueError(f"a dialogue turn is a string or {{'speaker', 'text'}}, not {value!r}")


def window_of(unit: Any) -> DialogueWindow:
    """An inference unit as a dialogue window.

    A unit is an utterance string, a ``DialogueWindow``, or a mapping with
    ``text`` and optional ``speaker``, ``context`` (previous turns, oldest
    first) and ``future`` (next turns), each turn ``{"speaker", "text"}`` or a
    string. Other keys (fusion's ``images``) are ignored.
    """
    if isinstance(unit, DialogueWindow):
        return unit
    if isinstance(unit, str):
        return DialogueWindow(Turn(None, unit))
    if isinstance(unit, Mapping):
        target = _turn(unit)
        return DialogueWindow(
            target,
            tuple(_turn(t) for t in unit.get("context") or ()),
            tuple(_turn(t) for t in unit.get("future") or ()),
        )
    raise ValueError(f"a text unit is a string or a mapping with 'text', not {type(unit).__name__}")


def dialogue_windows(frame: pl.DataFrame, past: int, future: int) -> list[DialogueWindow]:
    """Per row of ``frame`` (in its order): its turn with up to ``past``/``future`` neighbours.

    Neighbours come from the same dialogue, ordered by ``utterance_id``; rows
    of other dialogues never leak in.
    """
    out: list[DialogueWindow | None] = [None] * frame.height
    rows = frame.select("dialogue_id", "utterance_id", "speaker", "text").with_row_index("_row")
    for group in rows.sort("dialogue_id", "utterance_id").partition_by(
        "dialogue_id", maintain_order=True
    ):
        turns = [
            Turn(str(s) if s else None, str(t or ""))
            for s, t in zip(group["speaker"], group["text"], strict=True)
        ]
        for pos, row in enumerate(group["_row"]):
            out[row] = DialogueWindow(
                turns[pos],
                tuple(turns[max(0, pos - past) : pos]) if past else (),
                tuple(turns[pos + 1 : pos + 1 + future]) if future else (),
            )
    return [w for w in out if w is not None]


def split_room(room: int, n_past: int, n_future: int) -> tuple[int, int]:
    """Tokens of past and future context that fit in ``room`` (each kept side costs a [SEP]).

    Both fit: all of both. Otherwise the past gets at least half the room
    (the odd token included), or more when the future needs less; room for
    one side only goes to the past.
    """
    want_p = n_past + 1 if n_past else 0
    want_f = n_future + 1 if n_future else 0
    if want_p + want_f <= room:
        return n_past, n_future
    give_p = min(want_p, max(room - room // 2, room - want_f))
    give_f = min(want_f, room - give_p)
    # a side worth keeping holds at least one token besides its [SEP]; when
    # both cannot, one side takes all the room, the past first
    if give_p < 2 or give_f < 2:
        if want_p and room >= 2 and (give_p >= 2 or give_f < 2):
            give_p, give_f = min(want_p, room), 0
        else:
            give_p, give_f = 0, min(want_f, room)
    return (give_p - 1 if give_p >= 2 else 0), (give_f - 1 if give_f >= 2 else 0)


TokenIds = Callable[[str], list[int]]


def token_ids_for(tokenizer: Any) -> TokenIds:
    """Text -> word-piece ids without special tokens, memoised per call site.

    WordPiece splits on whitespace first, so joining turns by a space and
    concatenating their ids gives the ids of the joined text: each distinct
    turn is tokenized once however many windows it appears in.
    """
    memo: dict[str, list[int]] = {}

    def ids(text: str) -> list[int]:
        if text not in memo:
            memo[text] = list(tokenizer.encode(text, add_special_tokens=False))
        return memo[text]

    return ids


def encode_dialogue(
    tokenizer: Any, window: DialogueWindow, fmt: DialogueFormat, ids: TokenIds | None = None
) -> dict[str, list[int]]:
    """Token ids and token types of one window in the layout of this module's docstring.

    Built by hand (BERT layout) because transformers 5 tokenizers no longer
    expose build_inputs_with_special_tokens and cutting a segment from its far
    end is not a built-in truncation strategy.
    """
    ids = ids or token_ids_for(tokenizer)
    cls, sep = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
    target = ids(window.target.render(fmt.speakers))[: fmt.max_length - 2]
    if not fmt.uses_context:
        plain = [cls, *target, sep]
        return {"input_ids": plain, "token_type_ids": [0] * len(plain)}
    past_turns = window.past[max(0, len(window.past) - fmt.past) :] if fmt.past else ()
    future_turns = window.future[: fmt.future]
    past = [i for t in past_turns for i in ids(t.render(fmt.speakers))]
    future = [i for t in future_turns for i in ids(t.render(fmt.speakers))]
    keep_p, keep_f = split_room(fmt.max_length - 2 - len(target), len(past), len(future))
    first = [cls, *past[len(past) - keep_p :], sep] if keep_p else [cls]
    middle = [*target, sep]
    last = [*future[:keep_f], sep] if keep_f else []
    return {
        "input_ids": first + middle + last,
        "token_type_ids": [0] * len(first) + [1] * len(middle) + [0] * len(last),
    }


def preprocess_text(
    units: Sequence[Any], cfg: TextInputConfig, tokenizer: Any
) -> dict[str, Tensor]:
    """Raw units (utterances or dialogue windows, see ``window_of``) -> a padded model batch.

    The inference hook: ``model(preprocess_text(["Oh my God!"], cfg, tok))``.
    """
    fmt = DialogueFormat.from_cfg(cfg)
    ids = token_ids_for(tokenizer)
    items = [encode_dialogue(tokenizer, window_of(u), fmt, ids) for u in units]
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


class TextDataset(Dataset):
    """One item per utterance: token ids, token types and the label index.

    The label is the config's ``task`` class (emotion or MELD's sentiment).
    """

    def __init__(self, frame: pl.DataFrame, cfg: TextInputConfig, tokenizer: Any) -> None:
        frame = task_labels(frame.sort("dialogue_id", "utterance_id"), cfg.task)
        self.format = DialogueFormat.from_cfg(cfg)
        windows = dialogue_windows(frame, self.format.past, self.format.future)
        ids = token_ids_for(tokenizer)
        self.encoded = [encode_dialogue(tokenizer, w, self.format, ids) for w in windows]
        self.classes = classes_of(cfg)
        self.labels = label_indices(frame["label"].to_list(), self.classes)
        # token counts, for length-bucketed batches
        self.lengths = [len(e["input_ids"]) for e in self.encoded]
        self.meta = meta_frame(frame, self.classes)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        enc = self.encoded[index]
        return {
            "input_ids": torch.tensor(enc["input_ids"], dtype=torch.long),
            "token_type_ids": torch.tensor(enc["token_type_ids"], dtype=torch.long),
            "label": torch.tensor(int(self.labels[index]), dtype=torch.long),
        }


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
        cfg: FusionInputConfig,
        tokenizer: Any,
    ) -> None:
        self.text = TextDataset(frame, cfg, tokenizer)
        self.meta = self.text.meta
        self.classes = self.text.classes
        self.labels = self.text.labels
        # the text's token count: faces add a fixed cost per item
        self.lengths = self.text.lengths
        self.k = cfg.faces
        self.size = cfg.size
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
            faces[slot] = pil_face_tensor(data, self.size)
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
    cfg: TextInputConfig, paths: Mapping[str, Sequence[str | Path]], tokenizer: Any
) -> dict[str, TextDataset]:
    return {split: TextDataset(read_shards(paths[split]), cfg, tokenizer) for split in paths}


def fusion_datasets(
    cfg: FusionInputConfig,
    text_paths: Mapping[str, Sequence[str | Path]],
    face_paths: Mapping[str, Sequence[str | Path]],
    tokenizer: Any,
) -> dict[str, FusionDataset]:
    out = {}
    for split, paths in text_paths.items():
        faces = read_shards(face_paths[split]) if face_paths.get(split) else None
        out[split] = FusionDataset(read_shards(paths), faces, cfg, tokenizer)
    return out

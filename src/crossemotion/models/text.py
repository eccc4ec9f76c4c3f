"""``text``: a BERT-family encoder + pooling + dropout + linear head.

Config: ``encoder`` (``minilm`` or a Hugging Face name/path; with
``pretrained_fallback: random`` an uncached ``bert-base-uncased`` becomes a
random-init model of its size, see crossemotion.models.encoders), ``pooling``
(``cls``, ``mean`` over the attention mask, or ``target``: mean over the target
turn's tokens, see ``pool``), ``dropout``, ``freeze`` (train
the head only), ``max_length``, ``context`` and ``future`` (previous and next
turns of the dialogue) and ``speakers`` (speaker names on the turns; see
crossemotion.datasets.text for the input layout). ``head_lr`` sets the head's learning rate
(default 20x ``lr``) and ``layer_decay`` the encoder layers' (see
``layerwise_groups``) for frameworks that honour ``param_groups``;
``reinit_layers`` re-initialises the encoder's top layers (see
``reinit_top_layers``); ``freeze_layers`` trains only the layers above that
many (see crossemotion.models.frozen_layers). Defaults: ``TextConfig``.

A trained model's checkpoint embeds its encoder's architecture and tokenizer
(``embedded_encoder``; crossemotion.checkpoint), so inference builds the text
branch of ``text`` and ``fusion`` from model.pt alone.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from crossemotion.datasets import text as text_data
from crossemotion.model_config import TextInputConfig
from crossemotion.models.backbones import FALLBACK_ERROR, pretrained_fallback
from crossemotion.models.encoders import encoder_width, load_text_encoder, load_tokenizer
from crossemotion.models.frozen_layers import (
    BottomCache,
    bottom_to_eval,
    cached_forward,
    encoder_layers,
    freeze_bottom,
)
from crossemotion.models.registry import ModelSpec, ShardInputs, register

POOLINGS = ("mean", "cls", "target")


def pool(hidden: Tensor, mask: Tensor, how: str, token_types: Tensor | None = None) -> Tensor:
    """``cls``: the first token; ``mean``: every token of the attention mask;
    ``target``: the target turn's tokens only (token type 1), so context turns
    inform the target's states without outnumbering them in the average; a row
    without context (all type 0) falls back to ``mean``."""
    if how == "cls":
        return hidden[:, 0]
    if how == "target" and token_types is not None:
        target = mask * (token_types == 1)
        mask = torch.where(target.any(1, keepdim=True), target, mask)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TextEncoder(nn.Module):
    """Encoder returning (token states [B, L, H], pooled [B, H])."""

    def __init__(
        self,
        name: str,
        pooling: str = "mean",
        freeze: bool = False,
        fallback: str = FALLBACK_ERROR,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if freeze and freeze_layers:
            raise ValueError(
                f"freeze_layers ({freeze_layers}) with the whole text encoder frozen: "
                "set one of them"
            )
        self.encoder = load_text_encoder(name, fallback)
        self.pooling = pooling
        self.width = encoder_width(self.encoder)
        if freeze:
            self.encoder.requires_grad_(False)
        self.freeze_layers = freeze_layers
        if freeze_layers:
            freeze_bottom(self.encoder, freeze_layers)
            bottom_to_eval(self.encoder, freeze_layers)
        # set by frozen_layers.frozen_layer_cache while training
        self.bottom_cache: BottomCache | None = None

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.freeze_layers:
            bottom_to_eval(self.encoder, self.freeze_layers)
        return self

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        if self.bottom_cache is not None:
            hidden = cached_forward(self.encoder, self.freeze_layers, self.bottom_cache, kwargs)
        else:
            hidden = self.encoder(**kwargs).last_hidden_state
        pooled = pool(hidden, batch["attention_mask"], self.pooling, batch.get("token_type_ids"))
        return hidden, pooled


@dataclass(frozen=True, kw_only=True)
class TextConfig(TextInputConfig):
    # the pretrained encoder's step; the fresh head's is ``head_lr``
    lr: float = 5e-5
    # train the head only
    freeze: bool = False
    dropout: float = 0.1
    # None: 20 x lr (the fresh head learns faster than the pretrained encoder)
    head_lr: float | None = None
    # layer-wise lr decay: each encoder layer trains at this factor times the
    # one above (lower layers hold general features worth keeping); 1 = one lr
    layer_decay: float = 1.0
    # top encoder layers re-initialised before fine-tuning (0 = none)
    reinit_layers: int = 0

    @property
    def head_learning_rate(self) -> float:
        return self.head_lr if self.head_lr is not None else 20 * self.lr


class TextClassifier(nn.Module):
    def __init__(self, cfg: TextConfig, num_classes: int) -> None:
        super().__init__()
        self.text = TextEncoder(
            cfg.encoder,
            pooling=cfg.pooling,
            freeze=cfg.freeze,
            fallback=pretrained_fallback(cfg),
            freeze_layers=cfg.freeze_layers,
        )
        if cfg.reinit_layers:
            depth = len(encoder_layers(self.text.encoder))
            if cfg.freeze_layers and cfg.freeze_layers + cfg.reinit_layers > depth:
                # a redrawn layer that is also frozen would stay random
                raise ValueError(
                    f"reinit_layers ({cfg.reinit_layers}) and freeze_layers "
                    f"({cfg.freeze_layers}) overlap: together at most {depth} layers"
                )
            reinit_top_layers(self.text.encoder, cfg.reinit_layers)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.text.width, num_classes)
        self.head_lr = cfg.head_learning_rate
        self.layer_decay = cfg.layer_decay

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        _, pooled = self.text(batch)
        return self.head(self.dropout(pooled))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Encoder at ``lr`` (its lower layers decayed by ``layer_decay``), the
        fresh head at ``head_lr``; the first group is the one at ``lr``."""
        groups = layerwise_groups(self.text.encoder, lr, self.layer_decay)
        return [*groups, {"params": list(self.head.parameters()), "lr": self.head_lr}]


def reinit_top_layers(encoder: nn.Module, count: int) -> None:
    """Re-initialise the top ``count`` layers of a BERT-style encoder as BERT
    initialises them: linear weights ~ N(0, ``initializer_range``) with zero
    biases, layer norms at (1, 0). Zhang et al. (2021, "Revisiting few-sample
    BERT fine-tuning") find the top layers' pretraining-specific weights a poor
    start for a small labelled set. Done by hand because transformers' own
    ``_init_weights`` skips tensors it marked as loaded from the checkpoint."""
    layers = encoder_layers(encoder)
    if not 0 < count <= len(layers):
        raise ValueError(f"reinit_layers must be in 1..{len(layers)}, got {count}")
    std = float(encoder.config.initializer_range)
    with torch.no_grad():
        for module in layers[len(layers) - count :].modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()


_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def layerwise_groups(encoder: nn.Module, lr: float, decay: float) -> list[dict[str, Any]]:
    """Parameter groups of a BERT-style encoder with layer-wise lr decay.

    Layer ``i`` of ``n`` (``...layer.{i}...`` in the parameter name) trains at
    ``lr * decay ** (n - 1 - i)``, the embeddings at ``lr * decay ** n``, and
    anything else (the unused pooler) at ``lr``. Frozen parameters are left
    out; ``decay == 1`` gives one group. Groups run from the top (``lr``) down.
    """
    named = [(name, p) for name, p in encoder.named_parameters() if p.requires_grad]
    if not named:
        return []
    if decay == 1.0:
        return [{"params": [p for _, p in named], "lr": lr}]
    layer = {name: int(m.group(1)) for name, _ in named if (m := _LAYER.search(name))}
    n = max(layer.values()) + 1 if layer else 0
    depth: dict[int, list[nn.Parameter]] = {}
    for name, p in named:
        # layers count down from the top; the embeddings sit below them all
        below = n - 1 - layer[name] if name in layer else n if "embeddings" in name else 0
        depth.setdefault(below, []).append(p)
    return [{"params": depth[d], "lr": lr * decay**d} for d in sorted(depth)]


@lru_cache(maxsize=4)
def _tokenizer(name: str, fallback: str) -> Any:
    return load_tokenizer(name, fallback)


def tokenizer_for(name: str | TextInputConfig) -> Any:
    """The tokenizer of an encoder name, or of a model config (``encoder`` + fallback)."""
    if isinstance(name, TextInputConfig):
        return _tokenizer(name.encoder, pretrained_fallback(name))
    return _tokenizer(name, FALLBACK_ERROR)


def embedded_encoder(model: nn.Module, cfg: TextInputConfig) -> dict[str, Any] | None:
    """What a checkpoint of ``model`` needs to rebuild its text encoder without the
    encoder's source (the weights are in its state dict): ``{"name", "config",
    "files"}``, the configured encoder name, the transformers config as a dict of
    plain values, and the tokenizer's files as saved by ``save_pretrained``, name ->
    bytes. None when ``model`` has no text encoder (``model.text``)."""
    text = getattr(model, "text", None)
    if not isinstance(text, TextEncoder):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_for(cfg).save_pretrained(tmp)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    return {
        "name": cfg.encoder,
        # through JSON: the checkpoint loads with weights_only, plain values only
        "config": json.loads(text.encoder.config.to_json_string(use_diff=False)),
        "files": files,
    }


def make_datasets(cfg: TextConfig, dataset: str, shards: ShardInputs) -> dict[str, Dataset]:
    if dataset != "meld":
        raise ValueError(f"the text model needs MELD utterances, not {dataset!r}")
    tokenizer = tokenizer_for(cfg)
    return dict(text_data.text_datasets(cfg, shards.text, tokenizer))


def preprocess_text(units: list[Any], cfg: TextInputConfig) -> dict[str, Tensor]:
    """Inference hook: utterances, or ``{"text", "speaker", "context", "future"}``
    dialogue windows (see text_data.window_of) -> batch dict for ``TextClassifier``."""
    tokenizer = tokenizer_for(cfg)
    units = [u if isinstance(u, Mapping) else str(u) for u in units]
    return text_data.preprocess_text(units, cfg, tokenizer)


@torch.no_grad()
def predict_texts(model: nn.Module, texts: list[Any], cfg: TextInputConfig) -> Tensor:
    """Class probabilities [N, number of classes] for raw utterances or dialogue windows."""
    model.eval()
    return model(preprocess_text(texts, cfg)).softmax(-1)


SPEC = register(
    ModelSpec(
        name="text",
        config=TextConfig,
        build=TextClassifier,
        make_datasets=make_datasets,
        preprocess=preprocess_text,
        collate=text_data.collate_text,
    )
)

"""Freezing a text encoder's bottom layers, and caching what they compute.

``freeze_layers: n`` trains only the top layers of a BERT-style encoder (the
embeddings and layers ``0..n-1`` frozen). The frozen part runs in eval mode
(no dropout), so its output for an input row is a pure function of the row:
during training it is computed once per distinct row and then read back, and
each later epoch costs only the top layers. That is what makes a 110M-parameter
encoder affordable on a 2-core CPU: MPNet-base with 3 of 12 layers trained ran
an epoch after the first in 250-260 s on MELD's 9,989 training utterances,
where full fine-tuning measured 5.3x MiniLM-L6's step time (about 70 minutes
a seed; docs/text-benchmark.md, section 15).

The cache stores each row's states at its attention-mask positions (so any
padding side and any batch composition read back the same values) and is only
live inside ``frozen_layer_cache`` (the training runner opens it around fitting
and evaluation); inference outside it computes every layer as usual. A cached
forward swaps the encoder's layer list for its top layers and replaces the
embeddings' output with the cached states, both only for the duration of the
call, so the module's parameters, state dict and copies are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer layers of a BERT-style Hugging Face encoder (BERT, MPNet)."""
    return encoder.encoder.layer


def freeze_bottom(encoder: nn.Module, count: int) -> None:
    """Stop gradients to everything of ``encoder`` below its top layers: the
    embeddings, layers ``0..count-1`` and anything the layers share (MPNet's
    relative position bias), which the bottom's output also depends on."""
    layers = encoder_layers(encoder)
    if not 0 < count < len(layers):
        raise ValueError(f"freeze_layers must be in 1..{len(layers) - 1}, got {count}")
    trained = {id(p) for layer in layers[count:] for p in layer.parameters()}
    for p in encoder.parameters():
        if id(p) not in trained:
            p.requires_grad_(False)


def bottom_to_eval(encoder: nn.Module, count: int) -> None:
    """Dropout off below the trained layers: their output must not vary by call."""
    encoder.embeddings.eval()
    for layer in encoder_layers(encoder)[:count]:
        layer.eval()


class BottomCache:
    """The frozen bottom's output per input row, keyed by the row's token ids."""

    def __init__(self) -> None:
        self.rows: dict[bytes, Tensor] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.rows)


def row_keys(batch: dict[str, Tensor]) -> list[bytes]:
    """One key per row: its token ids (and token types) at its mask positions."""
    mask = batch["attention_mask"].bool().cpu()
    parts = [batch["input_ids"].cpu()]
    if "token_type_ids" in batch:
        parts.append(batch["token_type_ids"].cpu())
    keys = []
    for i in range(mask.shape[0]):
        keys.append(b"|".join(p[i][mask[i]].numpy().tobytes() for p in parts))
    return keys


def cached_forward(
    encoder: nn.Module, count: int, cache: BottomCache, kwargs: dict[str, Tensor]
) -> Tensor:
    """``encoder(**kwargs).last_hidden_state``, reading the bottom ``count``
    layers' output from ``cache`` when every row is there, else computing it
    and storing every row."""
    mask = kwargs["attention_mask"].bool()
    keys = row_keys(kwargs)
    if all(k in cache.rows for k in keys):
        cache.hits += len(keys)
        return _top_forward(encoder, count, [cache.rows[k] for k in keys], mask, kwargs)
    cache.misses += len(keys)
    out = encoder(**kwargs, output_hidden_states=True)
    # hidden_states[0] is the embeddings' output, [i] the output of layer i - 1
    bottom = out.hidden_states[count].detach()
    for i, key in enumerate(keys):
        cache.rows[key] = bottom[i][mask[i]].clone()
    return out.last_hidden_state


def _top_forward(
    encoder: nn.Module, count: int, rows: list[Tensor], mask: Tensor, kwargs: dict[str, Tensor]
) -> Tensor:
    states = rows[0].new_zeros(*mask.shape, rows[0].shape[-1])
    for i, row in enumerate(rows):
        states[i][mask[i]] = row

    def embeddings_output(_module: nn.Module, _args: Any, _output: Any) -> Tensor:
        return states

    inner = encoder.encoder
    layers = inner.layer
    handle = encoder.embeddings.register_forward_hook(embeddings_output)
    inner.layer = nn.ModuleList(layers[count:])
    try:
        return encoder(**kwargs).last_hidden_state
    finally:
        inner.layer = layers
        handle.remove()


@contextmanager
def frozen_layer_cache(model: nn.Module) -> Iterator[list[BottomCache]]:
    """Cache the frozen bottom of every text encoder in ``model`` that freezes
    layers, for the duration of the block (training and its evaluations);
    yields the caches (empty list: nothing to cache)."""
    encoders = [m for m in model.modules() if getattr(m, "freeze_layers", 0)]
    caches = [BottomCache() for _ in encoders]
    for module, cache in zip(encoders, caches, strict=True):
        module.bottom_cache = cache
    try:
        yield caches
    finally:
        for module in encoders:
            module.bottom_cache = None

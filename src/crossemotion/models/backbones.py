"""torchvision backbones with offline-only pretrained weights.

``weights`` in a model config is a torchvision weights enum member name
(``IMAGENET1K_V1``, ``IMAGENET1K_V2``, ``DEFAULT``) or null for random init.
Nothing here downloads: a weights file missing from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) fails before the model is built, with a
message that says which file to put where, instead of a network error deep
inside a training job — unless the model's config says
``pretrained_fallback: random``, in which case the same architecture is built
with random initialisation and a warning names the missing file. The same key
governs the Hugging Face text encoders (crossemotion.models.encoders).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from crossemotion.model_config import ModelConfig

log = logging.getLogger(__name__)

# `pretrained_fallback` values: what to do when pretrained weights are not cached
FALLBACK_ERROR = "error"
FALLBACK_RANDOM = "random"
FALLBACKS = (FALLBACK_ERROR, FALLBACK_RANDOM)


class WeightsNotFoundError(RuntimeError):
    """Requested pretrained weights are not in the local torch hub cache."""


def pretrained_fallback(cfg: ModelConfig) -> str:
    """A model config's ``pretrained_fallback``, validated."""
    value = cfg.pretrained_fallback
    if value not in FALLBACKS:
        raise ValueError(
            f"pretrained_fallback must be one of {', '.join(FALLBACKS)}, not {value!r}"
        )
    return str(value)


def resolve_weights(arch: str, weights: str | None) -> Any:
    """The torchvision weights enum member for ``weights`` (None for random init)."""
    if weights in (None, "", "none", "null"):
        return None
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown torchvision architecture {arch!r}") from exc
    try:
        return enum[str(weights)]
    except KeyError:
        names = ", ".join(m.name for m in enum)
        raise ValueError(
            f"unknown weights {weights!r} for {arch}; choose one of: {names} (or null)"
        ) from None


def cached_weights_file(member: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name


def torchvision_model(
    arch: str, weights: str | None = None, fallback: str = FALLBACK_ERROR
) -> nn.Module:
    """``torchvision.models.get_model`` that never downloads.

    ``fallback="random"``: uncached weights mean random init (with a warning)
    instead of ``WeightsNotFoundError``.
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"pretrained_fallback must be one of {', '.join(FALLBACKS)}")
    member = resolve_weights(arch, weights)
    if member is not None:
        # torchvision's loader downloads whatever is missing from this exact
        # path, so checking it first is what keeps the run offline
        path = cached_weights_file(member)
        if not path.is_file():
            if fallback == FALLBACK_RANDOM:
                log.warning(
                    "pretrained weights %s.%s are not in the torch hub cache (expected %s, "
                    "under $TORCH_HOME); pretrained_fallback: random, so %s starts from "
                    "random initialisation",
                    arch, member.name, path, arch,
                )  # fmt: skip
                member = None
            else:
                raise WeightsNotFoundError(
                    f"pretrained weights {arch}.{member.name} are not in the local torch hub "
                    f"cache: expected {path}. This workflow does not download weights; "
                    f"pre-populate the cache ($TORCH_HOME, default ~/.cache/torch) once on a "
                    f'machine with network access (python -c "import torchvision; '
                    f"torchvision.models.get_model('{arch}', weights='{member.name}')\") and "
                    f"copy it here or point $TORCH_HOME at it, or set `weights: null` (or "
                    f"`pretrained_fallback: random`) for random initialisation."
                )
    try:
        return torchvision.models.get_model(arch, weights=member)
    except ValueError as exc:
        raise ValueError(f"unknown torchvision architecture {arch!r}: {exc}") from exc


def feature_extractor(
    arch: str, weights: str | None = None, fallback: str = FALLBACK_ERROR
) -> tuple[nn.Module, int]:
    """A classification backbone with its head removed -> (module, feature width)."""
    net = torchvision_model(arch, weights, fallback)
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(net, attr, None)
        if head is None:
            continue
        width = _in_features(head)
        setattr(net, attr, nn.Identity())
        return net, width
    raise ValueError(f"do not know how to remove the classifier of {arch!r}")


def _in_features(head: nn.Module) -> int:
    if isinstance(head, nn.Linear):
        return int(head.in_features)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"classifier {type(head).__name__} has no Linear layer")
    return int(linears[0].in_features)

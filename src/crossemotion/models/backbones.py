"""torchvision backbones with offline-only pretrained weights.

``weights`` in a model config is a torchvision weights enum member name
(``IMAGENET1K_V1``, ``IMAGENET1K_V2``, ``DEFAULT``) or null for random init.
Nothing here downloads: a weights file missing from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) fails before the model is built, with a
message that says which file to put where, instead of a network error deep
inside a training job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn


class WeightsNotFoundError(RuntimeError):
    """Requested pretrained weights are not in the local torch hub cache."""


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


def torchvision_model(arch: str, weights: str | None = None) -> nn.Module:
    """``torchvision.models.get_model`` that never downloads."""
    member = resolve_weights(arch, weights)
    if member is not None:
        path = cached_weights_file(member)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"pretrained weights {arch}.{member.name} are not in the local torch hub "
                f"cache: expected {path}. This workflow does not download weights; "
                f"pre-populate the cache once on a machine with network access "
                f"(python -c \"import torchvision; torchvision.models.get_model('{arch}', "
                f"weights='{member.name}')\") and copy it here or point $TORCH_HOME at it, "
                f"or set `weights: null` for random initialisation."
            )
    try:
        return torchvision.models.get_model(arch, weights=member)
    except ValueError as exc:
        raise ValueError(f"unknown torchvision architecture {arch!r}: {exc}") from exc


def feature_extractor(arch: str, weights: str | None = None) -> tuple[nn.Module, int]:
    """A classification backbone with its head removed -> (module, feature width)."""
    net = torchvision_model(arch, weights)
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

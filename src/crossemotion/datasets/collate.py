"""Collate functions of the image datasets (the text ones live with crossemotion.datasets.text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from crossemotion.codec import normalize

# a DataLoader's collate_fn (None: the default collation)
Collate = Callable[[list[Any]], Any] | None


def stack_collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack items; uint8 images/clips are normalised here, once per batch.

    Items stay uint8 up to this point: stacking moves a quarter of the bytes
    of float32, and one vectorised normalisation per batch replaces a handful
    of temporaries per item (the per-item version made the in-memory Parquet
    loader no faster than reading JPEG files).
    """
    batch = {key: torch.stack([it[key] for it in items]) for key in items[0]}
    for key in ("image", "frames"):
        if key in batch and batch[key].dtype == torch.uint8:
            batch[key] = normalize(batch[key])
    return batch

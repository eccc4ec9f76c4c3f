"""Inference latency: ms per unit (video, image, utterance) after warm-up."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from crossemotion.datasets.collate import Collate
from crossemotion.device import autocast, to_device


def _batch(ds: Dataset, collate: Any, n: int) -> dict[str, Any]:
    items = [ds[i % len(ds)] for i in range(n)]
    if collate is not None:
        return collate(items)
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@torch.no_grad()
def _ms_per_unit(
    model: nn.Module, batch: dict[str, Any], device: torch.device, warmup: int, repeats: int
) -> float:
    n = int(batch["label"].shape[0])
    batch = to_device(batch, device)
    for _ in range(warmup):
        with autocast(device):
            model(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        with autocast(device):
            model(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000.0 / (repeats * n)


def measure_inference(
    model: nn.Module,
    ds: Dataset,
    collate: Collate,
    unit: str,
    batch_size: int,
    device: torch.device,
    warmup: int = 2,
    repeats: int = 5,
) -> dict[str, Any]:
    """Model forward time on already-decoded inputs (decoding is not included).

    Batch 1 and ``batch_size`` are each run ``warmup`` times untimed (first
    calls pay allocation and kernel selection), then ``repeats`` times timed.
    """
    model.eval().to(device)
    batch_size = max(1, min(batch_size, len(ds)))
    return {
        "unit": unit,
        "ms_per_unit_batch1": round(
            _ms_per_unit(model, _batch(ds, collate, 1), device, warmup, repeats), 3
        ),
        "ms_per_unit_batch": round(
            _ms_per_unit(
                model, _batch(ds, collate, batch_size), device, warmup, max(1, repeats // 2)
            ),
            3,
        ),
        "batch_size": batch_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "includes_decoding": False,
    }

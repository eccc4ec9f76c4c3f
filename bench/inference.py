"""Inference latency at batch 1 on CPU (2 threads), as ``crossemotion serve`` runs it.

cnn_lstm (ResNet-18 frames + LSTM) and c3d at T=16 frames of 112x112 (ms per
video), resnet50 at 224x224 (ms per image), random weights from
``build_model``: fp32, eager, ``torch.inference_mode`` — the path
``crossemotion.inference.Predictor`` (and so the API server) takes on a CPU.
A torch.profiler table shows where cnn_lstm's time goes.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from bench.common import write_result
from crossemotion.models.registry import build_model

MODELS: dict[str, tuple[dict[str, Any], tuple[int, ...], str]] = {
    "cnn_lstm": (
        {"backbone": "resnet18", "weights": None, "hidden": 256, "frames": 16, "size": 112},
        (16, 3, 112, 112), "video",
    ),
    "c3d": ({"channels": [64, 128, 256, 256], "frames": 16, "size": 112}, (16, 3, 112, 112),
            "video"),
    "resnet50": ({"arch": "resnet50", "weights": None, "size": 224}, (3, 224, 224), "image"),
}  # fmt: skip
TARGET_MS = 87.0


def _key(name: str) -> str:
    return "image" if MODELS[name][2] == "image" else "frames"


def _ms(model: torch.nn.Module, batch: dict[str, Any], repeats: int) -> float:
    """Median wall time of one forward pass, after two warm-up passes."""
    with torch.inference_mode():
        for _ in range(2):
            model(batch)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def _profile(model: torch.nn.Module, batch: dict[str, Any]) -> str:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            model(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def run(repeats: int = 7) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    results: dict[str, Any] = {}
    profile = ""
    for name, (cfg, shape, unit) in MODELS.items():
        model = build_model(name, cfg, 7).eval()
        batch = {_key(name): torch.randn(1, *shape)}
        results[name] = {"unit": unit, f"ms_per_{unit}": _ms(model, batch, repeats)}
        if name == "cnn_lstm":
            profile = _profile(model, batch)
    ms = results["cnn_lstm"]["ms_per_video"]
    payload = {
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "models": results,
        "note": "random weights and inputs at the sizes above; fp32 eager, as the API server "
        "and `crossemotion predict` run on a CPU. The cnn_lstm profile (top ops by self CPU "
        "time) is in results/bench/inference.json under profile.",
        "profile": profile,
        "checks": [
            {"target": f"cnn_lstm <= {TARGET_MS:g} ms per video (batch 1, fp32 eager as served)",
             "measured": ms, "met": ms <= TARGET_MS},
        ],
    }  # fmt: skip
    write_result("inference", payload)
    return payload

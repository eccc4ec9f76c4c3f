"""Inference latency at batch 1 on CPU (2 threads), every optimize mode side by side.

cnn_lstm (ResNet-18 frames + LSTM) and c3d at T=16 frames of 112x112 (ms per
video), resnet50 at 224x224 (ms per image), random weights from
``build_model``. Each optimized variant is compared with fp32 eager on the
same random inputs: argmax agreement and max absolute probability difference.
A torch.profiler table shows where cnn_lstm's time goes.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import torch

from bench.common import write_result
from crossemotion.models.registry import build_model
from crossemotion.optimize import has_native_bf16, optimize_for_inference

MODELS: dict[str, tuple[dict[str, Any], tuple[int, ...], str]] = {
    "cnn_lstm": (
        {"backbone": "resnet18", "weights": None, "hidden": 256, "frames": 16, "size": 112},
        (16, 3, 112, 112), "video",
    ),
    "c3d": ({"channels": [64, 128, 256, 256], "frames": 16, "size": 112}, (16, 3, 112, 112),
            "video"),
    "resnet50": ({"arch": "resnet50", "weights": None, "size": 224}, (3, 224, 224), "image"),
}  # fmt: skip
MODES = ["none", "channels_last", "jit"] + (["bf16"] if has_native_bf16() else [])
TARGET_MS = 87.0


def _key(name: str) -> str:
    return "image" if MODELS[name][2] == "image" else "frames"


def _ms(model: torch.nn.Module, batch: dict[str, Any], repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(2):
            model(batch)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def _compare(ref: torch.nn.Module, opt: torch.nn.Module, name: str, n: int = 8) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    shape = MODELS[name][1]
    agree, diff = 0, 0.0
    with torch.inference_mode():
        for _ in range(n):
            batch = {_key(name): torch.randn(1, *shape, generator=gen)}
            p, q = ref(batch).softmax(-1), opt(batch).float().softmax(-1)
            agree += int(p.argmax() == q.argmax())
            diff = max(diff, float((p - q).abs().max()))
    return {"argmax_agreement": agree / n, "max_prob_diff": diff}


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
    profiles = {}
    for name, (cfg, shape, unit) in MODELS.items():
        base = build_model(name, cfg, 7).eval()
        batch = {_key(name): torch.randn(1, *shape)}
        row: dict[str, Any] = {"unit": unit}
        for mode in MODES:
            model = optimize_for_inference(copy.deepcopy(base), batch, mode)
            row[f"ms_per_{unit}_{mode}"] = _ms(model, batch, repeats)
            if mode != "none":
                row[f"vs_fp32_{mode}"] = _compare(base, model, name)
            if name == "cnn_lstm":
                profiles[mode] = _profile(model, batch)
        best = min(MODES, key=lambda m: row[f"ms_per_{unit}_{m}"])
        row["best_mode"] = best
        row[f"ms_per_{unit}_best"] = row[f"ms_per_{unit}_{best}"]
        results[name] = row
    best_ms = results["cnn_lstm"]["ms_per_video_best"]
    best_mode = results["cnn_lstm"]["best_mode"]
    agree = results["cnn_lstm"].get(f"vs_fp32_{best_mode}", {}).get("argmax_agreement", 1.0)
    payload = {
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": has_native_bf16(),
        "models": results,
        "note": "Random weights; argmax agreement / max prob diff compare each mode with fp32 "
        "eager on the same random inputs. Profiles (top ops by self CPU time) per mode are "
        "in results/bench/inference.json under profiles.",
        "profiles": profiles,
        "checks": [
            {"target": f"cnn_lstm <= {TARGET_MS:g} ms per video (batch 1, best mode "
             f"{best_mode})", "measured": best_ms, "met": best_ms <= TARGET_MS},
            {"target": "optimized cnn_lstm agrees with fp32 (argmax, >= 99%)",
             "measured": agree, "met": agree >= 0.99},
        ],
    }  # fmt: skip
    write_result("inference", payload)
    return payload

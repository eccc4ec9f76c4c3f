"""API load benchmark: a bounded run against a real `crossemotion serve` (uvicorn).

300 requests at concurrency 8, alternating between /v1/predict/text and
/v1/predict/image (a demo frame with a face). Any non-200 answer fails the
benchmark. The models are the trained demo models under results/models when
both a text and a resnet50 model are there; otherwise real registry models
with random weights (serving cost does not depend on the weights).
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, write_result

REQUESTS = 300
CONCURRENCY = 8
TEXTS = [
    "Oh my God, I can't believe you did that!",
    "Okay. Fine. Whatever.",
    "We were on a break!",
    "That is so sweet, thank you.",
]
RANDOM_CONFIGS: dict[tuple[str, str], dict[str, Any]] = {
    ("resnet50", "ifeed"): {"arch": "resnet18", "weights": None, "size": 64},
    ("text", "meld"): {"encoder": "minilm", "max_length": 48, "context": 0, "pooling": "mean"},
}


def _trained_models() -> Path | None:
    root = ROOT / "results" / "models"
    has_text = (root / "text" / "meld" / "model.pt").is_file()
    has_face = any(root.glob("resnet50/*/model.pt"))
    return root if has_text and has_face else None


def _random_models(out: Path) -> Path:
    import torch

    from crossemotion import checkpoint
    from crossemotion.labels import EMOTIONS
    from crossemotion.models.registry import get_spec
    from crossemotion.training.runner import preprocess_info

    for (model, dataset), cfg in RANDOM_CONFIGS.items():
        spec = get_spec(model)
        torch.manual_seed(0)
        net = spec.build(spec.configure(cfg), len(EMOTIONS))
        checkpoint.save(out / model / dataset / "model.pt", {
            "format": 1, "model": model, "dataset": dataset, "config": cfg,
            "labels": list(EMOTIONS), "state_dict": checkpoint.cpu_state_dict(net),
            "preprocess": preprocess_info(spec, spec.configure(cfg)), "epoch": 0, "metrics": {},
        })  # fmt: skip
    return out


def _demo_frame(work: Path) -> bytes:
    exe = Path(sys.executable).parent / "crossemotion"
    subprocess.run([str(exe), "synth", "--out", str(work), "--train", "1", "--dev", "1",
                    "--test", "1", "--ifeed-train", "1", "--ifeed-test", "1"],
                   check=True, capture_output=True, cwd=ROOT)  # fmt: skip
    with tarfile.open(work / "MELD.Raw.tar.gz") as outer:
        inner = outer.extractfile("MELD.Raw/test.tar.gz").read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".mp4"))
        (work / "clip.mp4").write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return subprocess.run(["ffmpeg", "-v", "error", "-ss", "0.5", "-i", str(work / "clip.mp4"),
                           "-frames:v", "1", "-f", "image2pipe", "-c:v", "mjpeg", "-"],
                          check=True, capture_output=True).stdout  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(models: Path, work: Path, port: int) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "crossemotion"
    env = {**os.environ, "CROSSEMOTION_TMP_ROOT": str(work / "tmp")}
    log = (work / "server.log").open("w")
    proc = subprocess.Popen([str(exe), "serve", "--models", str(models), "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(work / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start within 300 s")


async def _load(url: str, frame: bytes) -> dict[str, Any]:
    sem = asyncio.Semaphore(CONCURRENCY)
    latencies: dict[str, list[float]] = {"text": [], "image": []}
    errors: list[str] = []

    async def one(i: int, client: httpx.AsyncClient) -> None:
        async with sem:
            t0 = time.perf_counter()
            if i % 2:
                kind = "image"
                r = await client.post("/v1/predict/image", files={"file": ("f.jpg", frame)})
            else:
                kind = "text"
                r = await client.post("/v1/predict/text", json={"text": TEXTS[i % len(TEXTS)]})
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                errors.append(f"{kind} {r.status_code}: {r.text[:200]}")
            latencies[kind].append(dt)

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        for i in range(4):  # warm-up: first calls build tokenizer caches
            await one(i, client)
        for values in latencies.values():
            values.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, client) for i in range(REQUESTS)))
        wall = time.perf_counter() - t0
    everything = latencies["text"] + latencies["image"]
    return {
        "requests": REQUESTS,
        "concurrency": CONCURRENCY,
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_seconds": round(wall, 3),
        "throughput_rps": round(REQUESTS / wall, 2),
        "latency_ms": {"all": _stats(everything), **{k: _stats(v) for k, v in latencies.items()}},
    }


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    if not ms:
        return {}

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]

    return {"n": len(ms), "p50": round(pick(0.5), 2), "p95": round(pick(0.95), 2),
            "max": round(ms[-1], 2), "mean": round(statistics.fmean(ms), 2)}  # fmt: skip


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        trained = _trained_models()
        models = trained or _random_models(work / "models")
        frame = _demo_frame(work / "demo")
        port = _free_port()
        proc = _start(models, work, port)
        try:
            url = f"http://127.0.0.1:{port}"
            loaded = httpx.get(f"{url}/v1/models").json()["models"]
            result = asyncio.run(_load(url, frame))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    payload = {
        "models": "trained (results/models)" if trained else "random weights (no trained models)",
        "loaded": [m["name"] for m in loaded],
        "server": "crossemotion serve, 1 uvicorn worker, default settings (max_concurrency 2, "
        "1 torch thread)",
        **result,
    }
    write_result("api", payload)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests failed: {result['error_samples']}")
    return payload


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

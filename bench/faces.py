"""Face bench: the detectors and the API's image endpoint, side by side in one run.

Detectors (``retinaface``, the default; ``yunet``; ``haar``): images/s on the
same 640x360 frames (the Gradio demo's example clip, decoded once; every frame
shows the demo's drawn faces), each measured in a fresh process so that the
thread settings that libraries read once (YuNet's OpenMP, OpenCV's pool) hold:

- ``threads_1``: one detector, one thread;
- ``threads_2``: one detector with two intra-op threads (RetinaFace's
  onnxruntime, YuNet's OpenMP, OpenCV's pool for Haar), one image at a time;
- ``workers_2``: two threads, each with its own one-thread detector, as the
  API's two batch workers run it (the throughput of both cores).

API: a real ``crossemotion serve`` (uvicorn, default settings: two batch
workers, one torch thread, micro-batches of up to 8) on 127.0.0.1 with a
config's face models, posted 640x360 JPEGs at concurrency 8: requests/s, p50
and p95. Once with the demo's (``config/demo.yaml``'s ``resnet50`` section:
ResNet-18 at 48 px, one model per dataset, ifeed and meld, as the workflow
trains them; the endpoint runs each on every face) and once with the real
config's (ResNet-50 at 224 px, likewise two).
Both carry random weights (no download, and a request's cost does not depend
on the weights): trained weights would answer other labels at the same speed.

    python -m bench.faces            # or: python -m bench.run faces
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api import _free_port, _start, _stats
from bench.common import ROOT, write_result

DETECTORS = ("retinaface", "yunet", "haar")
MODES = ("threads_1", "threads_2", "workers_2")
FRAMES = 24  # distinct frames of the example clip, cycled
DETECT_SECONDS = 4.0  # each detector/mode runs at least this long after a warm-up
CONCURRENCY = 8
# (name, config, batch size): the demo's models as served, the same without micro-
# batching (one image per batch), the real config's models
API_RUNS = (("demo", "demo", 8), ("demo_unbatched", "demo", 1), ("real", "real", 8))
API_REQUESTS = {"demo": 400, "demo_unbatched": 400, "real": 160}
API_WARMUP = 16
# the models' sections as the configs give them, less training-only keys
MODELS = {
    "demo": ("config/demo.yaml", {"weights": None}),
    "real": ("config/config.yaml", {"weights": None}),
}
TARGET_DETECT = 40.0  # images/s of the default detector on 2 threads
TARGET_RPS = 40.0
TARGET_P95_MS = 400.0


def frames_640x360(n: int = FRAMES) -> list[bytes]:
    """``n`` JPEGs (quality 90) of the demo example clip's 640x360 frames, spread over it."""
    import cv2

    from crossemotion.serving.examples import example_files

    clip = example_files().clip
    cap = cv2.VideoCapture(str(clip))
    decoded = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(bgr)
    cap.release()
    if not decoded or decoded[0].shape[:2] != (360, 640):
        raise RuntimeError(f"{clip}: expected 640x360 frames")
    step = max(1, len(decoded) // n)
    picked = decoded[::step][:n]
    return [cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            for bgr in picked]  # fmt: skip


# -- detectors (each mode in its own process) ------------------------------------------


def _detector_child(name: str, mode: str) -> dict[str, Any]:
    """Runs in a fresh process: one detector in one mode over the frames."""
    threads = 2 if mode == "threads_2" else 1
    os.environ["OMP_NUM_THREADS"] = str(threads)  # YuNet's OpenMP reads it on first load
    import cv2

    cv2.setNumThreads(threads)  # Haar's parallel_for pool
    from crossemotion.codec import decode_jpeg
    from crossemotion.inference import FaceStage

    images = [decode_jpeg(jpeg) for jpeg in frames_640x360()]
    stage = FaceStage.of(None, detector=name, threads=threads)
    workers = 2 if mode == "workers_2" else 1
    detectors = [stage.build_detector() for _ in range(workers)]
    found = [len(detectors[0].detect(im)) for im in images]  # warm-up, and the faces found
    counts = [0] * workers
    deadline = time.perf_counter() + DETECT_SECONDS

    def loop(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            detectors[k].detect(images[i % len(images)])
            counts[k] += 1
            i += workers

    t0, cpu0 = time.perf_counter(), time.process_time()
    pool = [threading.Thread(target=loop, args=(k,)) for k in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "images_per_s": round(sum(counts) / wall, 1),
        "images": sum(counts),
        "seconds": round(wall, 2),
        # CPU time per image: what an image costs whatever else shares the cores
        "cpu_ms_per_image": round(1000 * cpu / max(1, sum(counts)), 1),
        "frames_with_a_face": f"{sum(1 for n in found if n)}/{len(found)}",
        "faces_per_frame": round(sum(found) / len(found), 2),
    }


def detectors() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in DETECTORS:
        out[name] = {}
        for mode in MODES:
            proc = subprocess.run([sys.executable, "-m", "bench.faces", "--detector", name,
                                   "--mode", mode], capture_output=True, text=True, cwd=ROOT,
                                  check=False)  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"{name} {mode} failed: {proc.stderr[-2000:]}")
            out[name][mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {name} {mode}: {out[name][mode]['images_per_s']} images/s", flush=True)
    return out


# -- the API's image endpoint --------------------------------------------------------------


def face_checkpoint(out: Path, which: str) -> dict[str, Any]:
    """The face models of ``which`` config (its resnet50 section, one per dataset it
    names, as the workflow trains them: the image endpoint runs every face model on
    every face), random weights, no faces record (the workflow's faces defaults)."""
    import torch
    import yaml

    from crossemotion import checkpoint
    from crossemotion.labels import EMOTIONS
    from crossemotion.models.registry import get_spec
    from crossemotion.training.runner import preprocess_info

    path, overrides = MODELS[which]
    section = yaml.safe_load((ROOT / path).read_text())["models"]["resnet50"]
    cfg = {k: v for k, v in section.items() if k not in ("datasets",)} | overrides
    spec = get_spec("resnet50")
    typed = spec.configure(cfg)
    for seed, dataset in enumerate(section["datasets"]):
        torch.manual_seed(seed)
        net = spec.build(typed, len(EMOTIONS))
        checkpoint.save(out / "resnet50" / dataset / "model.pt", {
            "format": 1, "model": "resnet50", "dataset": dataset, "config": cfg,
            "labels": list(EMOTIONS), "state_dict": checkpoint.cpu_state_dict(net),
            "preprocess": preprocess_info(spec, typed), "epoch": 0, "metrics": {},
        })  # fmt: skip
    return {"config": path, "arch": cfg.get("arch"), "size": cfg.get("size"),
            "face_models": [f"resnet50/{d}" for d in section["datasets"]],
            "weights": "random (untrained)"}  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _post_images(url: str, frames: list[bytes], n: int, pid: int) -> dict[str, Any]:
    sem = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []
    errors: list[str] = []
    faces: list[int] = []
    detectors: set[str] = set()

    async def one(i: int, client: httpx.AsyncClient) -> None:
        async with sem:
            t0 = time.perf_counter()
            r = await client.post("/v1/predict/image",
                                  files={"file": (f"f{i}.jpg", frames[i % len(frames)],
                                                  "image/jpeg")})  # fmt: skip
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:200]}")
            else:
                body = r.json()
                faces.append(sum(f["detected"] for f in body["faces"]))
                detectors.add(f"{body['detector']} ({'aligned' if body['aligned'] else 'square'})")

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(one(i, client) for i in range(API_WARMUP)))
        latencies.clear()
        faces.clear()
        server0, client0 = _cpu_seconds(pid), time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, client) for i in range(n)))
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = _cpu_seconds(pid) - server0, time.process_time() - client0
    stats = _stats(latencies)
    # what a request costs in CPU, server and load client together: on a machine whose
    # two cores do nothing else, the endpoint cannot answer more than 2 s / that
    per_request = (server_cpu + client_cpu) / n
    return {
        "requests": n,
        "concurrency": CONCURRENCY,
        "errors": len(errors),
        "error_samples": errors[:3],
        "requests_per_s": round(n / wall, 1),
        "p50_ms": stats["p50"],
        "p95_ms": stats["p95"],
        "max_ms": stats["max"],
        "faces_per_image": round(sum(faces) / max(1, len(faces)), 2),
        "detector": ", ".join(sorted(detectors)),
        "server_cpu_ms_per_request": round(1000 * server_cpu / n, 1),
        "client_cpu_ms_per_request": round(1000 * client_cpu / n, 1),
        "cpu_bound_requests_per_s_on_2_idle_cores": round(2 / per_request, 1),
    }


def api(name: str, which: str, batch: int, frames: list[bytes], work: Path) -> dict[str, Any]:
    models = work / name / "models"
    model = face_checkpoint(models, which)
    port = _free_port()
    # the server reads its settings from the environment it inherits
    saved = os.environ.get("CROSSEMOTION_BATCH_SIZE")
    os.environ["CROSSEMOTION_BATCH_SIZE"] = str(batch)
    try:
        proc = _start(models, work / name, port)
    finally:
        if saved is None:
            os.environ.pop("CROSSEMOTION_BATCH_SIZE")
        else:
            os.environ["CROSSEMOTION_BATCH_SIZE"] = saved
    try:
        result = asyncio.run(_post_images(f"http://127.0.0.1:{port}", frames,
                                          API_REQUESTS[name], proc.pid))  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"  api {name}: {result['requests_per_s']} requests/s, p95 {result['p95_ms']} ms",
          flush=True)  # fmt: skip
    return {"model": model, "batch_size": batch, **result}


def run() -> dict[str, Any]:
    load_before = os.getloadavg()
    found = detectors()
    frames = frames_640x360()
    with tempfile.TemporaryDirectory(prefix="bench-faces-") as tmp:
        served = {name: api(name, which, batch, frames, Path(tmp))
                  for name, which, batch in API_RUNS}  # fmt: skip
    load_after = os.getloadavg()
    default = found["retinaface"]
    best_two = max(default["threads_2"]["images_per_s"], default["workers_2"]["images_per_s"])
    demo = served["demo"]
    payload: dict[str, Any] = {
        "note": "Detectors on the same 640x360 JPEG frames of the demo's example clip, each "
        "mode in a fresh process (threads_1: one thread; threads_2: one detector on two "
        "intra-op threads; workers_2: two threads with a detector each). API: `crossemotion "
        "serve` on 127.0.0.1, default settings, the face models of a config with random "
        "weights (the demo config's and the real config's resnet50 sections, one model per "
        "dataset, ifeed and meld, each run on every face), 640x360 JPEGs at concurrency 8; "
        "demo_unbatched: the demo's models with one image per batch (no micro-batching). "
        "load_average: the machine's 1-minute load before and after (2 cores: above 2, other "
        "work shared them).",
        "frame": "640x360 JPEG, quality 90",
        "detectors": found,
        "api_image": served,
        "load_average": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "checks": [
            {
                "target": "default detector (retinaface) >= 40 images/s at 640x360 on 2 threads",
                "measured": best_two,
                "met": best_two >= TARGET_DETECT,
            },
            {
                "target": "API image endpoint, demo face model: >= 40 requests/s at concurrency 8",
                "measured": demo["requests_per_s"],
                "met": demo["requests_per_s"] >= TARGET_RPS and not demo["errors"],
            },
            {
                "target": "API image endpoint, demo face model: p95 < 400 ms at concurrency 8",
                "measured": demo["p95_ms"],
                "met": demo["p95_ms"] < TARGET_P95_MS,
            },
        ],
    }
    write_result("faces", payload)
    failed = [w for w, r in served.items() if r["errors"]]
    if failed:
        raise RuntimeError(f"API requests failed ({failed}): "
                           f"{[served[w]['error_samples'] for w in failed]}")  # fmt: skip
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", choices=DETECTORS, help="(internal) one detector's run")
    parser.add_argument("--mode", choices=MODES, default="threads_1")
    args = parser.parse_args(argv)
    if args.detector:
        print(json.dumps(_detector_child(args.detector, args.mode)))
    else:
        print(json.dumps(run(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

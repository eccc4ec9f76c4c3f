"""Shared helpers for `make bench`: machine facts, timing, JSON results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "bench"


def meld_csv_dir() -> Path:
    """The official MELD csvs: $CROSSEMOTION_MELD_CSV_DIR, else downloaded (md5-checked)."""
    from crossemotion.ingest.meld.csvs import local_csv_dir

    folder, reason = local_csv_dir()
    if folder is None:
        raise RuntimeError(f"this benchmark samples real MELD clip lengths: {reason}")
    return folder


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in ("torch", "torchvision", "cv2", "polars", "pyarrow", "snakemake", "av",
                "simplejpeg"):  # fmt: skip
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # a missing optional module is just not reported
            continue
    try:
        import av

        # the FFmpeg libraries the pipeline decodes with (bundled in PyAV's wheel)
        versions["pyav_libavcodec"] = ".".join(map(str, av.library_versions["libavcodec"]))
    except Exception:  # no PyAV: nothing to report
        pass
    from crossemotion.ingest.video.ffmpeg_bin import ffmpeg_exe

    # the full-decode bound's ffmpeg (static imageio-ffmpeg when installed) and the system one
    for label, exe in (("ffmpeg_bench_bound", ffmpeg_exe()), ("ffmpeg_system", "ffmpeg")):
        try:
            ff = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False)
            versions[label] = ff.stdout.split("\n", 1)[0]
        except OSError:
            continue
    return {"cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(), **versions}


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best-of-`repeat` wall time in seconds and the last result."""
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path

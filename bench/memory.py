"""Peak RSS of the decode job (decode_shard) at two shard sizes, each in a fresh process.

The job is its process plus its decode workers (``crossemotion.ingest.video.pool``).
Its peak is the largest sum of their resident sets, sampled every 20 ms from
/proc inside the job process; the job process's own VmHWM is reported beside.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.clips import bench_clips
from bench.common import RESULTS, ROOT, write_result

CHILD = """
import json, sys, threading, time
from pathlib import Path
import polars as pl
from crossemotion.ingest.video.decode import DecodeSettings, decode_shard

def rss_kb(pid):
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(l.split()[1]) for l in text.splitlines() if l.startswith("VmRSS")), 0)

def tree(pid):
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            out += tree(int(kid))
    return out

peak = {"job_kb": 0, "worker_kb": 0}
done = threading.Event()

def sample():
    me = int(Path("/proc/self/stat").read_text().split()[0])
    while not done.is_set():
        pids = tree(me)
        sizes = [rss_kb(p) for p in pids]
        peak["job_kb"] = max(peak["job_kb"], sum(sizes))
        peak["worker_kb"] = max([peak["worker_kb"], *sizes[1:]])
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
files = json.loads(sys.argv[1])
rows = pl.DataFrame({"file": files, "key": [f"k{i}" for i in range(len(files))]})
out = sys.argv[2]
status = decode_shard(rows, DecodeSettings(), out + ".clips.parquet", out + ".status.parquet",
                      workers=2)
done.set()
# VmHWM is this process image's own peak; ru_maxrss survives exec and so reports the
# peak of the (v)forking parent (the bench runner, GBs after the inference bench)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak_rss_mb": peak["job_kb"] / 1024, "job_process_hwm_mb": hwm / 1024,
                  "largest_worker_rss_mb": peak["worker_kb"] / 1024,
                  "ok": int(status["status"].is_in(["ok", "overlong"]).sum())}))
"""


def _measure(files: list[str]) -> dict[str, Any]:
    out = RESULTS / "memory" / f"shard_{len(files)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(files), str(out)], cwd=ROOT,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: tuple[int, ...] = (50, 200)) -> dict[str, Any]:
    clips = [str(p) for p in bench_clips(max(sizes))]
    by_size = {str(n): _measure(clips[:n]) for n in sizes}
    peak = max(v["peak_rss_mb"] for v in by_size.values())
    result = {
        "shards": by_size,
        "note": "Peak of the summed RSS of the decode job process and its two decode "
        "worker processes (sampled every 20 ms), at each shard size.",
        "checks": [{"target": "decode job peak RSS < 1.5 GB at every shard size",
                    "measured": f"{peak:.0f} MB", "met": peak < 1536}],
    }  # fmt: skip
    write_result("memory", result)
    return result

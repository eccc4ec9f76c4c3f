"""Peak RSS of the decode job (decode_shard) at two shard sizes, each in a fresh process.

The peak is VmHWM from /proc/self/status, measured inside the job process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.clips import bench_clips
from bench.common import RESULTS, ROOT, write_result

CHILD = """
import json, sys
import polars as pl
from crossemotion.data.decode import DecodeSettings, decode_shard
files = json.loads(sys.argv[1])
rows = pl.DataFrame({"file": files, "key": [f"k{i}" for i in range(len(files))]})
out = sys.argv[2]
status = decode_shard(rows, DecodeSettings(), out + ".clips.parquet", out + ".status.parquet",
                      workers=2)
# VmHWM is this process image's own peak; ru_maxrss survives exec and so reports the
# peak of the (v)forking parent (the bench runner, GBs after the inference bench)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak_rss_mb": hwm / 1024,
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
        "note": "Peak RSS (VmHWM) of the Python decode job; the ffmpeg processes it spawns "
        "(one per clip, two at a time) are not included.",
        "checks": [{"target": "decode job peak RSS < 1.5 GB at every shard size",
                    "measured": f"{peak:.0f} MB", "met": peak < 1536}],
    }  # fmt: skip
    write_result("memory", result)
    return result

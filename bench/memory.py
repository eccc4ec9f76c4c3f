"""Peak RSS of the decode job (decode_shard) at two shard sizes, each in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.clips import bench_clips
from bench.common import RESULTS, ROOT, write_result

CHILD = """
import json, resource, sys
import polars as pl
from crossemotion.data.decode import DecodeSettings, decode_shard
files = json.loads(sys.argv[1])
rows = pl.DataFrame({"file": files, "key": [f"k{i}" for i in range(len(files))]})
out = sys.argv[2]
status = decode_shard(rows, DecodeSettings(), out + ".clips.parquet", out + ".status.parquet",
                      workers=2)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "largest_ffmpeg_child_rss_mb":
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
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
        "note": "ffmpeg runs in child processes (not counted in the Python job's RSS); "
        "largest_ffmpeg_child_rss_mb is the biggest of them.",
        "checks": [{"target": "decode job peak RSS < 1.5 GB at every shard size",
                    "measured": f"{peak:.0f} MB", "met": peak < 1536}],
    }  # fmt: skip
    write_result("memory", result)
    return result

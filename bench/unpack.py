"""Unpacking a MELD-layout archive, before (684067f) and after issue 38, side by side.

The archive is generated: MELD.Raw.tar.gz holding train/dev/test .tar.gz of
``dia{D}_utt{U}.mp4`` members (random bytes, about 700 kB each like the real
clips, so the gzip is as large as the data) and the three csvs. Each unpacker
runs in a fresh process on the same file, one after the other: wall seconds and
peak resident memory (the child's VmHWM) for each, and their ratios.
The old unpacker is the module as of commit 684067f, read with ``git show``.

``python -m bench.unpack [GB]`` runs it alone (default 1 GB); ``make bench``
runs it at ``CROSSEMOTION_BENCH_UNPACK_GB`` (default 1). Needs about 4x the
size in free space under the temp folder; everything is removed afterwards.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, write_result

OLD_COMMIT = "684067f"
OLD_MODULE = "src/crossemotion/ingest/archives/unpack.py"
CLIP_BYTES = 700_000  # the real MELD clips: 10 GB in ~14k clips
POOL_BYTES = 64 << 20  # random pool the clips are cut from: beyond deflate's 32 kB window
# the real archive's split shares and folder names
SPLITS = (("train", 0.7, "train_splits"), ("dev", 0.1, "dev_splits_complete"),
          ("test", 0.2, "output_repeated_splits_test"))  # fmt: skip

CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("unpack_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # dataclasses look their module up there
spec.loader.exec_module(module)
def vm(key):
    # after exec the process has a fresh address space: its VmHWM is its own peak
    # (wait4's ru_maxrss also counts the parent's pages at fork)
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024
loaded = vm("VmRSS")
report = module.safe_extract(sys.argv[2], sys.argv[3], progress=False)
print(json.dumps({"extracted": len(report.extracted), "nested": len(report.nested),
                  "peak_rss_mb": round(vm("VmHWM"), 1), "rss_after_import_mb": round(loaded, 1)}))
"""


def make_archive(path: Path, total_bytes: int, seed: int = 0) -> int:
    """Write a MELD-layout MELD.Raw.tar.gz of about ``total_bytes``; the clip count."""
    rng = random.Random(seed)
    pool = rng.randbytes(POOL_BYTES)
    work = path.parent / "inner"
    work.mkdir()
    clips = 0
    with tarfile.open(path, "w:gz", compresslevel=1) as outer:
        for split, share, folder in SPLITS:
            inner_path = work / f"{split}.tar.gz"
            n = max(1, int(total_bytes * share) // CLIP_BYTES)
            with tarfile.open(inner_path, "w:gz", compresslevel=1) as inner:
                for i in range(n):
                    size = rng.randint(CLIP_BYTES // 2, CLIP_BYTES * 3 // 2)
                    at = rng.randrange(POOL_BYTES - size)
                    info = tarfile.TarInfo(f"{folder}/dia{i // 10}_utt{i % 10}.mp4")
                    info.size = size
                    inner.addfile(info, io.BytesIO(pool[at : at + size]))
            clips += n
            outer.add(inner_path, f"MELD.Raw/{split}.tar.gz")
            inner_path.unlink()
            csv = b"Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
            info = tarfile.TarInfo(f"MELD.Raw/{split}_sent_emo.csv")
            info.size = len(csv)
            outer.addfile(info, io.BytesIO(csv))
    work.rmdir()
    return clips


def _old_module(folder: Path) -> Path:
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:{OLD_MODULE}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    path = folder / "unpack_684067f.py"
    path.write_text(source)
    return path


def _measure(module: Path, archive: Path, dest: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(module), str(archive), str(dest)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate()
    seconds = time.monotonic() - start
    if proc.returncode:
        raise RuntimeError(f"{module.name} failed ({proc.returncode}): {err[-2000:]}")
    shutil.rmtree(dest)
    return {"seconds": round(seconds, 2), **json.loads(out)}


def run(gb: float | None = None, repeat: int = 1) -> dict[str, Any]:
    gb = float(os.environ.get("CROSSEMOTION_BENCH_UNPACK_GB", "1")) if gb is None else gb
    with tempfile.TemporaryDirectory(prefix="bench_unpack_") as tmp:
        folder = Path(tmp)
        archive = folder / "MELD.Raw.tar.gz"
        t0 = time.monotonic()
        clips = make_archive(archive, int(gb * 1e9))
        made = time.monotonic() - t0
        old = _old_module(folder)
        new = ROOT / OLD_MODULE
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for _ in range(repeat):  # alternated, so drift in the machine's load hits both
            runs["before"].append(_measure(old, archive, folder / "out_before"))
            runs["after"].append(_measure(new, archive, folder / "out_after"))
        if runs["before"][0]["extracted"] != runs["after"][0]["extracted"]:
            raise RuntimeError(f"the unpackers disagree: {runs}")
        best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        payload = {
            "archive_bytes": archive.stat().st_size,
            "clips": clips,
            "archive_build_seconds": round(made, 1),
            "old": f"{OLD_COMMIT}:{OLD_MODULE}",
            "runs": runs,
            "before": best["before"],
            "after": best["after"],
            "seconds_after_over_before": round(
                best["after"]["seconds"] / best["before"]["seconds"], 3
            ),
            "peak_rss_after_over_before": round(
                best["after"]["peak_rss_mb"] / best["before"]["peak_rss_mb"], 3
            ),
        }
    write_result("unpack", payload)
    print(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    args = sys.argv[1:]
    run(float(args[0]) if args else None, int(args[1]) if len(args) > 1 else 1)

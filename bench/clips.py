"""MELD-like benchmark clips: 1280x720 H.264 ~24 fps with B-frames, AAC, ~1.5 Mbit/s.

Durations are drawn from the real MELD csv's Start/End times so the length
distribution matches the corpus. Clips are cached under results/bench/clips.
"""

from __future__ import annotations

import csv
import random
import subprocess
from pathlib import Path

from bench.common import RESULTS, SHARED_MELD


def _seconds(stamp: str) -> float:
    hms, ms = stamp.strip().split(",")
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s + int(ms) / 1000


def meld_durations(n: int, seed: int = 0) -> list[float]:
    """n clip durations sampled from the real train csv (clamped to 0.5-30 s)."""
    path = SHARED_MELD / "train_sent_emo.csv"
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    durations = []
    for row in rows:
        try:
            d = _seconds(row["EndTime"]) - _seconds(row["StartTime"])
        except (KeyError, ValueError):
            continue
        if d > 0:
            durations.append(min(max(d, 0.5), 30.0))
    rng = random.Random(seed)
    return [rng.choice(durations) for _ in range(n)]


def make_clip(path: Path, duration: float, seed: int, width: int = 1280, height: int = 720) -> None:
    if path.exists() and path.stat().st_size > 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    # testsrc2 moves every frame, so the encoder spends bits like on real video;
    # x264 defaults give B-frames (bframes=3) and a TV-like bitrate cap.
    cmd = [
        "ffmpeg", "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=24000/1001:d={duration:.3f}",
        "-f", "lavfi", "-i", f"sine=frequency={200 + seed % 400}:duration={duration:.3f}",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1500k", "-maxrate", "1800k",
        "-bufsize", "3000k", "-g", "48", "-bf", "3", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", "-shortest", str(tmp),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    tmp.replace(path)


def bench_clips(n: int = 200, seed: int = 0) -> list[Path]:
    folder = RESULTS / "clips"
    paths = []
    for i, duration in enumerate(meld_durations(n, seed)):
        path = folder / f"dia{i}_utt0.mp4"
        make_clip(path, duration, seed=i)
        paths.append(path)
    return paths


def long_clip(minutes: float = 5.0) -> Path:
    path = RESULTS / "clips" / f"long_{minutes:g}min.mp4"
    make_clip(path, minutes * 60, seed=999)
    return path

"""MELD-like benchmark clips: 1280x720 H.264 ~24 fps with B-frames, AAC, ~1.5 Mbit/s.

Two contents, so a decoder tuned to one kind of picture cannot hide behind it:

* ``talking_head``: stills from the demo renderer under camera drift and grain
  (sitcom dialogue: mostly static shots, ~70% B-frames);
* ``fractal``: a Mandelbrot zoom with film grain and a textured object moving
  across it (detail and motion everywhere, fewer B-frames, larger P-frames).

Durations are drawn from the real MELD csv's Start/End times so the length
distribution matches the corpus. Clips are cached under results/bench/clips.
"""

from __future__ import annotations

import csv
import random
import subprocess
from pathlib import Path

from bench.common import RESULTS, meld_csv_dir


def _seconds(stamp: str) -> float:
    hms, ms = stamp.strip().split(",")
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s + int(ms) / 1000


def meld_durations(n: int, seed: int = 0) -> list[float]:
    """n clip durations sampled from the real train csv (clamped to 0.5-30 s)."""
    path = meld_csv_dir() / "train_sent_emo.csv"
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


def _still(path: Path, seed: int, width: int, height: int) -> None:
    """One sitcom-like frame (a speaker, sometimes a bystander) from the demo renderer."""
    import cv2
    import numpy as np

    from crossemotion.labels import CAST, EMOTIONS
    from crossemotion.synth import faces

    rng = np.random.default_rng([seed, 42])
    spec = faces.random_scene(
        str(rng.choice(list(CAST))),
        str(rng.choice(list(EMOTIONS))),
        float(rng.uniform(0.6, 1.0)),
        rng,
        bystander=str(rng.choice(list(CAST))),
    )
    frame, _ = faces.SceneRenderer(spec, width, height).frame(0, rng)
    if not cv2.imwrite(str(path), np.ascontiguousarray(frame[:, :, ::-1])):
        raise RuntimeError(f"could not write {path}")


def make_clip(path: Path, duration: float, seed: int, width: int = 1280, height: int = 720) -> None:
    """A talking-head shot: a still scene under a slow camera drift plus film grain.

    Sitcom dialogue is mostly static shots, where x264 makes about 70% of the
    frames B-frames (the demo clips and this content both measure ~70%); a
    full-screen test pattern in constant motion gets about 50%, which would
    understate what skipping B-frames saves on MELD. The measured share is
    reported with the results.
    """
    if path.exists() and path.stat().st_size > 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    still = path.with_suffix(".still.png")
    _still(still, seed, width, height)
    # 94% crop drifting on slow sines, scaled back up: a camera that never sits still
    cw, ch = width * 15 // 16 // 2 * 2, height * 15 // 16 // 2 * 2
    mx, my = (width - cw) // 2, (height - ch) // 2
    vf = (
        f"crop={cw}:{ch}:'{mx}+{mx - 1}*sin(0.9*t+{seed % 7})':'{my}+{my - 1}*sin(1.3*t)',"
        f"scale={width}:{height},noise=alls=6:allf=t"
    )
    cmd = [
        "ffmpeg", "-y", "-loglevel", "error",
        "-loop", "1", "-framerate", "24000/1001", "-i", str(still),
        "-f", "lavfi", "-i", f"sine=frequency={200 + seed % 400}:duration={duration:.3f}",
        "-t", f"{duration:.3f}", "-vf", vf,
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1500k", "-maxrate", "1800k",
        "-bufsize", "3000k", "-g", "48", "-bf", "3", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", str(tmp),
    ]  # fmt: skip
    try:
        subprocess.run(cmd, check=True)
    finally:
        still.unlink(missing_ok=True)
    tmp.replace(path)


def make_fractal_clip(path: Path, duration: float, seed: int, width: int = 1280,
                      height: int = 720) -> None:  # fmt: skip
    """A zooming Mandelbrot (rendered at half size, scaled up) with film grain and a
    192x144 test pattern crossing it on a wave: no static background for B-frames."""
    if path.exists() and path.stat().st_size > 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    rng = random.Random(seed)
    # each clip starts at its own depth, all where the boundary fills the frame with
    # detail at 256 iterations (deeper, more of the frame reads as the flat inside)
    start = 0.06 * 0.6 ** rng.uniform(0, 4)
    speed, phase = rng.uniform(180, 340), rng.uniform(0, 6.28)
    # past 20 s the zoom repeats (rendering a deep zoom costs more than encoding it);
    # the object and the grain keep moving, so no two loops encode alike
    loop = f"format=yuv420p,loop=loop=-1:size={LOOP_FRAMES}," if duration > 20 else ""
    graph = (
        f"[0:v]{loop}scale={width}:{height}:flags=bicubic[bg];"
        f"[bg][1:v]overlay=x='mod({speed:.0f}*t+{phase * 100:.0f}\\,{width - 192})'"
        f":y='{height // 2 - 72}+{height // 3}*sin(1.7*t+{phase:.2f})':shortest=1,"
        f"noise=alls=8:allf=t+u,format=yuv420p[v]"
    )
    cmd = [
        "ffmpeg", "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"mandelbrot=size={width // 2}x{height // 2}:rate=24000/1001:"
        f"start_scale={start:.5f}:end_scale=0.0005:end_pts=120:maxiter=256:"
        "outer=normalized_iteration_count:inner=period",
        "-f", "lavfi", "-i", "testsrc2=size=192x144:rate=24000/1001",
        "-f", "lavfi", "-i", f"sine=frequency={200 + seed % 400}:duration={duration:.3f}",
        "-filter_complex", graph, "-map", "[v]", "-map", "2:a", "-t", f"{duration:.3f}",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1500k", "-maxrate", "1800k",
        "-bufsize", "3000k", "-g", "48", "-bf", "3", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", str(tmp),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    tmp.replace(path)


LOOP_FRAMES = 480  # 20 s at 24 fps
CONTENTS = {"talking_head": make_clip, "fractal": make_fractal_clip}


def frame_types(paths: list[Path]) -> dict[str, float]:
    """Share of I/P/B frames over ``paths`` (what skipping B-frames can save)."""
    import av

    counts: dict[str, int] = {}
    for path in paths:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                kind = av.video.frame.PictureType(frame.pict_type).name
                counts[kind] = counts.get(kind, 0) + 1
    total = max(sum(counts.values()), 1)
    return {k: round(v / total, 4) for k, v in sorted(counts.items())}


def _folder(content: str) -> Path:
    # talking-head clips keep the folder they were cached in before there were two contents
    return RESULTS / "clips" if content == "talking_head" else RESULTS / "clips" / content


def bench_clips(n: int = 200, seed: int = 0, content: str = "talking_head") -> list[Path]:
    make = CONTENTS[content]
    paths = []
    for i, duration in enumerate(meld_durations(n, seed)):
        path = _folder(content) / f"dia{i}_utt0.mp4"
        make(path, duration, seed=i)
        paths.append(path)
    return paths


def long_clip(minutes: float = 5.0, content: str = "talking_head") -> Path:
    path = _folder(content) / f"long_{minutes:g}min.mp4"
    CONTENTS[content](path, minutes * 60, seed=999)
    return path


def short_clip(seconds: float = 4.0, content: str = "talking_head") -> Path:
    path = _folder(content) / f"short_{seconds:g}s.mp4"
    CONTENTS[content](path, seconds, seed=998)
    return path

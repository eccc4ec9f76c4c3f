"""Speaker tracks: what tracking and speaking activity cost per clip, next to decode and
detection, and the faces step with ``selector: track`` against ``largest``.

Clips: demo clips of the demo's own plan (config/demo.yaml's synth section), rendered
and encoded with sound by the demo generator (``synth.meld.encode``), the
listener-larger reaction shots first. Per clip, in one process, side by side:

- decode: the workflow's decode job (``audio.decode_job``, 8 frames at 180 px), with
  the sound's envelope (``audio: true``) and without;
- detect: the configured detector (RetinaFace) on the 8 sampled frames;
- track: linking, mouth motion and the speaker choice (``tracks.speaker_of_clip``) on
  those detections;
- faces step: ``crops.clip_speaker`` (detect + track + crop + encode), selector
  ``track`` and ``largest``, the rule's work per clip.

Every figure is the median over the clips of the best of ``REPEATS`` runs, in ms.
Results in results/bench/speakers.json.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import write_result

N_CLIPS = 16
REPEATS = 3
FRAMES, HEIGHT = 8, 180  # config/demo.yaml's meld.decode
DEMO = {"train": 240, "dev": 60, "test": 90}
SEED, FPS, WIDTH, FRAME_HEIGHT = 7, 10, 320, 240


def _best_ms(fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def demo_clips(work: Path, n: int = N_CLIPS) -> list[Path]:
    """``n`` demo clips with sound, written as the demo generator writes them: the
    listener-larger shots first, then the others in plan order."""
    from crossemotion.synth.meld import encode, plan_clips, plan_templates

    jobs, quirks = plan_clips(plan_templates(DEMO, SEED), FPS, SEED)
    reaction = {(q["split"], q["key"]) for q in quirks.as_dict().get("listener_larger", [])}
    usable = [j for j in jobs if j.audio and not (j.corrupt or j.missing or j.overlong)]
    usable.sort(key=lambda j: (j.split, j.key) not in reaction)
    out = []
    for job in usable[:n]:
        target = work / f"{job.split}_{job.key}.mp4"
        encode(replace(job, captures=[]), WIDTH, FRAME_HEIGHT, target)
        out.append(target)
    return out


def _row(path: Path, decoded: Any) -> dict[str, Any]:
    return {"split": "dev", "dialogue_id": 0, "utterance_id": 0, "key": path.stem,
            "file": path.name, "character": "other", "speaker": "x", "label": "neutral",
            "timestamps": decoded.timestamps, "frames": decoded.frames,
            "audio_rms": decoded.audio_rms, "audio_status": decoded.audio_status,
            "audio_reason": decoded.audio_reason}  # fmt: skip


def run() -> dict[str, Any]:
    from crossemotion.codec import decode_jpeg
    from crossemotion.ingest.faces.crops import FaceSettings, clip_speaker
    from crossemotion.ingest.faces.tracks import speaker_of_clip
    from crossemotion.ingest.video.audio import decode_job
    from crossemotion.ingest.video.decode import DecodeSettings

    with_sound = DecodeSettings(frames=FRAMES, height=HEIGHT, audio=True)
    without = replace(with_sound, audio=False)
    track = FaceSettings(detector="retinaface", size=64, margin=0.15, min_size=16,
                         max_per_frame=4, selector="track")  # fmt: skip
    largest = replace(track, selector="largest")
    detector = track.build_detector()
    per_clip: dict[str, list[float]] = {k: [] for k in (
        "decode_ms", "decode_no_audio_ms", "detect_ms", "track_ms",
        "faces_step_track_ms", "faces_step_largest_ms")}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        clips = demo_clips(Path(tmp))
        for path in clips:
            per_clip["decode_ms"].append(_best_ms(lambda p=path: decode_job((p, with_sound))))
            per_clip["decode_no_audio_ms"].append(_best_ms(lambda p=path: decode_job((p, without))))
            decoded = decode_job((path, with_sound))
            images = [decode_jpeg(f) for f in decoded.frames]
            per_clip["detect_ms"].append(_best_ms(lambda i=images: [detector.detect(x) for x in i]))
            found = [detector.detect(x) for x in images]
            per_clip["track_ms"].append(
                _best_ms(lambda f=found, i=images, e=decoded.audio_rms: speaker_of_clip(f, i, e))
            )
            row = _row(path, decoded)
            per_clip["faces_step_track_ms"].append(
                _best_ms(lambda r=row: clip_speaker(r, detector, track))
            )
            per_clip["faces_step_largest_ms"].append(
                _best_ms(lambda r=row: clip_speaker(r, detector, largest))
            )
    medians = {k: round(statistics.median(v), 2) for k, v in per_clip.items()}
    result = {
        "clips": len(clips),
        "frames_per_clip": FRAMES,
        "height": HEIGHT,
        "repeats": REPEATS,
        "median_per_clip": medians,
        # the bound: tracking must not grow the demo's faces step by more than 30 %
        "faces_step_track_over_largest": round(
            medians["faces_step_track_ms"] / medians["faces_step_largest_ms"], 3
        ),
        "track_share_of_faces_step": round(medians["track_ms"] / medians["faces_step_track_ms"], 3),
        "audio_share_of_decode": round(
            (medians["decode_ms"] - medians["decode_no_audio_ms"]) / medians["decode_ms"], 3
        ),
    }
    ratio = result["faces_step_track_over_largest"]
    result["checks"] = [
        {
            "target": "faces step per demo clip, selector track <= 1.30 x largest",
            "measured": ratio,
            "met": ratio <= 1.30,
        }
    ]
    write_result("speakers", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

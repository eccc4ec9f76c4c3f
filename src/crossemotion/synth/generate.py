"""Write the demo MELD.Raw.tar.gz and IFEED_Base.zip, a json sidecar of quirks and
the IFEED truth table (where each IFEED image was cut from; for tests only)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from crossemotion.io import atomic_path, write_json, write_parquet
from crossemotion.synth.archive import write_zip
from crossemotion.synth.ifeed import build_ifeed_members, plan_captures, truth_row
from crossemotion.synth.meld import build_meld_archive, plan_clips, plan_from_csv, plan_templates

log = logging.getLogger(__name__)

MELD_NAME = "MELD.Raw.tar.gz"
IFEED_NAME = "IFEED_Base.zip"
SIDECAR_NAME = "synth_summary.json"
TRUTH_NAME = "ifeed_truth.parquet"


TRUTH_SCHEMA: dict[str, Any] = {
    "member": pl.String,
    "ifeed_split": pl.String,
    "character": pl.String,
    "role": pl.String,
    "label": pl.String,
    "shown": pl.String,
    "meld_split": pl.String,
    "dialogue_id": pl.Int32,
    "utterance_id": pl.Int32,
    "key": pl.String,
    "clip_file": pl.String,
    "clip_status": pl.String,
    "speaker": pl.String,
    "frame_index": pl.Int32,
    "time": pl.Float64,
    "fps": pl.Float64,
    "x": pl.Int32,
    "y": pl.Int32,
    "w": pl.Int32,
    "h": pl.Int32,
    "frame_width": pl.Int32,
    "frame_height": pl.Int32,
}


@dataclass
class SynthSettings:
    seed: int = 7
    utterances: dict[str, int] = field(
        default_factory=lambda: {"train": 240, "dev": 60, "test": 90}
    )
    ifeed_images: dict[str, int] = field(default_factory=lambda: {"train": 480, "test": 160})
    width: int = 320
    height: int = 240
    fps: int = 10
    face_size: int = 96
    annotations: str | None = None
    limit: int | None = None
    workers: int = 2

    @classmethod
    def from_config(cls, synth: Mapping[str, Any], **overrides: Any) -> SynthSettings:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in synth.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def generate(out_dir: str | Path, settings: SynthSettings) -> dict[str, Any]:
    """Write both archives into ``out_dir`` atomically; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if settings.annotations:
        plan = plan_from_csv(
            settings.annotations, settings.utterances, settings.limit, settings.seed
        )
    else:
        plan = plan_templates(settings.utterances, settings.seed)
    jobs, quirks = plan_clips(plan, settings.fps, settings.seed)
    plan_captures(jobs, settings.ifeed_images, settings.face_size, settings.seed)
    with (
        tempfile.TemporaryDirectory(prefix=".synth-", dir=out) as tmp,
        atomic_path(out / MELD_NAME, suffix=".tar.gz") as meld_tmp,
    ):
        meld, images = build_meld_archive(
            plan,
            jobs,
            quirks,
            meld_tmp,
            Path(tmp),
            settings.width,
            settings.height,
            settings.workers,
        )
        meld_tmp.chmod(0o644)  # mkstemp's 0600 would hide the archive from other users
    log.info(
        "wrote %s (%s clips) in %.1f s", out / MELD_NAME, meld["clips"], time.perf_counter() - t0
    )
    members, ifeed = build_ifeed_members(images, settings.seed)
    with atomic_path(out / IFEED_NAME, suffix=".zip") as zip_tmp:
        write_zip(zip_tmp, members)
        zip_tmp.chmod(0o644)
    log.info("wrote %s (%s images)", out / IFEED_NAME, ifeed["images"])
    truth = pl.DataFrame(
        [truth_row(job, cap, box, settings.width, settings.height) for job, cap, _, box in images],
        schema=TRUTH_SCHEMA,
    ).sort("member")
    write_parquet(out / TRUTH_NAME, truth)
    (out / TRUTH_NAME).chmod(0o644)
    summary = {
        "settings": asdict(settings),
        "meld_archive": str(out / MELD_NAME),
        "ifeed_archive": str(out / IFEED_NAME),
        "ifeed_truth": str(out / TRUTH_NAME),
        "meld": meld,
        "ifeed": ifeed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / SIDECAR_NAME, summary)
    (out / SIDECAR_NAME).chmod(0o644)
    return summary

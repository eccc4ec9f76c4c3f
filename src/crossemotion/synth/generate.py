"""Write the demo MELD.Raw.tar.gz and IFEED_Base.zip (+ a json sidecar of quirks)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crossemotion.io import atomic_path, write_json
from crossemotion.synth.archive import write_zip
from crossemotion.synth.ifeed import build_ifeed_members
from crossemotion.synth.meld import build_meld_archive, plan_from_csv, plan_templates

log = logging.getLogger(__name__)

MELD_NAME = "MELD.Raw.tar.gz"
IFEED_NAME = "IFEED_Base.zip"
SIDECAR_NAME = "synth_summary.json"


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
    with (
        tempfile.TemporaryDirectory(prefix=".synth-", dir=out) as tmp,
        atomic_path(out / MELD_NAME, suffix=".tar.gz") as meld_tmp,
    ):
        meld = build_meld_archive(
            plan,
            meld_tmp,
            Path(tmp),
            settings.width,
            settings.height,
            settings.fps,
            settings.seed,
            settings.workers,
        )
        meld_tmp.chmod(0o644)  # mkstemp's 0600 would hide the archive from other users
    log.info(
        "wrote %s (%s clips) in %.1f s", out / MELD_NAME, meld["clips"], time.perf_counter() - t0
    )
    members, ifeed = build_ifeed_members(
        settings.ifeed_images, plan, settings.face_size, settings.seed
    )
    with atomic_path(out / IFEED_NAME, suffix=".zip") as zip_tmp:
        write_zip(zip_tmp, members)
        zip_tmp.chmod(0o644)
    log.info("wrote %s (%s images)", out / IFEED_NAME, ifeed["images"])
    summary = {
        "settings": asdict(settings),
        "meld_archive": str(out / MELD_NAME),
        "ifeed_archive": str(out / IFEED_NAME),
        "meld": meld,
        "ifeed": ifeed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / SIDECAR_NAME, summary)
    (out / SIDECAR_NAME).chmod(0o644)
    return summary

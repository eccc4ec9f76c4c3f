"""Where a run's files live under ``results/``, shared by the workflow and the library.

Seeds: the first seed of ``seeds`` (or the single ``seed``) writes the
contract paths ``results/models/{model}/{dataset}/``; every further seed S
writes ``results/models/{model}/{dataset}/seed{S}/``. So a one-seed config
keeps today's layout, and adding seeds never moves or retrains the first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_SEED = 13
SEED_DIR = re.compile(r"^seed(\d+)$")


def config_seeds(config: Mapping[str, Any]) -> list[int]:
    """The seeds a config trains: ``seeds`` when set, else ``[seed]``; no duplicates."""
    seeds = config.get("seeds") or [config.get("seed", DEFAULT_SEED)]
    out = [int(s) for s in dict.fromkeys(seeds)]
    if len(out) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    return out


def seed_subdir(seed: int, seeds: Sequence[int]) -> str:
    """'' for the primary (first) seed, else 'seed{S}'."""
    return "" if int(seed) == int(seeds[0]) else f"seed{int(seed)}"


def seed_of_subdir(subdir: str, seeds: Sequence[int]) -> int:
    """Inverse of :func:`seed_subdir` ('' or '/seed17' or 'seed17')."""
    name = subdir.strip("/")
    if not name:
        return int(seeds[0])
    match = SEED_DIR.match(name)
    if not match:
        raise ValueError(f"not a seed folder: {subdir!r}")
    return int(match.group(1))


def model_dir(model: str, dataset: str, seed_dir: str = "", root: str | Path = "results") -> Path:
    base = Path(root) / "models" / model / dataset
    return base / seed_dir if seed_dir else base

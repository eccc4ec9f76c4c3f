"""Checkpoint files: atomic saves, RNG state capture, resume state.

``model.pt`` (the deliverable) holds only tensors and plain Python values and
loads with ``weights_only=True``. The resume state (``last.pt``) also holds
RNG states and is only ever read back by this package.
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossemotion.io import atomic_path

RESUME_FILE = "last.pt"
log = logging.getLogger(__name__)


def save(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load(path: str | Path, trusted: bool = False) -> dict[str, Any]:
    """Load on CPU; ``trusted`` allows arbitrary pickles (our own resume state)."""
    return torch.load(path, map_location="cpu", weights_only=not trusted)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def load_resume(state_dir: Path | None, config_key: str) -> dict[str, Any] | None:
    """The resume state in ``state_dir`` when it was written for ``config_key``."""
    if state_dir is None:
        return None
    path = Path(state_dir) / RESUME_FILE
    if not path.is_file():
        return None
    try:
        state = load(path, trusted=True)
    except Exception as exc:  # a torn or foreign file must not block a fresh start
        log.warning("ignoring unreadable resume state %s: %s", path, exc)
        return None
    if state.get("config_key") != config_key:
        log.info("resume state %s is for another config; starting over", path)
        return None
    return state


def clear_resume(state_dir: Path | None) -> None:
    if state_dir is None:
        return
    path = Path(state_dir) / RESUME_FILE
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(state_dir).rmdir()

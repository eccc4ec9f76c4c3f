"""Checkpoint files: atomic saves, RNG state capture, resume state.

``model.pt`` (the deliverable) holds only tensors and plain Python values and
loads with ``weights_only=True``. The resume state (``last.pt``) also holds
RNG states and is only ever read back by this package.

A model with a text encoder (``text``, ``fusion``) also embeds what building
that encoder needs besides the weights (which are in ``state_dict``): the
``encoder`` record, ``{"name", "config", "files"}`` — the encoder's name as the
config gave it, its transformers config (``config.json``'s content) and its
tokenizer's files, name -> bytes (crossemotion.models.text.embedded_encoder).
``load`` writes that record out once as a Hugging Face model folder
(``config.json`` + the tokenizer files, no weights) named by its digest under
``encoders_root()`` and points the loaded config's ``encoder`` at it, so the
model and its tokenizer are built from the checkpoint alone: an empty Hugging
Face cache and no encoder package are enough to load and serve it. ``raw=True``
gives the payload as stored (to copy a checkpoint).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossemotion.io import atomic_path

RESUME_FILE = "last.pt"
# model.pt's record of an embedded text encoder (see the module docstring)
ENCODER = "encoder"
log = logging.getLogger(__name__)


def save(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load(path: str | Path, trusted: bool = False, raw: bool = False) -> dict[str, Any]:
    """Load on CPU; ``trusted`` allows arbitrary pickles (our own resume state).

    A model.pt with an embedded text encoder comes back with its config's
    ``encoder`` pointing at the encoder's folder (``embedded_encoder_dir``);
    ``raw`` leaves the payload as stored."""
    payload = torch.load(path, map_location="cpu", weights_only=not trusted)
    if raw or not isinstance(payload, dict) or payload.get(ENCODER) is None:
        return payload
    try:
        folder = embedded_encoder_dir(payload[ENCODER])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable embedded text encoder: {exc}") from exc
    return {**payload, "config": {**payload["config"], "encoder": str(folder)}}


def encoders_root() -> Path:
    """Where unpacked encoders live: ``$CROSSEMOTION_ENCODERS``, default
    ``~/.cache/crossemotion/encoders`` (also the packaged encoders' home)."""
    default = Path.home() / ".cache" / "crossemotion" / "encoders"
    return Path(os.environ.get("CROSSEMOTION_ENCODERS") or default)


def encoder_digest(record: dict[str, Any]) -> str:
    """SHA-256 of an encoder record's config and files (not its name): equal digests,
    equal folders."""
    h = hashlib.sha256(json.dumps(record["config"], sort_keys=True).encode())
    for name in sorted(record["files"]):
        data = record["files"][name]
        h.update(f"\0{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def embedded_encoder_dir(record: dict[str, Any], root: Path | None = None) -> Path:
    """The Hugging Face model folder (config.json + tokenizer files) of an embedded
    encoder ``record``, written on first use: into a temp folder, then renamed, so a
    reader never sees half a folder and concurrent loads of one checkpoint agree."""
    config, files = record["config"], record["files"]
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError("its config has no model_type")
    if not isinstance(files, dict) or not files:
        raise ValueError("it has no tokenizer files")
    for name, data in files.items():
        # names come from a file someone may have handed over: plain names only
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise ValueError(f"file name {name!r} is not a plain file name")
        if name == "config.json" or not isinstance(data, bytes):
            raise ValueError(f"file {name!r} is not tokenizer bytes")
    root = root or encoders_root()
    folder = root / f"checkpoint-{encoder_digest(record)[:16]}"
    if (folder / "config.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():  # not a concurrent load's folder
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


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

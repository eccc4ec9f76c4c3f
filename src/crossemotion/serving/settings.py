"""Serving settings: limits and switches, read from ``CROSSEMOTION_*`` environment variables.

Every limit has a safe default so ``crossemotion serve`` needs no environment;
deployments tune them without code changes (docs/serving.md lists them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "CROSSEMOTION_"
MB = 1024 * 1024


class SettingsError(ValueError):
    """An environment variable that does not parse."""


@dataclass(frozen=True)
class Settings:
    models_dir: Path = Path("results/models")
    # request body bytes (multipart overhead included); larger uploads get 413
    max_upload_bytes: int = 25 * MB
    # clips longer than this (by their container header) get 422 before any frame is decoded
    max_clip_seconds: float = 30.0
    # images with more pixels than this get 422 before a full decode
    max_image_pixels: int = 25_000_000
    max_text_chars: int = 2000
    # wall-clock limit of one prediction (model work off the event loop); 504 after it
    request_timeout: float = 60.0
    # predictions running at once; more wait (CPU inference gains nothing from more)
    max_concurrency: int = 2
    torch_threads: int = 1
    # torch device for every model: auto (CUDA when present), cpu, cuda, cuda:1 ...
    device: str = "auto"
    # The faces stage: None takes the face model's own (its checkpoint's record of the
    # workflow's faces settings, else the workflow's defaults), so that the API cuts
    # faces as the model's training crops were cut; set one to override it.
    # faces per image/frame that are classified (speaker first)
    max_faces: int | None = None
    detector: str | None = None
    face_align: bool | None = None
    face_margin: float | None = None
    face_min_size: int | None = None
    # micro-batching of image predictions (serving.batching): at most this many
    # images per batch, waiting at most batch_wait_ms after the first for more
    batch_size: int = 8
    batch_wait_ms: float = 2.0
    # frames sampled from an uploaded clip (the pipeline decoder's T and height)
    clip_frames: int = 8
    clip_height: int = 180
    decode_timeout: float = 30.0
    # empty: no CORS headers at all (same-origin only)
    cors_origins: tuple[str, ...] = ()
    # private temp folder parent; None: the system temp dir
    tmp_root: Path | None = None
    mount_ui: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``CROSSEMOTION_*`` variables, then explicit ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, conv in _CONVERTERS.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = conv(raw.strip())
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(cls(), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = ("max_upload_bytes", "max_clip_seconds", "max_image_pixels", "max_text_chars",
                    "request_timeout", "max_concurrency", "torch_threads", "max_faces",
                    "face_min_size", "clip_frames", "clip_height", "decode_timeout",
                    "batch_size")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        if self.face_margin is not None and not 0 <= self.face_margin < 2:
            raise SettingsError(f"face_margin must be in [0, 2), got {self.face_margin}")
        if self.batch_wait_ms < 0:
            raise SettingsError(f"batch_wait_ms must not be negative, got {self.batch_wait_ms}")


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in raw.split(",") if o.strip())


def _megabytes(raw: str) -> int:
    return int(float(raw) * MB)


_CONVERTERS: dict[str, Any] = {
    "models_dir": Path,
    "max_upload_bytes": int,
    "max_clip_seconds": float,
    "max_image_pixels": int,
    "max_text_chars": int,
    "request_timeout": float,
    "max_concurrency": int,
    "torch_threads": int,
    "device": str,
    "max_faces": int,
    "detector": str,
    "face_align": _bool,
    "face_margin": float,
    "face_min_size": int,
    "batch_size": int,
    "batch_wait_ms": float,
    "clip_frames": int,
    "clip_height": int,
    "decode_timeout": float,
    "cors_origins": _origins,
    "tmp_root": Path,
    "mount_ui": _bool,
}
# CROSSEMOTION_MODELS and CROSSEMOTION_MAX_UPLOAD_MB read more naturally than the field names.
_ALIASES = {"models": "models_dir", "max_upload_mb": "max_upload_bytes"}


def _alias_env(env: Mapping[str, str]) -> dict[str, str]:
    out = dict(env)
    for alias, name in _ALIASES.items():
        raw = env.get(ENV_PREFIX + alias.upper())
        if raw is not None and ENV_PREFIX + name.upper() not in env:
            out[ENV_PREFIX + name.upper()] = str(_megabytes(raw)) if alias.endswith("_mb") else raw
    return out


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """``Settings.from_env`` that also accepts ``CROSSEMOTION_MODELS`` / ``_MAX_UPLOAD_MB``."""
    return Settings.from_env(_alias_env(os.environ if env is None else env), **overrides)

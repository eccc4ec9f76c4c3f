"""Validation and decoding of uploaded media, from bytes only.

Uploads are sniffed by content, never by the client's filename or declared
content type. Wrong content (not an image / not a video container) is a
``MediaTypeError`` (HTTP 415); content of the right type that does not decode,
or breaks a limit, is a ``MediaError`` (HTTP 422).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crossemotion.ingest.video.pool import WorkerPool
    from crossemotion.ingest.video.reader import DecodeSettings

IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")


class MediaError(ValueError):
    """Content of an accepted type that cannot be used (HTTP 422)."""


class MediaTypeError(MediaError):
    """Content of a type the endpoint does not accept (HTTP 415)."""


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 ``(H, W, 3)``; the size is checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise MediaError("the uploaded file is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise MediaTypeError(f"not an image: expected one of {', '.join(IMAGE_FORMATS)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own cap (the warning too, where warnings are errors) trips in open(),
        # before the size is known here
        raise MediaError(f"image exceeds the limit of {max_pixels} pixels") from exc
    if img.format not in IMAGE_FORMATS:
        raise MediaTypeError(
            f"unsupported image format {img.format}: expected one of {', '.join(IMAGE_FORMATS)}"
        )
    width, height = img.size
    if width * height > max_pixels:
        raise MediaError(f"image of {width}x{height} pixels exceeds the limit of {max_pixels}")
    if width < 8 or height < 8:
        raise MediaError(f"image of {width}x{height} pixels is too small")
    try:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        # PIL's words go to the server log (the cause), not to the client
        raise MediaError(f"the {img.format} image could not be decoded") from exc
    return np.ascontiguousarray(rgb)


def sniff_video(data: bytes) -> str:
    """Container name from magic bytes: mp4/mov, matroska/webm or avi; else 415."""
    if len(data) < 12:
        raise MediaTypeError("not a video: the upload is too short to be a clip")
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    raise MediaTypeError("not a video: expected an mp4 (or mov, mkv/webm, avi) clip")


def private_tmp_dir(root: Path | None = None) -> Path:
    """A fresh folder only this process can read (mode 0700)."""
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="crossemotion-serve-", dir=root))


@contextmanager
def temp_upload(data: bytes, tmp_dir: Path, suffix: str) -> Iterator[Path]:
    """The upload as a server-named file in ``tmp_dir``, removed however the block ends."""
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=tmp_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ClipFrames:
    duration: float | None
    frames: list[np.ndarray]  # RGB uint8 (H, W, 3), at the requested height
    has_audio: bool | None
    status: str
    # the sound's RMS at each frame (the speaker choice's audio part); None without sound,
    # or when the sound cannot be decoded (the clip is still answered, from motion alone)
    envelope: list[float] | None = None


# seconds a decode worker gets beyond the decoder's own timeout before it is killed
KILL_GRACE = 1.0


def read_clip(
    data: bytes,
    tmp_dir: Path,
    *,
    frames: int,
    height: int,
    max_seconds: float,
    timeout: float,
    pool: WorkerPool,
) -> ClipFrames:
    """Check the container type here, then probe, enforce the length limit and sample
    frames in a ``pool`` worker (killed past ``timeout``) with the pipeline's decoder."""
    from crossemotion.ingest.video.decode import DecodeSettings
    from crossemotion.ingest.video.pool import WorkerCrashed, WorkerTimeout

    container = sniff_video(data)
    suffix = {"mp4": ".mp4", "matroska": ".mkv", "avi": ".avi"}[container]
    settings = DecodeSettings(frames=frames, height=height, max_duration=max_seconds,
                              timeout=timeout)  # fmt: skip
    with temp_upload(data, tmp_dir, suffix) as path:
        try:
            return pool.call(read_clip_file, path, settings, timeout=timeout + KILL_GRACE)
        except WorkerTimeout:
            raise MediaError(f"the clip could not be decoded within {timeout:g}s") from None
        except WorkerCrashed:
            raise MediaError("the clip could not be decoded (the decoder crashed)") from None


def read_clip_file(path: Path, settings: DecodeSettings) -> ClipFrames:
    """Runs in a decode worker: one open, the checks on the stream headers, the frames."""
    from crossemotion.ingest.video.audio import decode_audio, rms_envelope
    from crossemotion.ingest.video.reader import Clip, VideoError, sample_clip

    envelope = None
    try:
        with Clip(path, settings.limits, settings.threads) as clip:
            info = clip.info
            if not info.has_video:
                raise MediaError("the upload has no video stream")
            if info.duration is None:
                raise MediaError("the clip's duration cannot be determined")
            if info.duration > settings.max_duration:
                raise MediaError(f"clip of {info.duration:.1f}s exceeds the limit of "
                                 f"{settings.max_duration:g}s")  # fmt: skip
            result = sample_clip(clip, settings, as_rgb=True)
            if info.has_audio and result.timestamps:
                try:
                    end = max(result.timestamps) + settings.audio_window
                    sound = decode_audio(clip, end=end)
                except VideoError:
                    sound = None  # a corrupt sound stream: the faces alone decide
                if sound is not None:
                    rms = rms_envelope(sound, result.timestamps, settings.audio_window)
                    envelope = [float(v) for v in rms]
    except VideoError as exc:
        raise MediaError(f"the clip could not be read: {_hide(exc, path)}") from None
    if result.status not in ("ok", "overlong") or not result.frames:
        reason = _hide(result.reason, path)
        raise MediaError(f"the clip could not be decoded ({result.status}): {reason}")
    return ClipFrames(result.duration, result.frames, result.has_audio, result.status, envelope)


def _hide(message: object, path: Path) -> str:
    """Decoder messages may name the server's temp file; clients need not see it."""
    return str(message).replace(str(path), "<upload>").replace(path.name, "<upload>")

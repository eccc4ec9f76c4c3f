"""Which ffmpeg executable decodes the clips.

Decoding spawns one ffmpeg process per clip, so the process start is paid
13,708 times on MELD. A distribution ffmpeg links ~200 shared libraries:
on the 2-core box here ``ffmpeg -version`` alone costs ~0.1 s, about a third
of sampling a 3-second 720p clip. The static build shipped in the
``imageio-ffmpeg`` wheel starts in ~0.02 s and its newer H.264 decoder is
faster too, so it is preferred when installed.

Order: ``$CROSSEMOTION_FFMPEG`` (a path or a name on PATH), the
``imageio-ffmpeg`` binary, ``ffmpeg`` on PATH. ffprobe is only a fallback of
the in-process header probe and always comes from PATH.
"""

from __future__ import annotations

import functools
import os
import shutil

ENV = "CROSSEMOTION_FFMPEG"


@functools.cache
def ffmpeg_exe() -> str:
    chosen = os.environ.get(ENV)
    if chosen:
        found = shutil.which(chosen)
        if not found:
            raise FileNotFoundError(f"${ENV}={chosen!r} is not an executable")
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if not found:
        raise FileNotFoundError("no ffmpeg: install imageio-ffmpeg or the ffmpeg package")
    return found

"""Which ffmpeg executable the benchmarks run as the full-decode bound.

No read path starts ffmpeg any more: clips are read in-process by PyAV
(``crossemotion.ingest.video.reader``). The executable is still what *writes* clips
(the demo generator and the bench clips call ``ffmpeg`` on PATH, which has
libx264) and what the decode benchmark times as ``ffmpeg -threads 1 -i clip
-an -f null -``. For that bound the static build shipped in the
``imageio-ffmpeg`` wheel is preferred: a recent FFmpeg like PyAV's, and a
~0.02 s process start where a distribution build linking ~200 shared
libraries takes ~0.1 s, which would flatter the in-process decoder.

Order: ``$CROSSEMOTION_FFMPEG`` (a path or a name on PATH), the
``imageio-ffmpeg`` binary, ``ffmpeg`` on PATH.
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

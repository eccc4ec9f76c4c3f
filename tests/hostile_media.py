"""Hostile and broken media files for the decoder tests, made in a temp folder.

Each file is either built box by box (ISO-BMFF) or a small valid clip made by
the ffmpeg executable and then patched, so the test exercises exactly the lie
it names. ``make_all(folder)`` returns ``{name: path}``; the 200 MB
trailing-garbage clip is made separately (``trailing_garbage``) so callers
can delete it as soon as they are done.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


FTYP = box(b"ftyp", b"isom" + b"\0\0\2\0" + b"isomiso2avc1mp41")
MVHD = full_box(b"mvhd", struct.pack(">IIII", 0, 0, 1000, 1000) + b"\0" * 80)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-y", "-nostdin", "-v", "error", *args], check=True)


def find(data: bytes, path: list[bytes], start: int = 0, end: int | None = None
         ) -> list[tuple[int, int]]:  # fmt: skip
    """(box start, box end) of every box at ``path`` (e.g. [b"moov", b"trak"])."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if size < 8 or pos + size > end:
            break
        if kind == path[0]:
            if len(path) == 1:
                out.append((pos, pos + size))
            elif kind in CONTAINERS:
                out += find(data, path[1:], pos + 8, pos + size)
        pos += size
    return out


def _video_trak(data: bytes) -> tuple[int, int]:
    for a, b in find(data, [b"moov", b"trak"]):
        if b"vide" in data[a:b][:400]:
            return a, b
    raise ValueError("no video track")


def _in_video(data: bytes, path: list[bytes]) -> list[tuple[int, int]]:
    a, b = _video_trak(data)
    return find(data, path, a + 8, b)


def _put(data: bytearray, offset: int, value: int, size: int = 4) -> None:
    data[offset : offset + size] = value.to_bytes(size, "big")


# -- H.264 SPS rewriting --------------------------------------------------------------


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.pos : self.pos + n], 2)
        self.pos += n
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.pos] == "0":
            zeros += 1
            self.pos += 1
        return self.u(zeros + 1) - 1

    def rest(self) -> str:
        return self.bits[self.pos :]


def _ue(value: int) -> str:
    code = f"{value + 1:b}"
    return "0" * (len(code) - 1) + code


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\0\0\3", b"\0\0")


def _escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def huge_sps(sps: bytes, width: int = 65535, height: int = 65535) -> bytes:
    """The SPS NAL with its frame size set to ``width`` x ``height`` (monochrome, so the
    crop unit is one pixel and any size can be written)."""
    r = _Bits(_unescape(sps[1:]))
    profile, constraints, level, sps_id = r.u(8), r.u(8), r.u(8), r.ue()
    if profile not in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        raise ValueError("expected a High-profile SPS")
    chroma = r.ue()
    if chroma == 3:
        r.u(1)
    depth_luma, depth_chroma, qpprime, scaling = r.ue(), r.ue(), r.u(1), r.u(1)
    if scaling:
        raise ValueError("SPS with scaling matrices")
    max_frame_num, poc_type = r.ue(), r.ue()
    if poc_type != 0:
        raise ValueError("expected pic_order_cnt_type 0")
    poc_lsb, refs, gaps = r.ue(), r.ue(), r.u(1)
    r.ue(), r.ue()  # the old size
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        raise ValueError("expected progressive frames")
    direct, cropping = r.u(1), r.u(1)
    if cropping:
        for _ in range(4):
            r.ue()
    mbs_w, mbs_h = -(-width // 16), -(-height // 16)
    bits = (
        f"{profile:08b}{constraints:08b}{level:08b}" + _ue(sps_id) + _ue(0)  # chroma 4:0:0
        + _ue(depth_luma) + _ue(depth_chroma) + f"{qpprime}{scaling}"
        + _ue(max_frame_num) + _ue(poc_type) + _ue(poc_lsb) + _ue(refs) + f"{gaps}"
        + _ue(mbs_w - 1) + _ue(mbs_h - 1) + "1" + f"{direct}" + "1"
        + _ue(0) + _ue(mbs_w * 16 - width) + _ue(0) + _ue(mbs_h * 16 - height)
        + r.rest()
    )  # fmt: skip
    bits = bits.rstrip("0")  # the old trailing bits: one stop bit, then zeros
    bits += "0" * (-len(bits) % 8)
    rbsp = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return sps[:1] + _escape(rbsp)


def sps_size(sps: bytes) -> tuple[int, int]:
    """Frame width and height an SPS NAL declares (the subset ``huge_sps`` writes)."""
    r = _Bits(_unescape(sps[1:]))
    profile = r.u(8)
    r.u(16), r.ue()
    chroma = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = r.ue()
        if chroma == 3:
            r.u(1)
        r.ue(), r.ue(), r.u(1), r.u(1)
    r.ue()
    if r.ue() == 0:
        r.ue()
    r.ue(), r.u(1)
    mbs_w, mbs_h = r.ue() + 1, r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)
    r.u(1)
    crop = [r.ue() for _ in range(4)] if r.u(1) else [0, 0, 0, 0]
    unit_x = 1 if chroma in (0, 3) else 2
    unit_y = (1 if chroma in (0, 3) else 2 if chroma == 1 else 1) * (2 - frame_mbs_only)
    return (mbs_w * 16 - unit_x * (crop[0] + crop[1]),
            mbs_h * 16 * (2 - frame_mbs_only) - unit_y * (crop[2] + crop[3]))  # fmt: skip


def avcc_sps(data: bytes) -> bytes:
    """The first SPS NAL of the file's avcC box."""
    at = data.index(b"avcC") + 4
    length = int.from_bytes(data[at + 6 : at + 8], "big")
    return data[at + 8 : at + 8 + length]


def _replace_box(data: bytes, start: int, end: int, new: bytes) -> bytes:
    """Swap one box for ``new`` and fix the sizes of the boxes around it."""
    delta = len(new) - (end - start)
    out = bytearray(data[:start] + new + data[end:])
    for a, _ in _enclosing(data, start):
        _put(out, a, int.from_bytes(data[a : a + 4], "big") + delta)
    return bytes(out)


def _enclosing(data: bytes, offset: int) -> list[tuple[int, int]]:
    """Boxes (moov ... stsd, avc1) whose payload holds ``offset``."""
    found = []
    for path in ([b"moov"], [b"moov", b"trak"], [b"moov", b"trak", b"mdia"],
                 [b"moov", b"trak", b"mdia", b"minf"], [b"moov", b"trak", b"mdia", b"minf",
                 b"stbl"], [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"]):  # fmt: skip
        found += [(a, b) for a, b in find(data, path) if a < offset < b]
    for a, b in find(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"]):
        entry = a + 16
        if a < offset < b and data[entry + 4 : entry + 8] == b"avc1":
            found.append((entry, entry + int.from_bytes(data[entry : entry + 4], "big")))
    return found


# -- the files ------------------------------------------------------------------------


def valid_clip(path: Path, seconds: float = 2.0, faststart: bool = False) -> Path:
    """64x48 H.264 (High, B-frames) with AAC audio, 10 fps."""
    flags = ["-movflags", "+faststart"] if faststart else []
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}", "-f", "lavfi",
           "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset",
           "veryfast", "-bf", "2", "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-use_editlist", "0", *flags, str(path))  # fmt: skip
    return path


def stts_bomb(path: Path) -> Path:
    """~270 bytes whose stts claims 2^32-1 entries (the old header parser summed them all)."""
    mdhd = full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, 24, 24, 0, 0))
    hdlr = full_box(b"hdlr", b"\0" * 4 + b"vide" + b"\0" * 12 + b"v\0")
    stts = full_box(b"stts", struct.pack(">III", 0xFFFFFFFF, 1, 1))
    trak = box(b"trak", box(b"mdia", mdhd + hdlr + box(b"minf", box(b"stbl", stts))))
    path.write_bytes(FTYP + box(b"moov", MVHD + trak))
    return path


def deep_boxes(path: Path, depth: int = 10_000) -> Path:
    """Container boxes nested ``depth`` deep (the old parser recursed once per level)."""
    inner = b""
    kinds = [b"trak", b"mdia", b"minf", b"stbl"]
    for i in range(depth):
        inner = box(kinds[i % 4], inner)
    path.write_bytes(FTYP + box(b"moov", MVHD + inner))
    return path


def moov_size_lies(path: Path, src: Path, size: int) -> Path:
    """A valid clip whose moov box claims ``size`` bytes (1: a 64-bit size of 2^62)."""
    data = bytearray(src.read_bytes())
    ((a, _),) = find(bytes(data), [b"moov"])
    if size == 1:
        # a 64-bit largesize: the 8-byte header grows to 16, so slip it in front of the payload
        data[a : a + 8] = struct.pack(">I", 1) + b"moov" + struct.pack(">Q", 2**62)
    else:
        _put(data, a, size)
    path.write_bytes(bytes(data))
    return path


def huge_frame(path: Path, src: Path, width: int = 65535, height: int = 65535) -> Path:
    """A valid clip whose SPS (and sample entry and track header) say ``width`` x ``height``."""
    data = src.read_bytes()
    ((a, b),) = _in_video(data, [b"mdia", b"minf", b"stbl", b"stsd"])
    at = data.index(b"avcC", a, b) - 4
    end = at + int.from_bytes(data[at : at + 4], "big")
    avcc = bytearray(data[at + 8 : end])
    n_sps = avcc[5] & 0x1F
    if n_sps != 1:
        raise ValueError("expected one SPS")
    length = int.from_bytes(avcc[6:8], "big")
    sps = huge_sps(bytes(avcc[8 : 8 + length]), width, height)
    new = bytes(avcc[:6]) + len(sps).to_bytes(2, "big") + sps + bytes(avcc[8 + length :])
    data = _replace_box(data, at, end, box(b"avcC", new))
    out = bytearray(data)
    ((a, _),) = _in_video(data, [b"mdia", b"minf", b"stbl", b"stsd"])
    _put(out, a + 16 + 32, min(width, 65535), 2)  # avc1 width, height
    _put(out, a + 16 + 34, min(height, 65535), 2)
    ((a, b),) = _in_video(data, [b"tkhd"])
    _put(out, b - 8, min(width, 65535) << 16)  # tkhd width, height: 16.16 fixed point
    _put(out, b - 4, min(height, 65535) << 16)
    path.write_bytes(bytes(out))
    return path


def _patch_timing(src: Path, path: Path, timescale: int | None, delta: int | None,
                  duration: int | None) -> Path:  # fmt: skip
    """The video track's mdhd timescale/duration and every stts delta, rewritten."""
    data = bytearray(src.read_bytes())
    ((a, _),) = _in_video(bytes(data), [b"mdia", b"mdhd"])
    if data[a + 8] != 0:
        raise ValueError("expected a version-0 mdhd")
    if timescale is not None:
        _put(data, a + 8 + 12, timescale)
    if duration is not None:
        _put(data, a + 8 + 16, duration)
    if delta is not None:
        ((a, _),) = _in_video(bytes(data), [b"mdia", b"minf", b"stbl", b"stts"])
        count = int.from_bytes(data[a + 12 : a + 16], "big")
        for i in range(count):
            _put(data, a + 16 + 8 * i + 4, delta)
    path.write_bytes(bytes(data))
    return path


def ten_hour_claim(path: Path, tmp: Path) -> Path:
    """A ~1 kB one-frame clip whose movie, track and sample durations claim 10 hours."""
    src = tmp / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=16x16:r=25:d=0.04", "-frames:v", "1",
           "-c:v", "mpeg4", "-use_editlist", "0", "-map_metadata", "-1", "-fflags",
           "+bitexact", str(src))  # fmt: skip
    data = bytearray(src.read_bytes())
    ((a, _),) = find(bytes(data), [b"moov", b"mvhd"])
    movie_scale = int.from_bytes(data[a + 20 : a + 24], "big")
    _put(data, a + 24, 36_000 * movie_scale)
    ((a, _),) = _in_video(bytes(data), [b"tkhd"])
    _put(data, a + 28, 36_000 * movie_scale)
    ((a, _),) = _in_video(bytes(data), [b"mdia", b"mdhd"])
    scale = int.from_bytes(data[a + 20 : a + 24], "big")
    src.write_bytes(bytes(data))
    out = _patch_timing(src, path, None, 36_000 * scale, 36_000 * scale)
    src.unlink()
    return out


def truncated(path: Path, src: Path, share: float = 0.3) -> Path:
    """The first ``share`` of a faststart clip: the header promises frames that are gone."""
    data = src.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def audio_only(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac", str(path))
    return path


def trailing_garbage(path: Path, src: Path, megabytes: int = 200) -> Path:
    """A valid clip followed by ``megabytes`` MB of random bytes."""
    chunk = os.urandom(1024 * 1024)
    with path.open("wb") as fh:
        fh.write(src.read_bytes())
        for _ in range(megabytes):
            fh.write(chunk)
    return path


def make_all(folder: Path) -> dict[str, Path]:
    """Every hostile file but the 200 MB one, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = valid_clip(folder / "plain.mp4")  # moov at the end
    fast = valid_clip(folder / "faststart.mp4", faststart=True)
    makers: dict[str, Callable[[Path], Path]] = {
        "stts_bomb": stts_bomb,
        "deep_boxes": deep_boxes,
        "moov_too_big": lambda p: moov_size_lies(p, fast, 0x7FFFFFF0),
        "moov_too_small": lambda p: moov_size_lies(p, fast, 24),
        "moov_largesize": lambda p: moov_size_lies(p, fast, 1),
        "frame_65535": lambda p: huge_frame(p, plain),
        "frame_16000": lambda p: huge_frame(p, plain, 16000, 16000),
        "zero_fps": lambda p: _patch_timing(plain, p, None, 0, 0),
        "fps_2e9": lambda p: _patch_timing(plain, p, 0x7FFFFFFF, 1, 20),
        "fps_1e-5": lambda p: _patch_timing(plain, p, 1, 100_000, 2_000_000),
        "ten_hours_1kb": lambda p: ten_hour_claim(p, folder),
        "truncated": lambda p: truncated(p, fast),
        "audio_only": audio_only,
    }
    out = {name: make(folder / f"{name}.mp4") for name, make in makers.items()}
    plain.unlink()
    fast.unlink()
    return out

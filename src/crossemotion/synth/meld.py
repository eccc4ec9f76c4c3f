"""A small MELD.Raw.tar.gz in the real layout, with the real archive's quirks.

Layout written (as in the official archive)::

    MELD.Raw/train.tar.gz   -> train_splits/dia{D}_utt{U}.mp4, train_sent_emo.csv
    MELD.Raw/dev.tar.gz     -> dev_splits_complete/dia{D}_utt{U}.mp4
    MELD.Raw/test.tar.gz    -> output_repeated_splits_test/[final_videos_test]dia{D}_utt{U}.mp4
    MELD.Raw/dev_sent_emo.csv, MELD.Raw/test_sent_emo.csv
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossemotion.labels import CAST, EMOTIONS
from crossemotion.synth.archive import write_tar_gz
from crossemotion.synth.clips import (
    CONFUSABLE,
    SPEECH_STREAM,
    Box,
    ClipJob,
    render_frames,
    scene_of,
)
from crossemotion.synth.faces import LISTENER_LARGER
from crossemotion.synth.ifeed import cut_captures
from crossemotion.synth.text import utterance as template_utterance

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
SPLIT_DIRS = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}
CSV_COLUMNS = [
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
]
TEST_PREFIX = "final_videos_test"
MIN_CLIP_S, MAX_CLIP_S = 1.0, 6.0
OVERLONG_S, OVERLONG_FPS = 75.0, 2

# MELD-like class balance, flattened at the rare end so every class has
# enough training samples in a few hundred utterances.
CLASS_SHARES = {
    "neutral": 0.36,
    "joy": 0.17,
    "surprise": 0.12,
    "anger": 0.11,
    "sadness": 0.09,
    "fear": 0.075,
    "disgust": 0.075,
}
# Drawn expression differs from the label this often: a neutral-looking or
# confusable face, as real annotators disagree with what the frame shows.
FACE_LABEL_NOISE = 0.12
OTHER_SPEAKERS = [
    "Gunther",
    "Janice",
    "Mr. Geller",
    "Mrs. Geller",
    "The Interviewer",
    "Mike",
    "Emily",
    "Carol",
    "Tag",
    "Frank",
]
SENTIMENT = {"joy": "positive", "neutral": "neutral"}


@dataclass
class Utterance:
    split: str
    sr_no: int
    text: str
    speaker: str
    emotion: str
    sentiment: str
    dialogue_id: int
    utterance_id: int
    season: int
    episode: int
    start: float  # seconds into the episode
    end: float
    face_emotion: str = ""  # what the drawn face shows (== emotion unless noised)
    intensity: float = 1.0
    # the csv's own time strings, kept verbatim (real rows mix "0:36:59,425" and "00:..")
    times_text: tuple[str, str] | None = None

    @property
    def key(self) -> str:
        return f"dia{self.dialogue_id}_utt{self.utterance_id}"

    @property
    def clip_duration(self) -> float:
        return clip_duration(self.start, self.end)


def clip_duration(start: float, end: float) -> float:
    return round(min(MAX_CLIP_S, max(MIN_CLIP_S, end - start)), 3)


def format_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


_TIME = re.compile(r"^\s*(\d+):(\d+):(\d+)[,.](\d+)\s*$")


def parse_time(text: str) -> float:
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"bad MELD time {text!r} (want hh:mm:ss,mmm)")
    h, m, s, ms = match.groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")[:3]) / 1000


def stratified_labels(n: int, rng: np.random.Generator) -> list[str]:
    """Exactly the class shares (largest remainder), shuffled."""
    names = list(CLASS_SHARES)
    raw = np.array([CLASS_SHARES[k] for k in names]) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[i] += 1
    labels = [name for name, c in zip(names, counts, strict=True) for _ in range(c)]
    rng.shuffle(labels)
    return labels


def _sentiment(emotion: str, rng: np.random.Generator) -> str:
    if emotion == "surprise":
        return str(rng.choice(["positive", "negative"]))
    return SENTIMENT.get(emotion, "negative")


def _face_emotion(emotion: str, rng: np.random.Generator) -> str:
    if rng.random() >= FACE_LABEL_NOISE:
        return emotion
    return "neutral" if emotion != "neutral" and rng.random() < 0.5 else CONFUSABLE[emotion]


def plan_templates(counts: dict[str, int], seed: int) -> dict[str, list[Utterance]]:
    """Template dialogues: 3-9 utterances, 2-3 cast members and sometimes a guest."""
    plan: dict[str, list[Utterance]] = {}
    for si, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 101, si])
        labels = stratified_labels(int(counts.get(split, 0)), rng)
        utts: list[Utterance] = []
        dia = 0
        while len(utts) < len(labels):
            size = min(int(rng.integers(3, 10)), len(labels) - len(utts))
            cast = [
                str(c) for c in rng.choice(list(CAST), size=int(rng.integers(2, 4)), replace=False)
            ]
            guest = str(rng.choice(OTHER_SPEAKERS)) if rng.random() < 0.5 else None
            season, episode = int(rng.integers(1, 11)), int(rng.integers(1, 25))
            t = float(rng.uniform(60, 1200))
            for u in range(size):
                emotion = labels[len(utts)]
                speaker = (
                    guest if guest and rng.random() < 0.35 else cast[int(rng.integers(len(cast)))]
                )
                text, _ = template_utterance(emotion, rng)
                dur = round(float(rng.uniform(1.2, 5.5)), 3)
                start = round(t, 3)
                utts.append(
                    Utterance(
                        split,
                        len(utts) + 1,
                        text,
                        speaker,
                        emotion,
                        _sentiment(emotion, rng),
                        dia,
                        u,
                        season,
                        episode,
                        start,
                        round(start + dur, 3),
                    )
                )
                t = start + dur + float(rng.uniform(0.1, 0.8))
            dia += 1
        plan[split] = utts
    _assign_faces(plan, seed)
    return plan


def plan_from_csv(
    path: str | Path, counts: dict[str, int], limit: int | None, seed: int
) -> dict[str, list[Utterance]]:
    """Real rows (text, speaker, labels, ids, times): whole dialogues, split by ``counts``."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in CSV_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: not a MELD csv (missing columns {missing or CSV_COLUMNS})")
    total = int(limit) if limit else sum(int(v) for v in counts.values())
    dialogues: dict[int, list[dict[str, str]]] = {}
    taken = 0
    for row in rows:
        d = int(row["Dialogue_ID"])
        if d not in dialogues and taken >= total:
            break
        dialogues.setdefault(d, []).append(row)
        taken += 1
    order = list(dialogues)
    weights = np.array([max(0, int(counts.get(s, 0))) for s in SPLITS], float)
    bounds = np.round(np.cumsum(weights / max(weights.sum(), 1.0)) * taken).astype(int)
    plan: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    seen = 0
    for d in order:
        si = min(int(np.searchsorted(bounds, seen, side="right")), 2)
        split = SPLITS[si]
        for row in dialogues[d]:
            emotion = row["Emotion"].strip().lower()
            if emotion not in EMOTIONS:
                raise ValueError(
                    f"{path}: unknown Emotion {row['Emotion']!r} in Sr No. {row['Sr No.']}"
                )
            plan[split].append(
                Utterance(
                    split,
                    len(plan[split]) + 1,
                    row["Utterance"],
                    row["Speaker"],
                    emotion,
                    row["Sentiment"],
                    d,
                    int(row["Utterance_ID"]),
                    int(row["Season"]),
                    int(row["Episode"]),
                    parse_time(row["StartTime"]),
                    parse_time(row["EndTime"]),
                    times_text=(row["StartTime"], row["EndTime"]),
                )
            )
        seen += len(dialogues[d])
    _assign_faces(plan, seed)
    return plan


def _assign_faces(plan: dict[str, list[Utterance]], seed: int) -> None:
    for si, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 202, si])
        for u in plan.get(split, []):
            u.face_emotion = _face_emotion(u.emotion, rng)
            u.intensity = float(rng.uniform(0.65, 1.0))


def write_csv(utts: Sequence[Utterance]) -> bytes:
    buf = io.StringIO()
    # the official csvs use CRLF line ends
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for u in utts:
        writer.writerow(
            [
                u.sr_no,
                u.text,
                u.speaker,
                u.emotion,
                u.sentiment,
                u.dialogue_id,
                u.utterance_id,
                u.season,
                u.episode,
                *(u.times_text or (format_time(u.start), format_time(u.end))),
            ]
        )
    return buf.getvalue().encode("utf-8")


@dataclass
class Quirks:
    missing: list[dict] = field(default_factory=list)
    corrupt: list[dict] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    prefixed: list[dict] = field(default_factory=list)
    no_audio: list[dict] = field(default_factory=list)
    overlong: list[dict] = field(default_factory=list)
    # reaction shots (synth.faces.listener_larger): the listener is the larger face
    listener_larger: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict]]:
        return {
            "missing": self.missing,
            "corrupt": self.corrupt,
            "extra": self.extra,
            "final_videos_test": self.prefixed,
            "no_audio": self.no_audio,
            "overlong": self.overlong,
            "listener_larger": self.listener_larger,
        }


def _first_cast(utts: Sequence[Utterance], start: int) -> int:
    """The first utterance at or after ``start`` spoken by a cast member (else ``start``).

    The demo's missing and corrupt clips are cast utterances, so that IFEED
    can hold faces of clips the MELD archive lacks, as the real one may.
    """
    n = len(utts)
    for offset in range(n):
        i = (start + offset) % n
        if utts[i].speaker in CAST:
            return i
    return start


def plan_clips(
    plan: dict[str, list[Utterance]], fps: int, seed: int
) -> tuple[list[ClipJob], Quirks]:
    """One job per clip to write, with the real archive's quirks mixed in."""
    q = Quirks()
    jobs: list[ClipJob] = []
    for si, split in enumerate(SPLITS):
        utts = plan.get(split, [])
        n = len(utts)
        missing = {_first_cast(utts, n // 2)} if split == "dev" and n >= 2 else set()
        corrupt = {_first_cast(utts, n // 3)} if split == "train" and n >= 3 else set()
        no_audio = {1, 4} & set(range(n)) if split == "test" and n >= 6 else set()
        overlong = {2} if split == "test" and n >= 6 else set()
        for i, u in enumerate(utts):
            entry = {
                "split": split,
                "key": u.key,
                "dialogue_id": u.dialogue_id,
                "utterance_id": u.utterance_id,
            }
            name = f"dia{u.dialogue_id}_utt{u.utterance_id}.mp4"
            if split == "test" and u.dialogue_id % 3 == 1:
                name = TEST_PREFIX + name
                q.prefixed.append({**entry, "file": name})
            member = f"{SPLIT_DIRS[split]}/{name}"
            job = ClipJob(
                split,
                u.key,
                member,
                u.speaker,
                u.face_emotion,
                u.intensity,
                u.clip_duration,
                fps,
                seed=(seed, si, u.dialogue_id, u.utterance_id),
                dialogue_id=u.dialogue_id,
                utterance_id=u.utterance_id,
            )
            if i in missing:
                job.missing = True
                q.missing.append({**entry, "file": member})
            if i in corrupt:
                job.corrupt = True
                q.corrupt.append({**entry, "file": member})
            if i in no_audio:
                job.audio = False
                q.no_audio.append({**entry, "file": member})
            if i in overlong:
                job.duration, job.fps, job.overlong = OVERLONG_S, OVERLONG_FPS, True
                q.overlong.append({**entry, "file": member, "duration": OVERLONG_S})
            if not job.missing and scene_of(job)[0].kind == LISTENER_LARGER:
                q.listener_larger.append({**entry, "file": member})
            jobs.append(job)
        if split == "dev" and n:
            # clips with no csv row, like dev dia66_utt9 in the real archive
            last = utts[-1]
            for extra_utt in (last.utterance_id + 1, last.utterance_id + 2):
                key = f"dia{last.dialogue_id}_utt{extra_utt}"
                member = f"{SPLIT_DIRS[split]}/{key}.mp4"
                q.extra.append(
                    {
                        "split": split,
                        "key": key,
                        "dialogue_id": last.dialogue_id,
                        "utterance_id": extra_utt,
                        "file": member,
                    }
                )
                extra_job = ClipJob(
                    split,
                    key,
                    member,
                    last.speaker,
                    "neutral",
                    0.5,
                    2.0,
                    fps,
                    annotated=False,
                    seed=(seed, si, last.dialogue_id, extra_utt),
                    dialogue_id=last.dialogue_id,
                    utterance_id=extra_utt,
                )
                if scene_of(extra_job)[0].kind == LISTENER_LARGER:
                    q.listener_larger.append({**q.extra[-1]})
                jobs.append(extra_job)
    return jobs, q


def _voice_hz(speaker: str) -> int:
    return 140 + (sum(map(ord, speaker)) % 12) * 15


AUDIO_RATE = 16_000
# the voice: harmonics of the speaker's pitch with falling strength, as a voiced
# vowel's spectrum falls; loud while the mouth is open, near silent while shut
HARMONICS = (1.0, 0.6, 0.35, 0.2)
VOICE_PEAK = 0.5
CLOSED_LEVEL = 0.03  # envelope while the mouth is closed, share of the open level
RAMP_S = 0.02  # onsets and offsets: a linear ramp of 20 ms, not a click
NOISE_FLOOR = 0.004  # room noise, standard deviation (full scale 1)


def voice(
    speech: Sequence[float],
    fps: float,
    duration: float,
    hz: float,
    rng: np.random.Generator,
    rate: int = AUDIO_RATE,
) -> np.ndarray:
    """A mono voice-like signal (float32 in [-1, 1]) whose loudness follows the mouth.

    ``speech``: the speaker's mouth per frame (``faces.syllables``). The sound at
    time t follows the frame nearest t (frame i is shown at i / fps), so an RMS
    window centred on a frame's time hears that frame's mouth. The envelope
    steps between ``CLOSED_LEVEL`` and the syllable's opening (at most 1), smoothed
    into ``RAMP_S`` ramps; a slow
    pitch wobble (±3 % at 4-6 Hz) keeps it from sounding like a test tone.
    """
    n = max(1, round(duration * rate))
    t = np.arange(n, dtype=np.float64) / rate
    if speech:
        frame = np.clip(np.floor(t * fps + 0.5).astype(np.int64), 0, len(speech) - 1)
        # as loud as the mouth is open (a wider syllable is a louder one)
        level = np.maximum(np.asarray(speech, np.float64)[frame], CLOSED_LEVEL)
    else:
        level = np.ones(n)
    # a moving average of RAMP_S turns each step into a linear ramp of that length
    k = max(1, round(RAMP_S * rate))
    padded = np.concatenate([np.full(k // 2, level[0]), level, np.full(k - 1 - k // 2, level[-1])])
    envelope = np.convolve(padded, np.ones(k) / k, mode="valid")
    wobble_hz = float(rng.uniform(4.0, 6.0))
    phase = (
        2 * np.pi * hz * (t + 0.03 / (2 * np.pi * wobble_hz) * np.sin(2 * np.pi * wobble_hz * t))
    )
    tone = sum(a * np.sin((i + 1) * phase) for i, a in enumerate(HARMONICS)) / sum(HARMONICS)
    out = VOICE_PEAK * envelope * tone + rng.normal(0.0, NOISE_FLOOR, n)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """16-bit mono PCM WAV of float samples in [-1, 1]."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(pcm.tobytes())


def encode(job: ClipJob, width: int, height: int, target: Path) -> list[tuple[Any, bytes, Box]]:
    """Raw RGB frames on stdin -> H.264/yuv420p (+ AAC voice) mp4, bit-exact flags.

    The sound (``voice``) follows the speaker's mouth; it goes to ffmpeg as a
    WAV beside ``target``, removed once the clip is written.

    Returns the IFEED images cut from the clip's frames (``job.captures``):
    (capture, JPEG, crop box in the frame). A ``missing`` clip is rendered
    for those only and never written.
    """
    frames, boxes = render_frames(job, width, height)
    cut = cut_captures(job, frames, boxes)
    if job.missing:
        return cut
    raw = frames.tobytes()
    wav: Path | None = None
    if job.audio:
        spec, _, _ = scene_of(job)
        speech_rng = np.random.default_rng([*job.seed, SPEECH_STREAM, 1])
        samples = voice(spec.speech, job.fps, job.duration, _voice_hz(job.speaker), speech_rng)
        fd, name = tempfile.mkstemp(prefix=f".{job.key}-", suffix=".wav", dir=target.parent)
        os.close(fd)
        wav = Path(name)
        write_wav(wav, samples)
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-y",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-r",
        str(job.fps),
        "-i",
        "-",
    ]
    if wav is not None:
        cmd += [
            "-i",
            str(wav),
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:a",
            "aac",
            "-b:a",
            "32k",
            "-ac",
            "1",
        ]
    else:
        cmd += ["-an"]
    cmd += [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "28",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-t",
        f"{job.duration}",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        str(target),
    ]
    try:
        proc = subprocess.run(cmd, input=raw, capture_output=True)
    finally:
        if wav is not None:
            wav.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"ffmpeg failed for {job.key}: {proc.stderr.decode(errors='replace')[-800:]}"
        )
    if job.corrupt:
        # a damaged download: the header survives, the rest is noise
        data = target.read_bytes()
        noise = (
            np.random.default_rng(list(job.seed)).integers(0, 256, 4096, dtype=np.uint8).tobytes()
        )
        target.write_bytes(data[:1024] + noise)
    return cut


def build_meld_archive(
    plan: dict[str, list[Utterance]],
    jobs: Sequence[ClipJob],
    quirks: Quirks,
    target: Path,
    workdir: Path,
    width: int,
    height: int,
    workers: int = 2,
) -> tuple[dict, list[tuple[ClipJob, Any, bytes, Box]]]:
    """Render every clip, then pack the nested tars.

    Returns the quirks/summary dict and the IFEED images cut while rendering,
    as (job, capture, JPEG, crop box), in job order.
    """
    clip_dir = workdir / "clips"
    for split in SPLITS:
        (clip_dir / SPLIT_DIRS[split]).mkdir(parents=True, exist_ok=True)
    # ffmpeg runs in subprocesses and OpenCV drops the GIL, so threads scale
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        cuts = list(pool.map(lambda j: encode(j, width, height, clip_dir / j.file), jobs))
    written = [j for j in jobs if not j.missing]
    for split in SPLITS:
        members: list[tuple[str, bytes | Path | None]] = [(SPLIT_DIRS[split], None)]
        members += sorted(
            ((j.file, clip_dir / j.file) for j in written if j.split == split),
            key=lambda m: m[0],
        )
        if split == "train":
            members.append(("train_sent_emo.csv", write_csv(plan[split])))
        write_tar_gz(workdir / f"{split}.tar.gz", members, compresslevel=1)
    outer: list[tuple[str, bytes | Path | None]] = [("MELD.Raw", None)]
    outer += [(f"MELD.Raw/{s}.tar.gz", workdir / f"{s}.tar.gz") for s in SPLITS]
    outer += [(f"MELD.Raw/{s}_sent_emo.csv", write_csv(plan[s])) for s in ("dev", "test")]
    write_tar_gz(target, outer, compresslevel=1)
    noisy = sum(u.face_emotion != u.emotion for s in SPLITS for u in plan.get(s, []))
    total = sum(len(plan.get(s, [])) for s in SPLITS)
    summary = {
        "utterances": {s: len(plan.get(s, [])) for s in SPLITS},
        "clips": {s: sum(j.split == s for j in written) for s in SPLITS},
        "face_label_mismatch": round(noisy / max(total, 1), 4),
        "quirks": quirks.as_dict(),
    }
    images = [(job, *c) for job, cut in zip(jobs, cuts, strict=True) for c in cut]
    return summary, images

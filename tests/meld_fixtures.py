"""Hostile MELD trees for the ingestion tests, built with ffmpeg in a temp folder.

Every quirk of DESIGN.md's list is present: a missing annotated clip, a
corrupt (truncated) clip, a zero-byte clip, an extra clip without annotation,
the ``final_videos_test`` prefix, a clip without audio, an audio-only file, a
5-minute clip, an unknown label, mojibake in the text, csvs in odd places and
a ``__MACOSX`` decoy.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

HEADER = [
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


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-y", "-nostdin", "-v", "error", *args], check=True)


def make_clips(folder: Path) -> dict[str, Path]:
    """The source clips, made once and copied into trees."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {name: folder / f"{name}.mp4" for name in ("av", "noaudio", "audioonly", "long")}
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=10:duration=1.5",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1.5",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        str(out["av"]),
    )
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=10:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        str(out["noaudio"]),
    )
    _ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac", str(out["audioonly"])
    )
    # Really 5 minutes long, made cheap by 32x32 at 1 fps.
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=32x32:rate=1:duration=300",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "10",
        "-pix_fmt",
        "yuv420p",
        str(out["long"]),
    )
    corrupt = folder / "corrupt.mp4"
    data = out["av"].read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])  # moov atom sits at the end: cut off
    out["corrupt"] = corrupt
    return out


def write_csv(path: Path, rows: list[tuple], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i, (dia, utt, text, speaker, emotion) in enumerate(rows, start=1):
            w.writerow(
                [
                    i,
                    text,
                    speaker,
                    emotion,
                    "neutral",
                    dia,
                    utt,
                    3,
                    4,
                    f"00:0{utt}:01,250",
                    f"00:0{utt}:03,500",
                ]
            )


# (dia, utt, text, speaker, emotion) per split
ANNOTATIONS: dict[str, list[tuple]] = {
    "train": [
        (0, 0, "Hi there.", "Ross", "joy"),
        (1, 0, "I donâ€™t know.", "Rachel Green", "sadness"),
        (2, 0, "What is this?", "Gunther", "Confused"),  # unknown label
        (3, 0, "Okay.", "Joey", "neutral"),
        (3, 1, "Fine.", "Joey", "anger"),
    ],
    "dev": [
        (0, 0, "Oh.", "Monica", "surprise"),
        (0, 1, "Where is it?", "Chandler", "fear"),  # missing clip
        (1, 0, "Empty file.", "Phoebe", "neutral"),  # zero-byte clip
        (1, 1, "Broken.", "Phoebe", "disgust"),  # corrupt clip
    ],
    "test": [
        (0, 0, "Prefixed.", "Ross", "joy"),  # final_videos_test prefix
        (0, 1, "No audio here.", "Monica", "neutral"),
        (1, 0, "Only sound.", "Joey", "anger"),  # audio-only file
        (2, 0, "This goes on and on.", "Chandler", "neutral"),  # 5 minutes
    ],
}

EXPECTED_INDEX = {
    ("train", "dia0_utt0"): "ok",
    ("train", "dia1_utt0"): "ok",
    ("train", "dia2_utt0"): "unknown_label",
    ("train", "dia3_utt0"): "ok",
    ("train", "dia3_utt1"): "ok",
    ("dev", "dia0_utt0"): "ok",
    ("dev", "dia0_utt1"): "missing",
    ("dev", "dia1_utt0"): "empty",
    ("dev", "dia1_utt1"): "ok",  # corrupt only shows when decoding
    ("dev", "dia66_utt9"): "unannotated",
    ("test", "dia0_utt0"): "ok",
    ("test", "dia0_utt1"): "ok",
    ("test", "dia1_utt0"): "ok",
    ("test", "dia2_utt0"): "ok",
}

EXPECTED_MANIFEST = {
    **EXPECTED_INDEX,
    ("dev", "dia1_utt1"): "corrupt",
    ("test", "dia1_utt0"): "no_video",
    ("test", "dia2_utt0"): "overlong",
}


def build_tree(root: Path, clips: dict[str, Path]) -> Path:
    """An unpacked MELD tree with odd nesting; returns ``root``."""
    base = root / "MELD.Raw"
    train = base / "train" / "train_splits"
    dev = base / "nested" / "deeper" / "dev_splits_complete"
    test = base / "output_repeated_splits_test"
    for d in (train, dev, test):
        d.mkdir(parents=True, exist_ok=True)
    for dia, utt in ((0, 0), (1, 0), (2, 0), (3, 0), (3, 1)):
        shutil.copy(clips["av"], train / f"dia{dia}_utt{utt}.mp4")
    shutil.copy(clips["av"], dev / "dia0_utt0.mp4")
    (dev / "dia1_utt0.mp4").write_bytes(b"")
    shutil.copy(clips["corrupt"], dev / "dia1_utt1.mp4")
    shutil.copy(clips["av"], dev / "dia66_utt9.mp4")
    shutil.copy(clips["av"], test / "final_videos_testdia0_utt0.mp4")
    shutil.copy(clips["noaudio"], test / "dia0_utt1.mp4")
    shutil.copy(clips["audioonly"], test / "dia1_utt0.mp4")
    shutil.copy(clips["long"], test / "dia2_utt0.mp4")
    # csvs in odd places: train's inside the train folder, dev's two levels up
    write_csv(base / "train" / "annotations" / "train_sent_emo.csv", ANNOTATIONS["train"])
    write_csv(base / "dev_sent_emo.csv", ANNOTATIONS["dev"])
    write_csv(root / "test_sent_emo.csv", ANNOTATIONS["test"])
    # macOS resource-fork decoys must be ignored
    decoy = root / "__MACOSX" / "MELD.Raw"
    decoy.mkdir(parents=True)
    (decoy / "._dev_sent_emo.csv").write_bytes(b"\x00\x05\x16\x07")
    (decoy / "dev_splits_complete").mkdir()
    for i in range(12):
        (decoy / "dev_splits_complete" / f"._dia{i}_utt0.mp4").write_bytes(b"\x00")
    return root

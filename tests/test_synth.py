"""The demo generator writes MELD/IFEED archives in the real layouts."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from crossemotion.labels import CAST, EMOTIONS, IFEED_NAMES, normalize_label
from crossemotion.synth.generate import SynthSettings, generate
from crossemotion.synth.meld import CSV_COLUMNS, clip_duration, format_time, parse_time

SMALL = dict(
    utterances={"train": 14, "dev": 8, "test": 9},
    ifeed_images={"train": 24, "test": 12},
    width=160,
    height=120,
    fps=10,
    face_size=64,
    seed=3,
)
SPLIT_DIRS = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}


def _read_tar(path_or_bytes: Path | bytes) -> dict[str, bytes | None]:
    fileobj = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else None
    with tarfile.open(name=None if fileobj else path_or_bytes, fileobj=fileobj, mode="r:gz") as tar:
        out: dict[str, bytes | None] = {}
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f else None
        return out


def _csv_rows(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    return list(reader.fieldnames or []), list(reader)


def _probe(data: bytes, tmp: Path) -> dict:
    path = tmp / "probe.mp4"
    path.write_bytes(data)
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,pix_fmt:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {"error": out.stderr}
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, generate(out, SynthSettings(**SMALL))


@pytest.fixture(scope="module")
def meld(demo: tuple[Path, dict]) -> dict[str, dict[str, bytes | None]]:
    out, _ = demo
    outer = _read_tar(out / "MELD.Raw.tar.gz")
    inner = {s: _read_tar(outer[f"MELD.Raw/{s}.tar.gz"]) for s in ("train", "dev", "test")}  # type: ignore[arg-type]
    return {"outer": outer, **inner}


def test_meld_layout_and_csvs(meld: dict, demo: tuple[Path, dict]) -> None:
    outer = meld["outer"]
    assert set(outer) == {
        "MELD.Raw",
        "MELD.Raw/train.tar.gz",
        "MELD.Raw/dev.tar.gz",
        "MELD.Raw/test.tar.gz",
        "MELD.Raw/dev_sent_emo.csv",
        "MELD.Raw/test_sent_emo.csv",
    }
    assert "train_sent_emo.csv" in meld["train"] and "MELD.Raw/train_sent_emo.csv" not in outer
    sources = {
        "train": meld["train"]["train_sent_emo.csv"],
        "dev": outer["MELD.Raw/dev_sent_emo.csv"],
        "test": outer["MELD.Raw/test_sent_emo.csv"],
    }
    for split, data in sources.items():
        header, rows = _csv_rows(data)
        assert header == CSV_COLUMNS
        assert len(rows) == SMALL["utterances"][split]
        assert all(r["Emotion"] in EMOTIONS for r in rows)
        for r in rows:
            assert format_time(parse_time(r["StartTime"])) == r["StartTime"]
            assert parse_time(r["EndTime"]) > parse_time(r["StartTime"])
        clips = {n for n in meld[split] if n.endswith(".mp4")}
        assert clips and all(n.startswith(SPLIT_DIRS[split] + "/") for n in clips)
        names = {Path(n).name.removeprefix("final_videos_test") for n in clips}
        assert all(n.startswith("dia") and "_utt" in n for n in names)
    train_rows = _csv_rows(sources["train"])[1]
    speakers = [r["Speaker"] for r in train_rows]
    assert sum(s in CAST for s in speakers) / len(speakers) >= 0.5


def test_meld_quirks_are_in_the_archive(meld: dict, demo: tuple[Path, dict]) -> None:
    quirks = demo[1]["meld"]["quirks"]
    for kind in ("missing", "corrupt", "extra", "final_videos_test", "no_audio", "overlong"):
        assert quirks[kind], kind
    sources = {
        "dev": meld["outer"]["MELD.Raw/dev_sent_emo.csv"],
        "test": meld["outer"]["MELD.Raw/test_sent_emo.csv"],
    }
    dev_keys = {
        f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}" for r in _csv_rows(sources["dev"])[1]
    }
    for q in quirks["missing"]:
        assert q["key"] in dev_keys and q["file"] not in meld[q["split"]]
    for q in quirks["extra"]:
        assert q["key"] not in dev_keys and q["file"] in meld[q["split"]]
    for q in quirks["final_videos_test"]:
        assert f"output_repeated_splits_test/{q['file']}" in meld["test"]
        assert q["file"].startswith("final_videos_testdia")


def test_clips_are_h264_aac_of_labelled_duration(
    meld: dict, tmp_path: Path, demo: tuple[Path, dict]
) -> None:
    quirks = demo[1]["meld"]["quirks"]
    odd = {q["file"] for k in ("corrupt", "no_audio", "overlong") for q in quirks[k]}
    checked = 0
    for split, name in (("train", "train_sent_emo.csv"), ("test", None)):
        data = meld[split][name] if name else meld["outer"]["MELD.Raw/test_sent_emo.csv"]
        for row in _csv_rows(data)[1][:4]:
            key = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}.mp4"
            member = next(n for n in meld[split] if n.endswith(key))
            if member in odd:
                continue
            info = _probe(meld[split][member], tmp_path)
            kinds = {s["codec_type"]: s for s in info["streams"]}
            assert kinds["video"]["codec_name"] == "h264" and kinds["video"]["pix_fmt"] == "yuv420p"
            assert kinds["audio"]["codec_name"] == "aac"
            want = clip_duration(parse_time(row["StartTime"]), parse_time(row["EndTime"]))
            assert abs(float(info["format"]["duration"]) - want) <= 0.2, (member, info, want)
            checked += 1
    assert checked >= 4


def test_odd_clips_are_odd(meld: dict, tmp_path: Path, demo: tuple[Path, dict]) -> None:
    quirks = demo[1]["meld"]["quirks"]
    for q in quirks["no_audio"]:
        info = _probe(meld[q["split"]][q["file"]], tmp_path)
        assert [s["codec_type"] for s in info["streams"]] == ["video"]
    for q in quirks["overlong"]:
        info = _probe(meld[q["split"]][q["file"]], tmp_path)
        assert float(info["format"]["duration"]) > 60
    for q in quirks["corrupt"]:
        probe = _probe(meld[q["split"]][q["file"]], tmp_path)
        proc = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", "-", "-f", "null", "-"],
            input=meld[q["split"]][q["file"]],
            capture_output=True,
        )
        assert "error" in probe or proc.returncode != 0 or proc.stderr.strip(), (
            "corrupt clip decodes"
        )


def test_ifeed_layout_and_labels(demo: tuple[Path, dict]) -> None:
    out, summary = demo
    with zipfile.ZipFile(out / "IFEED_Base.zip") as zf:
        names = zf.namelist()
        files = [n for n in names if not n.endswith("/")]
        junk = summary["ifeed"]["junk"]
        assert set(junk.values()) <= set(files)
        images = [n for n in files if n not in junk.values()]
        assert len(images) == sum(SMALL["ifeed_images"].values())
        for name in images:
            top, folder, source, fname = name.split("/")
            assert top == "IFEED_Base" and folder in ("Training", "Testing")
            assert source.startswith("dia") and "_utt" in source
            frame, character, label = fname.removesuffix(".jpg").split("_")
            assert frame.startswith("frame") and character in CAST
            assert normalize_label(label) in EMOTIONS
        listed = {m["member"]: m for v in summary["ifeed"]["members"].values() for m in v}
        for name in images:
            label = name.removesuffix(".jpg").rsplit("_", 1)[1]
            assert normalize_label(label) == listed[name]["label"]
        spellings = {n.removesuffix(".jpg").rsplit("_", 1)[1] for n in images}
        assert spellings & set(IFEED_NAMES.values()) and spellings - set(IFEED_NAMES.values())
        img = cv2.imdecode(np.frombuffer(zf.read(images[0]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and min(img.shape[:2]) >= 32
        assert (
            cv2.imdecode(np.frombuffer(zf.read(junk["undecodable"]), np.uint8), cv2.IMREAD_COLOR)
            is None
        )


def _frame(clip: bytes, index: int, tmp: Path) -> np.ndarray:
    path = tmp / "clip.mp4"
    path.write_bytes(clip)
    cap = cv2.VideoCapture(str(path))
    frame = None
    for _ in range(index + 1):
        ok, frame = cap.read()
        assert ok, f"frame {index} not in the clip"
    cap.release()
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def test_ifeed_images_are_crops_of_meld_frames(
    demo: tuple[Path, dict], meld: dict, tmp_path: Path
) -> None:
    out, summary = demo
    truth = pl.read_parquet(out / "ifeed_truth.parquet")
    with zipfile.ZipFile(out / "IFEED_Base.zip") as zf:
        junk = set(summary["ifeed"]["junk"].values())
        images = {n for n in zf.namelist() if n.endswith(".jpg") and n not in junk}
        assert set(truth["member"].to_list()) == images
        # sources from every MELD split; IFEED folders name the key without the split
        assert set(truth["meld_split"].to_list()) == {"train", "dev", "test"}
        keys_by_split = {
            s: {f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}" for r in _csv_rows(data)[1]}
            for s, data in (
                ("train", meld["train"]["train_sent_emo.csv"]),
                ("dev", meld["outer"]["MELD.Raw/dev_sent_emo.csv"]),
                ("test", meld["outer"]["MELD.Raw/test_sent_emo.csv"]),
            )
        }
        shared = [
            k for k in truth["key"].unique() if sum(k in v for v in keys_by_split.values()) > 1
        ]
        assert shared, "no IFEED key names clips of two MELD splits"
        for row in truth.iter_rows(named=True):
            assert row["member"].split("/")[2] == row["key"]
            assert f"frame{row['frame_index']}_{row['character']}_" in row["member"]
            assert row["character"] in CAST
            if row["role"] == "speaker":
                assert row["character"] == row["speaker"]
        # a few images come from clips the archive lacks or cannot decode
        without = truth.filter(pl.col("clip_status") != "ok")
        assert 0 < without.height <= 0.25 * truth.height
        assert set(without["member"].to_list()) == set(summary["ifeed"]["without_clip"])
        for row in without.iter_rows(named=True):
            assert (
                row["clip_file"] not in meld[row["meld_split"]] or row["clip_status"] == "corrupt"
            )
        # the image is the frame's crop: decode the clip, cut the box, compare
        checked = 0
        for row in truth.filter(pl.col("clip_status") == "ok").head(8).iter_rows(named=True):
            frame = _frame(meld[row["meld_split"]][row["clip_file"]], row["frame_index"], tmp_path)
            x, y, w, h = row["x"], row["y"], row["w"], row["h"]
            assert x >= 0 and x + w <= frame.shape[1] and y >= 0 and y + h <= frame.shape[0]
            image = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(zf.read(row["member"]), np.uint8), cv2.IMREAD_COLOR),
                cv2.COLOR_BGR2RGB,
            )
            crop = cv2.resize(frame[y : y + h, x : x + w], image.shape[1::-1])
            ncc = np.corrcoef(crop.astype(float).ravel(), image.astype(float).ravel())[0, 1]
            assert ncc > 0.9, (row["member"], ncc)
            # another frame of another clip does not look the same
            other = cv2.resize(frame[:h, :w], image.shape[1::-1])
            assert np.corrcoef(other.astype(float).ravel(), image.astype(float).ravel())[0, 1] < ncc
            checked += 1
        assert checked == 8
    # labels: the expression drawn in the frame, with a little noise
    assert (truth["label"] == truth["shown"]).mean() >= 0.8


def test_deterministic(demo: tuple[Path, dict], meld: dict, tmp_path: Path) -> None:
    settings = SynthSettings(**{**SMALL, "utterances": {"train": 14, "dev": 8, "test": 9}})
    again = generate(tmp_path, settings)
    assert (tmp_path / "IFEED_Base.zip").read_bytes() == (demo[0] / "IFEED_Base.zip").read_bytes()
    assert again["meld"] == demo[1]["meld"]
    outer = _read_tar(tmp_path / "MELD.Raw.tar.gz")
    assert outer["MELD.Raw/dev_sent_emo.csv"] == meld["outer"]["MELD.Raw/dev_sent_emo.csv"]
    train = _read_tar(outer["MELD.Raw/train.tar.gz"])  # type: ignore[arg-type]
    assert train.keys() == meld["train"].keys()
    assert train["train_sent_emo.csv"] == meld["train"]["train_sent_emo.csv"]


def test_annotations_mode_uses_real_rows(meld_csvs: Path, tmp_path: Path) -> None:
    real = _csv_rows((meld_csvs / "train_sent_emo.csv").read_bytes())[1]
    settings = SynthSettings(
        **{
            **SMALL,
            "utterances": {"train": 6, "dev": 3, "test": 3},
            "ifeed_images": {"train": 4, "test": 2},
            "width": 96,
            "height": 96,
            "annotations": str(meld_csvs / "train_sent_emo.csv"),
            "limit": 20,
        }
    )
    summary = generate(tmp_path, settings)
    outer = _read_tar(tmp_path / "MELD.Raw.tar.gz")
    train = _read_tar(outer["MELD.Raw/train.tar.gz"])  # type: ignore[arg-type]
    rows = (
        _csv_rows(train["train_sent_emo.csv"])[1]
        + _csv_rows(outer["MELD.Raw/dev_sent_emo.csv"])[1]
        + _csv_rows(outer["MELD.Raw/test_sent_emo.csv"])[1]
    )  # type: ignore[arg-type]
    assert 20 <= len(rows) < 40  # whole dialogues, at least `limit` rows
    fields = [
        "Utterance",
        "Speaker",
        "Emotion",
        "Dialogue_ID",
        "Utterance_ID",
        "StartTime",
        "EndTime",
    ]
    assert [[r[f] for f in fields] for r in rows] == [
        [r[f] for f in fields] for r in real[: len(rows)]
    ]
    assert sum(summary["meld"]["utterances"].values()) == len(rows)

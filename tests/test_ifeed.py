"""IFEED ingestion: member parsing, manifest, faces shards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from crossemotion.ingest.ifeed import members as ifeed
from crossemotion.ingest.manifest import TooManyBadItems

ROOT = Path(__file__).resolve().parents[1]
FACE_SIZE = 32

SPELLINGS = {
    "Angry": "anger",
    "angry": "anger",
    "ANGRY": "anger",
    "Disgusted": "disgust",
    "disgust": "disgust",
    "Fearful": "fear",
    "fear": "fear",
    "fea": "fear",
    "Happy": "joy",
    "happy": "joy",
    "Neutral": "neutral",
    "Sad": "sadness",
    "sad": "sadness",
    "Surprised": "surprise",
    "surprise": "surprise",
}


def _jpeg(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


# member -> (bytes, expected status); a hostile extraction folder
FIXTURE: dict[str, tuple[bytes, str]] = {
    "IFEED_Base/Training/dia3_utt1/frame0_Rachel_Happy.jpg": (_jpeg(140, 170, 1), "ok"),
    "IFEED_Base/Training/dia3_utt1/frame6_Rachel_happy.jpg": (_jpeg(140, 170, 2), "ok"),
    "IFEED_Base/Training/dia3_utt1/frame9_Rachel_Surprised.jpg": (_jpeg(150, 150, 3), "ok"),
    "IFEED_Base/Training/dia12_utt0/frame3_Joey_fea.jpg": (_jpeg(170, 140, 4), "ok"),
    "IFEED_Base/Training/dia4_utt2/frame1_Monica_Disgusted.jpg": (_jpeg(90, 120, 5), "ok"),
    "IFEED_Base/Testing/dia0_utt0/frame2_Ross_Sad.jpg": (_jpeg(140, 170, 6), "ok"),
    "IFEED_Base/Testing/dia0_utt0/frame4_Ross_Neutral.jpg": (_jpeg(140, 170, 7), "ok"),
    "IFEED_Base/Testing/misc/frame1_Gunther_Angry.jpg": (_jpeg(60, 80, 8), "ok"),
    "other_copy/deep/er/IFEED_Extra/train/x/dia7_utt2_frame3_Phoebe_fear.png": (
        cv2.imencode(".png", np.full((40, 50, 3), 120, np.uint8))[1].tobytes(),
        "ok",
    ),
    "IFEED_Base/Training/dia700_utt1/frame7_Joey_Confused.jpg": (_jpeg(50, 50), "unknown_label"),
    "IFEED_Base/Training/dia700_utt1/snapshot.jpg": (_jpeg(50, 50), "unparsable_name"),
    "IFEED_Base/Testing/dia5_utt5/frame3_Ross_.jpg": (_jpeg(50, 50), "unparsable_name"),
    "IFEED_Base/dia1_utt1/frame0_Joey_Happy.jpg": (_jpeg(50, 50), "unparsable_name"),
    "IFEED_Base/Training/dia700_utt2/frame4_Rachel_Happy.jpg": (
        b"\xff\xd8\xff\xe0 truncated " + bytes(range(200)),
        "undecodable_image",
    ),
    "IFEED_Base/Testing/dia8_utt1/frame5_Monica_Fearful.jpg": (b"", "empty"),
    "IFEED_Base/README.txt": (b"IFEED readme", "skipped"),
}
REPORT = {
    "archives": [
        {
            "archive": "resources/ifeed/IFEED_Base.zip",
            "skipped": [
                {"member": "__MACOSX/IFEED_Base/._Training", "reason": "macOS metadata"},
            ],
            "refused": [
                {"member": "../evil.jpg", "reason": "path escapes the extraction folder"},
            ],
        }
    ]
}


@pytest.fixture
def unpacked(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "unpacked"
    for member, (data, _) in FIXTURE.items():
        path = root / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    report = tmp_path / "unpack_report.json"
    report.write_text(json.dumps(REPORT))
    return root, report


def _ingest(unpacked: tuple[Path, Path], out: Path, n_shards: int = 2, budget: float = 0.9):
    root, report = unpacked
    return ifeed.ingest(
        root,
        report,
        out / "faces",
        out / "manifest.parquet",
        out / "summary.md",
        face_size=FACE_SIZE,
        n_shards=n_shards,
        max_bad_fraction=budget,
        threads=2,
    )


@pytest.mark.parametrize(("spelling", "canonical"), SPELLINGS.items())
def test_every_spelling_maps(spelling: str, canonical: str) -> None:
    rec = ifeed.parse_member(f"IFEED_Base/Training/dia1_utt2/frame3_Rachel_{spelling}.jpg")
    assert (rec.status, rec.label, rec.raw_label) == ("ok", canonical, spelling)


def test_unknown_label_is_reported_not_guessed() -> None:
    rec = ifeed.parse_member("IFEED_Base/Testing/dia1_utt2/frame3_Joey_Contempt.jpg")
    assert rec.status == "unknown_label"
    assert rec.label is None and rec.raw_label == "Contempt"
    assert "Contempt" in rec.reason


@pytest.mark.parametrize(
    "member",
    [
        "IFEED_Base/Training/dia1_utt2/snapshot.jpg",
        "IFEED_Base/Training/dia1_utt2.jpg",
        "IFEED_Base/Training/x/frame3_Ross_.jpg",
        "IFEED_Base/Training/x/frame3_Ross_H4ppy.jpg",
        "IFEED_Base/dia1_utt2/frame3_Ross_Happy.jpg",  # no split folder
    ],
)
def test_unparsable_names_are_reported(member: str) -> None:
    rec = ifeed.parse_member(member)
    assert rec.status == "unparsable_name"
    assert rec.reason and rec.label is None


@pytest.mark.parametrize(
    ("member", "split"),
    [
        ("IFEED_Base/Training/dia1_utt2/frame0_Ross_Sad.jpg", "train"),
        ("IFEED_Base/Testing/dia1_utt2/frame0_Ross_Sad.jpg", "test"),
        ("a/b/c/TRAINING/d/e/dia1_utt2/frame0_Ross_Sad.jpg", "train"),
        ("copy/test/frame0_Ross_Sad.jpg", "test"),
        ("IFEED_Train/frame0_Ross_Sad.jpg", "train"),
        # innermost split folder wins; 'testdia' inside a key folder is not a split
        ("x/Testing/train/final_videos_testdia101_utt0/frame0_Ross_Sad.jpg", "train"),
    ],
)
def test_splits_parsed(member: str, split: str) -> None:
    assert ifeed.parse_member(member).split == split


@pytest.mark.parametrize(
    ("member", "key", "frame", "speaker", "character"),
    [
        (
            "IFEED_Base/Training/dia12_utt3/frame7_Rachel_Happy.jpg",
            "dia12_utt3",
            7,
            "Rachel",
            "Rachel",
        ),
        ("IFEED_Base/Training/dia007_utt03/frame0_joey_Happy.jpg", "dia7_utt3", 0, "joey", "Joey"),
        ("IFEED_Base/Testing/dia5_utt1_frame2_Phoebe_Sad.jpg", "dia5_utt1", 2, "Phoebe", "Phoebe"),
        (
            "IFEED_Base/Testing/final_videos_testdia101_utt0/frame2_Janice_Sad.jpg",
            "dia101_utt0",
            2,
            "Janice",
            "Other",
        ),
        ("IFEED_Base/Testing/misc/frame2_Ross_Sad.jpg", None, 2, "Ross", "Ross"),
        ("IFEED_Base/Testing/Monica/frame2_Sad.jpg", None, 2, "Monica", "Monica"),
    ],
)
def test_keys_frames_characters_parsed(
    member: str, key: str | None, frame: int, speaker: str, character: str
) -> None:
    rec = ifeed.parse_member(member)
    assert rec.status == "ok"
    assert (rec.key, rec.frame_index, rec.speaker, rec.character) == (
        key,
        frame,
        speaker,
        character,
    )
    if key:
        d, u = map(int, re.findall(r"\d+", key))
        assert (rec.dialogue_id, rec.utterance_id) == (d, u)


def test_manifest_statuses(unpacked: tuple[Path, Path], tmp_path: Path) -> None:
    manifest = _ingest(unpacked, tmp_path / "out")
    status = dict(zip(manifest["member"], manifest["status"], strict=True))
    for member, (_, expected) in FIXTURE.items():
        assert status[member] == expected, member
    # the unpacker's skipped/refused members are listed, with its reasons
    reported = manifest.filter(pl.col("member").str.contains("evil|__MACOSX"))
    assert reported.height == 2
    assert set(reported["status"]) == {"skipped"}
    assert any("escapes" in r for r in reported["reason"])
    assert manifest.filter(pl.col("status") != "ok")["reason"].str.len_chars().min() > 0
    assert (tmp_path / "out" / "manifest.parquet").exists()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| train | ok | joy | 2 |" in summary


def test_shards_match_manifest_and_schema(unpacked: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = _ingest(unpacked, out, n_shards=3)
    parts = sorted((out / "faces").glob("*/part-*.parquet"))
    assert len(parts) == 2 * 3  # every split x shard exists, empty ones too
    faces = pl.scan_parquet(out / "faces" / "*" / "*.parquet").collect()
    ok = manifest.filter(pl.col("status") == "ok")
    assert faces.height == ok.height == 9
    assert sorted(faces["id"]) == sorted(ok["member"])

    expected_columns = _faces_columns_from_architecture_doc()
    for part in parts:
        assert list(pl.read_parquet_schema(part)) == expected_columns
    row = faces.filter(pl.col("id").str.contains("frame0_Rachel_Happy")).row(0, named=True)
    assert (row["dataset"], row["split"], row["key"], row["label"]) == (
        "ifeed",
        "train",
        "dia3_utt1",
        "joy",
    )
    assert row["bbox"] == [0, 0, 140, 170] and row["n_faces"] == 1 and row["score"] == 1.0
    for jpeg in faces["image"]:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (FACE_SIZE, FACE_SIZE, 3)
    # one utterance's frames share a shard
    per_key = ok.drop_nulls("key").group_by("key").agg(pl.col("shard").n_unique())
    assert per_key["shard"].max() == 1


def test_sharding_is_deterministic(unpacked: tuple[Path, Path], tmp_path: Path) -> None:
    a = _ingest(unpacked, tmp_path / "a", n_shards=3)
    b = _ingest(unpacked, tmp_path / "b", n_shards=3)
    assert a.equals(b)
    for part in sorted((tmp_path / "a" / "faces").glob("*/*.parquet")):
        other = tmp_path / "b" / "faces" / part.relative_to(tmp_path / "a" / "faces")
        assert pl.read_parquet(part).equals(pl.read_parquet(other))


def test_bad_fraction_budget_fails_clearly(unpacked: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TooManyBadItems, match="max_bad_fraction"):
        _ingest(unpacked, tmp_path / "out", budget=0.1)
    # the reasons stay behind for the user
    assert (tmp_path / "out" / "manifest.parquet").exists()


def test_square_face_crop_and_pad() -> None:
    image = np.zeros((100, 60, 3), np.uint8)
    image[:20] = 255  # a band the centre crop removes and padding keeps
    assert ifeed.square_face(image, 30).shape == (30, 30, 3)
    assert ifeed.square_face(image, 30).max() == 0
    padded = ifeed.square_face(image, 30, fit="pad")
    assert padded.shape == (30, 30, 3) and padded.max() == 255


def _faces_columns_from_architecture_doc() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"same schema for both datasets: `([^`]*)`", text, re.S)
    assert block, "faces shard contract not found in docs/architecture.md"
    flat = re.sub(r"\([^)]*\)", "", block.group(1))
    return [c.strip() for c in flat.split(",") if c.strip()]


def test_manifest_schema_has_every_parsed_field_in_order() -> None:
    # from_pylist drops a field the schema lacks without a word
    from dataclasses import fields

    assert [f.name for f in fields(ifeed.ParsedMember)] == ifeed.MANIFEST_SCHEMA.names

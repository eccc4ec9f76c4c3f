"""The per-utterance speaker table and its character-wise summary, on hand-built
speakers, faces, clips and alignment frames: an IFEED hit, a miss, a clip without
face, an utterance without IFEED box, clips with one and with two primary tracks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossemotion.ingest.ifeed.align import ALIGNMENT_SCHEMA
from crossemotion.labels import OTHER
from crossemotion.reporting.speakers import (
    BY_CHARACTER_COLUMNS,
    as_pandas,
    read_inputs,
    speakers_by_character,
    speakers_table,
)

# the speakers shards' schema as the faces stage writes it (crops.SPEAKER_SCHEMA)
TRACK = pa.struct([("track_id", pa.int32()), ("length", pa.int32()),
                   ("mean_size", pa.float64()), ("centrality", pa.float64()),
                   ("mean_score", pa.float64()), ("motion", pa.float64()),
                   ("audio_corr", pa.float64()), ("score", pa.float64())])  # fmt: skip
SPEAKER_SCHEMA = pa.schema([
    ("split", pa.string()), ("dialogue_id", pa.int32()), ("utterance_id", pa.int32()),
    ("key", pa.string()), ("character", pa.string()), ("speaker", pa.string()),
    ("selector", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("audio", pa.string()), ("audio_reason", pa.string()), ("n_frames", pa.int32()),
    ("n_tracks", pa.int32()), ("speaker_track", pa.int32()), ("confidence", pa.float64()),
    ("speaking", pa.float64()), ("motion", pa.float64()), ("audio_corr", pa.float64()),
    ("method", pa.string()), ("tracks", pa.list_(TRACK)),
])  # fmt: skip
FACES_SCHEMA = pa.schema([("split", pa.string()), ("key", pa.string()),
                          ("frame_index", pa.int32()), ("bbox", pa.list_(pa.int32())),
                          ("n_faces", pa.int32()), ("track_id", pa.int32())])  # fmt: skip
TIMES = [0.0, 0.1, 0.2, 0.3, 0.4]
SPEAKER_BOX, LISTENER_BOX = [20, 20, 40, 50], [200, 30, 30, 36]  # decoded pixels (180 high)


def _speaker(split: str, dia: int, key: str, character: str, status: str = "ok", **kw: Any
             ) -> dict[str, Any]:  # fmt: skip
    found = status == "ok"
    return {
        "split": split, "dialogue_id": dia, "utterance_id": 0, "key": key,
        "character": character, "speaker": character, "selector": "track", "status": status,
        "reason": None if found else "no face found in the 5 sampled frames",
        "audio": "ok", "audio_reason": None, "n_frames": 5, "n_tracks": 1 if found else 0,
        "speaker_track": 0 if found else None, "confidence": 0.8 if found else None,
        "speaking": 0.9 if found else None, "motion": 0.3 if found else None,
        "audio_corr": 0.7 if found else None, "method": "single" if found else "none",
        "tracks": [], **kw,
    }  # fmt: skip


def _faces(
    split: str,
    key: str,
    frames: list[int],
    tracks: list[int | None],
    n_faces: int = 1,
    boxes: list[list[int]] | None = None,
) -> list[dict[str, Any]]:
    boxes = boxes or [SPEAKER_BOX] * len(frames)
    return [{"split": split, "key": key, "frame_index": f, "bbox": b, "n_faces": n_faces,
             "track_id": t} for f, t, b in zip(frames, tracks, boxes, strict=True)]  # fmt: skip


def _ifeed(member: str, split: str, dia: int, character: str, time: float,
           box: list[int], status: str = "matched") -> dict[str, Any]:  # fmt: skip
    # the IFEED box is in the clip's own pixels: twice the decoded frame's
    x, y, w, h = (2 * v for v in box)
    return {"member": member, "ifeed_split": "train", "key": f"dia{dia}_utt0",
            "character": character, "status": status, "meld_split": split,
            "dialogue_id": dia, "utterance_id": 0, "time": time, "x": x, "y": y, "w": w,
            "h": h, "frame_width": 640, "frame_height": 360}  # fmt: skip


@pytest.fixture
def shards(tmp_path: Path) -> dict[str, Any]:
    speakers = [
        _speaker("train", 1, "train_dia1_utt0", "Ross"),  # an IFEED hit
        _speaker("train", 2, "train_dia2_utt0", "Ross", confidence=0.4),  # a miss
        _speaker("dev", 3, "dev_dia3_utt0", "Joey", status="no_face"),  # no face, a box
        # a guest: no IFEED box; two primary tracks in a two-face clip
        _speaker("test", 4, "test_dia4_utt0", OTHER, n_tracks=2),
        _speaker("test", 5, "test_dia5_utt0", "Monica", n_tracks=2),  # two faces, one track
    ]
    faces = (
        # the speaker far away in frame 0, on the IFEED box in frame 3
        _faces("train", "train_dia1_utt0", [0, 3], [0, 0], boxes=[LISTENER_BOX, SPEAKER_BOX])
        + _faces("train", "train_dia2_utt0", [0, 1, 2], [0, 0, 0], boxes=[LISTENER_BOX] * 3)
        + _faces("test", "test_dia4_utt0", [0, 1, 2], [0, 0, 1], n_faces=2)
        + _faces("test", "test_dia5_utt0", [0, 1, 2, 3], [2, 2, 2, 2], n_faces=2)
    )
    clips = [{"split": s["split"], "key": s["key"], "timestamps": TIMES, "height": 180}
             for s in speakers]  # fmt: skip
    alignment = pl.DataFrame(
        [
            _ifeed("a", "train", 1, "Ross", 0.32, SPEAKER_BOX),
            _ifeed("b", "train", 2, "Ross", 0.1, SPEAKER_BOX),
            _ifeed("c", "dev", 3, "Joey", 0.2, SPEAKER_BOX),
            # a bystander of Monica's clip, and an image not matched: neither counts
            _ifeed("d", "test", 5, "Rachel", 0.1, LISTENER_BOX),
            _ifeed("e", "test", 5, "Monica", 0.1, LISTENER_BOX, status="ambiguous"),
        ],
        schema=ALIGNMENT_SCHEMA,
    )
    paths = {"speakers": tmp_path / "speakers.parquet", "faces": tmp_path / "faces.parquet",
             "clips": tmp_path / "clips.parquet"}  # fmt: skip
    pq.write_table(pa.Table.from_pylist(speakers, schema=SPEAKER_SCHEMA), paths["speakers"])
    pq.write_table(pa.Table.from_pylist(faces, schema=FACES_SCHEMA), paths["faces"])
    pq.write_table(pa.Table.from_pylist(clips), paths["clips"])
    return {"paths": paths, "alignment": alignment}


def _table(shards: dict[str, Any], alignment: pl.DataFrame | None = None) -> pl.DataFrame:
    p = shards["paths"]
    speakers, faces, clips = read_inputs([p["speakers"]], [p["faces"]], [p["clips"]])
    ifeed = shards["alignment"] if alignment is None else alignment
    return speakers_table(speakers, faces, ifeed, clips)


def test_one_row_per_utterance_with_the_ifeed_check(shards: dict[str, Any]) -> None:
    table = _table(shards)
    assert table["key"].to_list() == ["dev_dia3_utt0", "test_dia4_utt0", "test_dia5_utt0",
                                      "train_dia1_utt0", "train_dia2_utt0"]  # fmt: skip
    row = {r["key"]: r for r in table.iter_rows(named=True)}
    # the face kept nearest the IFEED frame (frame 3 at 0.3 s, not frame 0) is on the box
    hit = row["train_dia1_utt0"]
    assert (hit["ifeed_boxes"], hit["ifeed_agree"]) == (1, True)
    assert hit["ifeed_iou"] == pytest.approx(1.0)
    # the kept face is elsewhere: a miss
    miss = row["train_dia2_utt0"]
    assert (miss["ifeed_boxes"], miss["ifeed_agree"]) == (1, False)
    assert miss["ifeed_iou"] == 0.0
    # no face kept but a box: the speaker was not found, a miss too
    none = row["dev_dia3_utt0"]
    assert (none["status"], none["ifeed_agree"], none["max_faces"]) == ("no_face", False, 0)
    assert none["reason"].startswith("no face found")
    # no box of the speaker (a guest; a bystander's and an ambiguous image do not count)
    for key in ("test_dia4_utt0", "test_dia5_utt0"):
        assert (row[key]["ifeed_boxes"], row[key]["ifeed_agree"]) == (0, None)
    # the speakers shard's own columns pass through
    assert hit["method"] == "single" and hit["speaking"] == 0.9 and hit["confidence"] == 0.8
    assert {"audio", "n_tracks", "speaker_track", "character"} <= set(table.columns)


def test_the_nearest_sampled_frame_decides(shards: dict[str, Any]) -> None:
    """The same box at 0.02 s meets frame 0's face, which is elsewhere."""
    moved = shards["alignment"].with_columns(
        pl.when(pl.col("member") == "a").then(0.02).otherwise(pl.col("time")).alias("time")
    )
    row = _table(shards, moved).filter(pl.col("key") == "train_dia1_utt0").row(0, named=True)
    assert row["ifeed_agree"] is False


def test_every_box_of_an_utterance_must_agree(shards: dict[str, Any]) -> None:
    two = pl.concat([shards["alignment"], pl.DataFrame(
        [_ifeed("f", "train", 1, "Ross", 0.0, SPEAKER_BOX)], schema=ALIGNMENT_SCHEMA)])  # fmt: skip
    row = _table(shards, two).filter(pl.col("key") == "train_dia1_utt0").row(0, named=True)
    assert (row["ifeed_boxes"], row["ifeed_agree"], row["ifeed_iou"]) == (2, False, 0.0)


def test_primary_tracks_per_clip(shards: dict[str, Any]) -> None:
    row = {r["key"]: r for r in _table(shards).iter_rows(named=True)}
    assert (row["test_dia4_utt0"]["max_faces"], row["test_dia4_utt0"]["primary_tracks"]) == (2, 2)
    assert (row["test_dia5_utt0"]["max_faces"], row["test_dia5_utt0"]["primary_tracks"]) == (2, 1)
    assert row["train_dia1_utt0"]["primary_tracks"] == 1


def test_shards_without_track_ids_count_each_face_as_its_own(tmp_path: Path) -> None:
    """A faces shard from before tracking has no track_id: read as nulls, no evidence."""
    speakers = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist([_speaker("train", 1, "k", "Ross")],
                                        schema=SPEAKER_SCHEMA), speakers)  # fmt: skip
    faces = tmp_path / "f.parquet"
    pl.DataFrame({"split": ["train"] * 2, "key": ["k"] * 2, "frame_index": [0, 1],
                  "bbox": [SPEAKER_BOX] * 2, "n_faces": [2, 2]}).write_parquet(faces)  # fmt: skip
    clips = tmp_path / "c.parquet"
    pl.DataFrame({"split": ["train"], "key": ["k"], "timestamps": [TIMES],
                  "height": [180]}).write_parquet(clips)  # fmt: skip
    s, f, c = read_inputs([speakers], [faces], [clips])
    row = speakers_table(s, f, pl.DataFrame(schema=ALIGNMENT_SCHEMA), c).row(0, named=True)
    assert (row["max_faces"], row["primary_tracks"], row["ifeed_agree"]) == (2, 2, None)


def test_by_character(shards: dict[str, Any]) -> None:
    summary = speakers_by_character(_table(shards))
    assert list(summary.columns) == list(BY_CHARACTER_COLUMNS)
    cell = {(r.split, r.character): r for r in summary.itertuples()}
    ross = cell[("train", "Ross")]
    assert (ross.utterances, ross.found, ross.found_share) == (2, 2, 1.0)
    assert ross.mean_confidence == pytest.approx(0.6)
    assert (ross.ifeed_checked, ross.ifeed_agreement) == (2, 0.5)
    joey = cell[("dev", "Joey")]
    assert (joey.found, joey.found_share, joey.ifeed_agreement) == (0, 0.0, 0.0)
    assert pd.isna(joey.mean_confidence)  # no confidence without a speaker
    # the guest is Other; its clip's primary faces come from two tracks
    other = cell[("test", OTHER)]
    assert (other.ifeed_checked, other.multi_face_clips, other.one_track) == (0, 1, 0)
    # all of test: of two clips with two faces, one keeps one track
    test = cell[("test", "all")]
    assert (test.multi_face_clips, test.one_track, test.one_track_share) == (2, 1, 0.5)
    everything = cell[("all", "all")]
    assert (everything.utterances, everything.found) == (5, 4)
    assert everything.found_share == pytest.approx(0.8)
    assert (everything.ifeed_checked, everything.ifeed_agreement) == (3, pytest.approx(1 / 3))
    # characters without utterances in a split are left out, the all rows never
    assert ("train", "Joey") not in cell and ("dev", "all") in cell


def test_integer_columns_stay_integers_for_the_csv(shards: dict[str, Any]) -> None:
    frame = as_pandas(_table(shards)).set_index("key")
    assert frame.loc["train_dia1_utt0", "speaker_track"] == 0
    assert pd.isna(frame.loc["dev_dia3_utt0", "speaker_track"])
    assert str(frame["speaker_track"].dtype) == "Int64"
    assert str(frame["n_tracks"].dtype) == "Int64"

"""The speaker stage end to end: decode (frames + the sound's loudness) -> faces shard with
face tracks -> speakers shard -> manifest, on clips made from a real photograph.

The clips are tests/test_tracks.py's: Grace Hopper's portrait (matplotlib's sample
data) as a 60 px speaker whose mouth opens in time with a voice-like sound, beside a
96 px, more central listener whose mouth is still. Edge clips: no sound, no face,
a face in one sampled frame, a corrupt audio stream. Each gets a status and a
reason in the manifest and the shard goes on.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from crossemotion.ingest import manifest as mf
from crossemotion.ingest.faces.crops import SPEAKER_SCHEMA, FaceSettings, faces_shard
from crossemotion.ingest.ifeed.members import FACE_SHARD_SCHEMA
from crossemotion.ingest.video.decode import DecodeSettings, decode_shard
from tests.test_audio import corrupt_audio
from tests.test_tracks import HEIGHT, SAMPLES, Scene, make_clip

SPLIT = "dev"


def _index_row(i: int, file: Path) -> dict:
    return {
        "split": SPLIT, "dialogue_id": 1, "utterance_id": i, "key": f"dia1_utt{i}",
        "speaker": "Grace", "character": "other", "label": "neutral", "sentiment": "neutral",
        "text": "a line", "season": 1, "episode": 1, "start_time": None, "end_time": None,
        "file": str(file), "status": "ok", "reason": None,
    }  # fmt: skip


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    tmp = tmp_path_factory.mktemp("speaker_stage")
    talk = make_clip(tmp / "talk.mp4", Scene())
    clips = {
        "talk": talk,
        "silent": make_clip(tmp / "silent.mp4", Scene(), sound="none"),
        "no_face": make_clip(tmp / "empty.mp4", Scene(speaker=None, listener=None)),
        "one_frame": make_clip(
            tmp / "flash.mp4",
            Scene(listener=None, speaker_hidden=frozenset(range(SAMPLES)) - {5}),
        ),
        "bad_audio": corrupt_audio(talk, tmp / "bad_audio.mp4"),
    }
    names = list(clips)
    index = pl.DataFrame([_index_row(i, clips[n]) for i, n in enumerate(names)])
    # exact: one sample per slot of the clips, so the flash clip's face is in one sampled
    # frame (``exact: false`` may take two frames of its slot); at the clips' own height
    settings = DecodeSettings(frames=SAMPLES, height=HEIGHT, exact=True, timeout=60)
    status = decode_shard(
        index.drop("status", "reason"), settings, tmp / "clips.parquet", tmp / "status.parquet"
    )
    out: dict[str, pl.DataFrame] = {"status": status}
    for selector in ("track", "largest"):
        s = FaceSettings(size=48, margin=0.15, min_size=16, selector=selector)
        faces_shard(tmp / "clips.parquet", tmp / f"faces_{selector}.parquet", s,
                    speakers_out=tmp / f"speakers_{selector}.parquet")  # fmt: skip
        assert pq.read_schema(tmp / f"faces_{selector}.parquet").equals(FACE_SHARD_SCHEMA)
        assert pq.read_schema(tmp / f"speakers_{selector}.parquet").equals(SPEAKER_SCHEMA)
        out[f"faces_{selector}"] = pl.read_parquet(tmp / f"faces_{selector}.parquet")
        out[f"speakers_{selector}"] = pl.read_parquet(tmp / f"speakers_{selector}.parquet")
    out["manifest"] = mf.build_meld_manifest(
        index, status, out["faces_track"], out["speakers_track"]
    )
    out["keys"] = pl.DataFrame({"name": names, "key": index["key"]})
    return out


def _key(stage: dict[str, pl.DataFrame], name: str) -> str:
    return str(stage["keys"].filter(pl.col("name") == name)["key"][0])


def _row(frame: pl.DataFrame, key: str) -> dict:
    return frame.filter(pl.col("key") == key).row(0, named=True)


def _centre_near(bbox: list[int], where: tuple[float, float] | None, tol: float = 15.0) -> bool:
    assert where is not None
    x, y, w, h = bbox
    return math.hypot(x + w / 2 - where[0], y + h / 2 - where[1]) < tol


def test_every_edge_clip_has_a_status_and_a_reason(stage: dict[str, pl.DataFrame]) -> None:
    m = stage["manifest"]
    # every clip decoded and stays usable: sound and speaker never fail a clip
    assert m["status"].to_list() == ["ok"] * 5
    talk = _row(m, _key(stage, "talk"))
    assert talk["audio_status"] == "ok" and talk["speaker_status"] == "ok"
    assert talk["speaker_method"] == "audio+motion"
    silent = _row(m, _key(stage, "silent"))
    assert silent["audio_status"] == "none" and silent["speaker_method"] == "motion"
    bad = _row(m, _key(stage, "bad_audio"))
    assert bad["audio_status"] == "corrupt" and "corrupt audio stream" in bad["audio_reason"]
    assert bad["speaker_status"] == "ok" and bad["speaker_method"] == "motion"
    empty = _row(m, _key(stage, "no_face"))
    assert empty["speaker_status"] == "no_face" and "no face" in empty["speaker_reason"]
    assert empty["faces_found"] == 0
    flash = _row(m, _key(stage, "one_frame"))
    assert flash["speaker_status"] == "one_frame" and "one sampled frame" in flash["speaker_reason"]
    assert flash["faces_found"] == 1
    summary = mf.meld_summary(m)
    assert "Speaker: no_face 1, ok 3, one_frame 1." in summary
    assert "Sound: corrupt 1, none 1, ok 3." in summary


@pytest.mark.parametrize("name", ["talk", "silent", "bad_audio"])
def test_track_selector_follows_the_talking_face(stage: dict[str, pl.DataFrame], name: str) -> None:
    """``track`` keeps the smaller talking face in every frame, under one track id;
    ``largest`` keeps the larger listener, frame by frame."""
    scene, key = Scene(), _key(stage, name)
    faces = stage["faces_track"].filter(pl.col("key") == key)
    assert faces.height == SAMPLES
    assert faces["track_id"].n_unique() == 1
    assert all(_centre_near(b, scene.speaker) for b in faces["bbox"].to_list())
    assert (faces["n_faces"] == 2).all()
    largest = stage["faces_largest"].filter(pl.col("key") == key)
    assert all(_centre_near(b, scene.listener) for b in largest["bbox"].to_list())
    record = _row(stage["speakers_track"], key)
    assert record["n_tracks"] == 2 and record["confidence"] > 0.3
    (chosen,) = [t for t in record["tracks"] if t["track_id"] == record["speaker_track"]]
    other = next(t for t in record["tracks"] if t["track_id"] != record["speaker_track"])
    assert chosen["motion"] > 3 * other["motion"] and chosen["mean_size"] < other["mean_size"]
    # the largest selector records its own name and still links the tracks
    assert _row(stage["speakers_largest"], key)["selector"] == "largest"


def test_sound_is_kept_at_the_picked_frames(stage: dict[str, pl.DataFrame]) -> None:
    status = stage["status"]
    assert dict(zip(status["key"], status["audio_status"], strict=True)) == {
        _key(stage, "talk"): "ok",
        _key(stage, "silent"): "none",
        _key(stage, "no_face"): "ok",
        _key(stage, "one_frame"): "ok",
        _key(stage, "bad_audio"): "corrupt",
    }


def test_faces_settings_default_is_track() -> None:
    assert FaceSettings().selector == "track"
    assert replace(FaceSettings(), selector="largest").selector == "largest"

"""The speaker-face yardstick with a comparison detector, on a small generated world:
the configured detector's faces shards and Haar run on the same frames in one call,
each in its own labelled rows; Haar's rows are what a Haar faces stage would give."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import yaml

from crossemotion.ingest.archives.unpack import safe_extract
from crossemotion.ingest.faces.crops import FaceSettings, faces_shard
from crossemotion.ingest.meld.index import build_index, decodable_rows
from crossemotion.ingest.video.decode import DecodeSettings, decode_shard
from crossemotion.reporting.speaker_faces import (
    COMPARISON,
    CONFIGURED,
    compared_items,
    speaker_items,
    speaker_table,
)
from crossemotion.synth.generate import TRUTH_NAME, SynthSettings, generate

ROOT = Path(__file__).resolve().parents[1]
# the demo's frame, face and decode sizes, fewer clips
WORLD = dict(
    utterances={"train": 24, "dev": 8, "test": 12},
    ifeed_images={"train": 36, "test": 12},
    width=320,
    height=240,
    fps=10,
    face_size=96,
    seed=23,
)
SCALE = 1.45


def _demo_faces() -> FaceSettings:
    with open(ROOT / "config" / "demo.yaml") as fh:
        faces = yaml.safe_load(fh)["meld"]["faces"]
    return FaceSettings.from_config(faces)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Clips and faces shards as the demo's workflow makes them; the IFEED images'
    true sources stand in for the alignment (its own tests score the aligner)."""
    root = tmp_path_factory.mktemp("speaker_faces")
    generate(root / "demo", SynthSettings(**WORLD))
    safe_extract([root / "demo" / "MELD.Raw.tar.gz"], root / "meld", progress=False)
    index = build_index(root / "meld", {})
    truth = pl.read_parquet(root / "demo" / TRUTH_NAME)
    alignment = truth.filter(pl.col("clip_status") == "ok").with_columns(
        pl.lit("matched").alias("status")
    )
    settings = _demo_faces()
    clips, faces, haar_faces = [], [], []
    for split in ("train", "dev", "test"):
        clips.append(root / f"clips-{split}.parquet")
        faces.append(root / f"faces-{split}.parquet")
        haar_faces.append(root / f"haar-{split}.parquet")
        rows = decodable_rows(index, split, 0, 1)
        decode_shard(rows, DecodeSettings(frames=8, height=180), clips[-1], root / "st.parquet")
        faces_shard(clips[-1], faces[-1], settings)
        # the faces stage as it would run with Haar configured, for the check below
        faces_shard(clips[-1], haar_faces[-1], replace(settings, detector="haar"))
    return {"alignment": alignment, "index": index, "truth": truth, "clips": clips,
            "faces": faces, "haar_faces": haar_faces, "settings": settings}  # fmt: skip


def test_both_detectors_on_the_same_images(world: dict) -> None:
    settings = world["settings"]
    args = (world["alignment"], world["index"], world["faces"], world["clips"], SCALE)
    items = compared_items(*args, settings, ["haar"], align=True)
    assert items.columns[:2] == ["detector", "detector_role"]
    runs = items.group_by("detector", "detector_role", maintain_order=True).len()
    assert runs.rows() == [(settings.detector, CONFIGURED, runs["len"][0]),
                           ("haar", COMPARISON, runs["len"][0])]  # fmt: skip
    # the same images for both: every speaker image whose clip was decoded
    by = {d: items.filter(pl.col("detector") == d) for d in (settings.detector, "haar")}
    assert by["haar"]["member"].to_list() == by[settings.detector]["member"].to_list()
    speakers = world["truth"].filter(pl.col("role") == "speaker")["member"].to_list()
    assert set(by["haar"]["member"].to_list()) <= set(speakers)
    assert by["haar"].height >= 0.8 * len(speakers)
    # the configured rows are the faces shards' verdicts, as without a comparison
    alone = speaker_items(*args, align=True)
    assert alone.drop("detector", "detector_role", strict=False).equals(
        by[settings.detector].drop("detector", "detector_role")
    )
    # Haar's rows are what the faces stage configured with Haar gives
    haar_stage = speaker_items(world["alignment"], world["index"], world["haar_faces"],
                               world["clips"], SCALE, align=True)  # fmt: skip
    assert haar_stage.equals(by["haar"].drop("detector", "detector_role"))

    table = speaker_table(items)
    overall = table[(table["split"] == "all") & (table["character"] == "all")]
    assert overall["detector"].tolist() == [settings.detector, "haar"]
    assert overall["detector_role"].tolist() == [CONFIGURED, COMPARISON]
    learned, haar = (overall.iloc[i] for i in range(2))
    print(f"speaker faces on {learned['n']} images: {settings.detector} primary "
          f"{learned['primary_rate']:.3f} window {learned['window_rate']:.3f}; haar primary "
          f"{haar['primary_rate']:.3f} window {haar['window_rate']:.3f}")  # fmt: skip
    assert learned["n"] == haar["n"] == by["haar"].height
    # the demo's drawn world holds hard shots Haar misses: the learned detector
    # finds the speaker at least as often
    assert learned["primary_rate"] >= 0.9
    assert learned["primary_hits"] >= haar["primary_hits"]


def test_a_table_without_comparison_keeps_its_shape(world: dict) -> None:
    items = speaker_items(world["alignment"], world["index"], world["faces"], world["clips"],
                          SCALE)  # fmt: skip
    table = speaker_table(items)
    assert list(table.columns[:3]) == ["detector", "detector_role", "split"]
    assert set(table["detector_role"]) == {CONFIGURED}
    # a box elsewhere in the frame misses: the yardstick can fail
    moved = world["alignment"].with_columns(pl.col("x") + 160)
    again = speaker_table(speaker_items(moved, world["index"], world["faces"], world["clips"],
                                        SCALE))  # fmt: skip
    assert again[again["split"] == "all"]["primary_rate"].iloc[-1] < 0.5


def test_the_configured_detector_is_no_comparison(world: dict) -> None:
    settings = world["settings"]
    with pytest.raises(ValueError, match="configured detector"):
        compared_items(world["alignment"], world["index"], world["faces"], world["clips"],
                       SCALE, settings, [settings.detector])  # fmt: skip

"""The speaker-face yardstick with a comparison detector and a comparison selector, on
a small generated world: the configured detector's faces shards and Haar (or the
largest-face selector) run on the same frames in one call, each in its own labelled
rows; Haar's rows are what a Haar faces stage would give. Clip kinds (listener larger
than the speaker, or not) are measured on the frames, one kind per image for every block."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import yaml

from crossemotion.config import ConfigError, validate_config
from crossemotion.ingest.archives.unpack import safe_extract
from crossemotion.ingest.faces.crops import FaceSettings, faces_shard
from crossemotion.ingest.faces.detect import Detection
from crossemotion.ingest.ifeed.align import iou
from crossemotion.ingest.meld.index import build_index, decodable_rows
from crossemotion.ingest.video.decode import DecodeSettings, decode_shard
from crossemotion.reporting.speaker_faces import (
    COMPARISON,
    CONFIGURED,
    LISTENER_LARGER,
    OTHER,
    clip_kind,
    compared_items,
    speaker_items,
    speaker_table,
)
from crossemotion.reporting.speakers import read_inputs, speakers_by_character, speakers_table
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
    clips, faces, haar_faces, largest_faces, speakers = [], [], [], [], []
    for split in ("train", "dev", "test"):
        clips.append(root / f"clips-{split}.parquet")
        faces.append(root / f"faces-{split}.parquet")
        haar_faces.append(root / f"haar-{split}.parquet")
        largest_faces.append(root / f"largest-{split}.parquet")
        rows = decodable_rows(index, split, 0, 1)
        decode_shard(rows, DecodeSettings(frames=8, height=180), clips[-1], root / "st.parquet")
        speakers.append(root / f"speakers-{split}.parquet")
        faces_shard(clips[-1], faces[-1], settings, speakers_out=speakers[-1])
        # the faces stage as it would run with Haar configured, for the check below
        faces_shard(clips[-1], haar_faces[-1], replace(settings, detector="haar"))
        # and with the largest face picked frame by frame, for the selectors' check
        faces_shard(clips[-1], largest_faces[-1], replace(settings, selector="largest"))
    return {"alignment": alignment, "index": index, "truth": truth, "clips": clips,
            "faces": faces, "haar_faces": haar_faces, "largest_faces": largest_faces,
            "speakers": speakers, "settings": settings}  # fmt: skip


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
    labels = ["detector", "detector_role", "selector", "selector_role", "clip_kind"]
    assert alone.equals(by[settings.detector].drop(labels))
    # Haar's rows are what the faces stage configured with Haar gives
    haar_stage = speaker_items(world["alignment"], world["index"], world["haar_faces"],
                               world["clips"], SCALE, align=True)  # fmt: skip
    assert haar_stage.equals(by["haar"].drop(labels))
    # both blocks under the configured selector
    assert set(items["selector"]) == {settings.selector}
    assert set(items["selector_role"]) == {CONFIGURED}

    table = speaker_table(items)
    overall = table[
        (table["split"] == "all") & (table["character"] == "all") & (table["clip_kind"] == "all")
    ]
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
    assert list(table.columns[:5]) == [
        "detector", "detector_role", "selector", "selector_role", "split"
    ]  # fmt: skip
    assert set(table["detector_role"]) == {CONFIGURED}
    # no clip kinds measured: only the all rows
    assert set(table["clip_kind"]) == {"all"}
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


def test_selectors_side_by_side_split_by_clip_kind(world: dict) -> None:
    """The configured selector's block (the faces shards) and largest's (run here on
    the same frames), each split into listener_larger and other on the same images."""
    settings = replace(world["settings"], selector="track")
    args = (world["alignment"], world["index"], world["faces"], world["clips"], SCALE)
    # the configured selector listed again is scored once
    items = compared_items(*args, settings, align=True, selectors=["largest", "track"])
    blocks = items.group_by("selector", "selector_role", maintain_order=True).len()
    assert blocks.rows() == [("track", CONFIGURED, blocks["len"][0]),
                             ("largest", COMPARISON, blocks["len"][0])]  # fmt: skip
    by = {s: items.filter(pl.col("selector") == s) for s in ("track", "largest")}
    # one kind per image, whichever block
    assert (
        by["track"]
        .select("member", "clip_kind")
        .equals(by["largest"].select("member", "clip_kind"))
    )
    assert set(items["clip_kind"]) <= {LISTENER_LARGER, OTHER}
    # largest's block is what a faces stage configured with largest keeps
    largest = speaker_items(*args[:2], world["largest_faces"], world["clips"], SCALE, align=True)
    labels = ["detector", "detector_role", "selector", "selector_role", "clip_kind"]
    assert largest.equals(by["largest"].drop(labels))

    table = speaker_table(items)
    assert list(dict.fromkeys(zip(table["selector"], table["selector_role"], strict=True))) == [
        ("track", CONFIGURED), ("largest", COMPARISON)
    ]  # fmt: skip
    overall = table[(table["split"] == "all") & (table["character"] == "all")]
    for selector in ("track", "largest"):
        rows = overall[overall["selector"] == selector].set_index("clip_kind")
        assert list(rows.index) == ["all", LISTENER_LARGER, OTHER]
        # the two kinds split the block's images
        assert rows.loc[LISTENER_LARGER, "n"] + rows.loc[OTHER, "n"] == rows.loc["all", "n"]
        kinds = by[selector]["clip_kind"]
        assert rows.loc[LISTENER_LARGER, "n"] == int((kinds == LISTENER_LARGER).sum())
        hits = by[selector].filter(pl.col("clip_kind") == OTHER)["primary_hit"].sum()
        assert rows.loc[OTHER, "primary_hits"] == hits
        print(f"{selector}: " + ", ".join(
            f"{k} {rows.loc[k, 'primary_hits']}/{rows.loc[k, 'n']}" for k in rows.index
        ))  # fmt: skip


def test_a_reference_selector_needs_references(world: dict) -> None:
    with pytest.raises(ValueError, match="references"):
        compared_items(world["alignment"], world["index"], world["faces"], world["clips"],
                       SCALE, world["settings"], selectors=["reference"])  # fmt: skip


def _face(x: int, y: int, w: int, h: int) -> Detection:
    return Detection(x, y, w, h, 0.9)


def test_clip_kind_is_measured_against_the_speakers_face() -> None:
    speaker, listener = _face(10, 10, 30, 30), _face(100, 10, 50, 50)
    # the face matching the IFEED box is smaller than another face: listener larger
    assert clip_kind([listener, speaker], [12, 11, 29, 30]) == LISTENER_LARGER
    # the speaker is the larger face: other, whatever the order of the faces
    assert clip_kind([speaker, _face(100, 10, 20, 20)], [12, 11, 29, 30]) == OTHER
    # one face alone, or none
    assert clip_kind([speaker], [10, 10, 30, 30]) == OTHER
    assert clip_kind([], [10, 10, 30, 30]) == OTHER
    # no face matches the box (the speaker was not detected): a face larger than
    # the box itself is a larger listener; a smaller one is not
    assert clip_kind([listener], [200, 10, 30, 30]) == LISTENER_LARGER
    assert clip_kind([_face(100, 10, 20, 20)], [200, 10, 30, 30]) == OTHER
    # the speaker's face framed otherwise than the IFEED crop (a turned head: the
    # detector's box wider, IoU 0.2-0.5): still the speaker's, not a larger listener
    wide = _face(4, 10, 50, 32)
    assert 0.2 <= iou(list(wide.box), [14, 2, 28, 40]) < 0.5
    assert clip_kind([wide], [14, 2, 28, 40]) == OTHER


def test_the_table_splits_each_block_by_clip_kind() -> None:
    """Hand-built items of two selectors: rates per kind, the kinds summing to all."""
    rows = []
    for selector, role, hits in (("track", CONFIGURED, [1, 1, 1, 0]),
                                 ("largest", COMPARISON, [1, 0, 0, 0])):  # fmt: skip
        for i, (hit, kind) in enumerate(zip(hits, [OTHER, LISTENER_LARGER, LISTENER_LARGER,
                                                   OTHER], strict=True)):  # fmt: skip
            rows.append({"detector": "retinaface", "detector_role": CONFIGURED,
                         "selector": selector, "selector_role": role, "member": f"m{i}",
                         "meld_split": "train" if i < 3 else "test", "character": "Ross",
                         "primary_hit": bool(hit), "window_hit": bool(hit), "no_face": False,
                         "clip_kind": kind})  # fmt: skip
    # the comparison block first in the items: the table still puts the configured first
    table = speaker_table(pl.DataFrame(rows[4:] + rows[:4]))
    assert table["selector"].iloc[0] == "track"
    every = table[(table["split"] == "all") & (table["character"] == "all")]
    got = {(r.selector, r.clip_kind): (r.n, r.primary_hits) for r in every.itertuples()}
    assert got == {
        ("track", "all"): (4, 3), ("track", LISTENER_LARGER): (2, 2), ("track", OTHER): (2, 1),
        ("largest", "all"): (4, 1), ("largest", LISTENER_LARGER): (2, 0),
        ("largest", OTHER): (2, 1),
    }  # fmt: skip
    # per split too: train holds both listener_larger images of each block
    train = table[(table["split"] == "train") & (table["clip_kind"] == LISTENER_LARGER)]
    assert train["n"].tolist() == [2, 2]
    assert train["primary_rate"].tolist() == [1.0, 0.0]
    # the test split has no listener_larger image: n 0, no rate
    test = table[(table["split"] == "test") & (table["clip_kind"] == LISTENER_LARGER)]
    assert test["n"].tolist() == [0, 0] and test["primary_rate"].isna().all()


def test_the_speakers_table_on_the_generated_world(world: dict) -> None:
    """The per-utterance table from the faces stage's own speakers shards: one row per
    decoded clip, and its IFEED check is the yardstick's primary verdict (the same
    face, the same box) wherever the utterance has one speaker image."""
    shards = read_inputs(world["speakers"], world["faces"], world["clips"])
    table = speakers_table(shards[0], shards[1], world["alignment"], shards[2])
    assert (
        table.height
        == shards[0].height
        == pl.concat([pl.read_parquet(c, columns=["key"]) for c in world["clips"]]).height
    )
    items = speaker_items(world["alignment"], world["index"], world["faces"], world["clips"],
                         SCALE)  # fmt: skip
    # per utterance: agree when every image's primary verdict is a hit
    verdicts = items.group_by("meld_split", "meld_key").agg(
        pl.len().alias("images"),
        pl.col("primary_hit").all().alias("all_hit"),
        pl.col("primary_iou").min().alias("lowest"),
    )
    checked = table.join(
        verdicts, left_on=["split", "key"], right_on=["meld_split", "meld_key"]
    ).sort("key")
    assert checked.height >= 10
    assert checked["ifeed_boxes"].to_list() == checked["images"].to_list()
    assert checked["ifeed_agree"].to_list() == checked["all_hit"].to_list()
    assert checked["ifeed_iou"].to_list() == pytest.approx(checked["lowest"].to_list())
    assert table["ifeed_boxes"].sum() == items.height

    summary = speakers_by_character(table)
    overall = summary[(summary["split"] == "all") & (summary["character"] == "all")].iloc[0]
    print(f"speakers: {overall['found']}/{overall['utterances']} found, IFEED agreement "
          f"{overall['ifeed_agreement']:.3f} on {overall['ifeed_checked']}, one track in "
          f"{overall['one_track']}/{overall['multi_face_clips']} multi-face clips")  # fmt: skip
    assert overall["utterances"] == table.height
    assert overall["ifeed_checked"] == int(table["ifeed_agree"].is_not_null().sum())
    # the track selector keeps one person per utterance
    assert overall["one_track_share"] >= 0.95


def test_compare_selectors_is_schema_checked() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg.setdefault("report", {}).setdefault("speaker_faces", {})
    cfg["report"]["speaker_faces"]["compare_selectors"] = ["largest", "reference"]
    validate_config(cfg)
    cfg["report"]["speaker_faces"]["compare_selectors"] = ["biggest"]
    with pytest.raises(ConfigError, match=r"report\.speaker_faces\.compare_selectors"):
        validate_config(cfg)

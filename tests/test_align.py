"""IFEED -> MELD alignment on a small generated world whose true sources are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from crossemotion.ingest.archives.unpack import safe_extract
from crossemotion.ingest.ifeed import align
from crossemotion.ingest.ifeed.members import build_manifest, manifest_frame
from crossemotion.ingest.meld.index import build_index
from crossemotion.synth.generate import SynthSettings, generate

# the demo's frame and face sizes (the thresholds were calibrated there), fewer clips
WORLD = dict(
    utterances={"train": 30, "dev": 12, "test": 16},
    ifeed_images={"train": 40, "test": 16},
    width=320,
    height=240,
    fps=10,
    face_size=96,
    seed=11,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("align")
    generate(root / "demo", SynthSettings(**WORLD))
    safe_extract([root / "demo" / "MELD.Raw.tar.gz"], root / "meld", progress=False)
    safe_extract([root / "demo" / "IFEED_Base.zip"], root / "ifeed", progress=False)
    index = build_index(root / "meld", {})
    manifest = manifest_frame(build_manifest(root / "ifeed"))
    settings = align.AlignSettings(shards=2, threads=2)
    shards = []
    for shard in range(settings.shards):
        path = root / f"part-{shard}.parquet"
        align.align_shard(manifest, index, root / "ifeed", shard, settings, False).write_parquet(
            path
        )
        shards.append(path)
    return {
        "alignment": align.merge_shards(shards),
        "truth": pl.read_parquet(root / "demo" / "ifeed_truth.parquet"),
        "manifest": manifest,
        "index": index,
        "settings": settings,
        "root": root,
    }


def test_every_usable_image_has_one_row(world: dict) -> None:
    alignment, manifest = world["alignment"], world["manifest"]
    assert alignment.columns[:2] == ["member", "ifeed_split"]
    contract = ["member", "status", "meld_split", "dialogue_id", "utterance_id", "time",
                "x", "y", "w", "h", "score", "method"]  # fmt: skip
    assert set(contract) <= set(alignment.columns)
    usable = manifest.filter(pl.col("status") == "ok")["member"].to_list()
    assert sorted(alignment["member"].to_list()) == sorted(usable)
    assert set(alignment["status"].unique().to_list()) <= set(align.STATUSES)
    assert set(alignment["method"].unique().to_list()) == {"ncc"}
    # the generated world has colliding keys: the content, not the key, decides
    keys = world["index"].group_by("key").agg(pl.col("split").n_unique().alias("n"))
    images = alignment.join(keys, on="key")
    assert images.filter(pl.col("n") > 1).height >= alignment.height // 3


def test_alignment_recovers_the_true_sources(world: dict) -> None:
    joined = world["alignment"].join(
        world["truth"].select(
            "member", "clip_status", pl.col("meld_split").alias("t_split"),
            pl.col("dialogue_id").alias("t_dia"), pl.col("utterance_id").alias("t_utt"),
            pl.col("time").alias("t_time"), "x", "y", "w", "h", "role",
        ),
        on="member", suffix="_t",
    )  # fmt: skip
    assert joined.height == world["alignment"].height - 1  # the junk image has no source
    right = (
        (pl.col("meld_split") == pl.col("t_split"))
        & (pl.col("dialogue_id") == pl.col("t_dia"))
        & (pl.col("utterance_id") == pl.col("t_utt"))
    )
    matched = joined.filter(pl.col("status") == "matched")
    # zero wrong matches
    assert matched.filter(~right).height == 0, matched.filter(~right)
    with_clip = joined.filter(pl.col("clip_status") == "ok")
    recovered = with_clip.filter((pl.col("status") == "matched") & right).height
    assert recovered / with_clip.height >= 0.98, (recovered, with_clip.height)
    # images whose clip the archive lacks or cannot decode find no source
    without = joined.filter(pl.col("clip_status") != "ok")
    assert without.height and set(without["status"].to_list()) <= {"no_source", "unmatched"}
    # the box is the crop's, in the clip's own pixels; the time the frame's
    ious = [
        align.iou((r["x"], r["y"], r["w"], r["h"]), (r["x_t"], r["y_t"], r["w_t"], r["h_t"]))
        for r in matched.iter_rows(named=True)
    ]
    assert min(ious) >= 0.8 and float(np.median(ious)) >= 0.9
    # frames of a shot that differ by a pixel of jitter score alike: the time is
    # the exact frame for about half the images, a look-alike else (the speaker's
    # mouth holds open or shut for 1-4 frames, a pause for 3-6, synth.faces.syllables:
    # 0.51 on this world, 0.61 when it toggled every 2 frames); a wrong shot would be
    # a wrong clip, which the checks above rule out
    exact = (matched["time"] - matched["t_time"]).abs() <= 1e-3
    assert exact.mean() >= 0.45
    assert (matched["frame_width"] == 320).all() and (matched["frame_height"] == 240).all()


def test_scores_separate_true_from_other_clips(world: dict) -> None:
    s = world["settings"]
    alignment = world["alignment"].join(world["truth"].select("member", "clip_status"), on="member")
    true_scores = alignment.filter(pl.col("status") == "matched")["score"]
    assert true_scores.min() >= s.threshold
    runner_up = alignment["second_score"].drop_nulls()
    assert runner_up.len() and runner_up.max() < s.threshold


def test_decisions() -> None:
    s = align.AlignSettings(threshold=0.9, margin=0.02)

    def clip(split: str) -> align.ClipFrames:
        return align.ClipFrames(split, 1, 2, f"{split}.mp4")

    def m(score: float) -> align.Match:
        return align.Match(score, 0, (0.0, 0.0, 1.0, 1.0))

    assert align.decide([], s)[0] == align.NO_SOURCE
    assert align.decide([(clip("dev"), m(0.5))], s)[0] == align.UNMATCHED
    status, best, second = align.decide([(clip("dev"), m(0.95)), (clip("test"), m(0.6))], s)
    assert (status, best[0].split, second[0].split) == (align.MATCHED, "dev", "test")
    assert align.decide([(clip("dev"), m(0.95)), (clip("test"), m(0.94))], s)[0] == "ambiguous"
    assert align.decide([(clip("train"), m(0.99))], s)[0] == align.MATCHED
    with pytest.raises(ValueError, match="method"):
        align.AlignSettings(method="phash")
    with pytest.raises(ValueError, match=r"unknown ifeed\.align keys"):
        align.AlignSettings.from_config({"treshold": 0.9})


def test_without_a_decodable_candidate_the_image_has_no_source(world: dict, tmp_path: Path) -> None:
    image = world["alignment"].row(0, named=True)
    img = {"member": image["member"], "split": image["ifeed_split"], "character": "Ross"}
    ifeed_root = world["root"] / "ifeed"
    row = align.align_key("dia999_utt0", [img], [], ifeed_root, world["settings"])[0]
    assert row["status"] == align.NO_SOURCE and "no MELD clip" in row["reason"]
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    broken = [
        {"split": "dev", "dialogue_id": 1, "utterance_id": 0, "file": str(tmp_path / "gone.mp4")},
        {
            "split": "test",
            "dialogue_id": 1,
            "utterance_id": 0,
            "file": str(tmp_path / "broken.mp4"),
        },
    ]
    row = align.align_key("dia1_utt0", [img], broken, ifeed_root, world["settings"])[0]
    assert row["status"] == align.NO_SOURCE
    assert "gone.mp4" in row["reason"] and "broken.mp4" in row["reason"]
    assert row.get("meld_split") is None and row.get("score") is None


def test_markdown_report(world: dict) -> None:
    md = align.alignment_markdown(world["alignment"], world["settings"])
    for part in ("Matched share per IFEED folder and MELD split", "## Scores", "| train |",
                 "| test |", "No source"):  # fmt: skip
        assert part in md
    table = align.folder_table(world["alignment"])
    assert table["images"].sum() == world["alignment"].height
    per_split = table.select(pl.sum_horizontal(pl.col("^matched_meld_.*$"))).to_series()
    assert (table["matched"] == per_split).all()


def test_speaker_face_yardstick(world: dict, tmp_path: Path) -> None:
    """The demo draws the speaker largest: the MELD face choice hits the IFEED box."""
    from crossemotion.ingest.faces.crops import FaceSettings, faces_shard
    from crossemotion.ingest.meld.index import decodable_rows
    from crossemotion.ingest.video.decode import DecodeSettings, decode_shard
    from crossemotion.reporting.speaker_faces import speaker_items, speaker_table

    clips, faces = [], []
    for split in ("train", "dev", "test"):
        rows = decodable_rows(world["index"], split, 0, 1)
        clips.append(tmp_path / f"clips-{split}.parquet")
        faces.append(tmp_path / f"faces-{split}.parquet")
        decode_shard(rows, DecodeSettings(frames=8, height=180), clips[-1], tmp_path / "st.parquet")
        faces_shard(clips[-1], faces[-1], FaceSettings(size=32, min_size=24, max_per_frame=4))
    items = speaker_items(world["alignment"], world["index"], faces, clips, crop_scale=1.3)
    truth = world["truth"].filter(pl.col("role") == "speaker")["member"].to_list()
    # exactly the matched images of the utterance's speaker (no bystander)
    matched = world["alignment"].filter(pl.col("status") == "matched")["member"].to_list()
    assert set(items["member"].to_list()) == set(truth) & set(matched)
    table = speaker_table(items)
    overall = table[(table["split"] == "all") & (table["character"] == "all")].iloc[0]
    assert overall["n"] == items.height and overall["primary_rate"] >= 0.9
    assert overall["window_rate"] >= 0.9
    # a box elsewhere in the frame misses: the yardstick can fail
    moved = world["alignment"].with_columns(pl.col("x") + 160)
    again = speaker_table(speaker_items(moved, world["index"], faces, clips, crop_scale=1.3))
    assert again[again["split"] == "all"]["primary_rate"].iloc[-1] < 0.5

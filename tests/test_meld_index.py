"""MELD index: layout discovery, statuses of every quirk, csv parsing, sharding."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from crossemotion.ingest.meld.index import (
    MeldLayoutError,
    build_index,
    decodable_rows,
    locate,
    parse_clip_name,
    parse_time,
    read_annotations,
    shard_of,
    text_rows,
)
from crossemotion.ingest.meld.text import clean_text, fix_mojibake
from crossemotion.labels import CAST, character_of
from tests.meld_fixtures import ANNOTATIONS, EXPECTED_INDEX, build_tree, make_clips, write_csv


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("meld")
    return build_tree(base / "unpacked", make_clips(base / "clips"))


def test_locate_finds_folders_and_csvs_anywhere(tree: Path) -> None:
    layout = locate(tree)
    assert layout.clip_dirs["dev"].name == "dev_splits_complete"
    assert "__MACOSX" not in layout.clip_dirs["dev"].parts
    assert layout.csvs["train"].parent.name == "annotations"
    assert layout.csvs["test"] == tree / "test_sent_emo.csv"
    assert "__MACOSX" not in layout.csvs["dev"].parts


def test_index_statuses_per_quirk(tree: Path) -> None:
    index = build_index(tree)
    got = {(r["split"], r["key"]): r["status"] for r in index.iter_rows(named=True)}
    assert got == EXPECTED_INDEX
    prefixed = index.filter((pl.col("split") == "test") & (pl.col("key") == "dia0_utt0"))
    assert prefixed["file"][0].endswith("final_videos_testdia0_utt0.mp4")
    unknown = index.filter(pl.col("status") == "unknown_label")
    assert unknown["raw_label"].to_list() == ["Confused"]
    assert unknown["label"].to_list() == [None]
    extra = index.filter(pl.col("status") == "unannotated")
    assert extra["file"][0].endswith("dia66_utt9.mp4") and extra["label"][0] is None
    rachel = index.filter(pl.col("key") == "dia1_utt0", pl.col("split") == "train").row(
        0, named=True
    )
    assert rachel["text"] == "I don\u2019t know."  # mojibake repaired
    assert rachel["character"] == "Rachel" and rachel["speaker"] == "Rachel Green"
    assert (rachel["start_seconds"], rachel["end_seconds"]) == pytest.approx((1.25, 3.5))
    assert index.schema["dialogue_id"] == pl.Int32


def test_missing_split_folder_marks_rows_missing(tree: Path, tmp_path: Path) -> None:
    only_csvs = tmp_path / "csvs"
    for split, rows in ANNOTATIONS.items():
        write_csv(only_csvs / "x" / f"{split}_sent_emo.csv", rows)
    index = build_index(only_csvs)
    ok_labelled = index.filter(pl.col("label").is_not_null())
    assert set(ok_labelled["status"]) == {"missing"}
    assert "not found" in ok_labelled["reason"][0]


def test_annotations_override_and_missing_annotations(tree: Path, tmp_path: Path) -> None:
    override = tmp_path / "dev.csv"
    write_csv(override, ANNOTATIONS["dev"][:1])
    index = build_index(tree, {"dev": override})
    assert index.filter(pl.col("split") == "dev", pl.col("label").is_not_null()).height == 1
    with pytest.raises(MeldLayoutError, match=r"meld\.annotations\.train"):
        build_index(None, {"dev": override})


def test_clip_names_and_times() -> None:
    assert parse_clip_name("final_videos_testdia101_utt0.mp4") == (101, 0)
    assert parse_clip_name("dia5_utt12.mp4") == (5, 12)
    assert parse_clip_name("sample.mp4") is None
    assert parse_time("00:21:00,049") == pytest.approx(1260.049)
    assert parse_time("0:00:01,5") == pytest.approx(1.5)
    assert parse_time("garbage") is None


def test_mojibake_repair() -> None:
    assert fix_mojibake("He\u00e2\u20ac\u2122s here") == "He\u2019s here"
    assert fix_mojibake("He\x92s gone\x85") == "He\u2019s gone\u2026"
    assert fix_mojibake("\u00e2\u20ac\u0153Hi\u00e2\u20ac\x9d") == "\u201cHi\u201d"
    assert fix_mojibake("caf\u00c3\u00a9") == "caf\u00e9"
    for clean in ("He\u2019s here", "Ã la carte", "plain"):
        assert fix_mojibake(clean) == clean
    assert clean_text("  a\u00a0 b \n") == "a b"


def test_cp1252_csv_is_read_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "dev_sent_emo.csv"
    write_csv(path, [(0, 0, "It\u2019s caf\u00e9", "Joey", "Happy")], encoding="cp1252")
    row = read_annotations(path, "dev").row(0, named=True)
    assert row["text"] == "It\u2019s caf\u00e9" and row["label"] == "joy"


def test_real_csvs_row_counts(meld_csvs: Path) -> None:
    index = build_index(
        None, {s: meld_csvs / f"{s}_sent_emo.csv" for s in ("train", "dev", "test")}
    )
    counts = dict(index.group_by("split").len().iter_rows())
    assert counts == {"train": 9989, "dev": 1109, "test": 2610}
    assert set(index["status"]) == {"ok"}
    assert text_rows(index, "test").height == 2610
    assert index["start_seconds"].null_count() == 0
    assert not index["text"].str.contains("\u00e2\u20ac").any()


@pytest.mark.parametrize(
    ("speaker", "character"),
    [
        ("Ross", "Ross"),
        ("  rachel ", "Rachel"),
        ("CHANDLER", "Chandler"),
        ("Rachel Green", "Rachel"),
        ("Ross Green", "Other"),
        ("Phoebe Sr.", "Other"),
        ("Phoebe Sr", "Other"),
        ("Ross and Rachel", "Other"),
        ("Monica and Phoebe", "Other"),
        ("All", "Other"),
        ("Joey's Date", "Other"),
        ("", "Other"),
        (None, "Other"),
    ],
)
def test_character_is_the_whole_cast_name(speaker: str | None, character: str) -> None:
    assert character_of(speaker) == character


def test_real_csvs_group_speakers_by_exact_cast_name(meld_csvs: Path) -> None:
    index = build_index(
        None, {s: meld_csvs / f"{s}_sent_emo.csv" for s in ("train", "dev", "test")}
    )
    # counted independently of the index: csv module, exact speaker names
    exact: Counter[str] = Counter()
    near_misses: Counter[str] = Counter()
    for split in ("train", "dev", "test"):
        with (meld_csvs / f"{split}_sent_emo.csv").open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                speaker = row["Speaker"]
                if speaker in CAST:
                    exact[speaker] += 1
                elif speaker.split()[0] in CAST:  # "Phoebe Sr.", "Ross and Rachel", ...
                    near_misses[speaker] += 1
    grouped = dict(index.group_by("character").len().iter_rows())
    assert {c: grouped.get(c, 0) for c in CAST} == dict(exact)
    assert grouped["Other"] == index.height - sum(exact.values())
    # what a first-word rule would have miscounted: Phoebe Sr. and two-person speakers
    assert near_misses["Phoebe Sr"] + near_misses["Phoebe Sr."] > 0
    assert near_misses["Ross and Rachel"] > 0 and sum(near_misses.values()) >= 40
    miss = index.filter(pl.col("speaker").is_in(list(near_misses)) | (pl.col("speaker") == "All"))
    assert miss.height >= sum(near_misses.values()) and set(miss["character"]) == {"Other"}


def test_sharding_is_deterministic_by_dialogue(tree: Path) -> None:
    index = build_index(tree)
    n = 2
    parts = [decodable_rows(index, "train", s, n) for s in range(n)]
    assert (
        sum(p.height for p in parts)
        == index.filter((pl.col("split") == "train") & (pl.col("status") == "ok")).height
    )
    for s, part in enumerate(parts):
        assert all(shard_of(d, n) == s for d in part["dialogue_id"])
    # both utterances of dialogue 3 land in the same shard, every time
    again = decodable_rows(build_index(tree), "train", 1, n)
    assert again.equals(parts[1]) and set(parts[1]["key"]) >= {"dia3_utt0", "dia3_utt1"}

"""MELD ingestion through Snakemake on a hostile tree and in text-only mode."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import run_snakemake
from tests.meld_fixtures import EXPECTED_MANIFEST, build_tree, make_clips

MELD_RULES = ["meld_index", "meld_text", "decode_meld", "meld_faces", "meld_manifest"]


def _config(path: Path, **meld: object) -> Path:
    cfg = {
        "synth": {"enabled": False},
        "meld": {
            "shards": {"train": 2, "dev": 1, "test": 1},
            "decode": {"frames": 4, "height": 48, "max_duration": 20.0, "timeout": 60},
            "faces": {"size": 32, "min_size": 16},
            "max_bad_fraction": 0.5,
            **meld,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_ingestion_on_hostile_tree(workdir: Path) -> None:
    build_tree(workdir / "resources" / "meld" / "unpacked", make_clips(workdir / "clips"))
    cfg = _config(workdir / "test.yaml")
    args = [
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        str(cfg),
        "--allowed-rules",
        *MELD_RULES,
        "--",
    ]
    run_snakemake(
        [
            *args,
            "results/meld/manifest.parquet",
            "results/shards/meld/text/train/part-0000.parquet",
        ],
        cwd=workdir,
    )
    manifest = pl.read_parquet(workdir / "results/meld/manifest.parquet")
    got = {(r["split"], r["key"]): r["status"] for r in manifest.iter_rows(named=True)}
    assert got == EXPECTED_MANIFEST
    for col in (
        "split",
        "dialogue_id",
        "utterance_id",
        "file",
        "status",
        "reason",
        "faces_found",
        "has_audio",
        "duration",
    ):
        assert col in manifest.columns
    no_audio = manifest.filter(pl.col("split") == "test", pl.col("key") == "dia0_utt1")
    assert no_audio["status"][0] == "ok" and no_audio["has_audio"][0] is False
    # every clips shard reads back lazily; rows match the manifest's usable rows
    for split in ("train", "dev", "test"):
        n = (
            pl.scan_parquet(workdir / f"results/shards/meld/clips/{split}/*.parquet")
            .select(pl.len())
            .collect()
            .item()
        )
        usable = manifest.filter(
            pl.col("split") == split, pl.col("status").is_in(["ok", "overlong"])
        ).height
        assert n == usable, split
    faces = pl.scan_parquet(workdir / "results/shards/meld/faces/*/*.parquet").collect()
    assert faces.height == manifest["faces_found"].sum()
    text = pl.read_parquet(workdir / "results/shards/meld/text/train/part-0000.parquet")
    assert text.height == 4  # the unknown-label utterance is left out
    summary = (workdir / "results/meld/summary.md").read_text()
    assert "| dev |" in summary and "no_video" in summary
    assert (workdir / "logs/meld/decode_train_0001.log").stat().st_size > 0

    strict = _config(workdir / "strict.yaml", max_bad_fraction=0.1)
    proc = run_snakemake(
        [
            "--cores",
            "1",
            "--configfile",
            "config/demo.yaml",
            str(strict),
            "--allowed-rules",
            *MELD_RULES,
            "--forcerun",
            "meld_manifest",
            "--",
            "results/meld/manifest.parquet",
        ],
        cwd=workdir,
        check=False,
    )
    assert proc.returncode != 0
    log = (workdir / "logs/meld/manifest.log").read_text()
    assert "max_bad_fraction" in log


@pytest.mark.slow
def test_text_only_run_needs_no_archive(workdir: Path, meld_csvs: Path) -> None:
    cfg = workdir / "text.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "meld": {
                    "annotations": {
                        s: str(meld_csvs / f"{s}_sent_emo.csv") for s in ("train", "dev", "test")
                    }
                }
            }
        )
    )
    run_snakemake(
        [
            "--cores",
            "1",
            "--configfile",
            "config/meld_text.yaml",
            str(cfg),
            "--allowed-rules",
            "meld_index",
            "meld_text",
            "--",
            "results/shards/meld/text/test/part-0000.parquet",
        ],
        cwd=workdir,
    )
    assert not (workdir / "resources").exists()
    text = pl.scan_parquet(workdir / "results/shards/meld/text/test/part-0000.parquet")
    assert text.select(pl.len()).collect().item() == 2610

"""A small version of the real MELD text benchmark, run the way users run it.

The full benchmark (`snakemake --cores 2 --configfile config/meld_text.yaml`,
all 13,708 utterances, its two members about 80 min per seed on 2 cores) is
recorded in README; here the same config runs on the first dialogues of each
real csv, one epoch, short inputs (the dialogue member keeps its own window).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from sklearn.metrics import f1_score

from tests.conftest import run_snakemake

ROWS = {"train": 240, "dev": 60, "test": 120}


def head_csv(src: Path, dest: Path, rows: int) -> int:
    with src.open(newline="", encoding="utf-8") as fin, dest.open("w", newline="") as fout:
        reader = csv.reader(fin)
        writer = csv.writer(fout)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i == rows:
                break
            writer.writerow(row)
    return rows


@pytest.mark.slow
def test_meld_text_config_default_target_on_real_annotations(workdir: Path, meld_csvs: Path):
    annotations = {}
    for split, rows in ROWS.items():
        dest = workdir / f"{split}.csv"
        head_csv(meld_csvs / f"{split}_sent_emo.csv", dest, rows)
        annotations[split] = str(dest)
    smoke = {
        # two of the config's seeds: the table is their mean ± sd
        "seeds": [13, 14],
        "meld": {"annotations": annotations},
        "models": {"text": {"epochs": 1, "max_length": 32, "context": 1, "batch_size": 16}},
    }
    (workdir / "smoke.yaml").write_text(yaml.safe_dump(smoke))

    # the default target, as in README: no target named on the command line
    run_snakemake(
        ["--cores", "2", "--configfile", "config/meld_text.yaml", "smoke.yaml"], cwd=workdir
    )

    wf1s = []
    for run in ("results/models/text/meld", "results/models/text/meld/seed14"):
        metrics = json.loads((workdir / run / "metrics.json").read_text())
        assert metrics["test"]["n"] == ROWS["test"]
        assert metrics["dev"]["n"] == ROWS["dev"]
        preds = pl.read_parquet(workdir / run / "predictions.parquet")
        test = preds.filter(pl.col("split") == "test")
        assert test.height == ROWS["test"]
        # the reported score is the one the predictions give
        wf1 = f1_score(test["label"], test["prediction"], average="weighted", zero_division=0)
        assert metrics["test"]["weighted_f1"] == pytest.approx(wf1, abs=1e-6)
        wf1s.append(wf1)
    table = pl.read_csv(workdir / "results/tables/benchmark.csv")
    text_rows = table.filter((pl.col("model") == "text") & (pl.col("dataset") == "meld"))
    assert text_rows.height == 1
    assert text_rows["n_seeds"][0] == 2 and text_rows["seeds"][0] == "13 14"
    assert text_rows["weighted_f1"][0] == pytest.approx(sum(wf1s) / 2, abs=1e-6)
    assert text_rows["weighted_f1_sd"][0] == pytest.approx(
        abs(wf1s[0] - wf1s[1]) / 2**0.5, abs=1e-6
    )
    # real annotations, so nothing here may be labelled as demo data
    assert text_rows["data"].to_list() == ["real"]
    for page in ("results/report.html", "results/tables/benchmark.md"):
        assert "DEMO DATA" not in (workdir / page).read_text(), page
    assert not (workdir / "resources").exists()
    # the config's two members, each its own job, and the run their mean
    for run in ("results/models/text/meld", "results/models/text/meld/seed14"):
        metrics = json.loads((workdir / run / "metrics.json").read_text())
        members = [m["config"] for m in metrics["ensemble"]["members"]]
        assert [(m["context"], m.get("future", 0), m["max_length"]) for m in members] == [
            (1, 0, 32),
            (2, 1, 224),
        ]
    # the config's frozen-layer cache: one file per member's frozen bottom and
    # input form (member 0 freezes 6 layers, member 1 9: two digests), each
    # written by the seed that ran first and read by the other
    caches = dict(
        reversed(p.name.split("-", 1)) for p in (workdir / "results/cache/frozen_layers").iterdir()
    )
    assert sorted(caches) == ["ctx1-fut0-spk0-len32.pt", "ctx2-fut1-spk1-len224.pt"]
    assert len(set(caches.values())) == 2
    for member in (0, 1):
        logs = [
            (workdir / "logs/models/text" / f"{d}meld_member{member}.log").read_text()
            for d in ("", "seed14/")
        ]
        reads = sorted(
            int(m) for log in logs for m in re.findall(r"cache .*: (\d+) rows read", log)
        )
        assert len(reads) == 2 and reads[0] == 0 and reads[1] > 0
        assert sum("rows written" in log for log in logs) == 1

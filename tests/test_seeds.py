"""Seeds: the layout, the DAG expansion, and the tables' mean ± sd and paired CI rows
recomputed from each seed's predictions.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from crossemotion.evaluation.bootstrap import paired_bootstrap
from crossemotion.labels import EMOTIONS
from crossemotion.layout import config_seeds, model_dir, seed_of_subdir, seed_subdir
from crossemotion.reporting.pipeline import write_named_table
from crossemotion.reporting.tables import PAIRED
from tests.conftest import run_snakemake

SEEDS = [13, 14, 15]
RUNS = [("text", "meld"), ("fusion", "meld"), ("resnet50", "meld")]


def test_layout_first_seed_keeps_contract_paths() -> None:
    assert config_seeds({"seed": 7}) == [7]
    assert config_seeds({"seed": 7, "seeds": [3, 4]}) == [3, 4]
    with pytest.raises(ValueError, match="distinct"):
        config_seeds({"seeds": [3, 3]})
    assert seed_subdir(13, SEEDS) == "" and seed_subdir(15, SEEDS) == "seed15"
    assert [seed_of_subdir(d, SEEDS) for d in ("", "/seed14", "seed15")] == [13, 14, 15]
    assert model_dir("text", "meld", "seed14") == Path("results/models/text/meld/seed14")
    assert model_dir("text", "meld") == Path("results/models/text/meld")


def _write_seed_runs(results: Path, rng: np.random.Generator) -> pd.DataFrame:
    """Per model and seed a predictions.parquet over the same 150 test utterances."""
    n = 150
    labels = rng.choice(EMOTIONS, size=n, p=[0.1, 0.03, 0.04, 0.2, 0.4, 0.08, 0.15])
    truth = pd.DataFrame({"id": [f"dia{i // 6}_utt{i % 6}" for i in range(n)], "label": labels})
    for (model, dataset), skill in zip(RUNS, (0.55, 0.7, 0.4), strict=True):
        for seed in SEEDS:
            right = rng.random(n) < skill
            preds = np.where(right, labels, rng.choice(EMOTIONS, size=n))
            frame = truth.assign(
                key=truth["id"], split="test", speaker="Ross", character="Ross", prediction=preds
            )
            for e in EMOTIONS:
                frame[f"p_{e}"] = (frame["prediction"] == e).astype(float)
            dev = frame.head(30).assign(split="dev")
            directory = model_dir(model, dataset, seed_subdir(seed, SEEDS), results)
            directory.mkdir(parents=True)
            pd.concat([dev, frame]).to_parquet(directory / "predictions.parquet")
            (directory / "metrics.json").write_text(json.dumps({"train": {"parameters": 1}}))
    return truth


def test_benchmark_mean_sd_and_ci_recomputed_from_predictions(tmp_path: Path) -> None:
    results = tmp_path / "results"
    truth = _write_seed_runs(results, np.random.default_rng(5))
    csv, md = tmp_path / "benchmark.csv", tmp_path / "benchmark.md"
    settings = {"demo": True, "reference_rows": False, "config": {"seeds": SEEDS}}
    write_named_table("benchmark", csv, md, settings, RUNS, results=results)
    table = pd.read_csv(csv)

    def seed_preds(model: str) -> list[np.ndarray]:
        out = []
        for seed in SEEDS:
            d = model_dir(model, "meld", seed_subdir(seed, SEEDS), tmp_path / "results")
            p = pd.read_parquet(d / "predictions.parquet")
            out.append(p[p["split"] == "test"]["prediction"].to_numpy())
        return out

    for model, _ in RUNS:
        row = table[(table["source"] == "measured") & (table["model"] == model)].iloc[0]
        scores = [f1_score(truth["label"], p, average="weighted") for p in seed_preds(model)]
        assert row["n_seeds"] == 3 and row["seeds"] == "13 14 15"
        assert row["weighted_f1"] == pytest.approx(np.mean(scores))
        assert row["weighted_f1_sd"] == pytest.approx(np.std(scores, ddof=1))
        per_seed = [float(v) for v in row["weighted_f1_per_seed"].split()]
        assert per_seed == pytest.approx(scores, abs=1e-4)

    paired = table[table["source"] == PAIRED].set_index("model")
    assert list(paired.index) == ["fusion vs text", "fusion vs resnet50"]
    index = {e: i for i, e in enumerate(EMOTIONS)}
    y = [index[v] for v in truth["label"]]
    for other in ("text", "resnet50"):
        ci = paired_bootstrap(
            y,
            [[index[v] for v in p] for p in seed_preds("fusion")],
            [[index[v] for v in p] for p in seed_preds(other)],
        )
        row = paired.loc[f"fusion vs {other}"]
        assert row["wf1_difference"] == pytest.approx(ci.difference)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
        assert bool(row["significant"]) == ci.significant and row["n"] == 150
    # fusion is built 15-30 points better than either: the CI must say so
    assert paired["significant"].all()
    text = md.read_text()
    assert "fusion vs text" in text and "significant" in text and "mean ± sd of 3 seeds" in text


def test_seeds_expand_every_training_rule(workdir: Path) -> None:
    (workdir / "seeds.yaml").write_text("seeds: [13, 21]\n")
    proc = run_snakemake(
        ["-n", "all", "--configfile", "config/demo.yaml", "seeds.yaml"], cwd=workdir
    )
    out = proc.stdout + proc.stderr
    for model, dataset in [("cnn_lstm", "meld"), ("resnet50", "ifeed"), ("text", "meld")]:
        assert f"results/models/{model}/{dataset}/metrics.json" in out
        assert f"results/models/{model}/{dataset}/seed21/metrics.json" in out
    assert "seed13" not in out


def test_character_table_averages_seeds(tmp_path: Path) -> None:
    results = tmp_path / "results"
    truth = _write_seed_runs(results, np.random.default_rng(6))
    csv, md = tmp_path / "character.csv", tmp_path / "character.md"
    settings = {"demo": True, "config": {"seeds": SEEDS}}
    write_named_table("character_wise", csv, md, settings, RUNS, results=results)
    table = pd.read_csv(csv)
    ross = table[(table["model"] == "text") & (table["character"] == "Ross")].iloc[0]
    accs = []
    for seed in SEEDS:
        d = model_dir("text", "meld", seed_subdir(seed, SEEDS), results)
        p = pd.read_parquet(d / "predictions.parquet")
        test = p[p["split"] == "test"]
        accs.append((test["prediction"] == test["label"]).mean())
    assert ross["n_seeds"] == 3 and ross["n"] == len(truth)
    assert ross["accuracy"] == pytest.approx(np.mean(accs))
    assert len(table[table["model"] == "text"]) == 7  # one row per character, not per seed

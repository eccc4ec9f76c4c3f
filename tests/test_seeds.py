"""Seeds: the layout, the DAG expansion, and the tables' mean ± sd and paired CI rows
recomputed from each seed's predictions.parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from crossemotion.evaluation.bootstrap import CI_SEED, ROUNDS, paired_bootstrap
from crossemotion.labels import EMOTIONS
from crossemotion.layout import (
    config_seeds,
    model_dir,
    seed_of_subdir,
    seed_subdir,
    transfer_dir,
)
from crossemotion.reporting.pipeline import write_named_table
from crossemotion.reporting.tables import PAIRED, SEED_COLUMNS, TRANSFER_COLUMNS
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
    assert transfer_dir("ifeed", "meld", "zero_shot") == "results/transfer/ifeed_to_meld/zero_shot"
    assert (
        transfer_dir("ifeed", "meld", "zero_shot", "seed14")
        == "results/transfer/ifeed_to_meld/zero_shot/seed14"
    )


def _write_predictions(
    directory: Path, truth: pd.DataFrame, skill: float, rng: np.random.Generator
) -> None:
    """predictions.parquet of ``truth``'s test items (30 also as dev), right at rate ``skill``."""
    n = len(truth)
    right = rng.random(n) < skill
    preds = np.where(right, truth["label"], rng.choice(EMOTIONS, size=n))
    frame = truth.assign(split="test", speaker="Ross", character="Ross", prediction=preds)
    for e in EMOTIONS:
        frame[f"p_{e}"] = (frame["prediction"] == e).astype(float)
    dev = frame.head(30).assign(split="dev")
    directory.mkdir(parents=True)
    pd.concat([dev, frame]).to_parquet(directory / "predictions.parquet")
    (directory / "metrics.json").write_text(json.dumps({"train": {"parameters": 1}}))


def _truth(rng: np.random.Generator, n: int = 150) -> pd.DataFrame:
    labels = rng.choice(EMOTIONS, size=n, p=[0.1, 0.03, 0.04, 0.2, 0.4, 0.08, 0.15])
    ids = [f"dia{i // 6}_utt{i % 6}" for i in range(n)]
    return pd.DataFrame({"id": ids, "key": ids, "label": labels})


def _write_seed_runs(results: Path, rng: np.random.Generator) -> pd.DataFrame:
    """Per model and seed a predictions.parquet over the same 150 test utterances."""
    truth = _truth(rng)
    for (model, dataset), skill in zip(RUNS, (0.55, 0.7, 0.4), strict=True):
        for seed in SEEDS:
            directory = model_dir(model, dataset, seed_subdir(seed, SEEDS), results)
            _write_predictions(directory, truth, skill, rng)
    return truth


def test_benchmark_mean_sd_and_ci_recomputed_from_predictions(tmp_path: Path) -> None:
    results = tmp_path / "results"
    truth = _write_seed_runs(results, np.random.default_rng(5))
    csv, md = tmp_path / "benchmark.csv", tmp_path / "benchmark.md"
    # with the reference rows, whose n_seeds is empty, as the workflow writes it
    settings = {"demo": True, "reference_rows": True, "config": {"seeds": SEEDS}}
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
    # a count, written as one: 3, not 3.0 (csv) or 3.000 (Markdown)
    measured = pd.read_csv(csv, dtype=str).query("source == 'measured'")
    assert set(measured["n_seeds"]) == {"3"}
    measured_md = [line for line in text.splitlines() if line.startswith("| measured")]
    assert measured_md and all("| 3 |" in line and "3.000" not in line for line in measured_md)


# A dry run prints no params, so the DAG is built through Snakemake's API (its
# private workflow object: the version is pinned) and each job's rule, files
# and plain params are printed as JSON.
JOBS_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (
    ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings,
)

with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    wf = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[2:]]),
        snakefile=Path("Snakefile"),
        workdir=Path("."),
    )
    wf.dag(DAGSettings(targets={sys.argv[1]}))
    workflow = wf._workflow
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
    workflow._build_dag()
    jobs = [
        {
            "rule": job.rule.name,
            "input": [str(f) for f in job.input],
            "named": {k: v for k, v in job.input.items() if isinstance(v, str)},
            "output": [str(f) for f in job.output],
            "params": {k: v for k, v in job.params.items() if isinstance(v, int | str)},
        }
        for job in workflow.dag.jobs
    ]
print(json.dumps(jobs))
"""


def _jobs(workdir: Path, *configfiles: str) -> list[dict]:
    """The jobs of `all` (stderr, on failure, is in the test's captured output)."""
    out = subprocess.check_output(
        [sys.executable, "-c", JOBS_SCRIPT, "all", *configfiles], cwd=workdir, text=True
    )
    return json.loads(out.strip().splitlines()[-1])


def _seed_of(path: str) -> int:
    """13 for a contract path, S for one inside a seed{S}/ folder."""
    folders = [part for part in Path(path).parts if part.startswith("seed")]
    return int(folders[0].removeprefix("seed")) if folders else 13


def test_seeds_expand_training_and_transfer_per_seed(workdir: Path) -> None:
    """seeds: [13, 21]: every training job and every transfer cell runs per seed; the
    cell of seed S fine-tunes the source model of seed S with seed S, and the tables
    read every seed's files; one seed keeps the contract paths."""
    (workdir / "seeds.yaml").write_text("seeds: [13, 21]\n")
    jobs = _jobs(workdir, "config/demo.yaml", "seeds.yaml")
    train = [j for j in jobs if j["rule"].startswith("train_")]
    assert {(j["rule"], _seed_of(j["output"][0])) for j in train} == {
        (f"train_{m}", seed) for m in ("cnn_lstm", "c3d", "resnet50", "text", "fusion")
        for seed in (13, 21)
    }  # fmt: skip
    assert all(j["params"]["seed"] == _seed_of(j["output"][0]) for j in train)
    assert not any("seed13" in f for j in jobs for f in j["input"] + j["output"])

    transfer = [j for j in jobs if j["rule"] == "transfer"]
    seen = set()
    for job in transfer:
        metrics = next(f for f in job["output"] if f.endswith("metrics.json"))
        seed = _seed_of(metrics)
        cell_dir = Path(metrics).parent if seed == 13 else Path(metrics).parent.parent
        source, target = cell_dir.parent.name.split("_to_")
        seed_dir = "" if seed == 13 else f"seed{seed}/"
        assert (
            metrics
            == f"results/transfer/{source}_to_{target}/{cell_dir.name}/{seed_dir}metrics.json"
        )
        assert job["named"]["model"] == f"results/models/resnet50/{source}/{seed_dir}model.pt"
        assert job["params"]["seed"] == seed
        seen.add((source, target, cell_dir.name, seed))
    modes = ("zero_shot", "finetune_0.1", "finetune_1")
    assert seen == {
        (s, t, m, seed) for s, t in (("ifeed", "meld"), ("meld", "ifeed")) for m in modes
        for seed in (13, 21)
    }  # fmt: skip

    table = next(j for j in jobs if j["rule"] == "transfer_table")["input"]
    for seed_dir in ("", "seed21/"):
        assert f"results/transfer/meld_to_ifeed/finetune_1/{seed_dir}predictions.parquet" in table
        assert f"results/models/resnet50/meld/{seed_dir}predictions.parquet" in table
    character = next(j for j in jobs if j["rule"] == "character_table")["input"]
    assert "results/transfer/ifeed_to_meld/zero_shot/seed21/predictions.parquet" in character

    one = [j for j in _jobs(workdir, "config/demo.yaml") if j["rule"] == "transfer"]
    assert len(one) == 6
    for job in one:
        assert not any("seed" in Path(f).parent.name for f in job["output"])
        assert job["params"]["seed"] == 13
        assert Path(job["named"]["model"]).parent.parent.name == "resnet50"


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


CELLS = [
    ("ifeed", "meld", "zero_shot"),
    ("ifeed", "meld", "finetune_0.5"),
    ("meld", "ifeed", "zero_shot"),
]
TRANSFER_SEEDS = [13, 21]


def _run_dir(results: Path, source: str, target: str, mode: str, seed: int) -> Path:
    """Where seed ``seed``'s cell (or, for target_only, the target's model) is written."""
    seed_dir = seed_subdir(seed, TRANSFER_SEEDS)
    if mode == "target_only":
        return model_dir("resnet50", target, seed_dir, results)
    return Path(transfer_dir(source, target, mode, seed_dir, results))


def _test_split(directory: Path) -> pd.DataFrame:
    frame = pd.read_parquet(directory / "predictions.parquet")
    return frame[frame["split"] == "test"]


def test_transfer_table_mean_sd_over_seeds_with_per_seed_values(tmp_path: Path) -> None:
    """Each cell and each target-only reference: mean ± sd over the seeds' own runs
    (the cell of seed S against the target's model of seed S), per-seed values in the
    csv; with one seed the table has today's columns and the first seed's scores."""
    results = tmp_path / "results"
    rng = np.random.default_rng(8)
    truth = {"meld": _truth(rng, 120), "ifeed": _truth(rng, 90)}
    for seed in TRANSFER_SEEDS:
        for source, target, mode in [*CELLS, ("meld", "ifeed", "target_only"),
                                     ("ifeed", "meld", "target_only")]:  # fmt: skip
            skill = 0.7 if mode == "target_only" else 0.35
            _write_predictions(_run_dir(results, source, target, mode, seed), truth[target],
                               skill, rng)  # fmt: skip
    csv, md = tmp_path / "transfer.csv", tmp_path / "transfer.md"
    settings = {"demo": True, "config": {"seeds": TRANSFER_SEEDS}}
    write_named_table("transfer", csv, md, settings, cells=CELLS, results=results)
    table = pd.read_csv(csv)
    assert list(table.columns[: len(TRANSFER_COLUMNS) + len(SEED_COLUMNS)]) == [
        *TRANSFER_COLUMNS,
        *SEED_COLUMNS,
    ]
    expected = {*CELLS, ("ifeed", "meld", "target_only"), ("meld", "ifeed", "target_only")}
    assert set(zip(table["source"], table["target"], table["mode"], strict=True)) == expected
    assert len(table) == len(expected)
    for row in table.itertuples():
        tests = [
            _test_split(_run_dir(results, row.source, row.target, row.mode, seed))
            for seed in TRANSFER_SEEDS
        ]
        wf1 = [f1_score(t["label"], t["prediction"], average="weighted") for t in tests]
        acc = [float((t["label"] == t["prediction"]).mean()) for t in tests]
        assert row.n == len(truth[row.target]) and row.n_seeds == 2 and row.seeds == "13 21"
        assert row.weighted_f1 == pytest.approx(np.mean(wf1))
        assert row.weighted_f1_sd == pytest.approx(np.std(wf1, ddof=1))
        assert row.accuracy == pytest.approx(np.mean(acc))
        assert row.accuracy_sd == pytest.approx(np.std(acc, ddof=1))
        per_seed = [float(v) for v in row.weighted_f1_per_seed.split()]
        assert per_seed == pytest.approx(wf1, abs=1e-4)
    header = next(line for line in md.read_text().splitlines() if line.startswith("| source"))
    assert "n_seeds" in header and "weighted_f1_sd" in header
    assert "weighted_f1_per_seed" not in header

    # the character-wise table averages the transfer cells' seeds too
    chars = tmp_path / "character.csv"
    write_named_table("character_wise", chars, tmp_path / "c.md", settings, cells=CELLS,
                      results=results)  # fmt: skip
    ross = pd.read_csv(chars).query("character == 'Ross'")
    assert len(ross) == len(CELLS) and (ross["n_seeds"] == 2).all()

    write_named_table("transfer", csv, md, {"demo": True, "config": {"seed": 13}}, cells=CELLS,
                      results=results)  # fmt: skip
    one = pd.read_csv(csv)
    assert not set(SEED_COLUMNS) & set(one.columns)
    assert list(one.columns[: len(TRANSFER_COLUMNS)]) == list(TRANSFER_COLUMNS)
    for row in one.itertuples():
        test = _test_split(_run_dir(results, row.source, row.target, row.mode, 13))
        assert row.weighted_f1 == pytest.approx(
            f1_score(test["label"], test["prediction"], average="weighted")
        )


# seeds: [13, 14] on a small generated demo: the three models the CI rows pair,
# one epoch each, one thread per job (about 3 minutes on 2 cores)
RUN_SEEDS = (13, 14)
SMALL_DEMO = """
seeds: [13, 14]
device: cpu
synth:
  utterances: {train: 28, dev: 14, test: 28}
  ifeed_images: {train: 14, test: 7}
meld:
  shards: {train: 1, dev: 1, test: 1}
models:
  cnn_lstm: {enabled: false}
  c3d: {enabled: false}
  resnet50: {datasets: [meld], epochs: 1, patience: 1}
  text: {epochs: 1, patience: 1}
  fusion: {epochs: 1, patience: 1}
transfer:
  enabled: false
"""


def _seed_test_predictions(results: Path, model: str) -> list[pd.DataFrame]:
    """Each seed's test utterances, indexed by id."""
    out = []
    for seed in RUN_SEEDS:
        directory = model_dir(model, "meld", seed_subdir(seed, list(RUN_SEEDS)), results)
        assert json.loads((directory / "metrics.json").read_text())["seed"] == seed
        frame = pd.read_parquet(directory / "predictions.parquet")
        test = frame[frame["split"] == "test"]
        if "level" in test.columns:
            test = test[test["level"] == "utterance"]
        out.append(test.set_index("id"))
    return out


def _bootstrap_ci(truth: np.ndarray, a: list[np.ndarray], b: list[np.ndarray]) -> tuple:
    """The documented paired bootstrap, redone with sklearn: ROUNDS resamples of the
    items (numpy's default_rng(CI_SEED), one ``integers(0, n, n)`` draw per round),
    each scoring every seed of both models on the same resample; the statistic is
    mean-over-seeds wF1(a) minus that of b; a 95% percentile interval."""

    def diff(idx: np.ndarray) -> float:
        def mean_wf1(preds: list[np.ndarray]) -> float:
            return float(np.mean([
                f1_score(truth[idx], p[idx], average="weighted", zero_division=0) for p in preds
            ]))  # fmt: skip

        return mean_wf1(a) - mean_wf1(b)

    rng = np.random.default_rng(CI_SEED)
    n = truth.size
    rounds = np.array([diff(rng.integers(0, n, n)) for _ in range(ROUNDS)])
    low, high = np.quantile(rounds, [0.025, 0.975])
    return diff(np.arange(n)), float(low), float(high)


@pytest.mark.slow
def test_two_seed_run_table_matches_predictions(workdir: Path) -> None:
    """A real two-seed run of text, resnet50 and fusion: the benchmark csv's mean, sd,
    per-seed values and paired CIs equal a recomputation from each seed's
    predictions.parquet (sklearn, and the bootstrap redone with numpy)."""
    (workdir / "seeds.yaml").write_text(SMALL_DEMO)
    target = "results/tables/benchmark.csv"
    run_snakemake(
        ["--cores", "2", "--configfile", "config/demo.yaml", "seeds.yaml", "--", target],
        cwd=workdir,
    )
    table = pd.read_csv(workdir / target)
    results = workdir / "results"
    preds = {m: _seed_test_predictions(results, m) for m in ("text", "resnet50", "fusion")}
    # the items in the order the table pairs them: the first model's first seed
    order = preds["fusion"][0].index
    truth = preds["fusion"][0]["label"].to_numpy()
    assert len(order) == 28

    for model, seeds in preds.items():
        row = table[(table["source"] == "measured") & (table["model"] == model)].iloc[0]
        wf1 = [f1_score(p["label"], p["prediction"], average="weighted") for p in seeds]
        acc = [float((p["label"] == p["prediction"]).mean()) for p in seeds]
        assert row["n"] == 28 and row["n_seeds"] == 2 and row["seeds"] == "13 14"
        assert row["weighted_f1"] == pytest.approx(np.mean(wf1))
        assert row["weighted_f1_sd"] == pytest.approx(np.std(wf1, ddof=1))
        assert row["accuracy"] == pytest.approx(np.mean(acc))
        assert row["accuracy_sd"] == pytest.approx(np.std(acc, ddof=1))
        per_seed = [float(v) for v in row["weighted_f1_per_seed"].split()]
        assert per_seed == pytest.approx(wf1, abs=1e-4)
        assert "mean ± sd of 2 seeds" in row["note"]
    # the seeds trained different models
    first, second = preds["text"]
    assert not np.allclose(first.loc[order, "p_joy"], second.loc[order, "p_joy"])

    paired = table[table["source"] == PAIRED].set_index("model")
    assert list(paired.index) == ["fusion vs text", "fusion vs resnet50"]
    fusion = [p.loc[order, "prediction"].to_numpy() for p in preds["fusion"]]
    for other in ("text", "resnet50"):
        assert all((p.loc[order, "label"].to_numpy() == truth).all() for p in preds[other])
        others = [p.loc[order, "prediction"].to_numpy() for p in preds[other]]
        difference, low, high = _bootstrap_ci(truth, fusion, others)
        row = paired.loc[f"fusion vs {other}"]
        assert row["n"] == 28
        assert row["wf1_difference"] == pytest.approx(difference)
        measured = table[table["source"] == "measured"].set_index("model")["weighted_f1"]
        assert row["wf1_difference"] == pytest.approx(measured["fusion"] - measured[other])
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        assert bool(row["significant"]) == (low > 0 or high < 0)

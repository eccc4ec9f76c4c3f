"""Ensembles (``models.{m}.ensemble``): the members of a section, the run written from
the members' runs, the checkpoint that serves it, and the workflow's member jobs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from sklearn.metrics import f1_score

from crossemotion.config import ConfigError, ensemble_members
from crossemotion.evaluation.ensemble import ENSEMBLE_KIND, combine_runs
from crossemotion.inference import EnsemblePredictor, Predictor, load_predictor
from crossemotion.labels import EMOTIONS, prob_columns
from crossemotion.layout import member_subdir
from crossemotion.models.registry import ShardInputs
from crossemotion.serving.models import load_model
from crossemotion.training.runner import train_and_evaluate
from crossemotion.training.settings import JobSettings
from tests import demo_runs
from tests.conftest import run_snakemake
from tests.vision_fixtures import api_dialogue_units, write_meld_shards

TEXT = {
    "encoder": "minilm", "max_length": 32, "context": 0, "epochs": 2, "batch_size": 8,
    "lr": 1e-4, "threads": 1,
}  # fmt: skip
# the dialogue member of config/meld_text.yaml, on a smaller scale
DIALOGUE = {"context": 1, "future": 1, "speakers": True, "max_length": 48, "pooling": "target"}
PROBS = prob_columns(EMOTIONS)


def test_members_of_a_section() -> None:
    section = {**TEXT, "datasets": ["meld"], "ensemble": [DIALOGUE, {"lr": 3e-5}]}
    members = ensemble_members("text", section)
    assert members[0] == {**TEXT, "datasets": ["meld"]}
    assert members[1] == {**TEXT, "datasets": ["meld"], **DIALOGUE}
    assert members[2] == {**TEXT, "datasets": ["meld"], "lr": 3e-5}
    assert ensemble_members("text", TEXT) == []
    # keys of the whole model, a value the schema refuses, an unknown key, a repeat
    for override, message in (
        ({"datasets": ["ifeed"]}, "apply to the whole model"),
        ({"threads": 4}, "apply to the whole model"),
        ({"context": "two"}, "'two' is not of type 'integer'"),
        ({"contxt": 2}, "contxt"),
        ({"context": 0}, "this member is member 0"),
    ):
        with pytest.raises(ConfigError, match=message):
            ensemble_members("text", {**TEXT, "ensemble": [override]})
    # the library's own keys pass when the schema is not asked
    assert ensemble_members("text", {**TEXT, "ensemble": [{"num_workers": 1}]}, validate=False)


@pytest.fixture(scope="module")
def meld(tmp_path_factory: pytest.TempPathFactory) -> ShardInputs:
    inputs = write_meld_shards(tmp_path_factory.mktemp("meld"))
    return ShardInputs(clips={}, faces={}, text=inputs.text)


@pytest.fixture(scope="module")
def ensemble_run(meld: ShardInputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("results") / "models" / "text" / "meld"
    section = {**TEXT, "ensemble": [DIALOGUE]}
    train_and_evaluate("text", "meld", section, JobSettings(seed=5, device="cpu"), meld, out,
                       progress=False)  # fmt: skip
    return out


def _member_dirs(run: Path) -> list[Path]:
    return [run / member_subdir(i) for i in range(2)]


def test_ensemble_run_is_the_mean_of_its_members(ensemble_run: Path) -> None:
    run = ensemble_run
    members = _member_dirs(run)
    member_metrics = [json.loads((d / "metrics.json").read_text()) for d in members]
    # each member is a whole run with its own input form
    assert [m["config"]["context"] for m in member_metrics] == [0, 1]
    assert "ensemble" not in member_metrics[1]["config"]
    preds = pl.read_parquet(run / "predictions.parquet")
    keys = ["split", "key"]
    joined = preds.join(
        pl.concat([
            pl.read_parquet(d / "predictions.parquet").select(*keys, *PROBS)
            .with_columns(pl.lit(i).alias("member"))
            for i, d in enumerate(members)
        ]).group_by(keys).agg(pl.col(PROBS).mean()),
        on=keys, suffix="_members",
    )  # fmt: skip
    assert (
        joined.height == preds.height == pl.read_parquet(members[0] / "predictions.parquet").height
    )
    for column in PROBS:
        np.testing.assert_allclose(joined[column], joined[f"{column}_members"], atol=1e-9)
    argmax = np.array(EMOTIONS)[joined.select(PROBS).to_numpy().argmax(1)]
    assert joined["prediction"].to_list() == argmax.tolist()

    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("dev", "test"):
        rows = preds.filter(pl.col("split") == split)
        wf1 = f1_score(rows["label"], rows["prediction"], average="weighted", zero_division=0)
        assert metrics[split]["weighted_f1"] == pytest.approx(wf1)
        assert metrics[split]["n"] == rows.height
    assert metrics["baseline"] == member_metrics[0]["baseline"]
    assert metrics["config"]["ensemble"] == [DIALOGUE]
    listed = metrics["ensemble"]["members"]
    assert [m["test_weighted_f1"] for m in listed] == [
        m["test"]["weighted_f1"] for m in member_metrics
    ]
    assert metrics["train"]["seconds"] == pytest.approx(
        sum(m["train"]["seconds"] for m in member_metrics), abs=1e-3
    )
    assert metrics["inference"]["ms_per_unit_batch1"] == pytest.approx(
        sum(m["inference"]["ms_per_unit_batch1"] for m in member_metrics), abs=1e-3
    )
    log = pl.read_csv(run / "train_log.csv")
    assert log["member"].to_list() == [0] * 2 + [1] * 2 and log["epoch"].to_list() == [1, 2] * 2


def test_ensemble_checkpoint_serves_the_mean(ensemble_run: Path, meld: ShardInputs) -> None:
    ckpt = torch.load(ensemble_run / "model.pt", weights_only=True)
    assert ckpt["kind"] == ENSEMBLE_KIND and "state_dict" not in ckpt
    assert [m["checkpoint"] for m in ckpt["members"]] == [
        f"{member_subdir(i)}/model.pt" for i in range(2)
    ]
    predictor = load_predictor(ensemble_run, device="cpu")
    assert isinstance(predictor, EnsemblePredictor)
    assert all(isinstance(m, Predictor) for m in predictor.members)
    assert [m.cfg.context for m in predictor.members] == [0, 1]
    # the same windows for both: the utterance-only member reads the utterance
    units = api_dialogue_units(meld.text["test"][0])
    test = pl.read_parquet(ensemble_run / "predictions.parquet").filter(pl.col("split") == "test")
    probs = predictor.predict([units[k] for k in test["key"]])
    np.testing.assert_allclose(probs, test.select(PROBS).to_numpy(), atol=1e-5)
    # and the members' means differ from each member alone: an ensemble, not a copy
    alone = predictor.members[1].predict([units[k] for k in test["key"]])
    assert not np.allclose(probs, alone, atol=1e-3)
    served = load_model(ensemble_run / "model.pt", device="cpu")
    assert served.kind == "text" and served.name == "text/meld"
    np.testing.assert_allclose(served.predict([units[test["key"][0]]])[0], probs[0], atol=1e-5)


def test_a_member_changed_after_the_ensemble_is_refused(ensemble_run: Path, tmp_path: Path):
    run = shutil.copytree(ensemble_run, tmp_path / "run")
    member = run / member_subdir(1) / "model.pt"
    payload = torch.load(member, weights_only=True)
    payload["epoch"] = 99
    torch.save(payload, member)
    with pytest.raises(ValueError, match="changed after the ensemble was made"):
        load_predictor(run, device="cpu")
    member.unlink()
    with pytest.raises(FileNotFoundError, match="member 1"):
        load_predictor(run, device="cpu")


def test_members_of_other_utterances_are_refused(ensemble_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(ensemble_run, tmp_path / "run")
    path = run / member_subdir(1) / "predictions.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(pl.col("split") == "test").then(pl.col("key") + "x").otherwise(pl.col("key"))
    ).write_parquet(path)
    with pytest.raises(ValueError, match="other utterances"):
        combine_runs(run, _member_dirs(run), {**TEXT, "ensemble": [DIALOGUE]})
    with pytest.raises(ValueError, match="not inside"):
        combine_runs(tmp_path / "elsewhere", _member_dirs(ensemble_run), TEXT)


@pytest.mark.slow
def test_workflow_trains_each_member_as_a_job(tmp_path_factory, tmp_path: Path) -> None:
    """The demo with a two-member text model: train_text runs once per member into
    members/member{k}/, ensemble_text writes the run the tables read, and a change
    to one member retrains that member only."""
    wd = demo_runs.clone(demo_runs.local_demo(tmp_path_factory), tmp_path / "wf")
    section = {"models": {"text": {"ensemble": [{"context": 1, "pooling": "target"}]}}}
    (wd / "ensemble.yaml").write_text(yaml.safe_dump(section))
    target = "results/models/text/meld/metrics.json"
    planned = demo_runs.plan(wd, targets=[target], configs=("ensemble.yaml",))
    assert planned.pending[target] == "ensemble_text"
    for i in range(2):
        assert planned.pending[f"results/models/text/meld/members/member{i}/metrics.json"] == (
            "train_text"
        )
    run_snakemake(["--cores", "2", *demo_runs.DEMO, "ensemble.yaml", "--", target], cwd=wd)
    metrics = json.loads((wd / target).read_text())
    assert len(metrics["ensemble"]["members"]) == 2 and metrics["config"]["ensemble"]
    assert (wd / "logs/models/text/meld_member1.log").is_file()
    assert load_model(wd / "results/models/text/meld/model.pt", device="cpu").kind == "text"

    section["models"]["text"]["ensemble"][0]["context"] = 2
    (wd / "ensemble.yaml").write_text(yaml.safe_dump(section))
    replanned = demo_runs.plan(wd, targets=[target], configs=("ensemble.yaml",))
    assert replanned.rules() == {"train_text", "ensemble_text"}
    assert not replanned.under("results/models/text/meld/members/member0/")
    assert replanned.under("results/models/text/meld/members/member1/")

    # a key of the whole model inside a member stops the DAG, naming it
    section["models"]["text"]["ensemble"][0]["datasets"] = ["ifeed"]
    (wd / "ensemble.yaml").write_text(yaml.safe_dump(section))
    proc = run_snakemake(
        ["-n", *demo_runs.DEMO, "ensemble.yaml", "--", target], cwd=wd, check=False
    )
    assert proc.returncode != 0
    assert "models.text.ensemble[0]: datasets apply to the whole model" in proc.stdout + proc.stderr


def test_report_reads_the_ensemble_as_one_model(
    ensemble_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from crossemotion.reporting import figures
    from crossemotion.reporting.runs import model_run
    from crossemotion.reporting.tables import benchmark_row

    row = benchmark_row(model_run("text", "meld", ensemble_run.parents[2]), demo=True)
    metrics = json.loads((ensemble_run / "metrics.json").read_text())
    assert row["weighted_f1"] == pytest.approx(metrics["test"]["weighted_f1"])
    assert row["note"].endswith("mean of 2 members' probabilities")
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, target: saved.append(fig))
    figures.training_curves(pd.read_csv(ensemble_run / "train_log.csv"), tmp_path / "t.png", "t")
    loss_ax, score_ax = saved[0].axes
    # one loss line and two dev-score lines per member, each member's epochs 1..2
    assert len(loss_ax.lines) == 2 and len(score_ax.lines) == 4
    assert all(list(line.get_xdata()) == [1, 2] for line in loss_ax.lines + score_ax.lines)


@pytest.mark.slow
def test_the_api_serves_the_ensemble(ensemble_run: Path, tmp_path: Path) -> None:
    """`crossemotion serve` over a models folder holding an ensemble's run: a text
    request with turns gets the mean of the members, as the library computes it."""
    from tests.test_serving import start_server

    models = tmp_path / "models"
    shutil.copytree(ensemble_run, models / "text" / "meld")
    predictor = load_predictor(models / "text" / "meld", device="cpu")
    body = {
        "text": "We were on a break!",
        "speaker": "Ross",
        "context": [{"speaker": "Rachel", "text": "You slept with her."}],
        "future": [{"speaker": "Rachel", "text": "I cannot believe this."}],
    }
    expected = predictor.predict([body])[0]
    (tmp_path / "server").mkdir()
    server_gen = start_server(models, tmp_path / "server")
    server = next(server_gen)
    try:
        with server.client() as c:
            got = c.post("/v1/predict/text", json=body)
            listed = c.get("/v1/models").json()["models"]
    finally:
        server_gen.close()
    assert got.status_code == 200, got.text
    probs = got.json()["predictions"][0]["probabilities"]
    np.testing.assert_allclose([probs[e] for e in EMOTIONS], expected, atol=1e-4)
    assert [m["name"] for m in listed] == ["text/meld"] and listed[0]["kind"] == "text"

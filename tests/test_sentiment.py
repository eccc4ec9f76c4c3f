"""The sentiment task (MELD's negative/neutral/positive) end to end on synthetic shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from sklearn.metrics import confusion_matrix, f1_score

from crossemotion.datasets.faces import face_datasets
from crossemotion.evaluation.metrics import classification_metrics
from crossemotion.evaluation.scoring import prob_columns
from crossemotion.inference import load_predictor
from crossemotion.labels import EMOTIONS, SENTIMENTS, UnknownLabelError, normalize_class
from crossemotion.models.registry import ShardInputs, get_spec
from crossemotion.reporting.figures import confusion_figure
from crossemotion.reporting.provenance import provenance
from crossemotion.reporting.runs import model_run
from crossemotion.reporting.scores import read_predictions
from crossemotion.reporting.tables import benchmark_table, write_table
from crossemotion.training.runner import train_and_evaluate
from crossemotion.training.settings import JobSettings
from tests.conftest import run_snakemake
from tests.vision_fixtures import TINY, api_dialogue_units, write_ifeed_shards, write_meld_shards

# MELD's emotion -> sentiment is not a function (surprise is either), so the
# fixture's sentiment is not derivable from its emotion label alone.
SENTIMENT_OF = {"joy": "positive", "neutral": "neutral", "surprise": "positive"}
TEXT = {
    "encoder": "minilm", "max_length": 32, "context": 1, "future": 1, "epochs": 1,
    "batch_size": 8, "lr": 5e-5, "threads": 1,
}  # fmt: skip
GLOBAL = JobSettings(seed=5, device="cpu", task="sentiment")


def _sentiment(frame: pl.DataFrame) -> pl.Series:
    values = []
    for i, label in enumerate(frame["label"].to_list()):
        if label == "surprise" and i % 2:
            values.append("negative")
        else:
            values.append(SENTIMENT_OF.get(label, "negative"))
    return pl.Series("sentiment", values)


@pytest.fixture(scope="module")
def meld(tmp_path_factory) -> ShardInputs:
    """The vision fixtures' MELD shards with a Sentiment column on text and clips."""
    inputs = write_meld_shards(tmp_path_factory.mktemp("meld"))
    for kind in (inputs.text, inputs.clips):
        for paths in kind.values():
            for path in paths:
                frame = pl.read_parquet(path)
                frame.with_columns(_sentiment(frame)).write_parquet(path)
    return inputs


@pytest.fixture(scope="module")
def text_run(meld: ShardInputs, tmp_path_factory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("results") / "models" / "text" / "meld"
    inputs = ShardInputs(clips={}, faces={}, text=meld.text)
    metrics = train_and_evaluate("text", "meld", TEXT, GLOBAL, inputs, out, progress=False)
    return out, metrics


def test_sentiment_text_run_writes_three_class_outputs(
    text_run: tuple[Path, dict], meld: ShardInputs
) -> None:
    out, metrics = text_run
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["task"] == "sentiment" and on_disk["classes"] == list(SENTIMENTS)
    preds = pl.read_parquet(out / "predictions.parquet")
    assert preds.columns[7:] == prob_columns(SENTIMENTS)
    assert prob_columns(SENTIMENTS) == ["p_negative", "p_neutral", "p_positive"]
    assert np.allclose(preds.select(prob_columns(SENTIMENTS)).to_numpy().sum(1), 1.0, atol=1e-5)
    test = preds.filter(pl.col("split") == "test")
    # labels are the shards' sentiment column, in the text shard's rows
    shard = pl.read_parquet(meld.text["test"][0])
    expected = dict(zip(shard["key"], shard["sentiment"], strict=True))
    assert test["label"].to_list() == [expected[k] for k in test["key"]]
    assert set(test["prediction"]) <= set(SENTIMENTS)
    for split in ("dev", "test"):
        assert set(on_disk[split]["per_class"]) == set(SENTIMENTS)
        assert np.asarray(on_disk[split]["confusion"]).shape == (3, 3)
    # metrics recomputed from the predictions file
    assert (
        on_disk["test"]["confusion"]
        == confusion_matrix(test["label"], test["prediction"], labels=list(SENTIMENTS)).tolist()
    )
    wf1 = f1_score(test["label"], test["prediction"], average="weighted", zero_division=0)
    assert on_disk["test"]["weighted_f1"] == pytest.approx(wf1)
    # its own majority baseline: the most frequent training sentiment, scored on test
    train = pl.read_parquet(meld.text["train"][0])["sentiment"].to_list()
    majority = max(SENTIMENTS, key=train.count)
    assert on_disk["baseline"]["class"] == majority
    base = f1_score(test["label"], [majority] * test.height, average="weighted", zero_division=0)
    assert on_disk["baseline"]["weighted_f1"] == pytest.approx(base)
    assert metrics["baseline"] == on_disk["baseline"]


def test_sentiment_checkpoint_decides_the_classes_at_inference(text_run, meld: ShardInputs) -> None:
    out, _ = text_run
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["labels"] == list(SENTIMENTS) and ckpt["task"] == "sentiment"
    predictor = load_predictor(out, device="cpu")
    assert predictor.labels == SENTIMENTS
    unit = {
        "text": "utterance 3",
        "speaker": "Ross",
        "context": [{"speaker": "Joey", "text": "hi"}],
    }
    probs = predictor.predict(["utterance 1", unit])
    assert probs.shape == (2, 3)
    result = predictor.predict_labels([unit])[0]
    assert set(result["probabilities"]) == set(SENTIMENTS) and result["label"] in SENTIMENTS
    # fed the test split as API-style dialogue windows (one turn either side, as
    # trained), the checkpoint reproduces predictions.parquet
    units = api_dialogue_units(meld.text["test"][0])
    test = pl.read_parquet(out / "predictions.parquet").filter(pl.col("split") == "test")
    probs = predictor.predict([units[k] for k in test["key"]])
    np.testing.assert_allclose(probs, test.select(prob_columns(SENTIMENTS)).to_numpy(), atol=1e-5)


def test_sentiment_tables_and_figure(text_run, tmp_path: Path) -> None:
    out, metrics = text_run
    run = model_run("text", "meld", out.parent.parent.parent)
    table = benchmark_table([run], demo=True)
    # emotion reference figures do not belong in a sentiment table
    assert list(table["task"]) == ["sentiment"]
    row = table.iloc[0]
    assert row["weighted_f1"] == pytest.approx(metrics["test"]["weighted_f1"])
    assert row["baseline_weighted_f1"] == pytest.approx(metrics["baseline"]["weighted_f1"])
    # a text-only run says why it has no paired-bootstrap rows, below the table
    assert table.attrs["notes"] == [
        "No paired-bootstrap row for fusion vs text: this run has no fusion model on MELD.",
        "No paired-bootstrap row for fusion vs resnet50: this run has no fusion and no "
        "resnet50 model on MELD.",
    ]
    paths = {ext: tmp_path / f"benchmark.{ext}" for ext in ("csv", "md", "html")}
    prov = provenance({"demo": True}, [])
    write_table(table, paths["csv"], paths["md"], "Benchmark", prov, None, paths["html"])
    assert paths["md"].read_text().rstrip().endswith(table.attrs["notes"][1])
    assert "<li>No paired-bootstrap row for fusion vs text" in paths["html"].read_text()
    assert "No paired" not in paths["csv"].read_text()
    frame = read_predictions(run.predictions_path, "test")
    counts = confusion_figure(frame, tmp_path / "confusion.png", "text/meld")
    assert counts.tolist() == metrics["test"]["confusion"]
    assert (tmp_path / "confusion.png").stat().st_size > 0


def test_sentiment_labels_faces_by_their_utterance(meld: ShardInputs) -> None:
    cfg = get_spec("resnet50").configure(TINY["resnet50"], task="sentiment")
    data = face_datasets(cfg, meld.faces, seed=5, text=meld.text)
    shard = pl.concat([pl.read_parquet(p[0]) for p in meld.text.values()])
    by_key = dict(zip(shard["key"], shard["sentiment"], strict=True))
    for split, ds in data.items():
        assert ds.classes == SENTIMENTS
        assert ds.meta["label"].to_list() == [by_key[k] for k in ds.meta["key"]], split
        assert [SENTIMENTS[i] for i in ds.labels] == ds.meta["label"].to_list()
    with pytest.raises(ValueError, match="IFEED has no sentiment"):
        face_datasets(cfg, meld.faces, seed=5)


def test_ifeed_has_no_sentiment(meld: ShardInputs, tmp_path: Path) -> None:
    ifeed = write_ifeed_shards(tmp_path)
    cfg = get_spec("resnet50").configure(TINY["resnet50"], task="sentiment")
    # IFEED faces carry MELD source keys; they must not borrow those utterances' sentiment
    for text in ({}, meld.text):
        with pytest.raises(ValueError, match="IFEED has no sentiment"):
            face_datasets(cfg, ifeed.faces, seed=5, text=text)


def test_resnet50_sentiment_run_on_meld(meld: ShardInputs, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = {**TINY["resnet50"], "epochs": 1}
    metrics = train_and_evaluate("resnet50", "meld", cfg, GLOBAL, meld, tmp_path, progress=False)
    assert metrics["level"] == "utterance"
    assert np.asarray(metrics["test"]["confusion"]).shape == (3, 3)
    assert np.asarray(metrics["face_level"]["test"]["confusion"]).shape == (3, 3)
    preds = pl.read_parquet(tmp_path / "predictions.parquet")
    # every test utterance, with or without a face, labelled by its sentiment
    assert preds.filter(pl.col("split") == "test").height == 14
    assert set(preds["label"]) <= set(SENTIMENTS)


def test_class_lists_are_parameters() -> None:
    assert normalize_class(" Positive ", SENTIMENTS) == "positive"
    assert normalize_class("Happy") == "joy"
    with pytest.raises(UnknownLabelError):
        normalize_class("joy", SENTIMENTS)
    m = classification_metrics([0, 1, 2, 2], [0, 2, 2, 2], SENTIMENTS)
    assert list(m["per_class"]) == list(SENTIMENTS) and len(m["confusion"]) == 3
    assert len(classification_metrics([0], [0])["confusion"]) == len(EMOTIONS)


def test_workflow_turns_ifeed_runs_and_transfer_off_for_sentiment(workdir: Path) -> None:
    proc = run_snakemake(
        ["-n", "all", "--configfile", "config/demo.yaml", "--config", "task=sentiment"],
        cwd=workdir,
    )
    out = proc.stdout + proc.stderr
    assert "IFEED has no sentiment labels" in out
    assert "results/models/resnet50/meld/metrics.json" in out
    assert "results/models/resnet50/ifeed" not in out
    assert "results/transfer/" not in out

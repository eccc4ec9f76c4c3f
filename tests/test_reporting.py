"""Tables, character-wise analysis, figures and provenance on fabricated run outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, f1_score

from crossemotion.labels import CHARACTERS, EMOTIONS
from crossemotion.reporting import figures
from crossemotion.reporting.character import character_table
from crossemotion.reporting.pipeline import build_table, write_named_table
from crossemotion.reporting.provenance import data_fingerprint, git_commit
from crossemotion.reporting.runs import model_run, transfer_run
from crossemotion.reporting.scores import classification_scores

# The demo config's model runs and transfer cells (common.smk's model_runs/transfer_cells).
RUNS = [
    ("cnn_lstm", "meld"),
    ("c3d", "meld"),
    ("resnet50", "ifeed"),
    ("resnet50", "meld"),
    ("text", "meld"),
    ("fusion", "meld"),
]
CELLS = [
    (s, t, m)
    for s, t in (("ifeed", "meld"), ("meld", "ifeed"))
    for m in ("zero_shot", "finetune_0.1", "finetune_1")
]
# Monica never speaks in the fabricated test split: her row must still appear.
SPEAKERS = ["Chandler", "Joey", "Phoebe", "Rachel", "Ross", "Other"]


def _predictions(rng: np.random.Generator, n: int, accuracy: float, levels: bool) -> pd.DataFrame:
    rows = []
    for split, count in (("dev", n // 2), ("test", n)):
        for i in range(count):
            label = EMOTIONS[rng.choice(7, p=[0.1, 0.03, 0.04, 0.2, 0.4, 0.08, 0.15])]
            pred = label if rng.random() < accuracy else EMOTIONS[rng.integers(7)]
            probs = rng.dirichlet(np.ones(7))
            char = SPEAKERS[rng.integers(len(SPEAKERS))]
            row = {
                "id": f"{split}-{i}",
                "key": f"dia{i // 5}_utt{i % 5}",
                "split": split,
                "speaker": char,
                "character": char,
                "label": label,
                "prediction": pred,
                **{f"p_{e}": float(p) for e, p in zip(EMOTIONS, probs, strict=True)},
            }
            if levels:
                rows.append({**row, "level": "utterance"})
                rows += [{**row, "id": f"{row['id']}-f{k}", "level": "face"} for k in (0, 1)]
            else:
                rows.append(row)
    return pd.DataFrame(rows)


def _write_run(directory: Path, frame: pd.DataFrame, extra: dict | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / "predictions.parquet")
    test = frame[frame["split"] == "test"]
    if "level" in test.columns:
        test = test[test["level"] == "utterance"]
    metrics = {
        "test": classification_scores(test["label"], test["prediction"]),
        "inference": {"unit": "clip", "ms_per_unit_batch1": 12.5, "batch_size": 16},
        "train": {"epochs_run": 3, "best_epoch": 2, "seconds": 42.0, "parameters": 123456},
        **(extra or {}),
    }
    (directory / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.9, 1.5, 1.2],
            "dev_accuracy": [0.3, 0.4, 0.45],
            "dev_weighted_f1": [0.25, 0.35, 0.4],
            "lr": [1e-3] * 3,
            "seconds": [10.0, 11.0, 12.0],
        }
    ).to_csv(directory / "train_log.csv", index=False)


def fabricate_results(root: Path, seed: int = 0) -> Path:
    """results/models/* and results/transfer/* as the model and transfer rules write them."""
    rng = np.random.default_rng(seed)
    results = root / "results"
    for k, (model, dataset) in enumerate(RUNS):
        _write_run(
            results / "models" / model / dataset, _predictions(rng, 60, 0.3 + 0.08 * k, False)
        )
    for k, (source, target, mode) in enumerate(CELLS):
        directory = results / "transfer" / f"{source}_to_{target}" / mode
        # One MELD cell carries both levels in its predictions; the others only
        # the utterance rows, with the face level stated in metrics.json.
        both = target == "meld" and mode == "zero_shot"
        extra = {}
        if target == "meld" and not both:
            extra = {
                "levels": {"face": {"n": 99, "accuracy": 0.5, "weighted_f1": 0.45, "macro_f1": 0.3}}
            }
        _write_run(directory, _predictions(rng, 40, 0.2 + 0.05 * k, both), extra)
    return results


def _recompute(path: Path, level: str | None = None) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    frame = frame[frame["split"] == "test"]
    if level is not None and "level" in frame.columns:
        frame = frame[frame["level"] == level]
    return frame


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return fabricate_results(tmp_path)


SETTINGS = {"config": {"demo": True, "seed": 1}, "demo": True, "data_files": [], "root": "."}


def test_character_table_has_seven_rows_per_run_and_recomputes(results: Path) -> None:
    table = build_table("character_wise", SETTINGS, RUNS, CELLS, results=results)
    assert len(table) == 7 * (len(RUNS) + len(CELLS))
    for (model, dataset, source, mode), group in table.groupby(
        ["model", "dataset", "source", "mode"]
    ):
        assert list(group["character"]) == list(CHARACTERS)
        run = (
            model_run(model, dataset, results)
            if mode == "trained"
            else transfer_run(model, source, dataset, mode, results)
        )
        test = _recompute(run.predictions_path, "utterance")
        overall = f1_score(test["label"], test["prediction"], average="weighted", zero_division=0)
        for row in group.itertuples():
            part = test[test["character"] == row.character]
            assert row.n == len(part)
            if not len(part):
                assert row.character == "Monica"
                assert pd.isna(row.accuracy) and pd.isna(row.weighted_f1)
                assert row.label_distribution == ""
                continue
            wf1 = f1_score(part["label"], part["prediction"], average="weighted", zero_division=0)
            mf1 = f1_score(part["label"], part["prediction"], average="macro", zero_division=0)
            assert row.accuracy == pytest.approx(accuracy_score(part["label"], part["prediction"]))
            assert row.weighted_f1 == pytest.approx(wf1)
            assert row.macro_f1 == pytest.approx(mf1)
            assert row.delta_weighted_f1 == pytest.approx(wf1 - overall)
            counts = part["label"].value_counts()
            assert sum(int(x.split(":")[1]) for x in row.label_distribution.split()) == len(part)
            assert all(
                int(counts[x.split(":")[0]]) == int(x.split(":")[1])
                for x in row.label_distribution.split()
            )


def test_benchmark_csv_equals_recomputation_and_labels_references(
    results: Path, tmp_path: Path
) -> None:
    csv, md = tmp_path / "tables" / "benchmark.csv", tmp_path / "tables" / "benchmark.md"
    write_named_table(
        "benchmark", csv, md, {**SETTINGS, "reference_rows": True}, RUNS, results=results
    )
    table = pd.read_csv(csv)
    measured = table[table["source"] == "measured"]
    assert sorted(zip(measured["model"], measured["dataset"], strict=True)) == sorted(RUNS)
    for row in measured.itertuples():
        test = _recompute(results / "models" / row.model / row.dataset / "predictions.parquet")
        assert row.n == len(test)
        assert row.accuracy == pytest.approx(accuracy_score(test["label"], test["prediction"]))
        assert row.weighted_f1 == pytest.approx(
            f1_score(test["label"], test["prediction"], average="weighted", zero_division=0)
        )
        assert row.macro_f1 == pytest.approx(
            f1_score(test["label"], test["prediction"], average="macro", zero_division=0)
        )
        assert row.parameters == 123456 and row.inference_ms == 12.5
        assert row.data == "demo (generated)"
        # No baseline in metrics.json: dev's majority class predicted on test.
        dev = pd.read_parquet(results / "models" / row.model / row.dataset / "predictions.parquet")
        majority = dev[dev["split"] == "dev"]["label"].value_counts().idxmax()
        assert row.baseline_weighted_f1 == pytest.approx(
            f1_score(test["label"], [majority] * len(test), average="weighted", zero_division=0)
        )
    refs = table[table["source"] != "measured"]
    assert len(refs) == 8 and (refs["data"] == "reference").all()
    assert refs["source"].str.contains("not measured").all()
    seed = refs[(refs["model"] == "cnn_lstm")].iloc[0]
    assert seed["source"] == "seed claim (not measured)"
    assert (seed["accuracy"], seed["weighted_f1"], seed["inference_ms"]) == (0.632, 0.61, 87.0)
    assert set(refs["weighted_f1"]) >= {0.55, 0.557, 0.65, 0.67, 0.71, 0.87}
    assert {"config_hash", "git_commit", "data_fingerprint", "demo"} <= set(table.columns)
    assert table["demo"].all()
    text = md.read_text()
    assert "DEMO DATA (generated)" in text and "seed claim (not measured)" in text
    assert "config hash" in text and text.count("| measured |") == len(RUNS)


def test_transfer_table_both_directions_all_modes_and_levels(results: Path) -> None:
    table = build_table("transfer", SETTINGS, cells=CELLS, results=results)
    modes = {"zero_shot", "finetune_0.1", "finetune_1", "target_only"}
    for source, target in (("ifeed", "meld"), ("meld", "ifeed")):
        part = table[(table["source"] == source) & (table["target"] == target)]
        assert set(part["mode"]) == modes
        expected_levels = {"utterance", "face"} if target == "meld" else {"image"}
        for mode in modes - {"target_only"}:
            assert set(part[part["mode"] == mode]["level"]) == expected_levels
    for row in table[table["origin"] == "predictions.parquet"].itertuples():
        run = (
            model_run(row.model, row.target, results)
            if row.mode == "target_only"
            else transfer_run(row.model, row.source, row.target, row.mode, results)
        )
        test = _recompute(run.predictions_path, row.level)
        assert row.n == len(test)
        assert row.weighted_f1 == pytest.approx(
            f1_score(test["label"], test["prediction"], average="weighted", zero_division=0)
        )
        assert row.accuracy == pytest.approx(accuracy_score(test["label"], test["prediction"]))
    stated = table[table["origin"] == "metrics.json"]
    assert set(stated["level"]) == {"face"} and (stated["weighted_f1"] == 0.45).all()
    # The zero-shot MELD cell carries face rows: twice the utterance rows.
    zs = table[(table["target"] == "meld") & (table["mode"] == "zero_shot")].set_index("level")
    assert zs.loc["face", "n"] == 2 * zs.loc["utterance", "n"]


def test_absent_predictions_column_is_a_clear_error(tmp_path: Path) -> None:
    run = model_run("text", "meld", tmp_path)
    run.directory.mkdir(parents=True)
    pd.DataFrame({"split": ["test"], "label": ["joy"]}).to_parquet(run.predictions_path)
    with pytest.raises(ValueError, match="prediction"):
        character_table([run])


def test_integer_labels_are_read_as_class_names(tmp_path: Path) -> None:
    run = model_run("c3d", "meld", tmp_path)
    run.directory.mkdir(parents=True)
    pd.DataFrame(
        {
            "split": ["test"] * 3,
            "label": [3, 4, 4],
            "prediction": [3, 4, 0],
            "character": ["Ross", "Ross", "Joey"],
        }
    ).to_parquet(run.predictions_path)
    table = character_table([run]).set_index("character")
    assert table.loc["Ross", "label_distribution"] == "joy:1 neutral:1"
    assert table.loc["Ross", "accuracy"] == 1.0 and table.loc["Joey", "accuracy"] == 0.0


def test_figures_are_written(results: Path, tmp_path: Path) -> None:
    chars = build_table("character_wise", SETTINGS, RUNS, CELLS, results=results)
    transfer = build_table("transfer", SETTINGS, cells=CELLS, results=results)
    test = _recompute(results / "models" / "text" / "meld" / "predictions.parquet")
    out = tmp_path / "fig"
    counts = figures.confusion_figure(test, out / "cm.png", "text / meld", demo=True)
    assert counts.sum() == len(test) and counts.shape == (7, 7)
    assert np.trace(counts) == (test["label"] == test["prediction"]).sum()
    grid = figures.transfer_heatmap(transfer, out / "heat.png", demo=True)
    assert grid.shape == (2, 4) and not grid.isna().any().any()
    figures.character_bars(chars, out / "chars.png")
    log = pd.read_csv(results / "models" / "text" / "meld" / "train_log.csv")
    figures.training_curves(log, out / "train.png", "text / meld")
    for name in ("cm", "heat", "chars", "train"):
        meta = figures.figure_meta(out / f"{name}.png")
        assert meta["format"] == "PNG" and meta["width"] > 200 and meta["height"] > 150
    assert not list(out.glob(".*tmp"))


def test_provenance(tmp_path: Path) -> None:
    shard = tmp_path / "part-0000.parquet"
    shard.write_bytes(b"x" * 10)
    manifest = tmp_path / "manifest.parquet"
    manifest.write_bytes(b"abc")
    before = data_fingerprint([shard, manifest])
    manifest.write_bytes(b"abd")  # same size, other bytes: manifests are hashed by content
    assert data_fingerprint([shard, manifest]) != before
    after = data_fingerprint([shard, manifest])
    shard.write_bytes(b"x" * 11)
    assert data_fingerprint([shard, manifest]) != after
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(Path(__file__).parent) != "unknown"


def test_fingerprint_ignores_decode_times(tmp_path: Path) -> None:
    """The same clips decoded again take other times: the fingerprint stays; a status
    change moves it."""
    manifest = tmp_path / "manifest.parquet"
    rows = {"key": ["dia0_utt0", "dia0_utt1"], "status": ["ok", "ok"]}
    pl.DataFrame({**rows, "decode_seconds": [0.11, 0.12]}).write_parquet(manifest)
    first = data_fingerprint([manifest])
    pl.DataFrame({**rows, "decode_seconds": [0.13, 0.10]}).write_parquet(manifest)
    assert data_fingerprint([manifest]) == first
    pl.DataFrame(
        {**rows, "status": ["ok", "corrupt"], "decode_seconds": [0.13, 0.10]}
    ).write_parquet(manifest)
    assert data_fingerprint([manifest]) != first
    # utterance times are data, not timings
    pl.DataFrame({**rows, "start_seconds": [1.0, 2.0], "decode_seconds": [0.1, 0.1]}).write_parquet(
        manifest
    )
    second = data_fingerprint([manifest])
    pl.DataFrame({**rows, "start_seconds": [1.0, 2.5], "decode_seconds": [0.1, 0.1]}).write_parquet(
        manifest
    )
    assert data_fingerprint([manifest]) != second

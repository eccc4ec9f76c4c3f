"""Transfer cells on tiny synthetic shards: outputs, fractions, overlap exclusion, levels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from crossemotion.data.ifeed import meld_keys, overlap_table
from crossemotion.labels import EMOTIONS
from crossemotion.training import checkpoint
from crossemotion.training.runner import PROB_COLUMNS, train_and_evaluate
from crossemotion.training.shards import label_indices
from crossemotion.transfer import (
    Cell,
    TransferInputs,
    cell_metrics,
    leaked_keys,
    parse_mode,
    run_transfer,
    select_fraction,
)
from tests.vision_fixtures import GLOBAL, TINY, write_ifeed_shards, write_meld_shards

MODEL_CFG = {**TINY["resnet50"], "epochs": 1, "augment": False}
TRANSFER_CFG = {"model": "resnet50", "fractions": [0.5], "exclude_overlap": True, "epochs": 1}
# IFEED Training images re-keyed onto MELD dev/test utterances: the leak to exclude
LEAKED_DEV, LEAKED_TEST = "dia101_utt1", "dia202_utt0"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("transfer")
    meld = write_meld_shards(root)
    ifeed = write_ifeed_shards(root)
    train_path = ifeed.faces["train"][0]
    frame = pl.read_parquet(train_path)
    keys = frame["key"].to_list()
    keys[:2] = [LEAKED_DEV, LEAKED_DEV]
    keys[2] = LEAKED_TEST
    frame.with_columns(pl.Series("key", keys)).write_parquet(train_path)
    overlap = root / "overlap.csv"
    manifest = pl.concat(
        [pl.read_parquet(p[0], columns=["split", "key"]) for p in ifeed.faces.values()]
    ).with_columns(
        pl.lit("ok").alias("status"),
        pl.lit(None, dtype=pl.Int32).alias("dialogue_id"),
        pl.lit(None, dtype=pl.Int32).alias("utterance_id"),
    )
    overlap_table(manifest, meld_keys([p[0] for p in meld.text.values()])).write_csv(overlap)
    models = {}
    for name, inputs in (("meld", meld), ("ifeed", ifeed)):
        out = root / "models" / name
        train_and_evaluate("resnet50", name, MODEL_CFG, GLOBAL, inputs, out, progress=False)
        models[name] = out / "model.pt"
    return {"root": root, "meld": meld, "ifeed": ifeed, "overlap": overlap, "models": models}


def inputs_for(world: dict, source: str, target: str, overlap: bool = True) -> TransferInputs:
    tgt = world[target]
    return TransferInputs(
        checkpoint=world["models"][source],
        source_train=list(world[source].faces["train"]),
        faces={s: list(p) for s, p in tgt.faces.items()},
        text={s: list(p) for s, p in tgt.text.items()},
        overlap=world["overlap"] if overlap else None,
    )


@pytest.fixture(scope="module")
def cells(world) -> dict[tuple[str, str, str], Path]:
    out = {}
    for source, target in (("ifeed", "meld"), ("meld", "ifeed")):
        for mode in ("zero_shot", "finetune_0.5"):
            cell_dir = world["root"] / "transfer" / f"{source}_to_{target}" / mode
            run_transfer(
                Cell(source, target, mode),
                inputs_for(world, source, target),
                TRANSFER_CFG,
                GLOBAL,
                cell_dir,
                save_model=cell_dir / "model.pt",
            )
            out[(source, target, mode)] = cell_dir
    return out


def test_modes_parse() -> None:
    assert parse_mode("zero_shot") is None
    assert parse_mode("finetune_0.1") == pytest.approx(0.1)
    assert parse_mode("finetune_1") == 1.0
    for bad in ("finetune_0", "finetune_2", "fine_0.1", "zero"):
        with pytest.raises(ValueError):
            parse_mode(bad)
    with pytest.raises(ValueError):
        Cell("meld", "meld", "zero_shot")


def test_fraction_is_deterministic_stratified_and_grouped() -> None:
    rows = [
        {"id": f"{g}_{f}", "key": f"dia{g}_utt0", "label": EMOTIONS[g % 7]}
        for g in range(70)
        for f in range(3)
    ]
    frame = pl.DataFrame(rows)
    a = select_fraction(frame, 0.5, seed=3)
    assert a.equals(select_fraction(frame, 0.5, seed=3))
    assert not a.equals(select_fraction(frame, 0.5, seed=4))
    assert a.height == 105  # 5 of 10 groups per class, 3 faces each
    assert sorted(a["label"].value_counts()["count"].to_list()) == [15] * 7
    # whole source-key groups: every chosen key keeps its three faces
    assert set(a.group_by("key").len()["len"].to_list()) == {3}
    assert select_fraction(frame, 1.0, seed=3).equals(frame)


def test_leaked_keys_follow_the_direction() -> None:
    overlap = pl.DataFrame(
        {
            "ifeed_split": ["train", "train", "test", "test"],
            "key": ["dia1_utt0", "dia2_utt0", "dia3_utt0", "dia4_utt0"],
            "in_meld_train": [True, False, True, False],
            "in_meld_dev": [False, True, False, True],
            "in_meld_test": [True, False, False, False],
        }
    )
    to_ifeed = leaked_keys(overlap, "meld", "ifeed")
    assert to_ifeed["test"] == {"dia1_utt0", "dia3_utt0"}
    to_meld = leaked_keys(overlap, "ifeed", "meld")
    # only IFEED Training keys leak into MELD evaluation, per MELD split
    assert to_meld["dev"] == {"dia2_utt0"}
    assert to_meld["test"] == {"dia1_utt0"}


def test_outputs_have_the_documented_structure(cells) -> None:
    for (source, target, mode), cell_dir in cells.items():
        metrics = json.loads((cell_dir / "metrics.json").read_text())
        assert (metrics["source"], metrics["target"], metrics["mode"]) == (source, target, mode)
        assert metrics["fraction"] == (None if mode == "zero_shot" else 0.5)
        for split in ("dev", "test"):
            for key in ("accuracy", "weighted_f1", "macro_f1", "per_class", "confusion", "n"):
                assert key in metrics[split]
        assert set(metrics["absent_classes"]) >= {"source_train", "target_test"}
        assert isinstance(metrics["n_excluded_overlap"], int)
        levels = {"utterance", "face"} if target == "meld" else {"image"}
        assert set(metrics["levels"]) == levels
        assert metrics["levels"][metrics["level"]] == metrics["test"]
        preds = pl.read_parquet(cell_dir / "predictions.parquet")
        assert set(preds["level"].unique()) == levels
        assert set(preds["split"].unique()) == {"dev", "test"}
        assert set(PROB_COLUMNS) <= set(preds.columns)
        test = preds.filter((pl.col("split") == "test") & (pl.col("level") == metrics["level"]))
        assert test.height == metrics["test"]["n"]
        # metrics.json equals what the predictions give
        again = cell_metrics(
            label_indices(test["label"].to_list()), test.select(PROB_COLUMNS).to_numpy()
        )
        assert again["weighted_f1"] == pytest.approx(metrics["test"]["weighted_f1"])
        log = pl.read_csv(cell_dir / "train_log.csv")
        assert "epoch" in log.columns
        assert log.height == (0 if mode == "zero_shot" else 1)


def test_meld_target_counts_every_utterance(cells, world) -> None:
    metrics = json.loads((cells[("ifeed", "meld", "zero_shot")] / "metrics.json").read_text())
    n_test_utts = pl.read_parquet(world["meld"].text["test"][0]).height
    # the leaked utterance is left out; utterances without faces are still scored
    assert metrics["levels"]["utterance"]["n"] == n_test_utts - 1
    faces = pl.read_parquet(world["meld"].faces["test"][0])
    assert metrics["levels"]["face"]["n"] == faces.filter(pl.col("key") != LEAKED_TEST).height


def test_finetune_changes_the_weights(cells, world) -> None:
    source = checkpoint.load(world["models"]["ifeed"])["state_dict"]
    tuned = checkpoint.load(cells[("ifeed", "meld", "finetune_0.5")] / "model.pt")["state_dict"]
    same = checkpoint.load(cells[("ifeed", "meld", "zero_shot")] / "model.pt")["state_dict"]
    assert all(torch.equal(source[k], same[k]) for k in source)
    assert any(
        not torch.equal(source[k], tuned[k]) for k in source if source[k].is_floating_point()
    )
    metrics = json.loads((cells[("ifeed", "meld", "finetune_0.5")] / "metrics.json").read_text())
    n_train = pl.read_parquet(world["meld"].faces["train"][0]).height
    assert 0 < metrics["n_finetune"] < n_train
    # model selection scored dev at the reported (utterance) level, as evaluation does
    assert metrics["train"]["best_dev_score"] == pytest.approx(metrics["dev"]["weighted_f1"])


def test_overlap_exclusion_removes_exactly_the_leaked_items(cells, world) -> None:
    # MELD -> IFEED: IFEED test images whose key is in MELD train
    meld_train = set(pl.read_parquet(world["meld"].text["train"][0])["key"].to_list())
    ifeed_test = pl.read_parquet(world["ifeed"].faces["test"][0])
    leaked_ids = set(ifeed_test.filter(pl.col("key").is_in(sorted(meld_train)))["id"].to_list())
    assert leaked_ids  # the fixture has some
    preds = pl.read_parquet(cells[("meld", "ifeed", "zero_shot")] / "predictions.parquet")
    kept = set(preds.filter(pl.col("split") == "test")["id"].to_list())
    assert kept == set(ifeed_test["id"].to_list()) - leaked_ids
    metrics = json.loads((cells[("meld", "ifeed", "zero_shot")] / "metrics.json").read_text())
    assert metrics["n_excluded_overlap"] == len(leaked_ids)

    # IFEED -> MELD: the two MELD utterances IFEED Training was re-keyed onto
    preds = pl.read_parquet(cells[("ifeed", "meld", "zero_shot")] / "predictions.parquet")
    utts = preds.filter(pl.col("level") == "utterance")
    for split, key in (("dev", LEAKED_DEV), ("test", LEAKED_TEST)):
        keys = set(utts.filter(pl.col("split") == split)["key"].to_list())
        all_keys = set(pl.read_parquet(world["meld"].text[split][0])["key"].to_list())
        assert keys == all_keys - {key}
    metrics = json.loads((cells[("ifeed", "meld", "zero_shot")] / "metrics.json").read_text())
    assert metrics["excluded_overlap"]["dev"]["utterances"] == 1
    assert metrics["n_excluded_overlap"] == 1


def test_without_exclusion_nothing_is_dropped(world, tmp_path) -> None:
    metrics = run_transfer(
        Cell("meld", "ifeed", "zero_shot"),
        inputs_for(world, "meld", "ifeed", overlap=False),
        {**TRANSFER_CFG, "exclude_overlap": False},
        GLOBAL,
        tmp_path / "cell",
    )
    assert metrics["n_excluded_overlap"] == 0
    assert metrics["test"]["n"] == pl.read_parquet(world["ifeed"].faces["test"][0]).height


def test_absent_classes_and_macro_f1_labels() -> None:
    labels = np.array([0, 0, 3, 4, 4])
    probs = np.eye(7)[[0, 1, 3, 4, 2]]
    m = cell_metrics(labels, probs)
    assert m["macro_f1_labels"] == ["anger", "joy", "neutral"]
    # anger 2/3 (P=1, R=.5), joy 1, neutral 2/3: mean over the three present classes
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["macro_f1_all"] < m["macro_f1"]

"""Transfer cells on tiny synthetic shards: outputs, fractions, leakage exclusion, levels."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from crossemotion import checkpoint
from crossemotion.datasets.shards import label_indices
from crossemotion.evaluation.scoring import PROB_COLUMNS
from crossemotion.ingest.ifeed.align import alignment_frame
from crossemotion.ingest.ifeed.leakage import excluded_items, leak_links
from crossemotion.labels import EMOTIONS
from crossemotion.training.runner import train_and_evaluate
from crossemotion.training.transfer import (
    Cell,
    TransferInputs,
    TransferSettings,
    cell_metrics,
    parse_mode,
    run_transfer,
    select_fraction,
)
from tests.vision_fixtures import GLOBAL, TINY, write_ifeed_shards, write_meld_shards

MODEL_CFG = {**TINY["resnet50"], "epochs": 1, "augment": False}
TRANSFER_CFG = TransferSettings(model="resnet50", fractions=(0.5,), exclude_overlap=True, epochs=1)
# IFEED Training images aligned to MELD dev/test utterances: the leak to exclude
LEAKED_DEV, LEAKED_TEST = "dia101_utt1", "dia202_utt0"
# an IFEED Training image that did not align, whose key names a MELD test utterance
UNALIGNED_TEST = "dia203_utt1"


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
    keys[3] = UNALIGNED_TEST
    frame.with_columns(pl.Series("key", keys)).write_parquet(train_path)
    index = pl.concat([pl.read_parquet(p[0], columns=["split", "key"]) for p in meld.text.values()])
    meld_train = set(index.filter(pl.col("split") == "train")["key"].to_list())
    rows = []
    for split, paths in ifeed.faces.items():
        for i, (member, key) in enumerate(pl.read_parquet(paths[0]).select("id", "key").rows()):
            row = {"member": member, "ifeed_split": split, "key": key, "status": "unmatched"}
            if key in (LEAKED_DEV, LEAKED_TEST):
                row.update(status="matched", meld_split="dev" if key == LEAKED_DEV else "test")
            elif split == "test" and key in meld_train:
                # aligned to MELD train, not aligned (leaks by the policy), or aligned to
                # MELD test: the key alone would call all three leaked
                if i % 3 == 0:
                    row.update(status="matched", meld_split="train")
                elif i % 3 == 2:
                    row.update(status="matched", meld_split="test")
            elif key != UNALIGNED_TEST:
                row.update(status="matched", meld_split="dev")  # a source outside both
            rows.append(row)
    alignment = alignment_frame(rows)
    leakage = root / "leakage.parquet"
    leak_links(alignment, index, "all_key_splits").write_parquet(leakage)
    models = {}
    for name, inputs in (("meld", meld), ("ifeed", ifeed)):
        out = root / "models" / name
        train_and_evaluate("resnet50", name, MODEL_CFG, GLOBAL, inputs, out, progress=False)
        models[name] = out / "model.pt"
    return {"root": root, "meld": meld, "ifeed": ifeed, "leakage": leakage, "models": models,
            "alignment": alignment, "index": index}  # fmt: skip


def inputs_for(world: dict, source: str, target: str, leakage: bool = True) -> TransferInputs:
    tgt = world[target]
    return TransferInputs(
        checkpoint=world["models"][source],
        source_train=list(world[source].faces["train"]),
        faces={s: list(p) for s, p in tgt.faces.items()},
        text={s: list(p) for s, p in tgt.text.items()},
        leakage=world["leakage"] if leakage else None,
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


def test_leak_links_follow_the_alignment_and_the_policy() -> None:
    alignment = alignment_frame(
        [
            {"member": "a", "ifeed_split": "train", "key": "dia1_utt0", "status": "matched",
             "meld_split": "dev"},
            {"member": "b", "ifeed_split": "train", "key": "dia2_utt0", "status": "ambiguous",
             "meld_split": "test"},
            {"member": "c", "ifeed_split": "test", "key": "dia1_utt0", "status": "matched",
             "meld_split": "train"},
            {"member": "d", "ifeed_split": "test", "key": "dia3_utt0", "status": "no_source"},
            {"member": "e", "ifeed_split": "test", "key": "dia2_utt0", "status": "unmatched"},
        ]
    )  # fmt: skip
    index = pl.DataFrame(
        {
            "split": ["train", "dev", "test", "train", "dev", "test"],
            "key": ["dia1_utt0", "dia1_utt0", "dia1_utt0", "dia2_utt0", "dia2_utt0", "dia2_utt0"],
        }
    )
    links = leak_links(alignment, index, "all_key_splits")
    got = {(m, s) for m, s in links.select("member", "meld_split").rows()}
    # matched: only the aligned split, though the key is in all three
    assert {s for m, s in got if m == "a"} == {"dev"}
    assert {s for m, s in got if m == "c"} == {"train"}
    # not matched: every split holding the key; a key MELD lacks leaks nowhere
    assert {s for m, s in got if m in ("b", "e")} == {"train", "dev", "test"}
    assert not any(m == "d" for m, _ in got)
    to_meld = excluded_items(links, "ifeed", "meld")
    # only IFEED Training images leak into MELD evaluation, per MELD split
    assert to_meld == {"dev": {"dia1_utt0", "dia2_utt0"}, "test": {"dia2_utt0"}}
    to_ifeed = excluded_items(links, "meld", "ifeed")
    assert to_ifeed["test"] == {"b", "c", "e"}
    none = leak_links(alignment, index, "none")
    assert set(none["member"].to_list()) == {"a", "c"}
    assert excluded_items(none, "ifeed", "meld") == {"dev": {"dia1_utt0"}, "test": set()}
    with pytest.raises(ValueError, match="unaligned"):
        leak_links(alignment, index, "guess")


def test_outputs_have_the_documented_structure(cells) -> None:
    for (source, target, mode), cell_dir in cells.items():
        metrics = json.loads((cell_dir / "metrics.json").read_text())
        assert (metrics["source"], metrics["target"], metrics["mode"]) == (source, target, mode)
        assert metrics["fraction"] == (None if mode == "zero_shot" else 0.5)
        for split in ("dev", "test"):
            for key in ("accuracy", "weighted_f1", "macro_f1", "per_class", "confusion", "n"):
                assert key in metrics[split]
        assert set(metrics["absent_classes"]) >= {"source_train", "target_test"}
        assert isinstance(metrics["n_excluded"], int)
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
    # the leaked utterances are left out; utterances without faces are still scored
    assert metrics["levels"]["utterance"]["n"] == n_test_utts - 2
    faces = pl.read_parquet(world["meld"].faces["test"][0])
    kept = faces.filter(~pl.col("key").is_in([LEAKED_TEST, UNALIGNED_TEST]))
    assert metrics["levels"]["face"]["n"] == kept.height


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


def test_leakage_exclusion_removes_exactly_the_leaked_items(cells, world) -> None:
    # MELD -> IFEED: IFEED test images aligned to MELD train, and the unaligned
    # ones whose key MELD train holds (the conservative policy)
    meld_train = set(world["index"].filter(pl.col("split") == "train")["key"].to_list())
    alignment = world["alignment"]
    aligned = alignment.filter((pl.col("status") == "matched") & (pl.col("meld_split") == "train"))
    unaligned = alignment.filter(
        (pl.col("status") != "matched") & pl.col("key").is_in(sorted(meld_train))
    )
    leaked_ids = set(aligned["member"].to_list()) | set(unaligned["member"].to_list())
    ifeed_test = pl.read_parquet(world["ifeed"].faces["test"][0])
    assert leaked_ids & set(ifeed_test["id"].to_list()) and aligned.height and unaligned.height
    # an image aligned elsewhere stays even though its key is in MELD train
    kept_by_content = alignment.filter(
        (pl.col("ifeed_split") == "test") & (pl.col("status") == "matched")
        & (pl.col("meld_split") != "train") & pl.col("key").is_in(sorted(meld_train))
    )  # fmt: skip
    for mode in ("zero_shot", "finetune_0.5"):
        preds = pl.read_parquet(cells[("meld", "ifeed", mode)] / "predictions.parquet")
        kept = set(preds.filter(pl.col("split") == "test")["id"].to_list())
        assert kept == set(ifeed_test["id"].to_list()) - leaked_ids
        assert kept_by_content.height and set(kept_by_content["member"].to_list()) <= kept
        metrics = json.loads((cells[("meld", "ifeed", mode)] / "metrics.json").read_text())
        assert metrics["n_excluded"] == len(leaked_ids & set(ifeed_test["id"].to_list()))

    # IFEED -> MELD: the utterances IFEED Training was aligned to, and the one whose
    # key an unaligned Training image carries
    preds = pl.read_parquet(cells[("ifeed", "meld", "zero_shot")] / "predictions.parquet")
    utts = preds.filter(pl.col("level") == "utterance")
    for split, gone in (("dev", {LEAKED_DEV}), ("test", {LEAKED_TEST, UNALIGNED_TEST})):
        keys = set(utts.filter(pl.col("split") == split)["key"].to_list())
        all_keys = set(pl.read_parquet(world["meld"].text[split][0])["key"].to_list())
        assert gone <= all_keys and keys == all_keys - gone
    metrics = json.loads((cells[("ifeed", "meld", "zero_shot")] / "metrics.json").read_text())
    assert metrics["excluded"]["dev"]["utterances"] == 1
    assert metrics["n_excluded"] == 2
    assert metrics["unaligned"] == "all_key_splits"


def test_without_exclusion_nothing_is_dropped(world, tmp_path) -> None:
    metrics = run_transfer(
        Cell("meld", "ifeed", "zero_shot"),
        inputs_for(world, "meld", "ifeed", leakage=False),
        dataclasses.replace(TRANSFER_CFG, exclude_overlap=False),
        GLOBAL,
        tmp_path / "cell",
    )
    assert metrics["n_excluded"] == 0
    assert metrics["test"]["n"] == pl.read_parquet(world["ifeed"].faces["test"][0]).height


def test_absent_classes_and_macro_f1_labels() -> None:
    labels = np.array([0, 0, 3, 4, 4])
    probs = np.eye(7)[[0, 1, 3, 4, 2]]
    m = cell_metrics(labels, probs)
    assert m["macro_f1_labels"] == ["anger", "joy", "neutral"]
    # anger 2/3 (P=1, R=.5), joy 1, neutral 2/3: mean over the three present classes
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["macro_f1_all"] < m["macro_f1"]


def test_transfer_table_scores_every_row_of_a_target_on_the_same_items(cells, world) -> None:
    from crossemotion.reporting.runs import Run, transfer_run
    from crossemotion.reporting.tables import transfer_table

    links = pl.read_parquet(world["leakage"])
    runs = [transfer_run("resnet50", s, t, m, world["root"]) for s, t, m in cells]
    target_only = {t: [Run("resnet50", t, world["root"] / "models" / t, source=t)]
                   for t in ("meld", "ifeed")}  # fmt: skip
    directions = [("ifeed", "meld"), ("meld", "ifeed")]
    excluded = {(s, t): excluded_items(links, s, t)["test"] for s, t in directions}
    table = transfer_table(runs, target_only, excluded)
    full = {
        ("meld", "utterance"): pl.read_parquet(world["meld"].text["test"][0]).height,
        ("ifeed", "image"): pl.read_parquet(world["ifeed"].faces["test"][0]).height,
    }
    for (_source, target, level), part in table.groupby(["source", "target", "level"]):
        # the target-only model's predictions hold the primary level (utterance, image)
        modes = {"zero_shot", "finetune_0.5"} | ({"target_only"} if level != "face" else set())
        assert set(part["mode"]) == modes
        assert part["n"].nunique() == 1, part
        assert part["n_excluded"].nunique() == 1 and part["n_excluded"].iloc[0] > 0, part
        if (target, level) in full:
            assert part["n"].iloc[0] + part["n_excluded"].iloc[0] == full[(target, level)]
    # without the exclusions the target-only row is scored on the whole split
    plain = transfer_table(runs, target_only)
    only = plain[(plain["mode"] == "target_only") & (plain["level"] == "image")]
    assert only["n"].iloc[0] == full[("ifeed", "image")]

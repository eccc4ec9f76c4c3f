"""The real-data text experiments in bench/: the dialogue-level stacker and the sweep's choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import f1_score

from bench import text_dialogue, text_knn
from crossemotion.models.registry import ShardInputs
from crossemotion.training.runner import train_and_evaluate
from tests.test_text_model import utterances


def test_dialogue_groups_follow_dialogues_and_rank_speakers() -> None:
    groups = text_dialogue.dialogue_groups(
        [4, 4, 4, 9, 9] + [7] * 10,
        ["Ross", "Rachel", "Ross", "Joey", "Joey"] + [f"s{i}" for i in range(10)],
    )
    assert [g[0].tolist() for g in groups] == [[0, 1, 2], [3, 4], list(range(5, 15))]
    assert groups[0][1].tolist() == [0, 1, 0]
    assert groups[1][1].tolist() == [0, 0]
    # speakers past the slots share the last one
    assert groups[2][1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 7, 7]


def test_stacker_reads_checkpoints_in_the_runs_own_order(tmp_path: Path) -> None:
    frame = utterances()
    paths = {}
    for split in ("train", "dev", "test"):
        path = tmp_path / "shards" / split / "part-0000.parquet"
        path.parent.mkdir(parents=True)
        frame.with_columns(pl.lit(split).alias("split")).write_parquet(path)
        paths[split] = [path]
    cfg = {"encoder": "minilm", "max_length": 32, "context": 1, "epochs": 1, "batch_size": 4}
    run = tmp_path / "run"
    train_and_evaluate(
        "text", "meld", cfg, {"seed": 13, "device": "cpu"}, ShardInputs({}, {}, paths), run
    )
    out = tmp_path / "dialogue.json"
    argv = ["--shards", str(tmp_path / "shards"), "--checkpoints", str(run), "--out", str(out)]
    assert text_dialogue.main([*argv, "--seeds", "1", "2", "--epochs", "3"]) == 0
    record = json.loads(out.read_text())

    # the checkpoint's logits, read back in dialogue order, give the run's own predictions
    predictions = pl.read_parquet(run / "predictions.parquet")
    for split in ("dev", "test"):
        rows = predictions.filter(pl.col("split") == split)
        expected = f1_score(rows["label"], rows["prediction"], average="weighted")
        assert np.isclose(record["utterance"][split], expected)
    assert [r["seed"] for r in record["stacker"]] == [1, 2]
    for r in record["stacker"]:
        assert 1 <= r["epoch"] <= 3
        assert 0.0 <= r["dev"] <= 1.0 and 0.0 <= r["test"] <= 1.0
    assert not out.with_name(out.name + ".tmp").exists()


def _record(variant: str, seed: int, dev: float, task: str = "emotion") -> dict:
    return {"variant": variant, "seed": seed, "task": task, "dev": {"weighted_f1": dev}}


def test_sweep_chooses_on_dev_by_first_seed_or_finalists_mean() -> None:
    from bench import text_sweep

    first, second, third = text_sweep.SEEDS
    records = [
        _record("ctx3", first, 0.59),
        _record("ctx0", first, 0.58),
        _record("ctx3", second, 0.55),
        _record("ctx0", second, 0.585),
        _record("ctx3", third, 0.56),
        _record("ctx0", third, 0.582),
        # sentiment runs never choose
        _record("ctx2", first, 0.70, task="sentiment"),
    ]
    assert text_sweep.choose_on_dev(records, []) == "ctx3"
    # an earlier sweep's run in the same records file is not this sweep's to choose
    assert text_sweep.choose_on_dev(records, [], ["ctx0", "ctx2"]) == "ctx0"
    assert text_sweep.choose_on_dev(records, ["ctx3", "ctx0"]) == "ctx0"
    with pytest.raises(SystemExit):
        text_sweep.main(
            ["--shards", "x", "--out", "y", "--variants", "ctx3", "--finalists", "ctx0"]
        )
    # an empty or unknown variant list is refused before anything runs
    for bad in ([], ["ctx99"]):
        with pytest.raises(SystemExit):
            text_sweep.main(["--shards", "x", "--out", "y", "--variants", *bad])
    # no finished run to choose from (every job failed): said, not a bare max() error
    with pytest.raises(ValueError, match="no emotion run of seed 13 finished"):
        text_sweep.choose_on_dev(records[-1:], [])
    with pytest.raises(ValueError, match=r"finalist\(s\) ctx1 finished"):
        text_sweep.choose_on_dev(records, ["ctx0", "ctx1"])


def test_stacker_refuses_a_checkpoint_that_is_not_text(tmp_path: Path) -> None:
    from tests.test_serving import write_checkpoint

    path = write_checkpoint(tmp_path, "resnet50", "ifeed", {"weights": None})
    with pytest.raises(ValueError, match="'resnet50' checkpoint; the stacker reads text ones"):
        text_dialogue.load_splits([path], tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        text_dialogue.load_splits([tmp_path / "missing"], tmp_path)


def test_sweep_writes_every_record_as_it_finishes(tmp_path: Path) -> None:
    from bench import text_sweep

    sentiment = ["positive", "neutral", "negative", "positive", "positive", "negative"]
    frame = utterances().with_columns(pl.Series("sentiment", sentiment))
    for split in ("train", "dev", "test"):
        path = tmp_path / "shards" / split / "part-0000.parquet"
        path.parent.mkdir(parents=True)
        frame.with_columns(pl.lit(split).alias("split")).write_parquet(path)
    records = tmp_path / "records.json"
    argv = ["--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "out")]
    argv += ["--records", str(records), "--device", "cpu", "--threads", "1", "--epochs", "1"]
    assert text_sweep.main([*argv, "--variants", "ctx0ns_ls0.1"]) == 0
    written = json.loads(records.read_text())
    # the one variant on the first seed, then its other seeds and its sentiment
    assert sorted((r["task"], r["seed"]) for r in written) == sorted(
        [("emotion", s) for s in text_sweep.SEEDS] + [("sentiment", s) for s in text_sweep.SEEDS]
    )
    for r in written:
        assert r["variant"] == "ctx0ns_ls0.1"
        assert r["model_cfg"]["label_smoothing"] == 0.1
        assert r["model_cfg"]["context"] == 0 and r["model_cfg"]["speakers"] is False
        assert 0.0 <= r["dev"]["weighted_f1"] <= 1.0
    assert not records.with_suffix(".tmp").exists()
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_records_keep_what_the_file_holds_and_replace_a_rerun(tmp_path: Path) -> None:
    from bench.text_sweep import Records

    path = tmp_path / "records.json"
    first = Records(path)
    first.add(_record("ctx0", 13, 0.58))
    first.add(_record("ctx0", 14, 0.57))
    # another process (a rerun, the next round) writing to the same file
    second = Records(path)
    second.add(_record("ctx3", 13, 0.59))
    second.add(_record("ctx0", 14, 0.575))  # the same run again: replaced
    second.add(_record("ctx0", 14, 0.60, task="sentiment"))  # another task: kept beside it
    written = json.loads(path.read_text())
    assert [(r["variant"], r["seed"], r["task"], r["dev"]["weighted_f1"]) for r in written] == [
        ("ctx0", 13, "emotion", 0.58),
        ("ctx3", 13, "emotion", 0.59),
        ("ctx0", 14, "emotion", 0.575),
        ("ctx0", 14, "sentiment", 0.60),
    ]
    for foreign in ("{not json", '{"a": 1}'):
        path.write_text(foreign)
        with pytest.raises(ValueError, match="is not a records file"):
            Records(path)


@pytest.mark.parametrize("variant", sorted(__import__("bench.text_sweep").text_sweep.VARIANTS))
def test_every_sweep_variant_is_a_valid_text_config(variant: str) -> None:
    """A variant the workflow would refuse could not be adopted from the sweep."""
    from bench import text_sweep
    from crossemotion.config import load_config, validate_config
    from crossemotion.models.text import TextConfig
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "meld_text.yaml")
    cfg["models"]["text"] = {**cfg["models"]["text"], **text_sweep.VARIANTS[variant]}
    validate_config(cfg)
    TextConfig.from_mapping({**text_sweep.base_text_config(), **text_sweep.VARIANTS[variant]})


def test_the_config_members_are_the_kept_runs_of_round_17() -> None:
    """The README's pair figures average round 17's kept runs: each member must
    be that sweep variant's config, as the kept record says it was trained."""
    from bench import text_sweep
    from crossemotion.config import ensemble_members, load_config
    from crossemotion.layout import config_seeds
    from tests.conftest import ROOT

    # as the workflow reads it: config.yaml, then the benchmark's config over it
    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "meld_text.yaml")
    members = ensemble_members("text", cfg["models"]["text"])
    assert "ensemble" not in text_sweep.base_text_config()
    kept = ROOT / "docs" / "runs" / "round17" / "emotion"
    for member, variant in zip(members, ("mpnet_top6", "mpnet_top3_ctx2f1_target"), strict=True):
        # resources decide where a job runs, not what it learns
        learns = {k: v for k, v in member.items() if k not in ("mem_mb", "runtime")}
        assert learns == {**text_sweep.base_text_config(), **text_sweep.VARIANTS[variant]}
        for seed in config_seeds(cfg):
            record = json.loads((kept / variant / f"seed{seed}" / "record.json").read_text())
            assert record["config"] == learns, (variant, seed)


def test_sweep_starts_the_costliest_jobs_first() -> None:
    from bench import text_sweep

    def cost(**keys: object) -> float:
        return text_sweep._cost({"model_cfg": {"epochs": 4, "batch_size": 32, **keys}})

    assert cost() == 4 and cost(rdrop=1.0) == 8 == cost(epochs=8) == cost(batch_size=16)
    assert cost(rdrop=0.0) == 4


def test_crossfit_folds_hold_whole_dialogues() -> None:
    from bench.text_crossfit import dialogue_folds

    dialogues = [d for d in range(12) for _ in range(d % 3 + 1)]
    folds = dialogue_folds(dialogues, 5, seed=13)
    fold_of: dict[int, set[int]] = {}
    for d, f in zip(dialogues, folds, strict=True):
        fold_of.setdefault(d, set()).add(int(f))
    assert all(len(f) == 1 for f in fold_of.values())
    # 12 dialogues dealt round-robin over 5 folds: 3, 3, 2, 2, 2 dialogues
    per_fold = sorted(sum(1 for f in fold_of.values() if k in f) for k in range(5))
    assert per_fold == [2, 2, 2, 3, 3]
    assert (dialogue_folds(dialogues, 5, seed=13) == folds).all()
    assert not (dialogue_folds(dialogues, 5, seed=14) == folds).all()
    with pytest.raises(ValueError, match="3 training dialogues cannot fill 5 folds"):
        dialogue_folds([1, 1, 2, 3], 5, seed=13)


def test_crossfit_stacks_held_out_outputs_only(tmp_path: Path) -> None:
    from bench import text_crossfit

    frame = utterances()
    shards = tmp_path / "shards"
    for split in ("train", "dev", "test"):
        path = shards / split / "part-0000.parquet"
        path.parent.mkdir(parents=True)
        frame.with_columns(pl.lit(split).alias("split")).write_parquet(path)
    out = tmp_path / "out"
    argv = ["--shards", str(shards), "--out", str(out), "--device", "cpu", "--threads", "1"]
    argv += ["--folds", "2", "--seeds", "13", "--epochs", "1", "--stacker-epochs", "2"]
    assert text_crossfit.main([*argv, "--inputs", "logits", "both"]) == 0
    records = json.loads((out / "crossfit.json").read_text())
    encoders = [r for r in records if r["kind"] == "encoder"]
    # each fold's encoder trained on the other fold's dialogue (3 of the 6 rows)
    assert sorted(r["fold"] for r in encoders) == [0, 1]
    assert all(r["train_rows"] == 3 for r in encoders)
    assert sorted(r["inputs"] for r in records if r["kind"] == "stacker") == ["both", "logits"]

    logits = np.load(out / "logits-seed13.npz")
    held_out = [tuple(k) for f in (0, 1) for k in logits[f"fold{f}_train_keys"].tolist()]
    # every training utterance came out of exactly one encoder that never saw it
    expected_keys = zip(frame["dialogue_id"], frame["utterance_id"], strict=True)
    assert sorted(held_out) == sorted(expected_keys)
    # ... and the folds split the dialogues, not their utterances
    dialogues = [{d for d, _ in logits[f"fold{f}_train_keys"].tolist()} for f in (0, 1)]
    assert dialogues[0].isdisjoint(dialogues[1]) and dialogues[0] | dialogues[1] == {1, 2}
    # the fold ensemble's dev score, recomputed from the saved logits
    ensemble = next(r for r in records if r["kind"] == "fold_ensemble")
    probs = sum(
        np.exp(
            text_crossfit.stacker_inputs(
                {"dev_logits": logits[f"fold{f}_dev_logits"]}, "dev", "logits"
            )
        )
        for f in (0, 1)
    )
    expected = f1_score(logits["fold0_dev_labels"], probs.argmax(1), average="weighted")
    assert np.isclose(ensemble["dev"], expected)


def test_tapt_masks_like_bert_and_never_a_special_token() -> None:
    import torch

    from bench.text_tapt import IGNORE, mask_tokens

    ids = torch.randint(1000, 2000, (400, 50))
    ids[:, 0], ids[:, -1] = 101, 102
    ids[::2, 30:] = 0  # padded rows
    special = torch.isin(ids, torch.tensor([0, 101, 102]))
    gen = torch.Generator().manual_seed(3)
    inputs, labels = mask_tokens(ids, special, mask_id=103, vocab_size=30522, generator=gen)
    chosen = labels != IGNORE
    assert not (chosen & special).any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert abs(chosen.sum().item() / (~special).sum().item() - 0.15) < 0.01
    masked = (inputs == 103) & chosen
    kept = (inputs == ids) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.03
    assert 0.07 < kept.sum().item() / chosen.sum().item() < 0.14  # 10%, plus random hits
    # a short row that draws nothing at 15% still gets one token to predict
    short = torch.tensor([[101, 2000, 102], [101, 102, 0]])
    short_special = torch.isin(short, torch.tensor([0, 101, 102]))
    for seed in range(20):
        _, lab = mask_tokens(short, short_special, 103, 30522, torch.Generator().manual_seed(seed))
        assert (lab[0] != IGNORE).sum() == 1 and (lab[1] == IGNORE).all()
    # fixed by the generator's seed
    again = mask_tokens(ids, special, 103, 30522, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_tapt_adapts_the_encoder_and_saves_a_loadable_directory(tmp_path: Path) -> None:
    import torch

    from bench.text_tapt import adapt_encoder
    from crossemotion.models.encoders import load_text_encoder, load_tokenizer

    tok = load_tokenizer("minilm")
    texts = [str(t) for t in utterances()["text"]] * 4
    rows = [tok(t)["input_ids"] for t in texts]
    out = tmp_path / "encoder"
    record = adapt_encoder(rows, rows[:6], "minilm", out, epochs=3, lr=1e-3, batch_size=8)
    history = record["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    # the fresh prediction head and the encoder learn the (memorisable) utterances
    assert history[-1]["dev"]["loss"] < history[0]["dev"]["loss"] - 1.0
    assert not out.with_name("encoder.tmp").exists()
    adapted = load_text_encoder(str(out))
    original = load_text_encoder("minilm")
    assert len(load_tokenizer(str(out))) == len(tok)
    a, o = adapted.state_dict(), original.state_dict()
    assert a.keys() == o.keys()
    assert not torch.equal(
        a["encoder.layer.5.output.dense.weight"], o["encoder.layer.5.output.dense.weight"]
    )
    # the package's pooler is kept (the masked-LM model has none to adapt)
    assert torch.equal(a["pooler.dense.weight"], o["pooler.dense.weight"])


def test_tapt_refuses_no_epochs_or_no_text(tmp_path: Path) -> None:
    from bench.text_tapt import adapt_encoder

    with pytest.raises(ValueError, match="epochs must be at least 1"):
        adapt_encoder([[101, 2000, 102]], [[101, 2000, 102]], "minilm", tmp_path / "e", epochs=0)
    with pytest.raises(ValueError, match="needs training and dev utterances"):
        adapt_encoder([], [[101, 2000, 102]], "minilm", tmp_path / "e", epochs=1)
    assert not (tmp_path / "e").exists()


def test_tapt_fine_tunes_the_config_on_the_adapted_encoder(tmp_path: Path) -> None:
    from bench import text_tapt

    shards = tmp_path / "shards"
    for split in ("train", "dev", "test"):
        path = shards / split / "part-0000.parquet"
        path.parent.mkdir(parents=True)
        utterances().with_columns(pl.lit(split).alias("split")).write_parquet(path)
    out = tmp_path / "out"
    argv = ["--shards", str(shards), "--out", str(out), "--device", "cpu", "--threads", "1"]
    argv += ["--mlm-epochs", "1", "--seeds", "13", "--epochs", "1"]
    assert text_tapt.main(argv) == 0
    adaptation = json.loads((out / "tapt.json").read_text())
    assert adaptation["epochs"] == 1 and len(adaptation["history"]) == 2
    (record,) = json.loads((out / "records.json").read_text())
    assert record["variant"] == "tapt1" and record["seed"] == 13
    assert record["model_cfg"]["encoder"] == str((out / "encoder").resolve())
    assert record["model_cfg"]["context"] == 0 and 0.0 <= record["dev"]["weighted_f1"] <= 1.0
    # a second run reuses the adapted encoder instead of adapting again
    stamp = (out / "encoder" / "model.safetensors").stat().st_mtime_ns
    assert text_tapt.main(argv) == 0
    assert (out / "encoder" / "model.safetensors").stat().st_mtime_ns == stamp


def test_knn_vote_weights_the_nearest_training_labels() -> None:
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 0, 1, 2])
    query = np.array([[1.0, 0.05], [0.1, 1.0]])
    sims, idx = text_knn.neighbours(train, query, 3)
    assert idx[0].tolist() == [0, 1, 2] and idx[1].tolist() == [2, 1, 0]
    np.testing.assert_allclose(sims[0, 0], 1.0 / np.hypot(1.0, 0.05), rtol=1e-6)
    got = text_knn.vote(sims, idx, labels, 2, 0.1, 3)
    # by hand: softmax of the two best similarities over 0.1, summed per label
    w = np.exp(sims[1, :2] / 0.1) / np.exp(sims[1, :2] / 0.1).sum()
    np.testing.assert_allclose(got[1], [w[1], w[0], 0.0], rtol=1e-6)
    np.testing.assert_allclose(got[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(got.sum(1), 1.0)
    with pytest.raises(ValueError, match=r"k must be in 1\.\.4"):
        text_knn.neighbours(train, query, 5)


def test_knn_is_chosen_on_dev_and_only_when_it_helps() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 60)
    centres = np.eye(3) * 4.0
    train = centres[labels] + rng.normal(size=(180, 3))
    dev_labels = np.repeat(np.arange(3), 20)
    dev = centres[dev_labels] + rng.normal(size=(60, 3))
    # a head that says class 0 for everything: the neighbours fix it
    blind = np.zeros((60, 3))
    blind[:, 0] = 1.0
    choice = text_knn.choose_on_dev(train, labels, dev, blind, dev_labels)
    assert choice["lambda"] > 0 and choice["dev"] > 0.9
    mixed = text_knn.apply(choice, train, labels, dev, blind)
    assert text_dialogue.weighted_f1(dev_labels, mixed.argmax(1)) == pytest.approx(choice["dev"])
    # a head that is already right: no mixture beats it, and the tie keeps it alone
    perfect = np.eye(3)[dev_labels] * 5.0
    alone = text_knn.choose_on_dev(train, labels, dev, perfect, dev_labels)
    assert alone["lambda"] == 0.0 and alone["dev"] == 1.0
    summary = text_knn.summary(
        [{"alone": {"dev": 0.5, "test": 0.6}, "knn": {"dev": 0.52, "test": 0.61}},
         {"alone": {"dev": 0.7, "test": 0.6}, "knn": {"dev": 0.72, "test": 0.63}}]
    )  # fmt: skip
    assert summary["alone_dev"].mean == pytest.approx(0.6)
    assert summary["alone_dev"].sd == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summary["knn_test"].mean == pytest.approx(0.62)


def _predictions(path: Path, rows: list[tuple[str, str, str, list[float]]]) -> Path:
    classes = ["anger", "joy", "neutral"]
    frame = pl.DataFrame(
        {
            "split": [r[0] for r in rows],
            "key": [r[1] for r in rows],
            "label": [r[2] for r in rows],
            **{f"p_{c}": [r[3][i] for r in rows] for i, c in enumerate(classes)},
        }
    )
    path.mkdir(parents=True)
    frame.write_parquet(path / "predictions.parquet")
    return path


def test_the_average_of_two_runs_against_a_hand_computation(tmp_path: Path) -> None:
    from bench import text_average

    # the same key in dev and test (dialogue ids restart per split); run b lists
    # its rows in another order, so rows must be matched on (split, key)
    rows_a = [
        ("dev", "dia0_utt0", "joy", [0.1, 0.5, 0.4]),
        ("dev", "dia0_utt1", "anger", [0.4, 0.1, 0.5]),
        ("test", "dia0_utt0", "neutral", [0.2, 0.5, 0.3]),
        ("test", "dia0_utt1", "anger", [0.6, 0.3, 0.1]),
    ]
    rows_b = [
        ("test", "dia0_utt1", "anger", [0.1, 0.8, 0.1]),
        ("test", "dia0_utt0", "neutral", [0.1, 0.2, 0.7]),
        ("dev", "dia0_utt1", "anger", [0.7, 0.1, 0.2]),
        ("dev", "dia0_utt0", "joy", [0.1, 0.2, 0.7]),
    ]
    a, b = _predictions(tmp_path / "a", rows_a), _predictions(tmp_path / "b", rows_b)
    out = tmp_path / "average.json"
    assert text_average.main(["--runs", str(a), str(b), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    # by hand: dev means joy-row [0.1, 0.35, 0.55] -> neutral (wrong), anger-row
    # [0.55, 0.1, 0.35] -> anger (right); test: [0.15, 0.35, 0.5] -> neutral
    # (right), [0.35, 0.55, 0.1] -> joy (wrong)
    dev_pred, test_pred = ["neutral", "anger"], ["neutral", "joy"]
    assert record["dev"]["average"] == pytest.approx(
        f1_score(["joy", "anger"], dev_pred, average="weighted", zero_division=0)
    )
    assert record["test"]["average"] == pytest.approx(
        f1_score(["neutral", "anger"], test_pred, average="weighted", zero_division=0)
    )
    # run a alone predicts joy, neutral on dev
    assert record["dev"]["runs"][0] == pytest.approx(
        f1_score(["joy", "anger"], ["joy", "neutral"], average="weighted", zero_division=0)
    )
    assert record["dev"]["n"] == record["test"]["n"] == 2


def test_the_average_refuses_runs_over_other_items(tmp_path: Path) -> None:
    from bench import text_average

    rows = [("dev", "k0", "joy", [0.1, 0.5, 0.4]), ("test", "k0", "joy", [0.1, 0.5, 0.4])]
    a = _predictions(tmp_path / "a", rows)
    other = _predictions(tmp_path / "b", [("dev", "k1", *rows[0][2:]), rows[1]])
    relabelled = _predictions(tmp_path / "c", [("dev", "k0", "anger", rows[0][3]), rows[1]])
    with pytest.raises(ValueError, match="other utterances"):
        text_average.score([a, other])
    with pytest.raises(ValueError, match="other labels"):
        text_average.score([a, relabelled])
    with pytest.raises(ValueError, match="two runs or more"):
        text_average.score([a])


def test_averages_over_seeds_against_their_baselines_with_a_paired_ci(tmp_path: Path) -> None:
    from bench import text_average

    rng = np.random.default_rng(5)
    classes = ["anger", "joy", "neutral"]
    truth = {(s, f"dia{i}_utt0"): classes[int(rng.integers(3))] for s in ("dev", "test")
             for i in range(40)}  # fmt: skip

    def run(name: str) -> Path:
        rows = [(s, k, y, list(rng.dirichlet([1, 1, 1]))) for (s, k), y in truth.items()]
        return _predictions(tmp_path / name, rows)

    seeds = [(run(f"a{s}"), run(f"b{s}")) for s in (13, 14)]
    out = tmp_path / "pair.json"
    argv = [a for a_b in seeds for a in ("--runs", *map(str, a_b))]
    assert (
        text_average.main([*argv, "--against", *(str(a) for a, _ in seeds), "--out", str(out)]) == 0
    )
    record = json.loads(out.read_text())

    def wf1(paths: tuple[Path, ...], split: str) -> float:
        frames = [pl.read_parquet(p / "predictions.parquet").filter(pl.col("split") == split)
                  for p in paths]  # fmt: skip
        keyed = [f.sort("key") for f in frames]
        probs = np.mean([f.select(f"p_{c}" for c in classes).to_numpy() for f in keyed], axis=0)
        pred = np.array(classes)[probs.argmax(1)]
        return f1_score(keyed[0]["label"].to_list(), pred, average="weighted", zero_division=0)

    for split in ("dev", "test"):
        average = np.mean([wf1(pair, split) for pair in seeds])
        baseline = np.mean([wf1((a,), split) for a, _ in seeds])
        assert record[split]["average"] == pytest.approx(average)
        assert record[split]["baseline"] == pytest.approx(baseline)
        ci = record[split]["ci"]
        assert ci["difference"] == pytest.approx(average - baseline)
        assert ci["low"] <= ci["difference"] <= ci["high"] and ci["n"] == 40
        assert ci["rounds"] >= 1000
    assert [r["dev"]["average"] for r in record["seeds"]] == pytest.approx(
        [wf1(pair, "dev") for pair in seeds]
    )
    # a baseline that is itself an average: each seed's pair against itself
    same = text_average.compare(seeds, seeds)
    for split in ("dev", "test"):
        assert same[split]["baseline"] == pytest.approx(record[split]["average"])
        assert same[split]["ci"]["difference"] == 0.0
    swapped = tmp_path / "swapped.json"
    groups = [a for a_b in seeds for a in ("--against-group", *map(str, a_b[::-1]))]
    assert text_average.main([*argv, *groups, "--out", str(swapped)]) == 0
    # the mean is the same whichever run comes first
    assert json.loads(swapped.read_text())["dev"]["baseline"] == pytest.approx(
        record["dev"]["average"]
    )
    with pytest.raises(ValueError, match="2 groups of runs but 1 baselines"):
        text_average.compare(seeds, [seeds[0][0]])
    with pytest.raises(SystemExit):
        text_average.main(argv)  # several seeds need their baselines


def _shards(root: Path) -> Path:
    sentiment = ["positive", "neutral", "negative", "positive", "positive", "negative"]
    frame = utterances().with_columns(pl.Series("sentiment", sentiment))
    for split in ("train", "dev", "test"):
        path = root / split / "part-0000.parquet"
        path.parent.mkdir(parents=True)
        frame.with_columns(pl.lit(split).alias("split")).write_parquet(path)
    return root


def test_sweep_runs_named_runs_in_order_and_keeps_them_without_annotations(
    tmp_path: Path,
) -> None:
    from bench import text_average, text_kept, text_sweep

    shards = _shards(tmp_path / "shards")
    out, kept = tmp_path / "out", tmp_path / "kept"
    argv = ["--shards", str(shards), "--out", str(out), "--device", "cpu", "--threads", "1"]
    argv += ["--epochs", "1", "--keep", str(kept)]
    runs = ["ctx0ns_ls0.1:14", "ctx0_nospeaker:13", "ctx0_nospeaker:13:sentiment"]
    assert text_sweep.main([*argv, "--runs", *runs]) == 0
    written = json.loads((out / "sweep.json").read_text())
    # exactly the runs named, in their order: no choice, no follow-up seeds
    assert [(r["variant"], r["seed"], r["task"]) for r in written] == [
        ("ctx0ns_ls0.1", 14, "emotion"),
        ("ctx0_nospeaker", 13, "emotion"),
        ("ctx0_nospeaker", 13, "sentiment"),
    ]
    for r in written:
        run = Path(r["task"], r["variant"], f"seed{r['seed']}")
        original = pl.read_parquet(out / run / "predictions.parquet")
        held = pl.read_parquet(kept / run / "predictions.parquet")
        # the annotations (labels, speakers, text) stay out of the repository's copy
        assert held.columns == [
            "split",
            "key",
            *[c for c in original.columns if c.startswith("p_")],
        ]
        record = json.loads((kept / run / "record.json").read_text())
        assert record["task"] == r["task"] and record["seed"] == r["seed"]
        assert record["dev"]["weighted_f1"] == pytest.approx(r["dev"]["weighted_f1"])
        assert [e["epoch"] for e in record["epochs"]] == [1]
        # labels joined back from the shards give the run's own rows
        restored = text_kept.with_labels(held, shards, text_kept.task_of(kept / run))
        assert restored.sort("split", "key").equals(
            original.select(restored.columns).sort("split", "key")
        )
    emotion = [
        Path("emotion", "ctx0ns_ls0.1", "seed14"),
        Path("emotion", "ctx0_nospeaker", "seed13"),
    ]
    from_runs = text_average.score([out / r for r in emotion])
    from_kept = text_average.score([kept / r for r in emotion], labels=shards)
    for split in ("dev", "test"):
        assert from_kept[split] == from_runs[split]
    with pytest.raises(ValueError, match=r"holds no labels \(a kept run\): give --labels"):
        text_average.score([kept / r for r in emotion])
    assert not list(kept.rglob("*.tmp"))


def test_kept_runs_refuse_what_the_shards_do_not_hold(tmp_path: Path) -> None:
    from bench import text_kept, text_sweep

    shards = _shards(tmp_path / "shards")
    frame = pl.DataFrame({"split": ["dev", "dev"], "key": ["dia1_utt0", "dia9_utt9"],
                          "p_joy": [0.5, 0.5]})  # fmt: skip
    with pytest.raises(ValueError, match="1 predicted utterances are not in the text shards"):
        text_kept.with_labels(frame, shards)
    with pytest.raises(FileNotFoundError, match="no text shards"):
        text_kept.with_labels(frame, tmp_path / "nothing")
    run = tmp_path / "run"
    run.mkdir()
    pl.DataFrame({"key": ["a"], "label": ["joy"]}).write_parquet(run / "predictions.parquet")
    (run / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="no split/key/p_\\* columns"):
        text_kept.keep(run, tmp_path / "kept")
    for bad in ("mpnet_top6", "nope:13", "mpnet_top6:x", "mpnet_top6:13:valence"):
        with pytest.raises(SystemExit):
            text_sweep.main(["--shards", "x", "--out", str(tmp_path / "y"), "--runs", bad])
    assert text_sweep.parse_run("mpnet_top6:15") == ("mpnet_top6", 15, "emotion")

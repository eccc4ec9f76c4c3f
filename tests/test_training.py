"""Fit loop, runner outputs, determinism, resume, IFEED dev split, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from crossemotion.config import ConfigError, validate_config
from crossemotion.datasets.shards import stratified_group_split
from crossemotion.evaluation.metrics import classification_metrics, majority_baseline
from crossemotion.evaluation.scoring import PROB_COLUMNS
from crossemotion.labels import EMOTIONS
from crossemotion.layout import TRAIN_FILES, find_shards, shard_inputs, shard_path
from crossemotion.model_config import ModelConfig
from crossemotion.training.loop import (
    TrainConfig,
    WeightAverage,
    class_weights,
    classifier_of,
    fit,
    lr_lambda,
    rdrop_loss,
    supcon_loss,
)
from crossemotion.training.runner import RESUME_DIR, train_and_evaluate
from tests.conftest import ROOT
from tests.vision_fixtures import (
    GLOBAL,
    TINY,
    strip_volatile,
    write_ifeed_shards,
    write_meld_shards,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def meld(tmp_path_factory):
    return write_meld_shards(tmp_path_factory.mktemp("meld"))


@pytest.fixture(scope="module")
def c3d_run(meld, tmp_path_factory):
    out = tmp_path_factory.mktemp("c3d") / "c3d" / "meld"
    metrics = train_and_evaluate("c3d", "meld", TINY["c3d"], GLOBAL, meld, out, progress=False)
    return out, metrics


class Killed(RuntimeError):
    pass


def test_outputs_follow_the_contract(c3d_run) -> None:
    out, metrics = c3d_run
    for name in TRAIN_FILES:
        assert (out / name).is_file()
    assert not (out / RESUME_DIR).exists()  # deleted once the outputs are written
    on_disk = json.loads((out / "metrics.json").read_text())
    for split in ("dev", "test"):
        for key in ("accuracy", "weighted_f1", "macro_f1", "per_class", "confusion", "n"):
            assert key in on_disk[split]
    assert on_disk["test"]["n"] == 14
    assert set(on_disk["inference"]) >= {
        "unit",
        "ms_per_unit_batch1",
        "ms_per_unit_batch",
        "batch_size",
        "device",
        "threads",
    }
    assert on_disk["inference"]["unit"] == "video"
    assert set(on_disk["train"]) >= {"epochs_run", "best_epoch", "seconds", "parameters"}
    assert on_disk["baseline"]["class"] == "neutral"
    preds = pl.read_parquet(out / "predictions.parquet")
    assert preds.columns[:7] == [
        "id",
        "key",
        "split",
        "speaker",
        "character",
        "label",
        "prediction",
    ]
    assert preds.columns[7:] == PROB_COLUMNS
    assert sorted(preds["split"].unique()) == ["dev", "test"]
    assert np.allclose(preds.select(PROB_COLUMNS).to_numpy().sum(1), 1.0, atol=1e-5)
    log = pl.read_csv(out / "train_log.csv")
    assert {"epoch", "train_loss", "dev_accuracy", "dev_weighted_f1", "lr", "seconds"} <= set(
        log.columns
    )
    assert log.height == metrics["train"]["epochs_run"]
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["model"] == "c3d" and ckpt["labels"] == list(EMOTIONS)
    assert ckpt["preprocess"]["frames"] == 4 and ckpt["epoch"] == metrics["train"]["best_epoch"]


def test_same_seed_same_metrics(c3d_run, meld, tmp_path) -> None:
    _, first = c3d_run
    again = train_and_evaluate(
        "c3d", "meld", TINY["c3d"], GLOBAL, meld, tmp_path / "m", progress=False
    )
    assert strip_volatile(again) == strip_volatile(first)


def test_killed_training_resumes_from_its_checkpoint(c3d_run, meld, tmp_path) -> None:
    out_ref, reference = c3d_run
    out = tmp_path / "c3d" / "meld"

    def kill_after_first(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_and_evaluate(
            "c3d",
            "meld",
            TINY["c3d"],
            GLOBAL,
            meld,
            out,
            on_epoch_end=kill_after_first,
            progress=False,
        )
    assert (out / RESUME_DIR / "last.pt").is_file()
    assert not (out / "metrics.json").exists()

    seen: list[int] = []
    resumed = train_and_evaluate(
        "c3d",
        "meld",
        TINY["c3d"],
        GLOBAL,
        meld,
        out,
        on_epoch_end=lambda e, r: seen.append(e),
        progress=False,
    )
    assert seen[0] == 2  # epoch 1 was not trained again
    assert resumed["train"]["resumed_from_epoch"] == 1
    assert strip_volatile(resumed) == strip_volatile(reference)
    assert pl.read_parquet(out / "predictions.parquet").equals(
        pl.read_parquet(out_ref / "predictions.parquet")
    )


def test_resume_state_of_another_config_is_ignored(meld, tmp_path) -> None:
    out = tmp_path / "run"

    def kill(epoch: int, row: dict) -> None:
        raise Killed

    with pytest.raises(Killed):
        train_and_evaluate(
            "c3d", "meld", TINY["c3d"], GLOBAL, meld, out, on_epoch_end=kill, progress=False
        )
    cfg = {**TINY["c3d"], "epochs": 1, "lr": 0.001}
    metrics = train_and_evaluate("c3d", "meld", cfg, GLOBAL, meld, out, progress=False)
    assert metrics["train"]["resumed_from_epoch"] == 0


def test_resnet50_on_meld_aggregates_faces_by_utterance(meld, tmp_path) -> None:
    metrics = train_and_evaluate(
        "resnet50", "meld", TINY["resnet50"], GLOBAL, meld, tmp_path, progress=False
    )
    assert metrics["level"] == "utterance"
    # every test utterance counts, with or without a detected face
    assert metrics["test"]["n"] == 14
    cov = metrics["coverage"]["dev"]
    assert cov["total"] == 14 and cov["with_faces"] < cov["total"]
    assert metrics["with_faces"]["dev"]["n"] == cov["with_faces"]
    assert metrics["face_level"]["test"]["n"] == 28  # two crops per utterance
    preds = pl.read_parquet(tmp_path / "predictions.parquet")
    assert preds.filter(pl.col("split") == "test").height == 14
    assert (preds["id"] == preds["key"]).all()
    no_face = preds.filter(pl.col("n_faces") == 0)
    assert no_face.height == cov["total"] - cov["with_faces"]
    assert set(no_face["prediction"]) == {"neutral"}  # the prior's argmax, never the label


def test_ifeed_dev_split_is_carved_from_train(tmp_path) -> None:
    inputs = write_ifeed_shards(tmp_path)
    cfg = {**TINY["resnet50"], "epochs": 1}
    metrics = train_and_evaluate(
        "resnet50", "ifeed", cfg, GLOBAL, inputs, tmp_path / "out", progress=False
    )
    assert metrics["level"] == "image" and "coverage" not in metrics
    assert metrics["dev"]["n"] > 0 and metrics["test"]["n"] == 28
    assert metrics["train"]["n_train"] + metrics["dev"]["n"] == 84


def test_stratified_group_split_keeps_groups_together() -> None:
    keys = [f"k{i // 3}" for i in range(210)]
    labels = [EMOTIONS[(i // 3) % 7] for i in range(210)]
    frame = pl.DataFrame({"id": [str(i) for i in range(210)], "key": keys, "label": labels})
    train, dev = stratified_group_split(frame, 0.15, seed=1)
    again_train, again_dev = stratified_group_split(frame, 0.15, seed=1)
    assert dev.equals(again_dev) and train.equals(again_train)
    assert not set(train["key"]) & set(dev["key"])
    assert train.height + dev.height == 210
    assert set(dev["label"]) == set(EMOTIONS)  # stratified: every class in dev
    assert 0.1 <= dev.height / 210 <= 0.2


def test_shard_inputs_by_input_name(tmp_path) -> None:
    named = {
        "clips_train": [shard_path("meld", "clips", "train", i) for i in (1, 0)],
        # Snakemake hands a one-file named input as a plain string
        "text_test": shard_path("meld", "text", "test", 0),
        "model": "results/models/resnet50/ifeed/model.pt",  # not a shard input
    }
    inputs = shard_inputs(named)
    assert [p.name for p in inputs.clips["train"]] == ["part-0000.parquet", "part-0001.parquet"]
    assert inputs.text == {"test": [Path("results/shards/meld/text/test/part-0000.parquet")]}
    assert inputs.faces == {}

    # the same layout finds the shards present under a results folder
    for kind, split, shard in [("faces", "train", 1), ("faces", "train", 0), ("text", "dev", 0)]:
        path = tmp_path / shard_path("meld", kind, split, shard, root=".")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    found = find_shards("meld", root=tmp_path)
    assert [p.name for p in found.faces["train"]] == ["part-0000.parquet", "part-0001.parquet"]
    assert list(found.text) == ["dev"] and found.clips == {}


def test_class_weights_and_schedules() -> None:
    w = class_weights(np.array([4, 4, 4, 0]))
    assert w[0] == pytest.approx(2.0) and w[4] == pytest.approx(4 / 6)
    assert w[4] < w[0] and w[1] == 0  # rare class weighs more; absent class 0
    assert float((w[np.array([4, 4, 4, 0])]).mean()) == pytest.approx(1.0)
    warm = lr_lambda("linear_warmup", 100, 0.1)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0) and warm(100) == 0.0
    cos = lr_lambda("cosine", 10, 0.0)
    assert cos(0) == 1.0 and cos(10) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        lr_lambda("step", 10, 0.0)


def test_classification_metrics_and_baseline() -> None:
    y = np.array([4, 4, 4, 0, 3])
    m = classification_metrics(y, np.array([4, 4, 0, 0, 3]))
    assert m["accuracy"] == pytest.approx(0.8) and m["n"] == 5
    assert m["confusion"][4][0] == 1 and len(m["confusion"]) == 7
    assert m["per_class"]["anger"]["precision"] == pytest.approx(0.5)
    base = majority_baseline(np.array([4, 4, 1]), y)
    assert base["class"] == "neutral" and base["accuracy"] == pytest.approx(0.6)


def test_rdrop_loss_is_the_mean_loss_plus_the_symmetric_kl() -> None:
    torch.manual_seed(0)
    first, second = torch.randn(5, 7), torch.randn(5, 7)
    labels = torch.tensor([0, 1, 2, 3, 4])
    ce = torch.nn.CrossEntropyLoss()
    plain = 0.5 * (ce(first, labels) + ce(second, labels))
    torch.testing.assert_close(rdrop_loss(first, second, labels, ce, 0.0), plain)
    p, q = first.softmax(-1), second.softmax(-1)
    kl_pq = (p * (p.log() - q.log())).sum(-1).mean()
    kl_qp = (q * (q.log() - p.log())).sum(-1).mean()
    torch.testing.assert_close(
        rdrop_loss(first, second, labels, ce, 2.0), plain + 0.5 * (kl_pq + kl_qp)
    )
    # two passes that agree pay nothing beyond their loss
    torch.testing.assert_close(rdrop_loss(first, first, labels, ce, 5.0), ce(first, labels))


class _Toy(torch.utils.data.Dataset):
    """Two separable classes in 4 dimensions."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = np.arange(n) % 2
        self.x = torch.randn(n, 4, generator=g) + torch.tensor(self.labels)[:, None] * 3.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "label": torch.tensor(int(self.labels[i]))}


class _Counted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 2)
        )
        self.train_calls = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.train_calls += int(self.training)
        return self.net(batch["x"])


@pytest.mark.parametrize("rdrop", [0.0, 1.0])
def test_rdrop_runs_each_training_batch_twice_and_still_learns(rdrop: float) -> None:
    cfg = TrainConfig.of(
        ModelConfig.from_mapping({"epochs": 3, "lr": 0.05, "rdrop": rdrop, "class_weights": False})
    )
    model = _Counted()
    result = fit(model, _Toy(64, 0), _Toy(32, 1), cfg, device=torch.device("cpu"))
    steps = 3 * math.ceil(64 / cfg.batch_size)
    assert model.train_calls == steps * (2 if rdrop else 1)
    assert result.best_score > 0.9


def test_rdrop_must_not_be_negative() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["models"]["resnet50"]["rdrop"] = 0.5
    validate_config(cfg)
    cfg["models"]["resnet50"]["rdrop"] = -1
    with pytest.raises(ConfigError, match="rdrop"):
        validate_config(cfg)


def _supcon_by_hand(features: torch.Tensor, labels: list[int], temperature: float) -> float:
    z = torch.nn.functional.normalize(features, dim=-1)
    terms = []
    for i in range(len(labels)):
        others = [j for j in range(len(labels)) if j != i]
        positives = [j for j in others if labels[j] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[j]) / temperature) for j in others)
        terms.append(
            -sum(
                math.log(math.exp(float(z[i] @ z[p]) / temperature) / denominator)
                for p in positives
            )
            / len(positives)
        )
    return sum(terms) / len(terms)


def test_supcon_loss_matches_a_hand_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(6, 5, generator=gen)
    labels = [0, 1, 0, 2, 1, 0]  # class 2 has no positive: that anchor is left out
    got = supcon_loss(features, torch.tensor(labels), 0.3)
    assert math.isclose(float(got), _supcon_by_hand(features, labels, 0.3), rel_tol=1e-5)
    # no anchor with a positive: no term, but still a tensor in the graph
    single = torch.randn(3, 5, requires_grad=True)
    zero = supcon_loss(single, torch.tensor([0, 1, 2]), 0.1)
    assert float(zero.detach()) == 0.0
    zero.backward()
    # features clustered by class score lower than the same features shuffled
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    y = torch.tensor([0, 0, 1, 1])
    assert supcon_loss(clustered, y, 0.1) < supcon_loss(clustered[[0, 2, 1, 3]], y, 0.1)


class _TwoClasses(_Toy):
    classes = ("a", "b")


def test_supcon_hooks_the_classifier_and_still_learns() -> None:
    cfg = TrainConfig.of(
        ModelConfig.from_mapping(
            {"epochs": 3, "lr": 0.05, "supcon": 0.5, "rdrop": 1.0, "class_weights": False}
        )
    )
    model = _Counted()
    assert classifier_of(model, 2) is model.net[2]
    result = fit(model, _TwoClasses(64, 0), _TwoClasses(32, 1), cfg, device=torch.device("cpu"))
    assert result.best_score > 0.9
    # the capturing hook is gone once training ends
    assert not model.net[2]._forward_pre_hooks
    with pytest.raises(ValueError, match=r"no nn\.Linear with 3 outputs: supcon needs"):
        classifier_of(model, 3)


def test_supcon_keys_are_validated() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["models"]["text"]["supcon"] = 0.3
    cfg["models"]["text"]["supcon_temperature"] = 0.1
    validate_config(cfg)
    for key, bad in (("supcon", -0.1), ("supcon_temperature", 0.0)):
        broken = yaml.safe_load(yaml.safe_dump(cfg))
        broken["models"]["text"][key] = bad
        with pytest.raises(ConfigError, match=key):
            validate_config(broken)


def test_weight_average_follows_the_warmed_up_decay() -> None:
    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, 0.3)
    expected = {k: v.clone() for k, v in start.items()}
    rates = []
    for step in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(step))
        average.update(model)
        rate = min(0.3, (1 + step) / (10 + step))
        rates.append(average.rate())
        for k, v in model.state_dict().items():
            expected[k] = rate * expected[k] + (1 - rate) * v
    assert rates == [pytest.approx(min(0.3, (1 + t) / (10 + t))) for t in range(1, 5)]
    assert rates[0] < 0.3 == rates[-1]  # warmed up by step 4 at this decay
    for k, v in average.model.state_dict().items():
        torch.testing.assert_close(v, expected[k])
    # the average is its own copy: the trained model is not touched by it
    assert not torch.equal(average.model.weight, model.weight)
    assert not average.model.training and not average.model.weight.requires_grad
    restored = WeightAverage(torch.nn.Linear(3, 2), 0.3)
    restored.load_state_dict(average.state_dict())
    assert restored.steps == 4
    torch.testing.assert_close(restored.model.weight, average.model.weight)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="ema decay"):
            WeightAverage(model, bad)


def test_ema_training_scores_and_keeps_the_averaged_weights(tmp_path) -> None:
    cfg = TrainConfig.of(
        ModelConfig.from_mapping({"epochs": 3, "lr": 0.05, "ema": 0.9, "class_weights": False})
    )
    result = fit(_Counted(), _Toy(64, 0), _Toy(32, 1), cfg, device=torch.device("cpu"))
    assert result.best_score > 0.9
    # a dev score that rises every epoch makes the last epoch the best: its state
    # is the average's, not the raw weights the model ends with
    rising = iter(range(1, 10))
    model = _Counted()
    last = fit(model, _Toy(64, 0), _Toy(32, 1), cfg, device=torch.device("cpu"),
               dev_score=lambda _probs: {"weighted_f1": next(rising), "accuracy": 0.0})  # fmt: skip
    assert last.best_epoch == 3
    raw = {k: v.detach() for k, v in model.state_dict().items()}
    assert all(not torch.equal(last.best_state[k], raw[k]) for k in raw)
    # a run killed after epoch 1 resumes to the same average as an uninterrupted one
    whole = fit(_Counted(), _Toy(64, 0), _Toy(32, 1), cfg, device=torch.device("cpu"),
                state_dir=tmp_path / "whole", config_key="k")  # fmt: skip

    def kill(epoch: int, _row: dict) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        fit(_Counted(), _Toy(64, 0), _Toy(32, 1), cfg, device=torch.device("cpu"),
            state_dir=tmp_path / "cut", config_key="k", on_epoch_end=kill)  # fmt: skip
    resumed = fit(_Counted(), _Toy(64, 0), _Toy(32, 1), cfg, device=torch.device("cpu"),
                  state_dir=tmp_path / "cut", config_key="k")  # fmt: skip
    assert resumed.resumed_from == 1
    for k, v in whole.best_state.items():
        torch.testing.assert_close(resumed.best_state[k], v)


def test_ema_is_validated() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["models"]["text"]["ema"] = 0.99
    validate_config(cfg)
    for bad in (-0.1, 1.0):
        cfg["models"]["text"]["ema"] = bad
        with pytest.raises(ConfigError, match="ema"):
            validate_config(cfg)

"""The text research tools in experiments/text/: the sweep's choice, kept runs, averages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import f1_score

from tests.test_text_model import utterances


def _record(variant: str, seed: int, dev: float, task: str = "emotion") -> dict:
    return {"variant": variant, "seed": seed, "task": task, "dev": {"weighted_f1": dev}}


def test_sweep_chooses_on_dev_by_first_seed_or_finalists_mean() -> None:
    from experiments.text import sweep as text_sweep

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


def test_sweep_writes_every_record_as_it_finishes(tmp_path: Path) -> None:
    from experiments.text import sweep as text_sweep

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
    from experiments.text.sweep import Records

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


@pytest.mark.parametrize(
    "variant", sorted(__import__("experiments.text.sweep").text.sweep.VARIANTS)
)
def test_every_sweep_variant_is_a_valid_text_config(variant: str) -> None:
    """A variant the workflow would refuse could not be adopted from the sweep."""
    from crossemotion.config import load_config, validate_config
    from crossemotion.models.text import TextConfig
    from experiments.text import sweep as text_sweep
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "meld_text.yaml")
    cfg["models"]["text"] = {**cfg["models"]["text"], **text_sweep.VARIANTS[variant]}
    validate_config(cfg)
    TextConfig.from_mapping({**text_sweep.base_text_config(), **text_sweep.VARIANTS[variant]})


def test_the_config_members_are_the_kept_runs_of_round_17() -> None:
    """The README's pair figures average round 17's kept runs: each member must
    be that sweep variant's config, as the kept record says it was trained."""
    from crossemotion.config import ensemble_members, load_config
    from crossemotion.layout import config_seeds
    from experiments.text import sweep as text_sweep
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
    from experiments.text import sweep as text_sweep

    def cost(**keys: object) -> float:
        return text_sweep._cost({"model_cfg": {"epochs": 4, "batch_size": 32, **keys}})

    assert cost() == 4 and cost(rdrop=1.0) == 8 == cost(epochs=8) == cost(batch_size=16)
    assert cost(rdrop=0.0) == 4


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
    from experiments.text import average as text_average

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
    from experiments.text import average as text_average

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
    from experiments.text import average as text_average

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
    from experiments.text import average as text_average
    from experiments.text import kept as text_kept
    from experiments.text import sweep as text_sweep

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
    from experiments.text import kept as text_kept
    from experiments.text import sweep as text_sweep

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

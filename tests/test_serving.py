"""The serving API over real HTTP: a uvicorn server started by `crossemotion serve`.

The models are real registry models with random weights saved in the
checkpoint format (the API's job is serving, not accuracy); the media are the
demo generator's clips and IFEED images.
"""

from __future__ import annotations

import io
import os
import re
import socket
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
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

    from crossemotion import checkpoint
    from crossemotion.io import write_json
    from crossemotion.models.registry import get_spec
    from crossemotion.training.runner import preprocess_info

    spec = get_spec(model)
    torch.manual_seed(0)
    net = spec.build(spec.configure(cfg), len(EMOTIONS))
    out = root / model / dataset
    checkpoint.save(out / "model.pt", {
        "format": 1, "model": model, "dataset": dataset, "config": cfg,
        "labels": list(EMOTIONS), "state_dict": checkpoint.cpu_state_dict(net),
        "preprocess": preprocess_info(spec, spec.configure(cfg)), "epoch": 0, "metrics": {},
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
        return httpx.Client(base_url=self.url, timeout=300, **kw)

    def log_tail(self, chars: int = 4000) -> str:
        """The server log's end, for a failure message (a 504 logs the stuck batch)."""
        return self.log.read_text(errors="replace")[-chars:]

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
    # with the Gradio UI mounted, as `crossemotion serve` runs by default
    # a request timeout well past any answer here: these tests check answers, and a
    # loaded CI machine must not turn them into timing tests (strict_server below
    # checks the timeout itself)
    env = {"CROSSEMOTION_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
           "CROSSEMOTION_REQUEST_TIMEOUT": "240"}  # fmt: skip
    yield from start_server(models_dir, tmp_path_factory.mktemp("server"), env=env, ui=True)


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
    # the demo frame shows a drawn face in a scene: the detector must find it, with its
    # five landmarks inside its box, marked as the speaker
    body = frame.json()
    assert body["detector"] == "retinaface" and body["aligned"] is True
    speaker, *others = body["faces"]
    assert speaker["detected"] is True and speaker["speaker"] is True
    assert not any(f["speaker"] for f in others)
    for f in body["faces"]:
        x, y, w, h = f["box"]
        assert 0 < f["score"] <= 1 and len(f["landmarks"]) == 5
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in f["landmarks"])


def test_image_answers_are_the_predict_commands(server: Server, models_dir: Path,
                                                media: Media, tmp_path: Path) -> None:  # fmt: skip
    """The API and `crossemotion predict` find, cut and classify the same faces; eight
    requests at once (micro-batched together) each get their own image's answer."""
    from crossemotion.codec import load_image
    from crossemotion.inference import load_predictor, predict_images

    predictor = load_predictor(models_dir / "resnet50" / "ifeed", device="cpu")
    uploads = [media.frame, media.face] * 4
    expected = [predict_images(predictor, [load_image(data)])[0] for data in uploads[:2]]

    def post(data: bytes) -> dict:
        with server.client() as c:
            r = c.post("/v1/predict/image", files={"file": ("x.jpg", data, "image/jpeg")})
        assert r.status_code == 200, f"{r.text}\nserver log:\n{server.log_tail()}"
        return r.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, uploads))
    for i, body in enumerate(answers):
        want = expected[i % 2]
        assert [f["box"] for f in body["faces"]] == [list(face.box) for face, _ in want]
        for got, (face, probs) in zip(body["faces"], want, strict=True):
            assert got["landmarks"] == [list(p) for p in face.landmarks]
            (pred,) = got["predictions"]
            served = [pred["probabilities"][e] for e in EMOTIONS]
            np.testing.assert_allclose(served, probs, atol=1e-4)


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
        r = c.post(
            "/v1/predict/image",
            content=chunks(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
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
        r = c.options(
            "/v1/predict/text",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
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
    yield from start_server(only, work, env=env, ui=True)


def test_strict_limits(strict_server: Server, media: Media) -> None:
    with strict_server.client() as c:
        slow = c.post("/v1/predict/text", json={"text": "hello there"})
        assert slow.status_code == 504, slow.text
        # no face model here: the image endpoint says so
        img = c.post("/v1/predict/image", files={"file": ("f.jpg", media.face)})
        assert img.status_code == 503 and "no face model" in img.json()["detail"]
        ok = c.options(
            "/v1/predict/text",
            headers={"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST"},
        )
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
            assert str(empty) not in c.get("/health").text
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

    s = settings_from_env(
        {
            "CROSSEMOTION_MAX_UPLOAD_MB": "3",
            "CROSSEMOTION_CORS_ORIGINS": "http://a.example, http://b.example",
            "CROSSEMOTION_MODELS": "m",
        }
    )
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


# -- error hygiene: ids, no server paths, decompression bombs, the UI's limits --------

# an absolute path: "/" not inside a word, a URL ("https://") or a relative path
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.~-]+")


def png_1bit(width: int, height: int) -> bytes:
    """A black 1-bit PNG, built row by row: 30000 x 30000 is ~110 kB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    comp = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte, then the packed pixels
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    data = png_1bit(30000, 30000)
    assert len(data) < 1_000_000
    return data


def assert_clean_error(server: Server, r: httpx.Response, status: int) -> dict:
    """The error names no server path, shows no traceback, and carries the request id
    that the server logged."""
    assert r.status_code == status, r.text
    body = r.json()
    rid = r.headers["x-request-id"]
    assert body["request_id"] == rid and len(rid) >= 16
    for secret in (str(ROOT), str(server.tmp_root), str(server.tmp_root.parent), "/tmp/"):
        assert secret not in r.text
    assert not ABSOLUTE_PATH.search(r.text), r.text
    assert "Traceback" not in r.text and 'File "' not in r.text
    deadline = time.monotonic() + 10
    while rid not in server.log.read_text():
        assert time.monotonic() < deadline, f"request id {rid} not in the server log"
        time.sleep(0.1)
    return body


def test_errors_carry_a_request_id_and_no_server_paths(server: Server, media: Media) -> None:
    half = media.frame[: len(media.frame) // 2]
    with server.client() as c:
        checks = [
            (c.post("/v1/predict/image", files={"file": ("f", b"plain text")}), 415),
            (c.post("/v1/predict/image", files={"file": ("f.jpg", half)}), 422),
            (c.post("/v1/predict/video", files={"file": ("f", b"\0\0\0\x18ftypmp42"
                                                           + os.urandom(4096))}), 422),
            (c.post("/v1/predict/video", files={"file": ("f", media.long_clip)}), 422),
            (c.post("/v1/predict/text", content=b"{not json"), 422),
            (c.post("/v1/predict/image", files={"file": ("big.jpg", b"\0" * (3 << 20))}), 413),
            (c.get("/no/such/route"), 404),
        ]  # fmt: skip
        ok = c.get("/health")
        given = c.get("/health", headers={"X-Request-ID": "trace-42.a"})
        forged = c.get("/health", headers={"X-Request-ID": "x" * 65})
    bodies = [assert_clean_error(server, r, status) for r, status in checks]
    assert len({b["request_id"] for b in bodies}) == len(bodies)
    # PIL's own words (why the JPEG is truncated) stay in the server log
    assert bodies[1]["detail"] == "the JPEG image could not be decoded"
    assert ok.status_code == 200 and len(ok.headers["x-request-id"]) == 32
    assert given.headers["x-request-id"] == "trace-42.a"
    assert forged.headers["x-request-id"] != "x" * 65


def test_strict_server_errors_are_clean(strict_server: Server, media: Media) -> None:
    with strict_server.client() as c:
        no_model = c.post("/v1/predict/image", files={"file": ("f.jpg", media.face)})
        slow = c.post("/v1/predict/text", json={"text": "hello there"})
    body = assert_clean_error(strict_server, no_model, 503)
    assert body["detail"] == "no face model is loaded (loaded: c3d/meld, text/meld)"
    assert_clean_error(strict_server, slow, 504)


def test_decompression_bomb_is_422(server: Server, bomb_png: bytes) -> None:
    with server.client() as c:
        bomb = c.post("/v1/predict/image", files={"file": ("bomb.png", bomb_png, "image/png")})
        # under PIL's own cap (89M pixels) but over the server's (25M)
        big = c.post("/v1/predict/image", files={"file": ("big.png", png_1bit(6000, 5000))})
    assert assert_clean_error(server, bomb, 422)["detail"] == (
        "image exceeds the limit of 25000000 pixels"
    )
    assert assert_clean_error(server, big, 422)["detail"] == (
        "image of 6000x5000 pixels exceeds the limit of 25000000"
    )
    assert server.proc.poll() is None


def test_decompression_bomb_warning_as_error_is_a_media_error() -> None:
    """Where warnings are errors, PIL raises its warning (over 89M pixels) in open()."""
    import warnings

    from PIL import Image

    from crossemotion.serving.media import MediaError, decode_image

    data = png_1bit(10000, 10000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(MediaError, match="exceeds the limit of 25000000 pixels"):
            decode_image(data, 25_000_000)


def ui_predict(server: Server, image: Path | None = None, video: Path | None = None,
               text: str = "") -> str:  # fmt: skip
    """Calls the demo's `predict` through Gradio's HTTP API; returns its error message."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(f"{server.url}/ui/", verbose=False, download_files=False)
    args = (handle_file(str(image)) if image else None,
            handle_file(str(video)) if video else None, text)  # fmt: skip
    with pytest.raises(AppError) as err:
        client.predict(*args, api_name="/predict")
    return str(err.value)


def test_ui_enforces_the_api_limits(server: Server, media: Media, bomb_png: bytes,
                                    tmp_path: Path) -> None:  # fmt: skip
    (tmp_path / "bomb.png").write_bytes(bomb_png)
    (tmp_path / "big.png").write_bytes(png_1bit(6000, 5000))
    (tmp_path / "long.mp4").write_bytes(media.long_clip)
    with server.client() as c:
        api = {name: c.post(f"/v1/predict/{kind}", files={"file": (name, data)}).json()["detail"]
               for name, kind, data in (("bomb.png", "image", bomb_png),
                                        ("big.png", "image", png_1bit(6000, 5000)),
                                        ("long.mp4", "video", media.long_clip))}  # fmt: skip
    ui = {
        "bomb.png": ui_predict(server, image=tmp_path / "bomb.png"),
        "big.png": ui_predict(server, image=tmp_path / "big.png"),
        "long.mp4": ui_predict(server, video=tmp_path / "long.mp4"),
    }
    for name, detail in api.items():
        assert "exceeds the limit" in detail
        assert ui[name] == f"cannot use this input: {detail}", (name, ui[name])
    assert server.proc.poll() is None


def test_ui_enforces_the_request_timeout(strict_server: Server) -> None:
    with strict_server.client() as c:
        api = c.post("/v1/predict/text", json={"text": "hello there"})
    assert api.status_code == 504
    message = ui_predict(strict_server, text="hello there")
    assert message == api.json()["detail"] == "prediction did not finish within 0.001s"

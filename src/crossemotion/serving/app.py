"""The FastAPI application: ``create_app(models_dir, settings)``.

Models load once in the lifespan; each prediction runs in a worker thread
(bounded by ``max_concurrency``) under ``request_timeout`` (``limits.Runner``,
shared with the Gradio UI). Errors map to status codes in one place
(``_ERRORS``), so a bad upload is a 4xx with a message and never takes the
worker down.

Every response carries an ``X-Request-ID`` header; an error body is
``{"detail": ..., "request_id": ...}``. Details never carry server paths or
exception text: those go to the server log, under the same request id.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossemotion.serving import schemas
from crossemotion.serving.limits import PredictionTimeout, Runner
from crossemotion.serving.media import MediaError, MediaTypeError
from crossemotion.serving.service import InputError, NoModelError, Service
from crossemotion.serving.settings import Settings, settings_from_env

log = logging.getLogger(__name__)
REQUEST_ID_HEADER = "X-Request-ID"
# a client's own id is kept only when it cannot forge log lines or headers
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# an absolute path: "/" not inside a word, a URL or a relative path
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\",;()\[\]]*")
# module level: FastAPI resolves the (string) annotations in the module's namespace
Upload = Annotated[UploadFile, File(description="the upload (multipart field `file`)")]
UtteranceText = Annotated[str, Form(description="the utterance's text")]

# most specific first: MediaTypeError is a MediaError
_ERRORS: list[tuple[type[Exception], int]] = [
    (NoModelError, 503),
    (PredictionTimeout, 504),
    (MediaTypeError, 415),
    (MediaError, 422),
    (InputError, 422),
]
_ERROR_DOCS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in [
        (413, "upload larger than the limit"),
        (415, "not an accepted media type"),
        (422, "undecodable content or a broken limit"),
        (503, "no model loaded for this request"),
        (504, "prediction exceeded the request timeout"),
    ]
}


class RequestId:
    """Gives every HTTP request an id: the client's ``X-Request-ID`` when it is a plain
    token, else a fresh one. Handlers find it in ``scope["state"]``; the response
    carries it in the ``X-Request-ID`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", []))
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", "-"))


def public_detail(message: str) -> str:
    """A message for clients: any absolute path in it replaced (defence in depth; the
    messages themselves name uploads, limits and models, not server files)."""
    return _ABSOLUTE_PATH.sub("<path>", message)


class BodySizeLimit:
    """413 for request bodies over ``limit`` bytes: by Content-Length up front, and by
    counting the bytes actually received (chunked uploads declare no length)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(scope, send, 400, "invalid Content-Length header")
                return
            if size > self.limit:
                await _send_json(scope, send, 413, self._message(size))
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # HTTPException passes through FastAPI's body parsing untouched
                    raise HTTPException(413, self._message(received, at_least=True))
            return message

        await self.app(scope, counting_receive, send)

    def _message(self, size: int, at_least: bool = False) -> str:
        return (f"upload of {'more than ' if at_least else ''}{size} bytes exceeds the limit of "
                f"{self.limit} bytes")  # fmt: skip


async def _send_json(scope: Scope, send: Send, status: int, detail: str) -> None:
    rid = request_id(scope)
    log.info("request %s %s %r -> %d: %s", rid, scope["method"], scope["path"], status, detail)
    body = json.dumps({"detail": detail, "request_id": rid}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def create_app(models_dir: str | Path | None = None, settings: Settings | None = None) -> FastAPI:
    """The API (and, unless ``settings.mount_ui`` is off, the Gradio UI at ``/ui``)."""
    if settings is None:
        settings = settings_from_env(models_dir=Path(models_dir) if models_dir else None)
    elif models_dir is not None:
        from dataclasses import replace

        settings = replace(settings, models_dir=Path(models_dir))
    service = Service(settings)
    run = Runner(settings)

    app = FastAPI(
        title="CrossEmotion",
        summary="Emotion recognition on faces, clips and utterances (MELD / IFEED models)",
        version="1",
        lifespan=service.lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.runner = run

    for exc_type, code in _ERRORS:
        app.add_exception_handler(exc_type, _handler(code))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)

    _routes(app, service, run)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])  # fmt: skip
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes)
    app.add_middleware(RequestId)  # outermost: every response, 413s included, gets the id
    if settings.mount_ui:
        from crossemotion.serving.ui import mount_ui

        mount_ui(app, service, path="/ui", runner=run)
    return app


def _error(request: Request, code: int, detail: Any, logged: str,
           headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    rid = request_id(request.scope)
    log.info("request %s %s %r -> %d: %s", rid, request.method, request.url.path, code, logged)
    # set here too: a 500 leaves through Starlette's outermost middleware, past RequestId
    headers = {**(headers or {}), REQUEST_ID_HEADER: rid}
    return JSONResponse({"detail": detail, "request_id": rid}, status_code=code, headers=headers)


def _handler(code: int) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        # the message is written for clients; what caused it (a decoder's own words) is not
        cause = f" (cause: {exc.__cause__!r})" if exc.__cause__ is not None else ""
        return _error(request, code, public_detail(str(exc)), f"{exc}{cause}")

    return handle


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = public_detail(exc.detail) if isinstance(exc.detail, str) else exc.detail
    return _error(request, exc.status_code, detail, str(exc.detail), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    return _error(request, 422, errors, f"invalid request: {len(errors)} errors")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id(request.scope)
    log.error("request %s %s %r -> 500", rid, request.method, request.url.path, exc_info=exc)
    detail = "internal error; the server log has the details under this request id"
    return _error(request, 500, detail, type(exc).__name__)


def _routes(app: FastAPI, service: Service, run: Runner) -> None:
    @app.get("/health", response_model=schemas.HealthResponse, tags=["service"])
    async def health() -> schemas.HealthResponse:
        if service.models:
            detail = f"{len(service.models)} models loaded"
        else:
            detail = "no models found in the models dir; predictions answer 503"
        if service.load_errors:
            detail += f"; {len(service.load_errors)} failed to load"
        # why a checkpoint failed (paths, exception text) is in the server log only
        errors = {name: "failed to load; see the server log" for name in service.load_errors}
        return schemas.HealthResponse(status=service.status, models_loaded=len(service.models),
                                      detail=detail, load_errors=errors)  # fmt: skip

    @app.get("/v1/models", response_model=schemas.ModelsResponse, tags=["service"])
    async def models() -> schemas.ModelsResponse:
        infos = [schemas.ModelInfo(**d) for d in service.describe()]
        return schemas.ModelsResponse(models=infos)

    @app.post("/v1/predict/image", response_model=schemas.ImageResponse, tags=["predict"],
              responses=_ERROR_DOCS)  # fmt: skip
    async def predict_image(file: Upload) -> schemas.ImageResponse:
        """A face image or a full frame: faces are detected and cut as the face models'
        training crops were (detector, alignment), each is classified by every face
        model; the speaker's (first) face is marked. Without a detectable face the
        whole image is classified. Requests that arrive together share a batch."""
        service.require_for("image")
        data = await file.read()
        try:
            result = await run.wait(service.submit_image(data))
        except PredictionTimeout:
            # where the batch is stuck, for whoever reads the log after a 504
            log.warning("image request past the timeout; %s", service.image_workers())
            raise
        return schemas.ImageResponse.model_validate(result, from_attributes=True)

    @app.post("/v1/predict/text", response_model=schemas.TextResponse, tags=["predict"],
              responses=_ERROR_DOCS)  # fmt: skip
    async def predict_text(body: schemas.TextRequest) -> schemas.TextResponse:
        service.require_for("text")
        preds = await run(
            service.predict_text, body.text, body.speaker,
            [t.model_dump() for t in body.context], [t.model_dump() for t in body.future],
        )  # fmt: skip
        return schemas.TextResponse.model_validate({"predictions": preds}, from_attributes=True)

    @app.post("/v1/predict/video", response_model=schemas.VideoResponse, tags=["predict"],
              responses=_ERROR_DOCS)  # fmt: skip
    async def predict_video(file: Upload) -> schemas.VideoResponse:
        """An mp4 clip, sampled by the pipeline's decoder: clip models see the frames,
        face models the speaker's face per frame (probabilities averaged)."""
        service.require_for("video")
        result = await run(service.predict_video, await file.read())
        return schemas.VideoResponse.model_validate(result, from_attributes=True)

    @app.post("/v1/predict/utterance", response_model=schemas.UtteranceResponse,
              tags=["predict"], responses=_ERROR_DOCS)  # fmt: skip
    async def predict_utterance(file: Upload, text: UtteranceText) -> schemas.UtteranceResponse:
        """A clip and its text: fusion models plus every single-modality model."""
        service.require_for("utterance")
        result = await run(service.predict_utterance, await file.read(), text)
        return schemas.UtteranceResponse.model_validate(result, from_attributes=True)

"""The FastAPI application: ``create_app(models_dir, settings)``.

Models load once in the lifespan; each prediction runs in a worker thread
(bounded by ``max_concurrency``) under ``request_timeout``. Errors map to
status codes in one place (``_ERRORS``), so a bad upload is a 4xx with a
message and never takes the worker down.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossemotion.serving import schemas
from crossemotion.serving.media import MediaError, MediaTypeError
from crossemotion.serving.service import InputError, NoModelError, Service
from crossemotion.serving.settings import Settings, settings_from_env

log = logging.getLogger(__name__)
T = TypeVar("T")
# module level: FastAPI resolves the (string) annotations in the module's namespace
Upload = Annotated[UploadFile, File(description="the upload (multipart field `file`)")]
UtteranceText = Annotated[str, Form(description="the utterance's text")]

# most specific first: MediaTypeError is a MediaError
_ERRORS: list[tuple[type[Exception], int]] = [
    (NoModelError, 503),
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
                await _send_json(send, 400, "invalid Content-Length header")
                return
            if size > self.limit:
                await _send_json(send, 413, self._message(size))
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


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
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
    limiter: dict[str, anyio.CapacityLimiter] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limiter["cpu"] = anyio.CapacityLimiter(settings.max_concurrency)
        await anyio.to_thread.run_sync(service.load)
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="CrossEmotion",
        summary="Emotion recognition on faces, clips and utterances (MELD / IFEED models)",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings

    async def run(fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.wait_for(
                anyio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True,
                                         limiter=limiter["cpu"]),
                timeout=settings.request_timeout,
            )  # fmt: skip
        except TimeoutError:
            raise HTTPException(
                504, f"prediction did not finish within {settings.request_timeout:g}s"
            ) from None

    for exc_type, code in _ERRORS:
        app.add_exception_handler(exc_type, _handler(code))
    app.add_exception_handler(Exception, _internal_error)

    _routes(app, service, run)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])  # fmt: skip
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes)
    if settings.mount_ui:
        from crossemotion.serving.ui import mount_ui

        mount_ui(app, service, path="/ui")
    return app


def _handler(code: int) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s", request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500
    )


def _routes(app: FastAPI, service: Service, run: Callable[..., Any]) -> None:
    @app.get("/health", response_model=schemas.HealthResponse, tags=["service"])
    async def health() -> schemas.HealthResponse:
        if service.models:
            detail = f"{len(service.models)} models loaded"
        else:
            detail = f"no models found in {service.settings.models_dir}; predictions answer 503"
        if service.load_errors:
            detail += f"; {len(service.load_errors)} failed to load"
        return schemas.HealthResponse(status=service.status, models_loaded=len(service.models),
                                      detail=detail, load_errors=service.load_errors)  # fmt: skip

    @app.get("/v1/models", response_model=schemas.ModelsResponse, tags=["service"])
    async def models() -> schemas.ModelsResponse:
        infos = [schemas.ModelInfo(**d) for d in service.describe()]
        return schemas.ModelsResponse(models=infos)

    @app.post("/v1/predict/image", response_model=schemas.ImageResponse, tags=["predict"],
              responses=_ERROR_DOCS)  # fmt: skip
    async def predict_image(file: Upload) -> schemas.ImageResponse:
        """A face image or a full frame: faces are detected, each is classified by every
        face model. Without a detectable face the whole image is classified."""
        service.require_for("image")
        result = await run(service.predict_image, await file.read())
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
    async def predict_utterance(
        file: Upload, text: UtteranceText
    ) -> schemas.UtteranceResponse:
        """A clip and its text: fusion models plus every single-modality model."""
        service.require_for("utterance")
        result = await run(service.predict_utterance, await file.read(), text)
        return schemas.UtteranceResponse.model_validate(result, from_attributes=True)

"""Typed request and response bodies of the HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from crossemotion.labels import EMOTIONS, SENTIMENTS

Box = tuple[int, int, int, int]
# dialogue turns a text request may carry on either side (Service checks it too)
MAX_TURNS = 50


class Turn(BaseModel):
    speaker: str | None = Field(None, description="who said it", examples=["Rachel"])
    text: str = Field(..., description="what was said", examples=["You slept with her."])


class TextRequest(BaseModel):
    """An utterance, optionally with its speaker and dialogue turns around it.

    A model uses as many turns as it was trained with (its ``context`` past and
    ``future`` next turns, the nearest ones) and formats them exactly as in
    training; speaker names count where it was trained with ``speakers``.
    """

    text: str = Field(..., description="one utterance", examples=["Oh my God, this is amazing!"])
    speaker: str | None = Field(None, description="speaker of the utterance", examples=["Ross"])
    context: list[Turn] = Field(
        default_factory=list,
        max_length=MAX_TURNS,
        description="previous turns of the dialogue, oldest first",
    )
    future: list[Turn] = Field(
        default_factory=list,
        max_length=MAX_TURNS,
        description="next turns of the dialogue, in order (offline use)",
    )


class ModelPrediction(BaseModel):
    model: str = Field(..., examples=["resnet50"])
    dataset: str = Field(..., description="dataset the model was trained on", examples=["ifeed"])
    label: str = Field(
        ...,
        description=f"most probable class: one of {', '.join(EMOTIONS)}, "
        f"or of {', '.join(SENTIMENTS)} for a sentiment model",
    )
    probabilities: dict[str, float] = Field(..., description="probability per class (sums to 1)")


class FacePrediction(BaseModel):
    box: Box = Field(..., description="x, y, w, h in pixels of the uploaded image")
    detected: bool = Field(..., description="false: no face found, the whole image was classified")
    score: float | None = Field(None, description="the detector's confidence")
    landmarks: list[tuple[float, float]] = Field(
        default_factory=list,
        description="x, y in pixels of the uploaded image: left eye, right eye, nose tip, "
        "left and right mouth corners (empty for a detector without landmarks)",
    )
    speaker: bool = Field(False, description="the speaker's face: the first one found")
    predictions: list[ModelPrediction]


class ImageResponse(BaseModel):
    width: int
    height: int
    faces: list[FacePrediction] = Field(..., description="speaker (largest, central) face first")
    detector: str = Field("", description="the face detector that found them")
    aligned: bool = Field(
        False, description="faces were aligned on their landmarks before classification"
    )


class TextResponse(BaseModel):
    predictions: list[ModelPrediction]


class VideoResponse(BaseModel):
    duration: float | None = Field(None, description="seconds, from ffprobe")
    frames: int = Field(..., description="frames sampled by the pipeline's decoder")
    frames_with_face: int
    has_audio: bool | None = None
    boxes: list[Box | None] = Field(..., description="speaker face box per sampled frame")
    clip_predictions: list[ModelPrediction] = Field(..., description="clip models")
    face_predictions: list[ModelPrediction] = Field(
        ..., description="face models, mean over the sampled frames' speaker faces"
    )


class UtteranceResponse(VideoResponse):
    text_predictions: list[ModelPrediction]
    fusion: list[ModelPrediction] = Field(..., description="fusion models (faces + text)")


class ModelInfo(BaseModel):
    name: str
    model: str
    dataset: str
    kind: Literal["face", "clip", "text", "fusion"]
    checkpoint: str = Field(..., description="path relative to the models dir")
    labels: list[str] = Field(..., description="the model's classes (its checkpoint's)")
    test: dict[str, float | int | None] | None = Field(
        None, description="test-split figures from metrics.json"
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    labels: list[str] = list(EMOTIONS)


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded", "starting"]
    models_loaded: int
    detail: str
    load_errors: dict[str, str] = {}


class ErrorResponse(BaseModel):
    detail: str = Field(..., description="what was wrong, for the client: no server paths")
    request_id: str = Field(
        ..., description="also in the X-Request-ID header; the server log's lines carry it"
    )

"""The Gradio demo: an image or a clip (and an utterance) in; faces, per-model bars and
the fused prediction out. It calls the same ``Service`` as the HTTP API.

Mounted in the API at ``/ui`` (``create_app``) or served alone (``crossemotion
demo-ui``, ``create_ui_app``). Gradio's analytics are switched off before it is
imported and nothing is shared: the page and its assets come from this server.

The API's limits hold here through the same code: uploads reach the handler
as files, unopened, and go through ``Service`` (pixel, clip-length and text
limits) inside the API's ``Runner`` (concurrency and request timeout); a
broken limit is a ``gr.Error`` with the API's message.

The image shown back carries every face's box and landmarks, the speaker's
(first) face marked; the examples under the inputs (a demo scene frame, a demo
face image and a demo clip, generated on first use: crossemotion.serving.examples)
need no network.
"""

from __future__ import annotations

import logging
import os
import uuid

# Must precede `import gradio`: it reads these at import time.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
from fastapi import FastAPI

from crossemotion.serving.examples import example_files
from crossemotion.serving.limits import PredictionTimeout, Runner
from crossemotion.serving.media import MediaError
from crossemotion.serving.service import (
    ClipResult,
    FaceResult,
    InputError,
    NoModelError,
    Prediction,
    Service,
)
from crossemotion.serving.settings import Settings, settings_from_env

log = logging.getLogger(__name__)
MAX_PLOTS = 8  # bar-chart slots; the demo serves at most six models
SPEAKER_COLOUR = (40, 220, 60)
OTHER_COLOUR = (230, 200, 40)
LANDMARK_COLOUR = (230, 40, 40)


def _unopened_upload(payload: Any) -> str | None:
    """The image input's preprocess: the upload's path in Gradio's cache, unopened.

    ``gr.Image`` opens every upload with PIL before the handler runs, so a
    decompression bomb, or an image over the pixel limit, would be Gradio's
    error rather than the API's check (``Service.load_image``). Set on the
    instance: a subclass of a Gradio component writes a .pyi beside this file.
    """
    if payload is None:
        return None
    if not payload.path:
        raise gr.Error("cannot use this input: upload the image as a file")
    return str(payload.path)


def _bars(pred: Prediction) -> pd.DataFrame:
    # the model's own classes in its order: the 7 emotions, or a sentiment model's 3
    return pd.DataFrame(
        {"emotion": list(pred.probabilities), "probability": list(pred.probabilities.values())}
    )


def _draw_faces(rgb: np.ndarray, faces: Sequence[FaceResult]) -> np.ndarray:
    """Every detected face's box and landmarks; the speaker's box green, thicker and
    labelled "speaker", the others yellow and numbered in the summary's order."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    thin = max(1, round(max(out.shape[:2]) / 320))
    scale = max(0.4, max(out.shape[:2]) / 1000)
    for i, face in enumerate(faces):
        if not face.detected:
            continue
        x, y, w, h = face.box
        colour = SPEAKER_COLOUR if face.speaker else OTHER_COLOUR
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thin * (2 if face.speaker else 1))
        tag = "speaker" if face.speaker else str(i + 1)
        cv2.putText(out, tag, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                    thin, cv2.LINE_AA)  # fmt: skip
        for px, py in face.landmarks:
            cv2.circle(out, (round(px), round(py)), thin + 1, LANDMARK_COLOUR, -1, cv2.LINE_AA)
    return out


def _draw_box(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    face = FaceResult(box, True, None, [], speaker=True)
    return _draw_faces(rgb, [face])


def _summary(sections: list[tuple[str, list[Prediction]]]) -> str:
    lines = []
    for title, preds in sections:
        for p in preds:
            lines.append(f"| {title} | {p.model}/{p.dataset} | **{p.label}** | "
                         f"{p.probabilities[p.label]:.2f} |")  # fmt: skip
    if not lines:
        return "No model produced a prediction for this input."
    return "| input | model | prediction | p |\n|---|---|---|---|\n" + "\n".join(lines)


class DemoHandler:
    """The button callback, kept apart from the layout so it can be reasoned about alone."""

    def __init__(self, service: Service, runner: Runner | None = None) -> None:
        self.service = service
        self.runner = runner or Runner(service.settings)

    async def predict(self, image: str | None, video: str | None, text: str | None) -> list[Any]:
        """``image`` and ``video`` are paths in Gradio's upload cache, not client paths."""
        text = (text or "").strip()
        try:
            return await self.runner(self._predict, image, video, text)
        except gr.Error:
            raise
        except (NoModelError, PredictionTimeout) as exc:
            raise gr.Error(str(exc)) from None
        except (MediaError, InputError) as exc:
            raise gr.Error(f"cannot use this input: {exc}") from None
        except Exception:
            # as in the API: the details go to the server log, the client gets an id
            rid = uuid.uuid4().hex
            log.exception("ui request %s failed", rid)
            raise gr.Error(f"internal error; the server log has the details under request id "
                           f"{rid}") from None  # fmt: skip

    def _predict(self, image: str | None, video: str | None, text: str) -> list[Any]:
        svc = self.service
        shown: np.ndarray | None = None
        sections: list[tuple[str, list[Prediction]]] = []
        fused: Prediction | None = None
        if video:
            data = Path(video).read_bytes()
            clip = (
                svc.predict_utterance(data, text)
                if text and svc.of_kind("fusion")
                else svc.predict_video(data)
            )
            shown = self._first_face_frame(clip)
            sections += [("clip", clip.clip_predictions), ("faces", clip.face_predictions),
                         ("text", clip.text_predictions), ("fusion", clip.fusion)]  # fmt: skip
            fused = clip.fusion[0] if clip.fusion else None
        elif image is not None:
            svc.require_for("image")
            rgb = svc.load_image(Path(image).read_bytes())
            result = svc.predict_image_array(rgb)
            shown = _draw_faces(rgb, result.faces)
            for i, face in enumerate(result.faces):
                name = "speaker face" if face.speaker else ("image" if not face.detected
                                                            else f"face {i + 1}")  # fmt: skip
                sections.append((name, face.predictions))
        if text and not video and svc.of_kind("text"):
            sections.append(("text", svc.predict_text(text)))
        if not sections:
            raise gr.Error("Upload an image or a clip, or type an utterance.")
        preds = [p for _, group in sections for p in group]
        if fused is None and preds:
            fused = preds[0]
        label = dict(fused.probabilities) if fused else None
        plots = [gr.update(visible=True, value=_bars(p), label=f"{p.model}/{p.dataset}")
                 for p in preds[:MAX_PLOTS]]  # fmt: skip
        plots += [gr.update(visible=False, value=None)] * (MAX_PLOTS - len(plots))
        return [shown, label, _summary(sections), *plots]

    @staticmethod
    def _first_face_frame(clip: ClipResult) -> np.ndarray | None:
        """The first sampled frame with its speaker box, for display."""
        for rgb, box in zip(clip.sampled, clip.boxes, strict=False):
            if box is not None:
                return _draw_box(rgb, box)
        return clip.sampled[0] if clip.sampled else None


def build_blocks(service: Service, runner: Runner | None = None) -> gr.Blocks:
    handler = DemoHandler(service, runner)
    with gr.Blocks(title="CrossEmotion demo", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# CrossEmotion\nUpload a face image (or a frame) **or** a clip, and optionally "
            "type the utterance. Faces are detected, every loaded model gives its class "
            "probabilities, and the fusion model combines the clip's faces with the text."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Face image or frame", type="filepath",
                                 sources=["upload"], elem_id="image-input")  # fmt: skip
                image.preprocess = _unopened_upload  # type: ignore[method-assign]
                video = gr.Video(label="Clip (mp4)", sources=["upload"], elem_id="video-input")
                text = gr.Textbox(label="Utterance", lines=2, elem_id="text-input")
                button = gr.Button("Predict", variant="primary", elem_id="predict-button")
                examples = example_files()
                gr.Examples(
                    examples=[[str(examples.frame), None, ""], [str(examples.face), None, ""],
                              [None, str(examples.clip), examples.clip_text]],
                    inputs=[image, video, text], label="Examples (demo data): click one, "
                    "then Predict", examples_per_page=3, elem_id="examples",
                )  # fmt: skip
            with gr.Column():
                faces = gr.Image(label="Detected faces (the speaker's marked)",
                                 interactive=False, elem_id="faces")  # fmt: skip
                fused = gr.Label(label="Prediction (fused when a fusion model applies)",
                                 num_top_classes=3, elem_id="fused-label")  # fmt: skip
                summary = gr.Markdown(elem_id="summary")
        with gr.Row():
            plots = [
                gr.BarPlot(
                    x="emotion",
                    y="probability",
                    y_lim=[0, 1],
                    sort=None,
                    visible=False,
                    show_label=True,
                    elem_id=f"bars-{i}",
                )
                for i in range(MAX_PLOTS)
            ]
        button.click(
            handler.predict, inputs=[image, video, text], outputs=[faces, fused, summary, *plots],
            api_name="predict", concurrency_limit=service.settings.max_concurrency,
        )  # fmt: skip
    return blocks


def mount_ui(
    app: FastAPI, service: Service, path: str = "/ui", runner: Runner | None = None
) -> FastAPI:
    """``runner``: the API's, so that both share one concurrency cap."""
    blocks = build_blocks(service, runner)
    return gr.mount_gradio_app(
        app, blocks, path=path, ssr_mode=False, mcp_server=False, pwa=False,
        max_file_size=service.settings.max_upload_bytes, footer_links=["api"],
        # the examples live in their cache folder, outside Gradio's default allowed places
        allowed_paths=[str(p) for p in example_files().paths()],
    )  # fmt: skip


def create_ui_app(
    models_dir: str | Path | None = None, settings: Settings | None = None
) -> FastAPI:
    """The demo alone, at ``/`` (what ``crossemotion demo-ui`` serves)."""
    settings = settings or settings_from_env(models_dir=Path(models_dir) if models_dir else None)
    service = Service(settings)

    app = FastAPI(
        title="CrossEmotion demo", lifespan=service.lifespan, docs_url=None, redoc_url=None
    )
    app.state.service = service
    return mount_ui(app, service, path="/")

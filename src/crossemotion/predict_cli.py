"""`crossemotion predict`: run a trained model on images, clips or texts.

A face model (``resnet50``) reads each image once, finds its faces with the
faces stage the model was trained on (detector, alignment, crop size: the
checkpoint's record, else the workflow's defaults), classifies every face in
one batch and prints one JSON line per image: the speaker's (first) face's
``label`` and ``probabilities`` at the top, every face under ``faces``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model directory (results/models/M/D) or model.pt"
    )
    parser.add_argument("inputs", nargs="*", help="image or video files (face / clip models)")
    parser.add_argument(
        "--text", action="append", default=[], help="an utterance (text, fusion); repeatable"
    )
    parser.add_argument(
        "--image", action="append", default=[], help="fusion: a face image of the utterance"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--detector",
        help="face models: this face detector instead of the one the model was trained with",
    )
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="face models: the images are face crops already; classify each as a whole",
    )


def _units(args: argparse.Namespace, unit: str, name: str) -> tuple[list[str], list[object]]:
    if name == "fusion":
        if len(args.text) != 1:
            raise SystemExit("fusion takes exactly one --text (plus any --image faces)")
        images = [Path(p).read_bytes() for p in [*args.image, *args.inputs]]
        return [args.text[0]], [{"text": args.text[0], "images": images}]
    if unit == "utterance":
        if not args.text:
            raise SystemExit("this model reads text: give --text '...'")
        return list(args.text), list(args.text)
    if not args.inputs:
        raise SystemExit(f"this model reads {unit}s: give one or more files")
    return list(args.inputs), list(args.inputs)


def _face_lines(predictor: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from crossemotion.codec import load_image
    from crossemotion.inference import face_stage_of, predict_images

    stage = face_stage_of(predictor, detector=args.detector)
    try:
        detector = stage.build_detector()
    except (ValueError, ImportError) as exc:  # an unknown name, a missing package: named
        raise SystemExit(f"face detector: {exc}") from None
    images = []
    for path in args.inputs:
        try:
            images.append(load_image(path))  # decoded once, here
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    labels = predictor.labels
    lines = []
    answers = predict_images(predictor, images, stage, detector)
    for path, rgb, faces in zip(args.inputs, images, answers, strict=True):
        shown = [
            {
                "box": list(face.box),
                "landmarks": [list(p) for p in face.landmarks],
                "score": face.score,
                "detected": face.detected,
                # the detector ranks the speaker (largest, most central face) first
                "speaker": i == 0 and face.detected,
                "label": labels[int(probs.argmax())],
                "probabilities": dict(zip(labels, map(float, probs), strict=True)),
            }
            for i, (face, probs) in enumerate(faces)
        ]
        lines.append({
            "input": path, "model": predictor.name,
            # the first face's answer on top, as a face model's answer on one image has
            # always read (the speaker's; the whole image's when no face was found)
            "label": shown[0]["label"], "probabilities": shown[0]["probabilities"],
            "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
            "detector": stage.detector, "aligned": stage.aligned, "faces": shown,
        })  # fmt: skip
    return lines


def run(args: argparse.Namespace) -> int:
    from crossemotion.inference import load_predictor

    predictor = load_predictor(args.model, device=args.device)
    names, units = _units(args, predictor.unit, predictor.name)
    if predictor.unit == "image" and not args.no_detect:
        lines = _face_lines(predictor, args)
    else:
        lines = [
            {"input": name, "model": predictor.name, **result}
            for name, result in zip(names, predictor.predict_labels(units), strict=True)
        ]
    for line in lines:
        json.dump(line, sys.stdout)
        sys.stdout.write("\n")
    return 0

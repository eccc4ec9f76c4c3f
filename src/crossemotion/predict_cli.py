"""`crossemotion predict`: run a trained model on images, clips or texts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    from crossemotion.inference import load_predictor

    predictor = load_predictor(args.model, device=args.device)
    names, units = _units(args, predictor.unit, predictor.name)
    for name, result in zip(names, predictor.predict_labels(units), strict=True):
        json.dump({"input": name, "model": predictor.name, **result}, sys.stdout)
        sys.stdout.write("\n")
    return 0

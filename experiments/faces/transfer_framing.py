"""Does the framing of MELD's face crops explain the IFEED->MELD zero-shot transfer?

A research tool, not a workflow step. After a run (the demo's, say) it takes the
IFEED face model (``results/models/resnet50/ifeed``) and scores it on MELD's
``--split`` (dev: choices are made there) with the MELD faces re-cut from the clips
shards' frames at several framings, from the faces shards' own boxes and landmarks
(no detection): aligned on the template with several margins, and the plain box
crop with several margins. Per utterance the faces' probabilities are averaged, as
the transfer table does. It also measures how the two datasets frame a face: the
share of the crop's side the detector's face box takes, on IFEED's images and on
MELD's crops as the faces stage cut them.

    python -m experiments.faces.transfer_framing --results results --split dev
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from crossemotion.codec import decode_jpeg
from crossemotion.ingest.faces.align import face_crop
from crossemotion.ingest.faces.detect import Detection, get_detector
from crossemotion.labels import EMOTIONS

VARIANTS: list[tuple[str, bool, float]] = [
    ("aligned m0.00", True, 0.0),
    ("aligned m0.15", True, 0.15),
    ("aligned m0.30", True, 0.30),
    ("box m-0.05", False, -0.05),
    ("box m0.00", False, 0.0),
    ("box m0.08", False, 0.08),
    ("box m0.15", False, 0.15),
]


def _detection(bbox: list[int], landmarks: list[float] | None, score: float) -> Detection:
    marks = tuple(zip(landmarks[0::2], landmarks[1::2], strict=True)) if landmarks else ()
    return Detection(int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3]), float(score),
                     landmarks=marks)  # fmt: skip


def face_share(images: list[np.ndarray], min_size: int = 8) -> float | None:
    """Median share of the image side the detector's largest face box takes (longer side)."""
    detector = get_detector("retinaface", min_size=min_size, max_faces=1)
    shares = []
    for image in images:
        found = detector.detect(image)
        if found:
            shares.append(max(found[0].w, found[0].h) / max(image.shape[:2]))
    return round(statistics.median(shares), 3) if shares else None


def weighted_f1(y_true: list[str], y_pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="weighted", labels=list(EMOTIONS)))


def run(results: Path, split: str, size: int, limit_share: int = 200) -> dict[str, Any]:
    from crossemotion.inference import load_predictor

    predictor = load_predictor(results / "models" / "resnet50" / "ifeed", device="cpu")
    shards = results / "shards" / "meld"
    faces = pl.concat(
        [pl.read_parquet(p) for p in sorted((shards / "faces" / split).glob("*.parquet"))]
    )
    clips = pl.concat([
        pl.read_parquet(p, columns=["key", "frames", "label"])
        for p in sorted((shards / "clips" / split).glob("*.parquet"))
    ])  # fmt: skip
    frames = dict(zip(clips["key"].to_list(), clips["frames"].to_list(), strict=True))
    labels = dict(zip(clips["key"].to_list(), clips["label"].to_list(), strict=True))
    rows = faces.select("key", "frame_index", "bbox", "landmarks", "score").to_dicts()
    decoded: dict[tuple[str, int], np.ndarray] = {}
    for r in rows:
        k = (r["key"], r["frame_index"])
        if k not in decoded:
            decoded[k] = decode_jpeg(frames[r["key"]][r["frame_index"]])
    out: dict[str, Any] = {"split": split, "faces": len(rows), "utterances": len(set(labels))}
    keys = [r["key"] for r in rows]
    for name, align, margin in VARIANTS:
        crops = [
            face_crop(
                decoded[(r["key"], r["frame_index"])],
                _detection(r["bbox"], r["landmarks"], r["score"]),
                size,
                align=align,
                margin=margin,
            )
            for r in rows
        ]
        probs = predictor.predict(crops)
        per_key: dict[str, list[np.ndarray]] = {}
        for k, p in zip(keys, probs, strict=True):
            per_key.setdefault(k, []).append(p)
        ids = sorted(per_key)
        pred = [predictor.labels[int(np.mean(per_key[k], axis=0).argmax())] for k in ids]
        out[name] = {
            "weighted_f1_utterances_with_faces": round(
                weighted_f1([labels[k] for k in ids], pred), 4
            ),
            "face_share": face_share(crops[:limit_share]),
        }
    ifeed_shards = sorted((results / "shards" / "ifeed" / "faces").glob("*/*.parquet"))
    ifeed = pl.concat([pl.read_parquet(p, columns=["image"]) for p in ifeed_shards])
    images = [decode_jpeg(b) for b in ifeed["image"].to_list()[:limit_share]]
    out["ifeed_face_share"] = face_share(images)
    out["meld_shard_face_share"] = face_share(
        [decode_jpeg(b) for b in faces["image"].to_list()[:limit_share]]
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--split", default="dev")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.results, args.split, args.size), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which score tells an IFEED image's source clip from the other clips of its key?

``python -m bench.align_methods [DEMO_DIR]`` (default: a fresh demo world in a
temp folder) places every IFEED image of the generated demo in each candidate
clip with the alignment's search (``crossemotion.ingest.ifeed.align``), then scores
the fitted place three ways:

* ``ncc``: normalised cross-correlation, colour, at the image's size (what
  the workflow uses);
* ``phash``: 64-bit DCT perceptual hash, 1 - Hamming distance / 64;
* ``embedding``: cosine of ResNet-18 pooled features (random weights: no
  download here; ImageNet weights would be the real-data variant).

The truth file says which candidate is the source. Per method: the true
sources' lowest and 1% scores, the other clips' highest, and the share of
true sources that score above every other clip (recoverable with zero wrong
matches by a threshold). Writes ``results/bench/align_methods.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import polars as pl

from bench.common import RESULTS
from crossemotion.codec import read_image
from crossemotion.ingest.archives.unpack import safe_extract
from crossemotion.ingest.ifeed import align
from crossemotion.ingest.ifeed.members import build_manifest, manifest_frame
from crossemotion.ingest.meld.index import build_index


def phash(image: np.ndarray) -> np.ndarray:
    grey = cv2.resize(cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2GRAY), (32, 32),
                      interpolation=cv2.INTER_AREA).astype(np.float32)  # fmt: skip
    low = cv2.dct(grey)[:8, :8].ravel()[1:]
    return low > np.median(low)


class Embedder:
    def __init__(self) -> None:
        import torch
        import torchvision

        torch.manual_seed(0)
        net = torchvision.models.resnet18(weights=None)
        net.fc = torch.nn.Identity()
        self.net = net.eval()
        self.torch = torch

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = cv2.resize(image.astype(np.float32) / 255.0, (112, 112), interpolation=cv2.INTER_AREA)
        x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        t = self.torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))
        with self.torch.no_grad():
            v = self.net(t)[0].numpy()
        return v / (np.linalg.norm(v) + 1e-9)


def _world(out: Path) -> Path:
    from crossemotion.config import load_config
    from crossemotion.synth.generate import SynthSettings, generate

    generate(out, SynthSettings.from_config(load_config("config/demo.yaml")["synth"]))
    return out


def scores(demo: Path, work: Path) -> pl.DataFrame:
    safe_extract([demo / "MELD.Raw.tar.gz"], work / "meld", progress=False)
    safe_extract([demo / "IFEED_Base.zip"], work / "ifeed", progress=False)
    index = build_index(work / "meld", {})
    images = align.usable_images(manifest_frame(build_manifest(work / "ifeed")))
    truth = {
        r["member"]: r for r in pl.read_parquet(demo / "ifeed_truth.parquet").iter_rows(named=True)
    }
    candidates = align.candidates_by_key(index)
    s = align.AlignSettings()
    embed = Embedder()
    rows: list[dict[str, Any]] = []
    by_key: dict[str, list[dict[str, Any]]] = {}
    for img in images.iter_rows(named=True):
        by_key.setdefault(img["key"], []).append(img)
    for key, imgs in sorted(by_key.items()):
        clips = [c for c in (align.load_clip(c, s) for c in candidates.get(key, [])) if c.ok]
        for img in imgs:
            t = truth.get(img["member"])
            image = read_image(work / "ifeed" / img["member"])
            if t is None or image is None:
                continue
            for clip in clips:
                m = align.match_clip(image, clip, s)
                fitted = align.fit_region(image, clip, m) if m.score > 0 else None
                true = t["clip_status"] == "ok" and clip.split == t["meld_split"]
                row = {"member": img["member"], "split": clip.split, "ncc": m.score, "true": true}
                if fitted is not None:
                    region, ref, _ = fitted
                    row["phash"] = 1 - float(np.mean(phash(region) != phash(ref)))
                    row["embedding"] = float(embed(region) @ embed(ref))
                rows.append(row)
    return pl.DataFrame(rows)


def summarise(frame: pl.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {"true_candidates": int(frame["true"].sum()),
                           "other_candidates": int((~frame["true"]).sum())}  # fmt: skip
    for method in ("ncc", "phash", "embedding"):
        true = frame.filter(pl.col("true"))[method].fill_null(-1.0)
        other = frame.filter(~pl.col("true"))[method].fill_null(-1.0)
        top = float(other.max())
        out[method] = {
            "true_min": round(float(true.min()), 4),
            "true_q01": round(float(true.quantile(0.01)), 4),
            "true_median": round(float(true.median()), 4),
            "other_max": round(top, 4),
            "recoverable_share": round(float((true > top).mean()), 4),
        }
    return out


def run(demo: str | Path | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(demo) if demo else _world(Path(tmp) / "demo")
        result = summarise(scores(source, Path(tmp)))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "align_methods.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None), indent=2))

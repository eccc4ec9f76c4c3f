"""The Gradio demo's examples: a demo scene frame, a demo face image and a demo clip.

They ship in the package (``serving/examples/``), so that the demo's examples
work offline and on a fresh install before any workflow has run. They are cut
from the demo generator's data (``crossemotion synth``) by

    python -m crossemotion.serving.examples

which regenerates them: a 640x360 test clip of the demo world whose frame
holds more than one face the default detector finds (the speaker and a
bystander, so the page shows both kinds of box), that clip's middle frame, its
utterance, and an IFEED-style face image.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


@dataclass(frozen=True)
class Examples:
    frame: Path  # a 640x360 scene frame (JPEG) with faces
    face: Path  # a face image (JPEG), as IFEED's
    clip: Path  # a short mp4
    clip_text: str  # the clip's utterance

    def paths(self) -> list[Path]:
        return [self.frame, self.face, self.clip]


def example_files(root: Path = EXAMPLES_DIR) -> Examples:
    """The shipped examples; a missing file is an installation error, named."""
    meta = root / "examples.json"
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"the demo examples are missing: {meta} ({exc})") from None
    found = Examples(root / info["frame"], root / info["face"], root / info["clip"],
                     str(info["clip_text"]))  # fmt: skip
    for path in found.paths():
        if not path.is_file():
            raise FileNotFoundError(f"the demo example {path} is missing")
    return found


# the demo's quirks include clips minutes long; an example stays short and small
MAX_SECONDS = 8.0


def _duration(clip: Path) -> float:
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                            "-of", "csv=p=0", str(clip)], check=True, capture_output=True,
                           text=True)  # fmt: skip
    return float(probe.stdout.strip())


def _middle_frame(clip: Path, duration: float) -> bytes:
    half = duration / 2
    return subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{half:.3f}", "-i", str(clip),
                           "-frames:v", "1", "-q:v", "3", "-f", "image2pipe", "-c:v", "mjpeg",
                           "-"], check=True, capture_output=True).stdout  # fmt: skip


def make_examples(out: Path = EXAMPLES_DIR, seed: int = 11) -> Examples:
    """Generate a small demo at 640x360 and keep the best-suited test clip (see module)."""
    import polars as pl

    from crossemotion.codec import decode_jpeg
    from crossemotion.inference import FaceStage
    from crossemotion.synth.generate import SynthSettings, generate

    detector = FaceStage.of(None).build_detector()
    with tempfile.TemporaryDirectory(prefix="examples-") as tmp:
        work = Path(tmp)
        generate(work, SynthSettings(seed=seed, utterances={"train": 2, "dev": 1, "test": 12},
                                     ifeed_images={"train": 2, "test": 2}, width=640,
                                     height=360, workers=1))  # fmt: skip
        with tarfile.open(work / "MELD.Raw.tar.gz") as outer:
            names = outer.getnames()
            inner_bytes = outer.extractfile("MELD.Raw/test.tar.gz").read()  # type: ignore[union-attr]
            csv_name = next(n for n in names if n.endswith("test_sent_emo.csv"))
            csv = pl.read_csv(outer.extractfile(csv_name).read())  # type: ignore[union-attr]
        best: tuple[int, str, bytes, bytes] | None = None
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            for member in inner.getmembers():
                if not member.name.endswith(".mp4"):
                    continue
                clip = work / Path(member.name).name
                clip.write_bytes(inner.extractfile(member).read())  # type: ignore[union-attr]
                duration = _duration(clip)
                if duration > MAX_SECONDS:
                    continue
                frame = _middle_frame(clip, duration)
                faces = len(detector.detect(decode_jpeg(frame)))
                if faces and (best is None or faces > best[0]):
                    best = (faces, clip.stem, clip.read_bytes(), frame)
        if best is None:
            raise RuntimeError("no demo test clip shows a face the default detector finds")
        _, stem, clip_bytes, frame_bytes = best
        dia, utt = stem.removeprefix("final_videos_test").removeprefix("dia").split("_utt")
        row = csv.filter((pl.col("Dialogue_ID") == int(dia)) & (pl.col("Utterance_ID") == int(utt)))
        text = str(row["Utterance"][0]) if len(row) else ""
        with zipfile.ZipFile(work / "IFEED_Base.zip") as zf:
            face = zf.read(next(n for n in sorted(zf.namelist()) if n.endswith(".jpg")))
    out.mkdir(parents=True, exist_ok=True)
    (out / "frame.jpg").write_bytes(frame_bytes)
    (out / "face.jpg").write_bytes(face)
    (out / "clip.mp4").write_bytes(clip_bytes)
    meta = {"frame": "frame.jpg", "face": "face.jpg", "clip": "clip.mp4", "clip_text": text,
            "made_by": "python -m crossemotion.serving.examples", "synth_seed": seed}  # fmt: skip
    (out / "examples.json").write_text(json.dumps(meta, indent=2) + "\n")
    return example_files(out)


if __name__ == "__main__":
    made = make_examples(Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES_DIR)
    print(json.dumps({k: str(v) for k, v in made.__dict__.items()}, indent=2))

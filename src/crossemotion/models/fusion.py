"""``fusion``: ResNet-50 face encoder + BERT-family text encoder + attention fusion.

Each modality becomes tokens projected to ``dim`` with a learned modality-type
embedding: the pooled text vector, optionally the text token sequence
(``text_tokens``), and one token per face crop (up to ``faces`` per utterance).
A small Transformer encoder attends over [CLS_fusion, text..., faces...] with a
key padding mask (missing faces and padding are masked) and the class comes
from the fusion CLS token — the model weighs the modalities per utterance
rather than concatenating them.

Training-time modality dropout (``modality_dropout``) hides all text or all
face tokens of a random share of utterances, so the fusion layer cannot lean
on the faster-learning modality alone. ``text_lr`` (default min(lr, 5e-5), see
``FusionConfig``)
keeps the pretrained text encoder on a gentler learning rate than the fresh
image encoder and fusion layer, via ``param_groups``; ``freeze_layers`` trains
only the text encoder's layers above that many, as in the text model (see
crossemotion.models.frozen_layers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from crossemotion.codec import pil_face_tensor
from crossemotion.datasets import text as text_data
from crossemotion.model_config import FusionInputConfig
from crossemotion.models.backbones import feature_extractor, pretrained_fallback
from crossemotion.models.registry import ModelSpec, ShardInputs, register
from crossemotion.models.text import TextEncoder, tokenizer_for

CLS_TYPE, TEXT_TYPE, FACE_TYPE = 0, 1, 2


@dataclass(frozen=True, kw_only=True)
class FusionConfig(FusionInputConfig):
    # the fresh image encoder and fusion layer's step; the text encoder's is ``text_lr``
    lr: float = 5e-4
    image_arch: str = "resnet50"
    dim: int = 256
    heads: int = 4
    layers: int = 1
    dropout: float = 0.1
    freeze_text: bool = False
    # attend over the text token sequence, not just its pooled vector
    text_tokens: bool = True
    modality_dropout: float = 0.3
    # None: min(lr, 5e-5)
    text_lr: float | None = None

    @property
    def text_learning_rate(self) -> float:
        return self.text_lr if self.text_lr is not None else min(self.lr, 5e-5)


class FusionModel(nn.Module):
    def __init__(self, cfg: FusionConfig, num_classes: int) -> None:
        super().__init__()
        dim = cfg.dim
        self.text = TextEncoder(
            cfg.encoder,
            pooling=cfg.pooling,
            freeze=cfg.freeze_text,
            fallback=pretrained_fallback(cfg),
            freeze_layers=cfg.freeze_layers,
        )
        # the same offline-only loader as the other vision models: never a download
        self.image, image_width = feature_extractor(
            cfg.image_arch, cfg.weights, pretrained_fallback(cfg)
        )
        self.text_tokens = cfg.text_tokens
        self.modality_dropout = cfg.modality_dropout
        self.text_proj = nn.Linear(self.text.width, dim)
        self.face_proj = nn.Linear(image_width, dim)
        self.types = nn.Embedding(3, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(
            dim,
            cfg.heads,
            dim_feedforward=2 * dim,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.fusion = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.text_lr = cfg.text_learning_rate

    def encode_faces(self, faces: Tensor, mask: Tensor) -> Tensor:
        """[B, K, 3, S, S] -> [B, K, D]; the backbone sees only present faces."""
        b, k = mask.shape
        flat = mask.reshape(-1)
        feats = faces.new_zeros(b * k, self.face_proj.in_features)
        if bool(flat.any()):
            feats[flat] = self.image(faces.reshape(b * k, *faces.shape[2:])[flat])
        return self.face_proj(feats).reshape(b, k, -1)

    def drop_modalities(self, text_keep: Tensor, face_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Hide one whole modality for a random share of utterances (train only)."""
        if not self.training or self.modality_dropout <= 0:
            return text_keep, face_mask
        has_face = face_mask.any(1)
        r = torch.rand(text_keep.shape[0], device=text_keep.device)
        drop_text = (r < self.modality_dropout / 2) & has_face
        drop_face = (r >= self.modality_dropout / 2) & (r < self.modality_dropout)
        return text_keep & ~drop_text, face_mask & ~drop_face.unsqueeze(1)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        hidden, pooled = self.text(batch)
        b = pooled.shape[0]
        face_mask = batch["face_mask"].bool()
        text_keep, face_mask = self.drop_modalities(
            torch.ones(b, dtype=torch.bool, device=pooled.device), face_mask
        )
        tokens = [self.text_proj(pooled).unsqueeze(1)]
        valid = [text_keep.unsqueeze(1)]
        kinds = [TEXT_TYPE]
        if self.text_tokens:
            tokens.append(self.text_proj(hidden))
            valid.append(batch["attention_mask"].bool() & text_keep.unsqueeze(1))
            kinds.extend([TEXT_TYPE] * hidden.shape[1])
        tokens.append(self.encode_faces(batch["faces"], batch["face_mask"].bool()))
        valid.append(face_mask)
        kinds.extend([FACE_TYPE] * face_mask.shape[1])
        seq = torch.cat([self.cls.expand(b, -1, -1), *tokens], dim=1)
        types = torch.tensor([CLS_TYPE, *kinds], device=seq.device)
        seq = seq + self.types(types).unsqueeze(0)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=seq.device), *valid], 1)
        fused = self.fusion(seq, src_key_padding_mask=~keep)
        return self.head(self.norm(fused[:, 0]))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Pretrained text encoder at ``text_lr``; everything else at ``lr``."""
        text = [p for p in self.text.parameters() if p.requires_grad]
        text_ids = {id(p) for p in self.text.parameters()}
        rest = [p for p in self.parameters() if id(p) not in text_ids and p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": rest, "lr": lr}]
        if text:
            groups.append({"params": text, "lr": self.text_lr})
        return groups


def make_datasets(cfg: FusionConfig, dataset: str, shards: ShardInputs) -> dict[str, Dataset]:
    if dataset != "meld":
        raise ValueError(f"the fusion model needs MELD utterances with faces, not {dataset!r}")
    tokenizer = tokenizer_for(cfg)
    return dict(text_data.fusion_datasets(cfg, shards.text, shards.faces, tokenizer))


def preprocess(
    texts: list[Any], images: list[list[Any]], cfg: FusionInputConfig
) -> dict[str, Tensor]:
    """Inference hook: utterances (or dialogue windows, see text_data.window_of) + their
    faces as JPEG bytes or RGB arrays (any count, may be empty)."""
    tokenizer = tokenizer_for(cfg)
    batch = text_data.preprocess_text(texts, cfg, tokenizer)
    k, size = cfg.faces, cfg.size
    faces = torch.zeros((len(texts), k, 3, size, size))
    mask = torch.zeros((len(texts), k), dtype=torch.bool)
    for i, crops in enumerate(images):
        for slot, j in enumerate(text_data.evenly_spaced(len(crops), k)):
            faces[i, slot] = pil_face_tensor(crops[j], size)
            mask[i, slot] = True
    batch["faces"], batch["face_mask"] = faces, mask
    return batch


def preprocess_units(units: list[Any], cfg: FusionInputConfig) -> dict[str, Tensor]:
    """The spec's hook: ``{"text", "images"}`` units (plus a dialogue window's keys), or a
    bare utterance without faces."""
    # a mapping unit is also the text's dialogue window (speaker, context, future)
    texts = [u if isinstance(u, Mapping) else str(u) for u in units]
    images = [list(u.get("images", [])) if isinstance(u, Mapping) else [] for u in units]
    return preprocess(texts, images, cfg)


SPEC = register(
    ModelSpec(
        name="fusion",
        config=FusionConfig,
        build=FusionModel,
        make_datasets=make_datasets,
        preprocess=preprocess_units,
        collate=text_data.collate_fusion,
    )
)

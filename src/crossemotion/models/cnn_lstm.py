"""``cnn_lstm``: a per-frame 2D CNN (torchvision backbone) + LSTM over the clip.

Every frame goes through the same backbone (classifier removed); the
sequence of frame features feeds a single-layer LSTM whose last hidden state
(concatenated with the mean frame feature, so a clip whose emotion shows in
one frame is not lost to the recurrence) goes through dropout and a linear
layer. Config: ``backbone`` (torchvision name), ``weights`` (torchvision
weights name or null), ``hidden``, ``frames``, ``size``, ``dropout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crossemotion.model_config import ClipConfig
from crossemotion.models.backbones import feature_extractor, pretrained_fallback
from crossemotion.models.registry import register
from crossemotion.models.vision import clip_spec


@dataclass(frozen=True, kw_only=True)
class CnnLstmConfig(ClipConfig):
    backbone: str = "resnet18"
    hidden: int = 256
    dropout: float = 0.3


class CNNLSTM(nn.Module):
    def __init__(self, cfg: CnnLstmConfig, num_classes: int) -> None:
        super().__init__()
        self.cnn, width = feature_extractor(cfg.backbone, cfg.weights, pretrained_fallback(cfg))
        self.lstm = nn.LSTM(width, cfg.hidden, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.hidden + width, num_classes)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        frames = batch["frames"]  # [B, T, 3, S, S]
        b, t = frames.shape[:2]
        feats = self.cnn(frames.flatten(0, 1)).reshape(b, t, -1)
        _, (h, _) = self.lstm(feats)
        return self.fc(self.dropout(torch.cat([h[-1], feats.mean(1)], dim=1)))


SPEC = register(clip_spec("cnn_lstm", CNNLSTM, CnnLstmConfig))

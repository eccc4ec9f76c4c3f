"""``c3d``: a compact 3D-CNN over the clip tensor (after Tran et al., 2015).

Blocks of Conv3d(3x3x3) - BatchNorm - ReLU - MaxPool; the first block pools
only in space so short clips (the demo's 8 frames) keep their time axis for
the deeper blocks; then global average pooling, dropout and a linear layer.
Config: ``channels`` (one block per entry), ``frames``, ``size``, ``dropout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from crossemotion.model_config import ClipConfig
from crossemotion.models.registry import register
from crossemotion.models.vision import clip_spec


def block(c_in: int, c_out: int, pool: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=pool, stride=pool),
    )


@dataclass(frozen=True, kw_only=True)
class C3DConfig(ClipConfig):
    # one block per entry
    channels: tuple[int, ...] = (64, 128, 256, 256)
    dropout: float = 0.5


class C3D(nn.Module):
    def __init__(self, cfg: C3DConfig, num_classes: int) -> None:
        super().__init__()
        channels = [int(c) for c in cfg.channels]
        if not channels:
            raise ValueError("c3d needs at least one entry in `channels`")
        layers, c_in = [], 3
        t, s = cfg.frames, cfg.size
        for i, c_out in enumerate(channels):
            # pool an axis only while it is at least 2 long, so any depth fits
            pool_t = 2 if i > 0 and t >= 2 else 1
            pool_s = 2 if s >= 2 else 1
            layers.append(block(c_in, c_out, (pool_t, pool_s, pool_s)))
            t, s, c_in = t // pool_t, s // pool_s, c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        x = batch["frames"].transpose(1, 2)  # [B, T, C, H, W] -> [B, C, T, H, W]
        x = self.features(x)
        return self.fc(self.dropout(self.pool(x).flatten(1)))


SPEC = register(clip_spec("c3d", C3D, C3DConfig))

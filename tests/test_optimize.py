"""optimize_for_inference keeps a model's outputs while changing how it runs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from crossemotion.optimize import optimize_for_inference


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.conv3d = nn.Conv3d(3, 4, 3)
        self.fc = nn.Linear(12, 7)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        frames = batch["frames"]  # [B, T, 3, H, W]
        a = self.bn(self.conv(frames.flatten(0, 1))).mean((1, 2, 3)).view(frames.shape[0], -1)
        b = self.conv3d(frames.transpose(1, 2)).mean((2, 3, 4))
        return self.fc(torch.cat([a[:, :8], b], 1))


@pytest.mark.parametrize("mode", ["none", "channels_last", "jit"])
def test_modes_match_fp32(mode: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ref = Tiny().eval()
    batch = {"frames": torch.randn(2, 8, 3, 16, 16), "label": torch.zeros(2, dtype=torch.long)}
    opt = optimize_for_inference(copy.deepcopy(ref), batch, mode)
    with torch.inference_mode():
        want = ref(batch)
        got = opt(batch)
        other = {"frames": torch.randn(1, 8, 3, 16, 16)}
        assert opt(other).shape == (1, 7)
    assert torch.allclose(want, got, atol=1e-4), (want - got).abs().max()


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown optimize mode"):
        optimize_for_inference(Tiny(), {}, "fast")


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("cnn_lstm", {"backbone": "resnet18", "weights": None, "hidden": 16, "frames": 4}),
        ("c3d", {"channels": [8, 16], "frames": 4}),
    ],
)
def test_int8_quantizes_the_backbone_and_stays_close(name: str, cfg: dict) -> None:
    from crossemotion.models.registry import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    ref = build_model(name, {**cfg, "size": 32}, 7).eval()
    calib = [{"frames": torch.randn(2, 4, 3, 32, 32)} for _ in range(4)]
    opt = optimize_for_inference(copy.deepcopy(ref), calib[0], "int8", calibration=calib)
    backbone = opt.cnn if name == "cnn_lstm" else opt.features
    kinds = {type(m).__module__ for m in backbone.modules()}
    assert any("quantized" in k for k in kinds), kinds
    with torch.inference_mode():
        for batch in [*calib[:2], {"frames": torch.randn(1, 4, 3, 32, 32)}]:
            want, got = ref(batch), opt(batch)
            assert got.shape == want.shape
            # 8-bit activations: close to fp32, not equal
            assert float((got - want).norm() / want.norm()) < 0.15
            assert not torch.equal(got, want)

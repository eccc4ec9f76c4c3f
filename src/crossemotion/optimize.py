"""Inference speed-ups for the vision models, behind one switch.

``optimize_for_inference(model, example, mode)`` returns a module with the
same ``forward(batch) -> logits`` interface. Modes:

* ``none``: the model in eval mode, unchanged (plain fp32 eager).
* ``channels_last``: 4-D weights and inputs in NHWC, which oneDNN's
  convolutions prefer on CPU.
* ``jit``: ``channels_last`` plus ``torch.jit.trace`` on the example batch,
  ``torch.jit.freeze`` (weights become constants, conv+BN folded) and
  ``torch.jit.optimize_for_inference``; shapes other than the example's still
  run, only the example's are pre-optimised.
* ``bf16``: ``channels_last`` plus bfloat16 autocast; only worth it on CPUs
  with native BF16 (AVX-512 BF16 / AMX), see ``has_native_bf16``; elsewhere it
  is emulated and slower, so ``auto`` never picks it there.
* ``int8``: post-training static quantization (PyTorch FX, x86 backend) of
  the convolutional backbone (``cnn`` of cnn_lstm, ``backbone`` of the face
  model, ``features`` of c3d); heads, LSTM and fusion stay fp32. Activation
  ranges come from calibration batches (``calibration``; the example batch
  when none are given: enough for a timing, not for accuracy). Int8
  convolutions run on AVX2 (VNNI where present), so this is the CPU speed-up
  for machines without BF16; it changes outputs, so bench/inference.py checks
  demo-test accuracy against fp32.
* ``auto``: ``bf16`` where the CPU has native BF16, else ``jit``.

Callers run the returned module under ``torch.inference_mode()``. The model's
parameters are converted in place (deep-copy it first to keep an fp32 original).
bench/inference.py measures every mode side by side and compares outputs
with fp32 eager (agreement of argmax and max probability difference).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

MODES = ("none", "channels_last", "jit", "bf16", "int8", "auto")
# conv backbones by attribute name: cnn_lstm, resnet50, c3d (fusion is not covered)
QUANT_BACKBONES = ("cnn", "backbone", "features")


def has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _channels_last(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v.contiguous(memory_format=torch.channels_last)
        if isinstance(v, Tensor) and v.dim() == 4 and v.is_floating_point()
        else v
        for k, v in batch.items()
    }


class _Wrapped(nn.Module):
    """forward(batch) with the inputs laid out / cast the way the inner model wants."""

    def __init__(self, inner: nn.Module, bf16: bool = False, traced: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.bf16 = bf16
        self.traced = traced

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        batch = _channels_last(batch)
        if self.traced:
            # the traced graph takes only the tensors it was traced with
            batch = {k: v for k, v in batch.items() if isinstance(v, Tensor) and k != "label"}
        if self.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(batch).float()
        return self.inner(batch)


def _to_channels_last(model: nn.Module) -> nn.Module:
    """NHWC for 4-D weights, NDHWC for 5-D (3-D convolutions); the rest unchanged."""
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
            elif param.dim() == 5:
                param.data = param.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _inputs(example: Mapping[str, Any]) -> dict[str, Tensor]:
    return {k: v for k, v in example.items() if isinstance(v, Tensor) and k != "label"}


def quantize_int8(model: nn.Module, calibration: Iterable[Mapping[str, Any]]) -> nn.Module:
    """Static int8 quantization of the model's conv backbone, calibrated on ``calibration``."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    names = [n for n in QUANT_BACKBONES if isinstance(getattr(model, n, None), nn.Module)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no conv backbone {QUANT_BACKBONES}")
    name = names[0]
    backbone = getattr(model, name)
    # the backbone's own inputs (frames flattened, clip tensors, ...) from a hook
    seen: list[Tensor] = []
    hook = backbone.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            for batch in calibration:
                model(batch)
    finally:
        hook.remove()
    if not seen:
        raise ValueError("int8 needs at least one calibration batch")
    torch.backends.quantized.engine = "x86"
    with torch.no_grad():
        prepared = prepare_fx(backbone, get_default_qconfig_mapping("x86"), (seen[0],))
        for inputs in seen:
            prepared(inputs)
        setattr(model, name, convert_fx(prepared))
    return model


def optimize_for_inference(
    model: nn.Module,
    example: Mapping[str, Any],
    mode: str = "auto",
    calibration: Iterable[Mapping[str, Any]] | None = None,
) -> nn.Module:
    """``model`` prepared for CPU inference in ``mode``; ``example`` is one input batch."""
    if mode not in MODES:
        raise ValueError(f"unknown optimize mode {mode!r}; choose from {MODES}")
    model = model.eval()
    if mode == "auto":
        mode = "bf16" if has_native_bf16() else "jit"
    if mode == "none":
        return model
    if mode == "int8":
        return quantize_int8(model, calibration if calibration is not None else [example])
    model = _to_channels_last(model)
    if mode == "channels_last":
        return _Wrapped(model)
    if mode == "bf16":
        return _Wrapped(model, bf16=True)
    inputs = _channels_last(_inputs(example))
    try:
        with torch.no_grad():
            traced = torch.jit.trace(model, (inputs,), strict=False, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except Exception as err:  # a model the tracer cannot follow still runs eager
        log.warning("jit trace failed (%s: %s); using channels_last eager", type(err).__name__, err)
        return _Wrapped(model)
    return _Wrapped(frozen, traced=True)  # type: ignore[arg-type]

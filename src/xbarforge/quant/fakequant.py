"""Fake quantization for mixed-precision policies: weights per output channel, layer inputs per layer.

A weight row (output channel) c with b_c bits is quantized symmetrically,
``scale_c = clip_c / (2**(b_c - 1) - 1)``, ``q = clamp(round(w / scale_c), +-(2**(b_c - 1) - 1)) * scale_c``.
Per-channel scales are what a crossbar gives for free: each output channel is its own column (or
columns), whose read-out is scaled digitally after the ADC, so every channel may have its own step,
and in a RaQu policy its own bit width, at no hardware cost.

The clip is max|w_c| ("max") or the ratio of it, from `CLIP_RATIOS`, that minimizes the channel's
squared quantization error ("mse"). Batch norm needs no care here: folding it multiplies each
channel by one factor, and per-channel quantization commutes with that (the grid scales along), so
quantizing the unfolded or the folded weights gives the same chip.

Inputs of quantized layers are fake-quantized by a forward pre-hook (`InputQuant`) to
`activation_bits` over a range calibrated once (`calibrate_inputs`): the largest |x| seen, unsigned
when no calibration input was negative (post-ReLU), sign-magnitude with one bit less otherwise, as
`xbarforge.sim.calibrate` does for the chip. Unlike `xbarforge.sim.hwa`'s running maximum the range
stays fixed, so a fine-tuning run that resumes from a checkpoint sees the same quantizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from xbarforge.errors import XbarforgeError
from xbarforge.sim.hwa import RoundSTE

__all__ = [
    "CLIP_RATIOS",
    "DEFAULT_CLIP",
    "ChannelQuant",
    "ClipMethod",
    "InputQuant",
    "attach",
    "attach_inputs",
    "calibrate_inputs",
    "channel_clip",
    "check_bits",
    "detach",
    "input_quantizers",
    "quant_layers",
    "quantize_weight",
]

ClipMethod = Literal["max", "mse"]
# Measured on ResNet-20 (runs/r20, 84.2 % float on 2000 val images, seed 0; inputs at 8 bits), uniform
# weight bits 8/6/4/3/2: max clip 84.3/84.25/83.4/76.75/11.25 %; MSE clip over ratios 1.0..0.8
# 84.3/83.9/83.1/81.05/17.2 % (on a second draw of 2000 images, seed 1, at 4/3 bits: max 84.7/78.75,
# MSE 84.8/81.35). An unbounded grid (down to 0.2) was worse than max at 3 bits (70.75 %): the
# weight-MSE optimum clips the few large weights that matter most for the output, so the search
# stays within 0.8..1.0 of the maximum, where it gains 2.5-4 points at 3 bits and is within 0.4 at 4+.
DEFAULT_CLIP: ClipMethod = "mse"
# ratios of max|w_c| the MSE search tries; 1.0 first, so ties keep the max clip
CLIP_RATIOS: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8)

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_INPUT_ATTR = "_xbarforge_quant_input"


def _qmax(bits: torch.Tensor) -> torch.Tensor:
    return torch.pow(2.0, bits.to(torch.float32) - 1) - 1


def _bits_tensor(bits: int | Sequence[int] | np.ndarray | torch.Tensor, channels: int,
                 device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(bits, dtype=np.int64), device=device)
    if t.ndim == 0:
        t = t.expand(channels)
    if t.shape != (channels,):
        raise XbarforgeError(f"bits: expected one width per output channel ({channels}), got shape {tuple(t.shape)}")
    if int(t.min()) < 2:
        raise XbarforgeError(f"bits: symmetric quantization needs at least 2 bits, got {int(t.min())}")
    return t


def channel_clip(flat: torch.Tensor, qmax: torch.Tensor, method: ClipMethod = DEFAULT_CLIP) -> torch.Tensor:
    """Clip of every row of `flat` (C, K) at its level count `qmax` (C,): max|w| or the MSE-best ratio of it."""
    top = flat.abs().amax(1).clamp_min(1e-12)
    if method == "max":
        return top
    if method != "mse":
        raise XbarforgeError(f"unknown clip method '{method}': choose max or mse")
    qm = qmax.to(flat.dtype)[:, None]
    best = top.clone()
    best_err = torch.full_like(top, float("inf"))
    for ratio in CLIP_RATIOS:  # one pass per ratio over all channels (memory stays one weight copy)
        clip = top * ratio
        scale = (clip / qm[:, 0])[:, None]
        err = (torch.clamp(torch.round(flat / scale), -qm, qm) * scale - flat).square_().sum(1)
        better = err < best_err
        best = torch.where(better, clip, best)
        best_err = torch.where(better, err, best_err)
    return best


def quantize_weight(w: torch.Tensor, bits: int | Sequence[int] | np.ndarray | torch.Tensor,
                    clip: ClipMethod = DEFAULT_CLIP) -> torch.Tensor:
    """`w` (C_out, ...) quantized per output channel, channel c to bits[c] (or one int for all); no gradient."""
    with torch.no_grad():
        b = _bits_tensor(bits, w.shape[0], w.device)
        flat = w.detach().reshape(w.shape[0], -1)
        qmax = _qmax(b).to(w.dtype)
        scale = channel_clip(flat, qmax, clip) / qmax
        qm = qmax[:, None]
        q = torch.clamp(torch.round(flat / scale[:, None]), -qm, qm) * scale[:, None]
        return q.reshape(w.shape)


class ChannelQuant(nn.Module):
    """Parametrization for quantization-aware training: weight -> per-channel quantized weight.

    Rounding is straight-through (`RoundSTE`), so gradients reach the float weights; the clip is
    recomputed from the current weights every step (detached, as in `xbarforge.sim.hwa`). The bits
    are a non-persistent buffer: the parametrized state_dict holds only `...original`.
    """

    def __init__(self, bits: Sequence[int] | np.ndarray, clip: ClipMethod = DEFAULT_CLIP) -> None:
        super().__init__()
        b = _bits_tensor(bits, len(bits), torch.device("cpu"))
        self.register_buffer("qmax", _qmax(b), persistent=False)
        self.clip = clip

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        qmax = self.qmax.to(w.dtype)
        shape = (-1,) + (1,) * (w.ndim - 1)
        scale = (channel_clip(w.detach().reshape(w.shape[0], -1), qmax, self.clip) / qmax).view(shape)
        qm = qmax.view(shape)
        q = torch.clamp(RoundSTE.apply(w / scale), -qm, qm)
        return q * scale


class InputQuant:
    """Forward pre-hook: fake-quantize a layer's input to `bits` over a calibrated, then fixed, range.

    While `calibrating`, it records the largest |x| and whether any x < 0 and passes x unchanged;
    `enabled` False also passes x unchanged (float inputs).
    """

    def __init__(self, bits: int) -> None:
        if bits < 2:
            raise XbarforgeError(f"activation_bits must be at least 2, got {bits}")
        self.bits = int(bits)
        self.top: float | None = None
        self.signed = False
        self.calibrating = False
        self.enabled = True
        self.name = ""

    def reset(self) -> None:
        self.top, self.signed = None, False

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        x = args[0]
        if self.calibrating:
            d = x.detach()
            self.top = max(self.top or 0.0, float(d.abs().max()))
            self.signed = self.signed or bool((d < 0).any())
            return None
        if not self.enabled:
            return None
        if self.top is None:
            raise XbarforgeError(f"input quantizer of layer '{self.name}' is not calibrated (run calibrate_inputs)")
        levels = 2 ** (self.bits - (1 if self.signed else 0)) - 1
        scale = self.top / levels if self.top > 0 else 1.0
        lo = -levels if self.signed else 0
        if torch.is_grad_enabled() and x.requires_grad:
            xq = RoundSTE.apply(x / scale).clamp(lo, levels) * scale
        else:
            xq = torch.round(x * (1.0 / scale)).clamp_(lo, levels).mul_(scale)
        return (xq, *args[1:])


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv/linear modules a policy can name, by their `named_modules` name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LAYERS)}


def check_bits(model: nn.Module, bits: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`bits` checked against `model` (names, one width >= 2 per output channel) as int64 arrays."""
    layers = quant_layers(model)
    out: dict[str, np.ndarray] = {}
    for name, value in bits.items():
        module = layers.get(name)
        if module is None:
            raise XbarforgeError(f"bits name layer '{name}', which is not a conv/linear layer of the model")
        arr = np.asarray(value, dtype=np.int64).reshape(-1)
        channels = int(module.weight.shape[0])
        if arr.shape != (channels,):
            raise XbarforgeError(f"bits of layer '{name}': {arr.size} widths for {channels} output channels")
        if arr.size and int(arr.min()) < 2:
            raise XbarforgeError(f"bits of layer '{name}': symmetric quantization needs at least 2 bits")
        out[name] = arr
    return out


def attach_inputs(model: nn.Module, names: Iterable[str], bits: int) -> dict[str, InputQuant]:
    """Register an (uncalibrated) `InputQuant` on each named layer; returns them by name."""
    layers = quant_layers(model)
    out: dict[str, InputQuant] = {}
    for name in names:
        module = layers[name]
        if getattr(module, _INPUT_ATTR, None) is not None:
            raise XbarforgeError(f"layer '{name}' already has an input quantizer")
        quant = InputQuant(bits)
        quant.name = name
        setattr(module, _INPUT_ATTR, (quant, module.register_forward_pre_hook(quant)))
        out[name] = quant
    return out


def input_quantizers(model: nn.Module) -> dict[str, InputQuant]:
    """The input quantizers attached to `model`'s layers, by layer name."""
    return {name: state[0] for name, m in model.named_modules()
            if (state := getattr(m, _INPUT_ATTR, None)) is not None}


def calibrate_inputs(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> dict[str, tuple[float, bool]]:
    """Fix every input quantizer's range from `x` (forward in eval mode); returns {layer: (top, signed)}.

    Runs with whatever weights the model has now (float, or quantized under `attach`).
    """
    quants = input_quantizers(model)
    if not quants:
        return {}
    if len(x) == 0:
        raise XbarforgeError("calibration needs at least one input")
    dev = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    for q in quants.values():
        q.reset()
        q.calibrating = True
    try:
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size].to(dev))
    finally:
        for q in quants.values():
            q.calibrating = False
        model.train(was_training)
    return {name: (float(q.top or 0.0), q.signed) for name, q in quants.items()}


def attach(model: nn.Module, bits: Mapping[str, np.ndarray], *, activation_bits: int | None = None,
           clip: ClipMethod = DEFAULT_CLIP) -> nn.Module:
    """Parametrize the layers named in `bits` in place (`ChannelQuant`) and, with `activation_bits`,
    hook an input quantizer on each (calibrate them with `calibrate_inputs`); returns `model`."""
    checked = check_bits(model, bits)
    layers = quant_layers(model)
    for name, b in checked.items():
        module = layers[name]
        if parametrize.is_parametrized(module, "weight"):
            raise XbarforgeError(f"layer '{name}' is already parametrized (hardware-aware training?)")
        quant = ChannelQuant(b, clip).to(module.weight.device)
        parametrize.register_parametrization(module, "weight", quant)
    if activation_bits is not None:
        attach_inputs(model, checked, activation_bits)
    return model


def detach(model: nn.Module, bake: bool) -> nn.Module:
    """Undo `attach` in place. `bake`: the quantized weights stay in the plain model; else the float ones."""
    for module in model.modules():
        if isinstance(module, LAYERS) and parametrize.is_parametrized(module, "weight"):
            if any(isinstance(p, ChannelQuant) for p in module.parametrizations.weight):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=bake)
        state = getattr(module, _INPUT_ATTR, None)
        if state is not None:
            state[1].remove()
            delattr(module, _INPUT_ATTR)
    return model

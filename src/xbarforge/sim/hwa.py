"""Hardware-aware training: the chip's quantization and noise in the forward pass.

`hardware_aware(model, hw)` parametrizes every conv/linear weight in place so that, in training
mode, the forward pass sees what the chip would hold: the weight quantized to `weight_bits`
(straight-through estimator: gradients pass the rounding unchanged) plus Gaussian noise whose
standard deviation is, per weight, what programming variation and read noise give on *its own*
cells. The weight's bit slices (and polarity or offset columns) each carry a relative error of
the cell's conductance, off-state current included, so the decoded weight's sigma is
``s_w * sqrt(sigma**2 * sum_j coef_j**2 * (L_j + eps)**2)`` (plus the reference column under offset
encoding), computed from the current integer weight. Inputs of these layers are fake-quantized to
`activation_bits` with a running maximum. In eval mode only quantization applies.

Batch norms stay digital and unfolded during training (their statistics still move); the chip
later holds the folded weights. `remove_hardware_aware(model)` leaves the plain trained model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from xbarforge.compiler.execute import encode, slice_coefficients
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim.device import off_level

__all__ = ["ChipWeight", "RoundSTE", "hardware_aware", "remove_hardware_aware"]

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_HOOK_ATTR = "_xbarforge_input_hook"


class RoundSTE(torch.autograd.Function):
    """round() forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


class ChipWeight(nn.Module):
    """Parametrization: weight -> quantized weight (+ the chip's per-weight noise when training)."""

    def __init__(self, hw: HardwareSpec, noise_scale: float = 1.0) -> None:
        super().__init__()
        self.hw = hw
        self.qmax = 2 ** (hw.precision.weight_bits - 1) - 1
        self.sigma = noise_scale * (hw.nonideal.variation**2 + hw.nonideal.read_noise**2) ** 0.5
        coef = slice_coefficients(hw).to(torch.float32)
        self.register_buffer("coef_sq", coef * coef, persistent=False)
        self.eps = off_level(hw)
        self.offset = float(2 ** (hw.precision.weight_bits - 1)) if hw.crossbar.encoding == "offset" else 0.0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.detach().abs().max().clamp_min(1e-12) / self.qmax
        q = RoundSTE.apply(w / scale).clamp(-self.qmax, self.qmax)
        wq = q * scale
        if not (self.training and self.sigma > 0):
            return wq
        with torch.no_grad():
            levels = encode(q.detach().to(torch.int64), self.hw).to(w.dtype).abs() + self.eps
            var = (levels * levels) @ self.coef_sq.to(w.dtype)
            if self.offset:
                var = var + self.offset**2 * (1 + self.eps) ** 2
            std = scale * self.sigma * var.sqrt()
        return wq + std * torch.randn_like(wq)


def _input_hook(bits: int, momentum: float = 0.1):  # noqa: ANN202  (a torch hook)
    """Fake-quantize a layer's input with a running maximum of |x| (kept in the hook, not in the
    module's state_dict, so the trained model file stays a plain model)."""
    state: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = args[0]
        top = x.detach().abs().max()
        run = state.get("max")
        if run is None or run.device != x.device:
            run = state["max"] = top.clone()
        elif module.training:
            run.mul_(1 - momentum).add_(momentum * top)
        signed = bool((x.detach() < 0).any())
        levels = 2 ** (bits - (1 if signed else 0)) - 1
        scale = run.clamp_min(1e-12) / levels
        xq = RoundSTE.apply(x / scale).clamp(-levels if signed else 0, levels) * scale
        return (xq, *args[1:])

    return hook


def hardware_aware(model: nn.Module, hw: HardwareSpec, noise_scale: float = 1.0) -> nn.Module:
    """Parametrize `model`'s conv/linear layers in place for hardware-aware training; returns it.

    `noise_scale` multiplies the chip's sigma (training at a little more noise than the chip has is
    a common margin).
    """
    for module in model.modules():
        if isinstance(module, _LAYERS) and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", ChipWeight(hw, noise_scale))
            if hw.nonideal.quantize_inputs:
                setattr(module, _HOOK_ATTR, module.register_forward_pre_hook(_input_hook(hw.precision.activation_bits)))
    return model


def remove_hardware_aware(model: nn.Module) -> nn.Module:
    """Undo `hardware_aware` in place: the trained float weights stay, the chip model goes."""
    for module in model.modules():
        if isinstance(module, _LAYERS) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        handle = getattr(module, _HOOK_ATTR, None)
        if handle is not None:
            handle.remove()
            delattr(module, _HOOK_ATTR)
    return model

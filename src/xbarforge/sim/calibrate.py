"""Calibration: the scales a deployed chip fixes once, from a few inputs.

* Input quantization per layer: the largest |activation| seen maps to the top integer; a layer
  whose input goes negative gets sign-magnitude inputs (one bit less magnitude, two passes).
* ADC ranges per row tile and column (`adc_range: column`), per row tile and crossbar
  (`crossbar`), or the fixed-point full scale (`full_scale`: the power-of-two step that covers the
  largest column sum the cells could produce, so enough ADC bits make conversion lossless).

Calibrated ranges come from the nominal (ideal-device) cells, as a chip would be calibrated
against its design values; they are shared by all chip instances.
"""

from __future__ import annotations

import math

import torch

from xbarforge.compiler.execute import unfold_input
from xbarforge.sim.analog import AnalogLayer, InputQuant, _digits, quantize_input

__all__ = ["MAX_CALIBRATION_READS", "adc_calibration", "input_quant"]

MAX_CALIBRATION_READS = 1 << 16  # (cycle x pixel) reads per layer used to set ADC ranges


def input_quant(top: float, signed: bool, activation_bits: int) -> InputQuant:
    """A layer's input quantizer from the largest |activation| calibration saw and whether any was negative."""
    levels = 2 ** (activation_bits - (1 if signed else 0)) - 1
    return InputQuant(scale=top / levels if top > 0 else 1.0, signed=signed, levels=levels)


def _tile_max_sum(layer: AnalogLayer, r0: int, r1: int) -> torch.Tensor:
    """(G, Cp[+1]) largest read each column could give: every row driven at its top digit."""
    d = layer.dac_bits
    assert layer.input is not None
    top_digit = (2**d - 1) if d else layer.input.levels
    return top_digit * layer.nominal[:, r0:r1].abs().sum(1)


def adc_calibration(layer: AnalogLayer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ADC step and the rounding error it makes, per (row tile, G, Cp[+1]), from calibration input `x`.

    The step is in level units. The error is the shift-add-weighted mean squared conversion error
    per output read, ``sum_passes sum_t 4**(t d) E[(ADC(v) - v)**2]`` over the calibration reads:
    fast mode adds it as noise, so sparse inputs (reads that are exactly 0), the dead zone of a
    coarse ADC and saturation are counted as they occur, not as uniform rounding noise.
    """
    ni, prec = layer.hw.nonideal, layer.hw.precision
    bipolar = layer.bipolar
    bits = prec.adc_bits - (1 if bipolar else 0)
    codes = 2**bits - 1
    reads = _calibration_reads(layer, x)  # per row tile: (G, passes * T * n, Cp[+1])
    steps = []
    for (r0, r1), r in zip(layer.layout.row_tiles, reads, strict=True):
        if ni.adc_range == "full_scale":
            needed = math.ceil(math.log2(float(_tile_max_sum(layer, r0, r1).max()) + 1))
            top = torch.full(r.shape[::2], 2.0 ** max(0, needed - bits) * codes, device=r.device)
        elif ni.adc_percentile >= 100:
            top = r.abs().amax(1)
        else:
            top = torch.quantile(r.abs().transpose(1, 2), ni.adc_percentile / 100, dim=-1)
        if ni.adc_range == "crossbar":  # one range per crossbar (column tile); the reference column keeps its own
            cuts = layer.layout.col_cuts
            for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True):
                top[:, c0:c1] = top[:, c0:c1].amax(1, keepdim=True)
        steps.append(torch.where(top > 0, top / codes, torch.ones_like(top)))
    step = torch.stack(steps)
    t_cycles, d = layer.cycles, layer.dac_bits
    weights = torch.tensor([4.0 ** (t * d) for t in range(t_cycles)], device=step.device).view(1, 1, t_cycles, 1)
    errors = []
    for ti, r in enumerate(reads):
        s = step[ti].unsqueeze(1)
        conv = (r / s).round_().clamp_(-codes - 1 if bipolar else 0, codes) * s
        e2 = (conv - r).pow_(2)
        g, _, cols = e2.shape
        e2 = e2.view(g, -1, t_cycles, e2.shape[1] // max(1, t_cycles) // max(1, _passes(layer)), cols)
        errors.append((e2.mean(3) * weights).sum((1, 2)))  # (G, Cp[+1]) per pixel
    return step, torch.stack(errors)


def _passes(layer: AnalogLayer) -> int:
    assert layer.input is not None
    return 2 if layer.input.signed else 1


def _calibration_reads(layer: AnalogLayer, x: torch.Tensor) -> list[torch.Tensor]:
    """Nominal column reads (before the ADC) of `x` for each row tile, at most MAX_CALIBRATION_READS."""
    assert layer.input is not None
    xi = quantize_input(x, layer.input, layer.hw.nonideal.quantize_inputs)
    xg, _ = unfold_input(layer.layer, xi)
    parts = [xg.clamp(min=0), (-xg).clamp(min=0)] if layer.input.signed else [xg]
    t_cycles = layer.cycles
    keep = max(1, MAX_CALIBRATION_READS // (t_cycles * len(parts)))
    if xg.shape[1] > keep:
        idx = torch.randperm(xg.shape[1], generator=torch.Generator().manual_seed(0))[:keep]
        parts = [p[:, idx] for p in parts]
    out = []
    for r0, r1 in layer.layout.row_tiles:
        reads = []
        for p in parts:
            d = _digits(p, layer.dac_bits, t_cycles) if layer.dac_bits else p.unsqueeze(1)
            g = d.shape[0]
            reads.append(d[..., r0:r1].reshape(g, -1, r1 - r0) @ layer.nominal[:, r0:r1])
        out.append(torch.cat(reads, dim=1))
    return out

"""Calibration: the scales a deployed chip fixes once, from a few inputs.

* Input quantization per layer: the largest |activation| seen maps to the top integer; a layer
  whose input goes negative gets sign-magnitude inputs (one bit less magnitude, two passes).
* ADC ranges per row tile and column (`adc_range: column`), per row tile and crossbar
  (`crossbar`), or the fixed-point full scale (`full_scale`: the power-of-two step that covers the
  largest column sum the cells could produce, so enough ADC bits make conversion lossless).

Calibrated ranges come from the nominal (ideal-device) cells, as a chip would be calibrated
against its design values; they are shared by all chip instances.

Speed: the calibration reads (up to MAX_CALIBRATION_READS bit-serial reads of every column of every
row tile: 1.25 billion values for ResNet-20 on `isaac`) are most of a simulator's set-up time. So
the digits are built once per layer, reads whose digits are all zero in a row tile are skipped
(they read exactly 0: they raise no range and make no conversion error, they only count in the
mean), and each pass over a row tile's reads (the range, then the conversion error) recomputes
them chunk by chunk into one reused buffer (`_TileReads`) rather than holding them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from xbarforge.compiler.execute import unfold_input
from xbarforge.sim.analog import AnalogLayer, InputQuant, live_reads, quantize_input, read_digits

__all__ = ["MAX_CALIBRATION_READS", "ReadBuffer", "adc_calibration", "input_quant"]

MAX_CALIBRATION_READS = 1 << 16  # (cycle x pixel) reads per layer used to set ADC ranges
_CHUNK = 1 << 22  # read values per chunk (see _TileReads)


def input_quant(top: float, signed: bool, activation_bits: int) -> InputQuant:
    """A layer's input quantizer from the largest |activation| calibration saw and whether any was negative."""
    levels = 2 ** (activation_bits - (1 if signed else 0)) - 1
    return InputQuant(scale=top / levels if top > 0 else 1.0, signed=signed, levels=levels)


def adc_calibration(layer: AnalogLayer, x: torch.Tensor, buffer: ReadBuffer | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """ADC step and the rounding error it makes, per (row tile, G, Cp[+1]), from calibration input `x`.

    The step is in level units. The error is the shift-add-weighted mean squared conversion error
    per output read, ``sum_passes sum_t 4**(t d) E[(ADC(v) - v)**2]`` over the calibration reads:
    fast mode adds it as noise, so sparse inputs (reads that are exactly 0), the dead zone of a
    coarse ADC and saturation are counted as they occur, not as uniform rounding noise.
    """
    ni = layer.hw.nonideal
    bits = layer.hw.precision.adc_bits - (1 if layer.bipolar else 0)
    codes = 2**bits - 1
    drive = _calibration_drive(layer, x)
    quantile = ni.adc_range != "full_scale" and ni.adc_percentile < 100  # needs every read at once
    # a range set by the largest read leaves no read above the top code, so no clamp is needed
    clamp = (-codes - 1 if layer.bipolar else 0, codes) if quantile or ni.adc_range == "full_scale" else None
    steps, errors = [], []
    for r0, r1 in layer.layout.row_tiles:
        digits, weights = drive.digits(layer, r0, r1, keep_zeros=quantile)
        reads = _TileReads(digits, layer.nominal[:, r0:r1], buffer or ReadBuffer(), whole=quantile)
        top = _range_top(layer, reads, r0, r1, bits)
        step = torch.where(top > 0, top / codes, torch.ones_like(top))
        errors.append(_squared_error_sum(reads, weights, step, clamp) / drive.per_cycle)
        steps.append(step)
    return torch.stack(steps), torch.stack(errors)


class _TileReads:
    """The nominal reads (G, n, Cp[+1]) of one row tile, computed chunk by chunk.

    A tile's reads reach 34 MB (65,536 reads of 129 columns). Each pass over them (the range, then
    the conversion error) recomputes its chunk into one reused buffer (a 32- to 128-row product
    costs about as much as storing and reloading it), so memory stays at one chunk. Chunks are
    large (16 MB): every torch call pays a fixed cost to wake its threads, which with
    OMP_WAIT_POLICY=PASSIVE made 1 MB chunks three times slower. `whole` computes all reads in
    one chunk (a percentile needs them together).
    """

    def __init__(self, digits: torch.Tensor, cells: torch.Tensor, buffer: ReadBuffer, whole: bool) -> None:
        self.digits, self.cells, self.buffer = digits, cells, buffer
        g, self.n, cols = cells.shape[0], digits.shape[1], cells.shape[-1]
        self.shape = (g, self.n, cols)
        self.per = self.n if whole else max(1, min(self.n, _CHUNK // max(1, g * cols)))

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(first read, reads) per chunk; the chunk's memory is reused by the next one."""
        g, _, cols = self.shape
        for a in range(0, self.n, self.per):
            b = min(self.n, a + self.per)
            out = self.buffer.take((g, b - a, cols), self.cells.device)
            yield a, torch.bmm(self.digits[:, a:b], self.cells, out=out)


class ReadBuffer:
    """Memory for calibration reads, reused by every chunk, row tile and layer of a calibration
    (fresh memory costs a page fault per 4 KB, about as much as the product that fills it)."""

    def __init__(self) -> None:
        self._data: torch.Tensor | None = None

    def take(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        n = math.prod(shape)
        if self._data is None or self._data.numel() < n or self._data.device != device:
            self._data = torch.empty(n, device=device)
        return self._data[:n].view(shape)


@dataclass(frozen=True)
class _Drive:
    """The inputs of the calibration reads of one layer.

    `inputs` (G, pixels, R): input magnitudes, int32 when bit-serial (each pass of a signed input
    is its own set of pixels), else the analog inputs. `cycle_weights` (T,): the shift-add weight
    4**(t d) of a cycle's squared conversion error. `per_cycle`: reads per (pass, cycle), the
    denominator of the mean error.
    """

    inputs: torch.Tensor
    cycle_weights: torch.Tensor
    per_cycle: int

    def digits(self, layer: AnalogLayer, r0: int, r1: int, keep_zeros: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, reads, r1 - r0) digits of the reads of row tile [r0, r1) and each read's error weight.

        Reads that drive no row of the tile are left out unless `keep_zeros` (a percentile counts them).
        """
        x = self.inputs[..., r0:r1]
        t_cycles, d = layer.cycles, layer.dac_bits
        reads = None if keep_zeros else live_reads(x, d, t_cycles)
        weights = self.cycle_weights.repeat_interleave(x.shape[1])
        return read_digits(x, d, t_cycles, reads), weights if reads is None else weights.index_select(0, reads)


def _calibration_drive(layer: AnalogLayer, x: torch.Tensor) -> _Drive:
    """The inputs of at most MAX_CALIBRATION_READS reads of `x` (the same pixels, seed 0, as always)."""
    assert layer.input is not None
    xi = quantize_input(x, layer.input, layer.hw.nonideal.quantize_inputs)
    xg, _ = unfold_input(layer.layer, xi)
    parts = [xg.clamp(min=0), (-xg).clamp(min=0)] if layer.input.signed else [xg]
    t_cycles, d = layer.cycles, layer.dac_bits
    keep = max(1, MAX_CALIBRATION_READS // (t_cycles * len(parts)))
    if xg.shape[1] > keep:
        idx = torch.randperm(xg.shape[1], generator=torch.Generator().manual_seed(0))[:keep]
        parts = [p[:, idx] for p in parts]
    inputs = torch.cat(parts, dim=1)
    cycle_w = torch.tensor([4.0 ** (t * d) for t in range(t_cycles)], device=xg.device)
    return _Drive(inputs.to(torch.int32) if d else inputs, cycle_w, parts[0].shape[1])


def _squared_error_sum(reads: _TileReads, weights: torch.Tensor, step: torch.Tensor,
                       clamp: tuple[int, int] | None) -> torch.Tensor:
    """(G, Cp[+1]) sum over reads of weight * (ADC(read) - read)**2, in level units squared.

    Works in ADC codes (read / step, in place), so a conversion is one rounding, and a clamp where
    reads can exceed the range.
    """
    g, _, cols = reads.shape
    total = torch.zeros(g, 1, cols, device=step.device)
    s = step.unsqueeze(1)
    scratch = torch.empty(g, reads.per, cols, device=step.device)  # one allocation for every chunk
    for a, chunk in reads.chunks():
        u = chunk.div_(s)
        e = torch.round(u, out=scratch[:, : u.shape[1]])
        if clamp is not None:
            e.clamp_(*clamp)
        total.baddbmm_(weights[a : a + u.shape[1]].expand(g, 1, -1), e.sub_(u).square_())
    return total.squeeze(1) * step.square()


def _range_top(layer: AnalogLayer, reads: _TileReads, r0: int, r1: int, bits: int) -> torch.Tensor:
    """(G, Cp[+1]) the read that maps to the top ADC code (`bits` of magnitude)."""
    ni = layer.hw.nonideal
    codes = 2**bits - 1
    if ni.adc_range == "full_scale":
        needed = math.ceil(math.log2(float(_tile_max_sum(layer, r0, r1).max()) + 1))
        top = torch.full(reads.shape[::2], 2.0 ** max(0, needed - bits) * codes, device=reads.cells.device)
    elif reads.n == 0:  # no read drives a row of this tile
        top = torch.zeros(reads.shape[::2], device=reads.cells.device)
    elif ni.adc_percentile >= 100:  # reads of non-negative cells are >= 0
        top = torch.stack([(c.abs() if layer.bipolar else c).amax(1) for _, c in reads.chunks()]).amax(0)
    else:
        _, every = next(reads.chunks())
        top = torch.quantile(every.abs().transpose(1, 2), ni.adc_percentile / 100, dim=-1)
    if ni.adc_range == "crossbar":  # one range per crossbar (column tile); the reference column keeps its own
        cuts = layer.layout.col_cuts
        for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True):
            top[:, c0:c1] = top[:, c0:c1].amax(1, keepdim=True)
    return top


def _tile_max_sum(layer: AnalogLayer, r0: int, r1: int) -> torch.Tensor:
    """(G, Cp[+1]) largest read each column could give: every row driven at its top digit."""
    d = layer.dac_bits
    assert layer.input is not None
    top_digit = (2**d - 1) if d else layer.input.levels
    return top_digit * layer.nominal[:, r0:r1].abs().sum(1)

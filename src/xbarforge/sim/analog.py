"""One MVM layer on a programmed chip instance, at two fidelity levels.

*exact* does what the hardware does: the layer's input is quantized to `activation_bits` and
applied `dac_bits` per cycle (bit-serial); every (input cycle x row tile) read of every physical
column (bit slice, polarity, reference) is one matrix product with the programmed conductances,
gets read noise, and is converted by the ADC (calibrated step, rounding, saturation); the digital
periphery shift-adds cycles and slices, removes the off-state current and the offset-encoding
bias, adds the row tiles and rescales. Signed inputs (a layer fed by something other than a
ReLU) are applied as two passes, positive and negative parts (sign-magnitude).

*fast* keeps what matters for accuracy at near-float cost: one convolution with the *decoded*
programmed weights (so quantization, slicing, on/off ratio, variation, faults, drift and IR drop
are exact, since they are linear in the cells), plus one Gaussian per output whose variance is
what read noise and ADC conversion add: read noise exactly (a second convolution of the inputs'
squared bit-serial digits with the cells' noise variance), ADC conversion as the mean squared
error it made on the calibration reads (sparse reads, dead zone and saturation included). What
fast mode leaves out: that the conversion error depends on each input (it uses its calibration
average) and is not Gaussian; docs/simulator.md reports the gap.

Integer domain: inputs ``x = s_x * xi`` with integer `xi`, weights ``w = s_w * q``; a column read
is in level units (see device.py); outputs are rescaled by ``s_x * s_w`` at the end.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from xbarforge.compiler.execute import apply_layer, quantize_weight, slice_coefficients, unfold_input
from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim.device import off_level
from xbarforge.sim.layout import LayerLayout

__all__ = [
    "AnalogLayer", "InputQuant", "NoiseTable", "digit_square_sum", "live_reads", "quantize_input", "read_digits",
    "standard_normals",
]

_CHUNK = 1 << 22  # elements of one chunk's read tensor (T x pixels x columns): stays in cache-sized pieces


@dataclass(frozen=True)
class InputQuant:
    """How a layer's input is digitized: x ~ scale * integer, |integer| <= levels."""

    scale: float
    signed: bool
    levels: int  # largest integer magnitude


def quantize_input(x: torch.Tensor, q: InputQuant, quantize: bool = True) -> torch.Tensor:
    """The integer (as float) the DACs apply; unrounded (analog inputs) when `quantize` is False."""
    xi = x / q.scale
    lo = -q.levels if q.signed else 0
    if quantize:
        xi.round_()
    return xi.clamp_(lo, q.levels)


def digit_square_sum(xi: torch.Tensor, dac_bits: int, cycles: int, nonnegative: bool = False) -> torch.Tensor:
    """sum_t 4**(t d) * digit_t(|xi|)**2: how much read noise the bit-serial reads of xi collect.

    One table lookup per element (the table over all input levels is built once per setting),
    since the digit loop would cost `cycles` passes over the activations.
    """
    top = 2 ** min(dac_bits * cycles, 62) - 1
    if top > _LUT_MAX:
        mag = xi.abs().to(torch.int64)
        out = torch.zeros_like(xi)
        for t in range(cycles):
            d = ((mag >> (t * dac_bits)) & (2**dac_bits - 1)).to(xi.dtype)
            out.add_(d * d, alpha=float(4 ** (t * dac_bits)))
        return out
    lut = _square_sum_table(dac_bits, cycles, xi.device)
    mag = xi if nonnegative else xi.abs()  # quantize_input already bounds |xi| by the top level
    return torch.index_select(lut, 0, mag.to(torch.int32).reshape(-1)).view(xi.shape)  # 3x faster than lut[idx]


_LUT_MAX = 1 << 20


@functools.cache
def _square_sum_table(dac_bits: int, cycles: int, device: torch.device) -> torch.Tensor:
    values = torch.arange(2 ** min(dac_bits * cycles, 20), dtype=torch.int64)
    out = torch.zeros(values.shape, dtype=torch.float64)
    for t in range(cycles):
        d = ((values >> (t * dac_bits)) & (2**dac_bits - 1)).to(torch.float64)
        out += d * d * float(4 ** (t * dac_bits))
    return out.to(device=device, dtype=torch.float32)


def digit_planes(xi: torch.Tensor, dac_bits: int, cycles: int) -> torch.Tensor:
    """(G, m, R) non-negative integers -> (G, T, m, R) dac_bits-wide digits, least significant first."""
    shifts = torch.arange(cycles, dtype=torch.int32, device=xi.device).mul_(dac_bits).view(1, cycles, 1, 1)
    return (xi.to(torch.int32).unsqueeze(1) >> shifts).bitwise_and_(2**dac_bits - 1)


def _digits(xi: torch.Tensor, dac_bits: int, cycles: int) -> torch.Tensor:
    """`digit_planes` as float32."""
    return digit_planes(xi, dac_bits, cycles).to(torch.float32)


def live_reads(x: torch.Tensor, dac_bits: int, cycles: int) -> torch.Tensor | None:
    """Flat (cycle, pixel) indices of the reads of `x` (G, m, rows) that can drive a row; None if all can.

    Digit t of an input is nonzero only if the input is at least 2**(t d), so the high digits of
    pixels whose inputs are all small drive no row of the tile: such a read is exactly 0 (no
    arithmetic, noise or conversion error), and skipping it changes no result. A read kept here
    may still be 0 (a digit of a large input can be 0); that only costs time.
    """
    top = x.amax(-1).amax(0)  # (m,) largest input of each pixel over the tile's rows and groups
    if dac_bits:
        thresholds = torch.tensor([1 << (t * dac_bits) for t in range(cycles)], device=x.device)
        live = top.unsqueeze(0) >= thresholds.unsqueeze(1)  # (T, m)
    else:  # analog inputs: one read per pixel
        live = (top > 0).unsqueeze(0)
    return None if bool(live.all()) else live.flatten().nonzero().squeeze(1)


def read_digits(x: torch.Tensor, dac_bits: int, cycles: int, reads: torch.Tensor | None) -> torch.Tensor:
    """(G, reads, rows) float32 digits each read applies, for `reads` = flat (cycle, pixel) indices (None: all).

    `x` (G, m, rows): int32 input magnitudes when bit-serial (dac_bits > 0), else the analog inputs.
    Rows come cycle-major (all pixels of cycle 0 first), as the shift-add expects.
    """
    if not dac_bits:
        return x if reads is None else x.index_select(1, reads)
    if reads is None:
        return _digits(x, dac_bits, cycles).flatten(1, 2)
    m = x.shape[1]
    shifts = torch.div(reads, m, rounding_mode="floor").to(torch.int32).mul_(dac_bits).view(1, -1, 1)
    chosen = x.index_select(1, reads.remainder(m))
    return (chosen >> shifts).bitwise_and_(2**dac_bits - 1).to(torch.float32)


_RANDN_PARTS = 4  # fixed, so the draws do not depend on the thread count
_RANDN_PARALLEL_MIN = 1 << 20
_randn_pool: ThreadPoolExecutor | None = None


def standard_normals(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normals on `device`, drawn from `generator` wherever that generator lives.

    Large CPU draws are split into a fixed number of parts, each from its own generator seeded by
    `generator`, and filled by a thread pool: torch draws CPU normals on one thread, which would
    otherwise cost as much as the reads themselves in exact mode.
    """
    global _randn_pool
    gen_device = generator.device if generator is not None else device
    numel = math.prod(shape)
    if gen_device.type != "cpu" or numel < _RANDN_PARALLEL_MIN:
        out = torch.randn(shape, generator=generator, device=gen_device)
        return out if gen_device == device else out.to(device)
    seeds = torch.randint(0, 2**62, (_RANDN_PARTS,), generator=generator).tolist()
    out = torch.empty(numel)
    bounds = [numel * i // _RANDN_PARTS for i in range(_RANDN_PARTS + 1)]
    if _randn_pool is None:
        _randn_pool = ThreadPoolExecutor(max_workers=min(_RANDN_PARTS, os.cpu_count() or 1))

    def fill(i: int) -> None:
        out[bounds[i] : bounds[i + 1]].normal_(generator=torch.Generator().manual_seed(seeds[i]))

    list(_randn_pool.map(fill, range(_RANDN_PARTS)))
    out = out.view(shape)
    return out if device.type == "cpu" else out.to(device)


class NoiseTable:
    """Standard normals for fast mode, drawn once per chip and read at a random offset per call.

    Fresh CPU normals cost about as much as the layer's convolution; a table read costs nothing
    extra (the noise is added in the pass that reads it). Each output still gets a N(0, 1) draw and
    outputs of one call get distinct draws; calls reuse the table at independent random offsets, as
    evolution strategies' shared noise tables do (Salimans et al., 2017). Exact mode always draws
    fresh numbers.
    """

    def __init__(self, size: int, seed: int, device: torch.device) -> None:
        self.values = standard_normals(torch.Size([size]), torch.Generator().manual_seed(seed), device)

    def draw(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        n, size = math.prod(shape), self.values.numel()
        if 2 * n > size:  # too large to read at a random offset: draw afresh
            return standard_normals(shape, generator, self.values.device)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        offset = int(torch.randint(0, size - n + 1, (1,), generator=generator, device=gen_device))
        return self.values[offset : offset + n].view(shape)


class AnalogLayer:
    """A conv/linear layer as the chip computes it; program() installs one chip instance."""

    def __init__(self, layer: Layer, hw: HardwareSpec, layout: LayerLayout, nominal: torch.Tensor,
                 nominal_ref: torch.Tensor | None, device: torch.device | str = "cpu") -> None:
        assert layer.weight is not None
        self.layer, self.hw, self.layout = layer, hw, layout
        self.device = torch.device(device)
        self.w_scale = quantize_weight(layer.weight, hw)[1]
        self.float_weight = layer.weight.to(self.device)
        self.bias = None if layer.bias is None else layer.bias.to(self.device)
        self.coef = slice_coefficients(hw).to(device=self.device, dtype=torch.float32)
        self.cpw = hw.cols_per_weight
        self.offset = float(2 ** (hw.precision.weight_bits - 1)) if hw.crossbar.encoding == "offset" else 0.0
        self.eps = off_level(hw)
        self.bipolar = hw.crossbar.encoding == "signed"  # signed cells give signed column reads
        self.nominal = self._cat(nominal, nominal_ref).to(self.device)  # (G, R, Cp [+1 reference column])
        self.cells = self.nominal
        self.input: InputQuant | None = None
        self.adc_step: torch.Tensor | None = None  # (row tiles, G, Cp [+1])
        self.adc_error: torch.Tensor | None = None  # calibrated conversion error variance, same shape
        self._fast: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None
        self._fast_out: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None
        self._qweight: torch.Tensor | None = None
        self._scaled: list[torch.Tensor] | None = None
        self.exact_macs = 0  # multiply-accumulates exact mode has done (reads and read-noise variances)
        self.noise: NoiseTable | None = None  # fast mode's normals (shared by the chip's layers)

    # ---- set-up ----

    @staticmethod
    def _cat(cells: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        return cells if ref is None else torch.cat((cells, ref.unsqueeze(-1)), dim=-1)

    @property
    def has_ref(self) -> bool:
        return bool(self.offset)

    @property
    def cycles(self) -> int:
        """Input cycles per pass: activation bits (magnitude bits for signed inputs) / DAC bits."""
        if not self.hw.nonideal.quantize_inputs:
            return 1
        assert self.input is not None
        bits = max(1, math.ceil(math.log2(self.input.levels + 1)))
        return math.ceil(bits / self.hw.precision.dac_bits)

    @property
    def dac_bits(self) -> int:
        return self.hw.precision.dac_bits if self.hw.nonideal.quantize_inputs else 0

    def program(self, cells: torch.Tensor, ref: torch.Tensor | None) -> None:
        """Install one chip instance's programmed cells (level units, as `layout.gather` returns)."""
        self.cells = self._cat(cells, ref).to(self.device)
        self._fast = self._fast_out = None
        self._scaled = None

    def calibrate(self, quant: InputQuant, adc_step: torch.Tensor | None, adc_error: torch.Tensor | None) -> None:
        """Install the input quantizer and ADC calibration (what is derived from them is rebuilt)."""
        self.input, self.adc_step, self.adc_error = quant, adc_step, adc_error
        self._fast = self._fast_out = None
        self._scaled = None

    # ---- decoding shared by both modes ----

    def _decode(self, vals: torch.Tensor, input_sum: torch.Tensor) -> torch.Tensor:
        """(G, m, Cp[+1]) column values in level units -> (G, m, C_out/G) integer-domain outputs."""
        g, m, _ = vals.shape
        cp = self.layout.cols_per_group
        if self.eps:
            vals = vals - self.eps * input_sum.unsqueeze(-1)
        out = vals[..., :cp].reshape(g, m, cp // self.cpw, self.cpw) @ self.coef
        if self.has_ref:
            out = out - self.offset * vals[..., cp:]
        return out

    # ---- exact mode ----

    def forward_exact(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        assert self.input is not None, "calibrate before running"
        ni = self.hw.nonideal
        xi = quantize_input(x, self.input, ni.quantize_inputs)
        xg, fold = unfold_input(self.layer, xi)  # (G, M, R)
        g, m_all, _ = xg.shape
        acc = torch.zeros(g, m_all, self.layer.cols_per_group, device=xg.device)
        parts = [(xg.clamp(min=0), 1.0), ((-xg).clamp(min=0), -1.0)] if self.input.signed else [(xg, 1.0)]
        cp1 = self.cells.shape[-1]
        chunk = max(1, _CHUNK // (self.cycles * max(cp1, max(b - a for a, b in self.layout.row_tiles))))
        for part, sign in parts:
            mags = part.to(torch.int32) if self.dac_bits else part  # what the DACs apply, as digits come from
            for m0 in range(0, m_all, chunk):
                xc = part[:, m0 : m0 + chunk]
                acc[:, m0 : m0 + chunk] += sign * self._exact_chunk(xc, mags[:, m0 : m0 + chunk], generator)
        y = acc.permute(1, 0, 2).reshape(m_all, self.layer.out_channels) * (self.w_scale * self.input.scale)
        if self.bias is not None:
            y = y + self.bias
        return fold(y)

    def _scaled_cells(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per row tile, the cells divided by the ADC step (reads then come out in ADC codes) and,
        with read noise, their squares; both depend only on the programmed chip, so they are built
        once per chip. One-bit digits are their own squares, so then both sit side by side and one
        matrix product gives every read and its noise variance."""
        if self._scaled is None:
            tiles = self.layout.row_tiles
            if self.hw.nonideal.adc and self.adc_step is not None:
                steps = self.adc_step.unsqueeze(2)  # (row tiles, G, 1, Cp[+1])
                scaled = [self.cells[:, r0:r1] / steps[ti] for ti, (r0, r1) in enumerate(tiles)]
            else:
                scaled = [self.cells[:, r0:r1] for r0, r1 in tiles]
            if not self.hw.nonideal.read_noise:
                self._scaled = [(c, None) for c in scaled]
            elif self.dac_bits == 1:
                self._scaled = [(torch.cat((c, c * c), dim=-1), None) for c in scaled]
            else:
                self._scaled = [(c, c * c) for c in scaled]
        return self._scaled

    def _exact_chunk(self, xc: torch.Tensor, mags: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(G, m, C_out/G) integer-domain outputs of the pixels `xc` (G, m, R); `mags` the same inputs
        as the DACs apply them (int32 when bit-serial).

        Per row tile: the digits of the reads that drive a row (the others read exactly 0 and are
        left out), one matrix product per read, noise and ADC, then the shift-add over cycles."""
        g, m, _ = xc.shape
        t_cycles, d = self.cycles, self.dac_bits
        cycle_w = torch.tensor([float(2 ** (t * d)) for t in range(t_cycles)], device=xc.device).view(1, 1, t_cycles)
        out = torch.zeros(g, m, self.layer.cols_per_group, device=xc.device)
        adc = self.hw.nonideal.adc and self.adc_step is not None
        for ti, ((r0, r1), cells) in enumerate(zip(self.layout.row_tiles, self._scaled_cells(), strict=True)):
            live = live_reads(mags[..., r0:r1], d, t_cycles)
            codes = self._read(read_digits(mags[..., r0:r1], d, t_cycles, live), *cells, generator)
            if live is not None:  # reads left out are 0
                codes = torch.zeros(g, t_cycles * m, codes.shape[-1], device=xc.device).index_copy_(1, live, codes)
            elif not codes.is_contiguous():
                codes = codes.contiguous()
            vals = (cycle_w @ codes.view(g, t_cycles, -1)).view(g, m, -1)  # shift-add over input cycles
            if adc:
                assert self.adc_step is not None
                vals = vals * self.adc_step[ti].unsqueeze(1)
            out += self._decode(vals, xc[..., r0:r1].sum(-1))
        self.exact_macs += t_cycles * m * self.cells.shape[1] * self.cells.shape[-1] * g * (
            2 if self.hw.nonideal.read_noise else 1)
        return out

    def _read(self, drive: torch.Tensor, cells: torch.Tensor, squares: torch.Tensor | None,
              generator: torch.Generator | None) -> torch.Tensor:
        """(G, reads, Cp[+1]) what the ADC outputs for each read of `drive` (G, reads, rows).

        `cells`, `squares` as `_scaled_cells` gives them (cells and squares side by side when
        `squares` is None and there is read noise)."""
        ni = self.hw.nonideal
        if ni.read_noise:  # each read's noise: sigma^2 * sum_i drive_i^2 cell_i^2, drawn per read
            if squares is None:  # one-bit digits: reads and variances from one product
                both = drive @ cells
                cols = cells.shape[-1] // 2
                reads, var = both[..., :cols], both[..., cols:]
            else:
                reads, var = drive @ cells, (drive * drive) @ squares
            std = var.sqrt_()
            reads.addcmul_(std, standard_normals(std.shape, generator, std.device), value=ni.read_noise)
        else:
            reads = drive @ cells
        if ni.adc and self.adc_step is not None:
            top = 2 ** (self.hw.precision.adc_bits - (1 if self.bipolar else 0))
            reads.round_().clamp_(-top if self.bipolar else 0, top - 1)
        return reads

    # ---- fast mode ----

    def _fast_weights(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Decoded weight, per-weight read-noise variance and per-output ADC variance (integer domain)."""
        if self._fast is not None:
            return self._fast
        ni = self.hw.nonideal
        g, r, _ = self.cells.shape
        w = self._decode(self.cells, torch.ones(g, r, device=self.device))  # a unit input per row reads its weights
        noise_w = None
        if ni.read_noise:
            sq = self.cells * self.cells * ni.read_noise**2
            cp = self.layout.cols_per_group
            noise_w = sq[..., :cp].reshape(g, r, cp // self.cpw, self.cpw) @ (self.coef * self.coef)
            if self.has_ref:
                noise_w = noise_w + self.offset**2 * sq[..., cp:]
        adc_var = None
        adc_var = None
        if ni.adc and self.adc_error is not None:
            per_read = self.adc_error  # (row tiles, G, Cp[+1]): calibrated, shift-add weighted
            cp = self.layout.cols_per_group
            v = per_read[..., :cp].reshape(*per_read.shape[:2], cp // self.cpw, self.cpw) @ (self.coef * self.coef)
            if self.has_ref:
                v = v + self.offset**2 * per_read[..., cp:]
            adc_var = v.sum(0).reshape(-1)  # (C_out,)
        self._fast = (self._to_weight(w), None if noise_w is None else self._to_weight(noise_w), adc_var)
        return self._fast

    def _to_weight(self, mat: torch.Tensor) -> torch.Tensor:
        """(G, rows_g, C_out/G) -> the layer's torch weight shape (rows follow F.unfold order)."""
        weight = self.layer.weight
        assert weight is not None
        return mat.permute(0, 2, 1).reshape(weight.shape).to(torch.float32).contiguous()

    def forward_fast(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        assert self.input is not None, "calibrate before running"
        w, noise_w, adc_bias = self._fast_scaled()
        xi = quantize_input(x, self.input, self.hw.nonideal.quantize_inputs)
        y = self._apply(xi, w, self.bias)
        if noise_w is None and adc_bias is None:
            return y
        if noise_w is not None:
            sq = digit_square_sum(xi, self.dac_bits, self.cycles, not self.input.signed) if self.dac_bits else xi * xi
            std = self._apply(sq, noise_w, adc_bias).sqrt_()
        else:
            assert adc_bias is not None
            std = self._per_channel(adc_bias, y).sqrt().expand_as(y)
        if self.noise is not None:
            noise = self.noise.draw(y.shape, generator)
        else:
            noise = standard_normals(y.shape, generator, y.device)
        return y.addcmul_(std, noise)

    def _fast_scaled(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """`_fast_weights` in the output's units (the weight times the input and weight scales; variances
        times their squares), built once per chip and calibration rather than on every call."""
        if self._fast_out is None:
            assert self.input is not None
            w, noise_w, adc_var = self._fast_weights()
            scale = self.w_scale * self.input.scale
            self._fast_out = (w * scale, None if noise_w is None else noise_w * scale**2,
                              None if adc_var is None else adc_var * scale**2)
        return self._fast_out

    def _per_channel(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-output-channel vector shaped to broadcast against the layer's output."""
        shape = [1] * like.dim()
        shape[-1 if self.layer.kind == "linear" else 1] = -1
        return v.view(shape)

    def forward_quantized(self, x: torch.Tensor) -> torch.Tensor:
        """The plain quantized layer (no chip): fake-quantized input, dequantized weight, in float."""
        assert self.input is not None, "calibrate before running"
        if self._qweight is None:
            q, scale = quantize_weight(self.layer.weight, self.hw)  # type: ignore[arg-type]
            self._qweight = (q.to(torch.float64) * scale).to(device=self.device, dtype=torch.float32)
        xq = quantize_input(x, self.input, self.hw.nonideal.quantize_inputs) * self.input.scale
        return self._apply(xq, self._qweight, self.bias)

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """The layer with its float (folded) weight: the reference before any quantization."""
        return self._apply(x, self.float_weight, self.bias)

    def _apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return apply_layer(self.layer, x, weight, bias)

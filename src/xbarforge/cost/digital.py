"""Cost of the digital work between MVM layers: attention and the operators transformers add.

Weights live in crossbars; what has none runs on the chip's vector unit (`HardwareSpec.digital`):

* a product of two activations (`matmul` layers: attention's Q K^T and x V) does batch*m*k*n
  multiply-accumulates;
* softmax: per element one exp (special function) and three vector ops (subtract the row max,
  add to the row sum, scale by the reciprocal);
* layer, group and instance norm: per element seven vector ops (mean, centred square, variance,
  subtract, scale, affine multiply and add) and one rsqrt per normalized row;
* GELU, erf, exp, sigmoid, tanh, SiLU, sqrt, ...: one special function per element;
* reductions over tokens (`mean`, `reduce`): one vector op per input element.

Time on the unit = (MACs + vector ops) / vector_macs_per_ns + special ops / special_ops_per_ns.
Energy = MACs x vector_mac_pj + vector ops x vector_op_pj + special ops x special_op_pj, plus
reading the operands from and writing the result to the tile buffer (buffer_pj_per_byte at
activation_bits). Element-wise ops CNNs use (ReLU and its piecewise-linear kin, pooling, residual
additions, concatenation, eval-mode batch norm) are fused into the tiles' output path as in ISAAC
and are free, so CNN costs do not change.

With `digital.attention = "crossbar"`, a product's second operand (k x n per batch) is written into
crossbars at run time, as the `reprogram` section writes weights (row by row, write-and-verify),
and each of the m rows of the first operand is one MVM on them, all batches' crossbars in
parallel. The stage then uses those crossbars (`runtime_crossbars`) instead of the vector unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware.spec import HardwareSpec

SPECIAL_FUNCTIONS = frozenset(
    {"gelu", "erf", "exp", "sigmoid", "tanh", "silu", "softplus", "mish", "elu", "log", "sqrt", "rsqrt",
     "reciprocal", "pow", "sin", "cos"}
)
SOFTMAX = frozenset({"softmax", "log_softmax"})
AFFINE_NORMS = frozenset({"batch_norm", "BatchNormalization"})  # eval-mode: a per-channel scale, fused
SOFTMAX_VECTOR_OPS = 3  # subtract the row max, accumulate the row sum, scale by its reciprocal
NORM_VECTOR_OPS = 7  # mean, centred square, variance accumulate, subtract, scale, affine mul and add


@dataclass(frozen=True)
class DigitalWork:
    """What one layer asks of the vector unit per sample."""

    macs: int = 0
    vector_ops: int = 0
    special_ops: int = 0
    buffer_elems: int = 0  # operands read and results written, in activations
    # activation x activation product (batch, m, k, n), for the crossbar alternative
    product: tuple[int, int, int, int] | None = None


def _elems(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 0


def digital_work(layer: Layer) -> DigitalWork | None:
    """The layer's work on the vector unit, or None when it is free (MVM layers, fused ops)."""
    kind, fn = layer.kind, layer.attrs.get("fn", "")
    # capture notes the counts where heads are folded into the leading dimension
    n_out = layer.attrs.get("out_elems", _elems(layer.out_shape))
    n_in = layer.attrs.get("in_elems", _elems(layer.in_shape))
    if kind == "matmul":
        a = layer.attrs
        batch, m, k, n = a["batch"], a["m"], a["k"], a["n"]
        return DigitalWork(macs=a["macs"], buffer_elems=batch * (m * k + k * n + m * n), product=(batch, m, k, n))
    if kind == "act" and fn in SOFTMAX:
        return DigitalWork(vector_ops=SOFTMAX_VECTOR_OPS * n_out, special_ops=n_out, buffer_elems=2 * n_out)
    if kind == "act" and fn in SPECIAL_FUNCTIONS:
        return DigitalWork(special_ops=n_out, buffer_elems=2 * n_out)
    if kind == "norm" and fn not in AFFINE_NORMS:
        rows = n_out // layer.out_shape[-1] if layer.out_shape and layer.out_shape[-1] else 0
        return DigitalWork(vector_ops=NORM_VECTOR_OPS * n_out, special_ops=rows, buffer_elems=2 * n_out)
    if kind in ("mean", "reduce"):
        return DigitalWork(vector_ops=n_in, buffer_elems=n_in + n_out)
    return None


@dataclass
class StageCost:
    """Time and energy of one digital stage on a chip."""

    unit: str  # "vector" or "crossbar"
    time_ns: float
    energy_pj: dict[str, float] = field(default_factory=dict)
    runtime_crossbars: int = 0  # crossbars written at run time (attention = "crossbar")


def stage_cost(work: DigitalWork, hw: HardwareSpec) -> StageCost:
    """Time and energy of `work`; a product goes to run-time crossbars when the chip says so."""
    d = hw.digital
    buffer = work.buffer_elems * hw.precision.activation_bits / 8 * hw.energy.buffer_pj_per_byte
    if work.product is not None and d.attention == "crossbar":
        return _on_crossbars(work.product, hw, buffer)
    time = (work.macs + work.vector_ops) / d.vector_macs_per_ns + work.special_ops / d.special_ops_per_ns
    energy = {
        "digital": work.macs * d.vector_mac_pj + work.vector_ops * d.vector_op_pj + work.special_ops * d.special_op_pj,
        "buffer": buffer,
    }
    return StageCost("vector", time, energy)


def _on_crossbars(product: tuple[int, int, int, int], hw: HardwareSpec, buffer: float) -> StageCost:
    """A = (m x k) times B = (k x n), per batch: B written into crossbars, A's m rows read as MVMs."""
    batch, m, k, n = product
    rows, cols, rp = hw.crossbar.rows, hw.usable_cols, hw.reprogram
    cpw = hw.cols_per_weight
    row_tiles, col_tiles = math.ceil(k / rows), math.ceil(n * cpw / cols)
    crossbars = batch * row_tiles * col_tiles
    written_rows = min(k, rows)  # rows of one crossbar holding B (the last row tile may have fewer)
    steps = math.ceil(written_rows / rp.rows_written_together)
    if rp.cols_written_together is not None:
        steps *= math.ceil(min(n * cpw, cols) / rp.cols_written_together)
    write_ns = math.ceil(crossbars / rp.crossbars_written_together) * steps * rp.pulses_per_cell * (
        rp.write_pulse_ns + hw.verify_ns)
    time = write_ns + m * hw.mvm_ns
    e = hw.energy
    cyc = hw.input_cycles
    cells = hw.crossbar.rows * hw.crossbar.cols
    phys_cols = n * cpw
    ref = 1 if hw.crossbar.encoding == "offset" else 0
    reads = batch * m  # MVMs of one row of A on B's crossbars (the row tiles and column tiles together)
    energy = {
        "write": batch * k * phys_cols * rp.pulses_per_cell * rp.write_pj_per_pulse,
        "crossbar": reads * e.xbar_read_pj * (k * phys_cols) / cells * cyc,
        "dac": reads * k * col_tiles * cyc * e.dac_pj,
        "adc": reads * (phys_cols + ref * col_tiles) * row_tiles * cyc * e.adc_pj,
        "shift_add": reads * phys_cols * row_tiles * cyc * e.shift_add_pj,
        "buffer": buffer,
    }
    return StageCost("crossbar", time, energy, crossbars)

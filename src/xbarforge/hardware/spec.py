"""HardwareSpec: the typed, validated description of an RRAM crossbar chip.

Every optimizer reads hardware only through this object (and through the compiler and the cost
model built on it). Fields are grouped like a datasheet: the crossbar array, the precision of
weights and activations, the converters, the chip's budget and hierarchy, and per-component
latency, energy and area. Presets live in `presets/*.yaml`, each constant with its source.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from xbarforge.errors import HardwareError
from xbarforge.hardware._errors import format_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CrossbarPool(_Strict):
    """A set of identical crossbars; several pools make a heterogeneous chip."""

    rows: PositiveInt
    cols: PositiveInt
    count: PositiveInt | None = Field(None, description="crossbars of this size; None = unbounded")


class CrossbarSpec(_Strict):
    """One RRAM array and how a weight's bits are laid out in it."""

    rows: PositiveInt = 128
    cols: PositiveInt = 128
    cell_bits: PositiveInt = Field(2, le=8, description="bits stored per RRAM cell")
    encoding: Literal["differential", "offset", "signed"] = Field(
        "differential",
        description=(
            "differential: two cells (G+ and G-) per weight slice; offset: weights biased to be"
            " non-negative, one reference column per crossbar subtracts the bias; signed: one"
            " idealized cell per weight slice (as the RNC code assumes)"
        ),
    )
    concurrent_blocks: bool = Field(
        True,
        description=(
            "blocks of the same layer that share no rows and no columns of a crossbar fire in one"
            " MVM (not with offset encoding, whose reference column sums every driven row);"
            " False: a crossbar fires one block at a time"
        ),
    )
    g_on_us: PositiveFloat = Field(100.0, description="on conductance, microsiemens")
    g_off_us: PositiveFloat = Field(1.0, description="off conductance, microsiemens")
    wire_ohm: float = Field(1.0, ge=0, description="wire resistance between adjacent cells, ohm")


class PrecisionSpec(_Strict):
    """Bit widths of weights, activations and the converters (inputs are applied bit-serially)."""

    weight_bits: PositiveInt = Field(8, le=32)
    activation_bits: PositiveInt = Field(8, le=32)
    dac_bits: PositiveInt = Field(1, le=16, description="input bits applied per crossbar read (bit-serial)")
    adc_bits: PositiveInt = Field(8, le=16)
    cols_per_adc: PositiveInt = Field(128, description="columns sharing one ADC (time-multiplexed)")
    rows_per_dac: PositiveInt = Field(1, description="rows sharing one DAC (area only: one per row by default)")


class ChipSpec(_Strict):
    """The crossbar budget: a flat count, optionally organised as tiles of PEs of crossbars."""

    crossbars: PositiveInt | None = Field(None, description="flat budget; None = as many as needed")
    tiles: PositiveInt | None = None
    pes_per_tile: PositiveInt = 1
    crossbars_per_pe: PositiveInt = 8
    pools: list[CrossbarPool] = Field(default_factory=list, description="heterogeneous crossbar pools")
    layout: Literal["dense", "mnsim"] = Field(
        "dense",
        description=(
            "dense: a layer's weight matrix tiled row- and column-wise, each weight's slices side by side"
            " (xbarforge's layout); mnsim: MNSIM 2.0's layout, whole input channels per crossbar, each bit"
            " slice (and each polarity) on its own crossbars, every layer and every pooling layer on whole"
            " tiles of its own (a cost-model layout: the simulator reads the dense one)"
        ),
    )

    @property
    def crossbars_per_tile(self) -> int:
        return self.pes_per_tile * self.crossbars_per_pe

    @property
    def budget(self) -> int | None:
        """The flat budget, or tiles x PEs x crossbars when only the hierarchy is given."""
        if self.crossbars is not None:
            return self.crossbars
        if self.tiles is not None:
            return self.tiles * self.crossbars_per_tile
        return None


class LatencySpec(_Strict):
    """Timing of one MVM, in nanoseconds; `HardwareSpec.mvm_ns` combines the parts."""

    mvm_ns: PositiveFloat | None = Field(
        None, description="fixed latency of one MVM; None = derived from the components below"
    )
    xbar_read_ns: PositiveFloat = Field(100.0, description="one crossbar read (one input-bit cycle)")
    adc_ns: PositiveFloat = Field(0.78, description="one ADC conversion")
    shift_add_ns: float = Field(0.0, ge=0, description="digital shift-add after the last input cycle")
    pipelined: bool = Field(
        True, description="reads and ADC conversions of consecutive input cycles overlap (ISAAC)"
    )


class EnergySpec(_Strict):
    """Energy per operation in picojoules (static power in milliwatts); no defaults: every preset
    must say where its numbers come from."""

    xbar_read_pj: float = Field(ge=0, description="one read cycle of a full crossbar (all rows, all cols)")
    dac_pj: float = Field(ge=0, description="one DAC conversion (one row, one input cycle)")
    adc_pj: float = Field(ge=0, description="one ADC conversion (one column, one input cycle)")
    shift_add_pj: float = Field(ge=0, description="one shift-add (one column, one input cycle)")
    buffer_pj_per_byte: float = Field(ge=0, description="on-chip buffer access per byte")
    interconnect_pj_per_byte: float = Field(ge=0, description="moving one byte between tiles")
    leakage_mw_per_crossbar: float = Field(ge=0, description="static power of a crossbar and its periphery")


class AreaSpec(_Strict):
    """Area per component in square micrometres; no defaults, for the same reason as EnergySpec."""

    xbar_um2: float = Field(ge=0, description="one crossbar array")
    dac_um2: float = Field(ge=0, description="one DAC (one per precision.rows_per_dac rows)")
    adc_um2: float = Field(ge=0, description="one ADC")
    shift_add_um2: float = Field(ge=0, description="shift-add units of one crossbar")
    tile_overhead_um2: float = Field(
        0.0, ge=0, description="buffers, router, control of one tile (without `buffers`: the whole overhead)"
    )


class BufferSpec(_Strict):
    """On-chip SRAM buffers sized for the network, as MNSIM 2.0's mapping sizes them.

    Each PE gets an input line buffer and each tile an output buffer (ping-pong), each the next
    power of two in bytes above what the layer needing most puts in one PE (tile): an input buffer
    holds k input rows of the layer's input (W_in x k x C_in activations) spread over the layer's PEs;
    an output buffer holds two output pixels (C_out activations each) spread over its tiles. Their
    area comes from a table of SRAM macros by capacity. Without this section the tile overhead is
    `area.tile_overhead_um2` for every network.
    """

    sram_um2_by_kb: dict[float, float] = Field(
        description="area of one SRAM buffer by capacity in KB; a buffer takes the smallest entry that holds it"
    )
    tile_fixed_um2: float = Field(
        ge=0, description="the rest of a tile's overhead (pooling unit, joint module, registers, muxes)"
    )
    sram_read_mw_by_kb: dict[float, float] = Field(
        default_factory=dict, description="power of one SRAM buffer while read (dynamic + leakage), by capacity"
    )
    sram_write_mw_by_kb: dict[float, float] = Field(
        default_factory=dict, description="power of one SRAM buffer while written (dynamic + leakage), by capacity"
    )

    @model_validator(mode="after")
    def _check(self) -> BufferSpec:
        if not self.sram_um2_by_kb:
            raise ValueError("sram_um2_by_kb: needs at least one capacity")
        if min(self.sram_um2_by_kb) <= 0 or min(self.sram_um2_by_kb.values()) < 0:
            raise ValueError("sram_um2_by_kb: capacities must be positive and areas not negative")
        if bool(self.sram_read_mw_by_kb) != bool(self.sram_write_mw_by_kb):
            raise ValueError("sram_write_mw_by_kb: give both power tables (read and write) or neither")
        return self

    def sram_um2(self, kb: float) -> float:
        """Area of the smallest SRAM in the table that holds `kb` KB (the largest when none does)."""
        return _smallest_holding(self.sram_um2_by_kb, kb)

    def sram_mw(self, kb: float) -> tuple[float, float]:
        """(read, write) power of an SRAM of `kb` KB; (0, 0) where the preset gives no power table."""
        if not self.sram_read_mw_by_kb or not self.sram_write_mw_by_kb:
            return 0.0, 0.0
        return _smallest_holding(self.sram_read_mw_by_kb, kb), _smallest_holding(self.sram_write_mw_by_kb, kb)


def _smallest_holding(table: dict[float, float], kb: float) -> float:
    sizes = sorted(table)
    return table[next((s for s in sizes if s >= kb), sizes[-1])]


class DataflowSpec(_Strict):
    """Data movement per output pixel and the line-buffer pipeline between layers (`cost.pixel_pipeline`).

    With this section a layer's time is the sum over its output pixels of: PE input-buffer write and
    read, the crossbar read (input cycles x row steps x column steps, each a DAC, cell read and ADC
    step, with the registers, demultiplexers and shift-adds of the digital part), the adder tree of
    the PEs in a tile, the tile output-buffer write and read, the merge of partial sums across the
    layer's tiles and the transfer of the pixel to the next layer (hops on the tile grid x bits /
    bandwidth). Layers overlap pixel by pixel: a pixel starts once the input rows its receptive field
    needs exist. MNSIM 2.0's behavioural model (PE_latency.py, Tile_latency.py, Model_latency.py).
    """

    buffer_access_ns: PositiveFloat = Field(description="one access of an SRAM buffer (one port width of data)")
    buffer_port_bits: PositiveInt = Field(description="bits moved per buffer access")
    digital_ns: PositiveFloat = Field(description="one cycle of the digital clock (registers, adders, merge)")
    dac_ns: float = Field(ge=0, description="one DAC conversion step")
    cell_read_ns: PositiveFloat = Field(description="one crossbar read step (cells and wires)")
    decoder_ns: float = Field(ge=0, description="input demultiplexer, per read step")
    mux_ns: float = Field(ge=0, description="output multiplexer, per read step")
    rows_per_step: PositiveInt = Field(description="rows driven together (DACs per PE); more rows take more steps")
    cols_per_step: PositiveInt = Field(description="columns converted together (ADCs per PE); more take more steps")
    inter_tile_gbps: PositiveFloat = Field(description="link bandwidth between tiles (bits per ns)")
    intra_tile_gbps: PositiveFloat = Field(description="bandwidth inside a tile, PEs to the adder tree")
    pool_ns: float = Field(ge=0, description="pooling unit: one window of pool_window elements on pool_channels")
    pool_channels: PositiveInt = Field(description="channels the pooling unit handles at once")
    pool_window: PositiveInt = Field(description="window elements the pooling unit handles at once")
    add_ns: float = Field(ge=0, description="residual addition of one pixel in the accumulator")
    tile_grid: PositiveInt = Field(description="tiles per side of the square tile grid (placement, hop counts)")
    # Energy = power x busy time per component (MNSIM's Model_energy): each part draws its power while
    # the pixel's time for that part runs. Milliwatts, per unit.
    cell_mw: float = Field(0.0, ge=0, description="one cell while read")
    dac_mw: float = Field(0.0, ge=0, description="one DAC while converting")
    adc_mw: float = Field(0.0, ge=0, description="one ADC while converting")
    reg_mw: float = Field(0.0, ge=0, description="one input or output register")
    decoder_mw: float = Field(0.0, ge=0, description="one input demultiplexer")
    mux_mw: float = Field(0.0, ge=0, description="one output multiplexer")
    shift_add_mw: float = Field(0.0, ge=0, description="one shift-add register")
    adder_tree_mw: float = Field(0.0, ge=0, description="one adder of the tile's adder tree (per column pair)")
    pool_mw: float = Field(0.0, ge=0, description="the pooling unit while busy")

    @property
    def has_power(self) -> bool:
        """Does the section price energy (power x busy time) too, or only time?"""
        return any((self.cell_mw, self.dac_mw, self.adc_mw, self.reg_mw, self.decoder_mw, self.mux_mw,
                    self.shift_add_mw, self.adder_tree_mw, self.pool_mw))


class NonIdealSpec(_Strict):
    """How the chip departs from ideal arithmetic, for the accuracy simulator (`xbarforge.sim`).

    Each effect switches off at its neutral value (0, or False), so the defaults describe ideal
    devices with the converters of `precision`; presets and sweeps set the device numbers (see
    docs/simulator.md for typical values and their sources). Relative quantities are fractions of
    the programmed conductance.
    """

    quantize_weights: bool = Field(True, description="weights to precision.weight_bits, sliced over cell_bits")
    quantize_inputs: bool = Field(
        True, description="activations to precision.activation_bits, applied dac_bits per input cycle"
    )
    adc: bool = Field(True, description="column reads pass an ADC of precision.adc_bits (False: ideal readout)")
    adc_range: Literal["column", "crossbar", "full_scale"] = Field(
        "column",
        description=(
            "column / crossbar: range calibrated on data per column or per crossbar (reads beyond it"
            " saturate); full_scale: fixed-point ADC with a power-of-two step that covers the largest"
            " possible column sum (lossless when adc_bits suffice)"
        ),
    )
    adc_percentile: float = Field(
        100.0, gt=0, le=100, description="calibrated range = this percentile of the calibration reads"
    )
    variation: float = Field(0.0, ge=0, le=1, description="programming variation: relative sigma per cell")
    variation_model: Literal["gaussian", "lognormal"] = Field(
        "gaussian", description="gaussian: G(1 + s N); lognormal: G exp(s N)"
    )
    read_noise: float = Field(0.0, ge=0, le=1, description="read noise: relative sigma per cell and read")
    stuck_on_rate: float = Field(0.0, ge=0, le=1, description="fraction of cells stuck at g_on")
    stuck_off_rate: float = Field(0.0, ge=0, le=1, description="fraction of cells stuck at g_off")
    drift_nu: float = Field(0.0, ge=0, le=1, description="drift exponent: G(t) = G (t / t0)^-nu")
    drift_nu_std: float = Field(0.0, ge=0, le=1, description="cell-to-cell spread of the drift exponent")
    drift_time_s: float = Field(1.0, gt=0, description="time since programming, seconds")
    drift_t0_s: float = Field(1.0, gt=0, description="reference time of the drift law, seconds")
    ir_drop: bool = Field(False, description="wire resistance (crossbar.wire_ohm) lowers far cells' currents")

    @model_validator(mode="after")
    def _check(self) -> NonIdealSpec:
        if self.stuck_on_rate + self.stuck_off_rate > 1:
            raise ValueError("nonideal.stuck_on_rate: stuck-on and stuck-off rates add up to more than 1")
        return self

    @property
    def device_noise(self) -> bool:
        """Does programming a chip draw random numbers (so chip instances differ)?"""
        return bool(self.variation or self.stuck_on_rate or self.stuck_off_rate or self.drift_nu_std)


class DigitalSpec(_Strict):
    """The chip's digital units.

    The coefficient unit of BasisN (`xbarforge.basis`, the `coeff_*` fields) multiplies the crossbar
    read-outs of the basis vectors by each layer's quantized coefficients. The vector unit (the
    `vector_*` and `special_*` fields) runs what has no weights to store in a crossbar: attention's
    activation x activation products, softmax, layer norms, GELU and reductions over tokens
    (`xbarforge.cost.digital`). Element-wise ops CNNs use (ReLU, pooling, residual additions, batch
    norm) are fused into the tiles' output path as in ISAAC and cost nothing here. Chips that run
    neither ignore these fields; defaults are the 45 nm figures the presets cite.
    """

    coeff_mac_pj: float = Field(
        0.5, ge=0,
        description=(
            "one multiply-accumulate of an 8-bit coefficient with a read-out (multiply plus accumulate);"
            " the multiply part scales with the coefficient bits"
        ),
    )
    coeff_add_pj: float = Field(
        0.1, ge=0, description="the accumulate part of coeff_mac_pj (does not scale with the coefficient bits)"
    )
    coeff_macs_per_ns: PositiveFloat = Field(16.0, description="throughput of the whole coefficient unit, MACs per ns")
    coeff_unit_um2: float = Field(11216.0, ge=0, description="area of the whole coefficient unit")
    attention: Literal["digital", "crossbar"] = Field(
        "digital",
        description=(
            "where products of two activations (attention's Q K^T and x V) run: digital = the vector"
            " unit; crossbar = crossbars written at run time with the second operand (write-and-verify"
            " as in the reprogram section), then read once per row of the first"
        ),
    )
    vector_macs_per_ns: PositiveFloat = Field(
        32.0, description="vector unit throughput: multiply-accumulates (or element-wise ops) per ns"
    )
    vector_mac_pj: float = Field(0.3, ge=0, description="one multiply-accumulate of two activations")
    vector_op_pj: float = Field(0.1, ge=0, description="one element-wise add, compare or scale")
    special_ops_per_ns: PositiveFloat = Field(
        4.0, description="special-function throughput (exp, erf, rsqrt, reciprocal by look-up table), per ns"
    )
    special_op_pj: float = Field(0.26, ge=0, description="one special-function evaluation")
    vector_unit_um2: float = Field(29216.0, ge=0, description="area of the vector and special-function units")


class ReprogramSpec(_Strict):
    """Writing RRAM weights by write-and-verify, for models that need reprogramming between rounds.

    A crossbar is written row by row (`rows_written_together` word lines at a time, all columns of
    those rows in the same pulse); each step is a programming pulse followed by a verify read, and a
    cell needs `pulses_per_cell` such steps on average to reach its level.
    """

    write_pulse_ns: PositiveFloat = Field(100.0, description="one programming pulse")
    verify_ns: PositiveFloat | None = Field(None, description="one verify read; None = latency.xbar_read_ns")
    pulses_per_cell: float = Field(10.0, ge=1, description="average write-verify iterations to reach a level")
    rows_written_together: PositiveInt = Field(
        1, description="rows of one crossbar written in the same pulse (the columns of a row always are)"
    )
    cols_written_together: PositiveInt | None = Field(
        None, description="columns of a row written in the same pulse; None = all of them (1 = cell by cell)"
    )
    crossbars_written_together: PositiveInt = Field(
        1, description="crossbars written at the same time on the chip (write drivers and charge pumps limit it)"
    )
    write_pj_per_pulse: float = Field(40.0, ge=0, description="energy of one programming pulse on one cell")


class HardwareSpec(_Strict):
    """A whole chip. Build it with `xbarforge.hardware.load_hardware` so errors read as one line."""

    name: str
    description: str = ""
    crossbar: CrossbarSpec = CrossbarSpec()
    precision: PrecisionSpec = PrecisionSpec()
    chip: ChipSpec = ChipSpec()
    latency: LatencySpec = LatencySpec()
    energy: EnergySpec
    area: AreaSpec
    buffers: BufferSpec | None = None
    dataflow: DataflowSpec | None = None
    nonideal: NonIdealSpec = NonIdealSpec()
    digital: DigitalSpec = DigitalSpec()
    reprogram: ReprogramSpec = ReprogramSpec()

    @model_validator(mode="after")
    def _check(self) -> HardwareSpec:
        if self.crossbar.encoding == "offset" and self.crossbar.cols < 2:
            raise ValueError("crossbar.cols: offset encoding needs at least 2 columns")
        if self.precision.dac_bits > self.precision.activation_bits:
            raise ValueError("precision.dac_bits: larger than precision.activation_bits")
        if self.crossbar.g_off_us >= self.crossbar.g_on_us:
            raise ValueError("crossbar.g_off_us: must be smaller than crossbar.g_on_us")
        if self.digital.coeff_add_pj > self.digital.coeff_mac_pj:
            raise ValueError("digital.coeff_add_pj: larger than digital.coeff_mac_pj, which includes it")
        if self.reprogram.rows_written_together > self.crossbar.rows:
            raise ValueError(
                f"reprogram.rows_written_together: larger than the {self.crossbar.rows} rows of a crossbar"
            )
        # The compiler never splits one weight's bit slices over two crossbars, so a weight that is
        # wider than a crossbar could never be placed.
        if self.cols_per_weight > self.usable_cols:
            raise ValueError(
                f"crossbar.cols: one weight needs {self.cols_per_weight} columns"
                f" but a crossbar has {self.usable_cols} usable"
            )
        for i, pool in enumerate(self.chip.pools):
            usable = pool.cols - (1 if self.crossbar.encoding == "offset" else 0)
            if self.cols_per_weight > usable:
                raise ValueError(
                    f"chip.pools.{i}.cols: one weight needs {self.cols_per_weight} columns"
                    f" but this pool has {usable} usable"
                )
        return self

    # ---- derived quantities used by the compiler and the cost model ----

    @property
    def fires_blocks_together(self) -> bool:
        """Can blocks of one layer on disjoint rows and columns of a crossbar fire in one MVM?

        Only where `crossbar.concurrent_blocks` says so and the encoding allows it: with offset
        encoding the crossbar's one reference column sums every driven row, so two blocks read
        together would share one correction.
        """
        return self.crossbar.concurrent_blocks and self.crossbar.encoding != "offset"

    @property
    def cols_per_weight(self) -> int:
        """Crossbar columns one weight occupies: bit slices, doubled for differential pairs."""
        return self.cols_for_bits(self.precision.weight_bits)

    def cols_for_bits(self, bits: int) -> int:
        """Crossbar columns of one weight of `bits` bits (mixed precision: `xbarforge.quant`)."""
        slices = math.ceil(bits / self.crossbar.cell_bits)
        return slices * (2 if self.crossbar.encoding == "differential" else 1)

    @property
    def usable_cols(self) -> int:
        """Columns available for weights (offset encoding reserves one reference column)."""
        return self.crossbar.cols - (1 if self.crossbar.encoding == "offset" else 0)

    @property
    def input_cycles(self) -> int:
        """Crossbar reads per MVM: activation bits applied dac_bits at a time."""
        return math.ceil(self.precision.activation_bits / self.precision.dac_bits)

    @property
    def mvm_ns(self) -> float:
        """Latency of one MVM (all input-bit cycles, conversions and shift-add)."""
        lat = self.latency
        if lat.mvm_ns is not None:
            return lat.mvm_ns
        adcs = math.ceil(self.crossbar.cols / self.precision.cols_per_adc)
        convert = math.ceil(self.crossbar.cols / adcs) * lat.adc_ns
        if lat.pipelined:
            per_cycle = max(lat.xbar_read_ns, convert)
            return lat.xbar_read_ns + convert + (self.input_cycles - 1) * per_cycle + lat.shift_add_ns
        return self.input_cycles * (lat.xbar_read_ns + convert) + lat.shift_add_ns

    @property
    def verify_ns(self) -> float:
        """One verify read of a write-and-verify step (a crossbar read unless the preset says otherwise)."""
        return self.reprogram.verify_ns if self.reprogram.verify_ns is not None else self.latency.xbar_read_ns

    def with_crossbar(self, rows: int, cols: int) -> HardwareSpec:
        """The same chip with another crossbar size (for sweeps and heterogeneous pools).

        Re-validated (model_copy alone would skip the checks, e.g. a size too small for a weight).
        """
        return self._revalidated("crossbar", {"rows": rows, "cols": cols})

    def with_budget(self, crossbars: int | None) -> HardwareSpec:
        """The same chip with another flat crossbar budget (None = as many as needed), re-validated."""
        return self._revalidated("chip", {"crossbars": crossbars})

    def with_layout(self, layout: str) -> HardwareSpec:
        """The same chip with another `chip.layout` (the simulator reads the dense one)."""
        return self if self.chip.layout == layout else self._revalidated("chip", {"layout": layout})

    def _revalidated(self, section: str, update: dict) -> HardwareSpec:
        data = self.model_dump()
        data[section].update(update)
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise HardwareError(format_validation_error(exc, type(self), f"hardware '{self.name}'")) from None

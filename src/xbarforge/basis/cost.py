"""Hardware cost of BasisN, and of the reprogramming baseline it replaces.

BasisN keeps one global basis on the chip's C crossbars for good, so a network of any size runs
without rewriting a cell; the price is a digital coefficient unit and more crossbar reads. The
baseline maps the network itself on the same C crossbars and rewrites them between reprogramming
rounds when it does not fit. Both sides take every number from the existing cost pieces
(`HardwareSpec.mvm_ns`, `input_cycles`, the energy and area constants, `cost.area`, and for the
baseline `compile_graph` + `cost.model.evaluate`); the crossbar-read energy below is the per-MVM
formula of `cost/energy.py`, mirrored term by term. Equations and sources: docs/basis.md,
"Hardware cost".

BasisN, per layer and sample (P crossbars per group, V basis vectors per crossbar):
  steps      = pixels x steps_per_pixel                 (G groups read at once, one unit each)
  analog     = steps x mvm_ns
  MACs       = pixels x coefficients(layer)             (each output channel, per unit, P x V)
  digital    = MACs / digital.coeff_macs_per_ns
  time       = max(analog, digital) + mvm_ns            (coefficient unit pipelined behind the
                                                         reads; one MVM of fill)
Layers share the basis crossbars, so they run one after another and so do the samples of a batch.

Baseline, for a batch of B samples in R rounds (R > 1 only): each round writes its crossbars by
write-and-verify, then runs its layers for all B samples as the cost model schedules them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from xbarforge.basis.layout import BasisError, BasisLayout
from xbarforge.compiler.compile import compile_graph
from xbarforge.compiler.mapping import Mapping
from xbarforge.cost.area import chip_area_mm2
from xbarforge.cost.model import evaluate
from xbarforge.cost.reprogram import crossbar_write_ns, write_ns
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec

__all__ = [
    "BASIS_COMPONENTS",
    "REPROGRAM_COMPONENTS",
    "BasisCost",
    "BasisLayerCost",
    "ReprogramCost",
    "ReprogramLayerCost",
    "basis_cost",
    "coeff_mac_pj",
    "compare",
    "reprogram_cost",
    "write_cost",
]

READ_COMPONENTS = ("crossbar", "dac", "adc", "shift_add", "buffer")
BASIS_COMPONENTS = (*READ_COMPONENTS, "coeff_mac", "coeff_buffer", "interconnect", "leakage")
REPROGRAM_COMPONENTS = ("write", "verify", "write_leakage", "compute")
MAX_COEFF_BITS = 16


# ---- shared pieces ---------------------------------------------------------------------------


def _read_energy(hw: HardwareSpec, height: int, width: int, w_read: float, cycles: int, mvms: float,
                 psum_bits: int) -> dict[str, float]:
    """Energy of `mvms` reads of an h x w block: the per-MVM terms of cost/energy.py, term by term.

    energy.py (module docstring): crossbar xbar_read_pj*(h*w)/(rows*cols)*c, DAC h*c*dac_pj,
    ADC w_read*c*adc_pj, shift-add w_read*c*shift_add_pj, buffer (h*a + w_read/cpw*p)/8*buffer_pj_per_byte.
    It is mirrored rather than called because mapping_energy needs a whole Mapping.
    """
    e = hw.energy
    cells = hw.crossbar.rows * hw.crossbar.cols
    a = hw.precision.activation_bits
    return {
        "crossbar": mvms * e.xbar_read_pj * (height * width) / cells * cycles,
        "dac": mvms * height * cycles * e.dac_pj,
        "adc": mvms * w_read * cycles * e.adc_pj,
        "shift_add": mvms * w_read * cycles * e.shift_add_pj,
        "buffer": mvms * (height * a + w_read / hw.cols_per_weight * psum_bits) / 8 * e.buffer_pj_per_byte,
    }


def coeff_mac_pj(hw: HardwareSpec, coeff_bits: int) -> float:
    """One coefficient MAC: the multiply scales with the coefficient bits (array-multiplier energy
    grows with the product of operand widths; the preset's figure is for 8 bits), the accumulate
    does not."""
    d = hw.digital
    return d.coeff_add_pj + (d.coeff_mac_pj - d.coeff_add_pj) * coeff_bits / 8


def write_cost(hw: HardwareSpec, crossbars: int) -> tuple[float, dict[str, float]]:
    """Time (ns) and energy (pJ: write, verify) to program `crossbars` whole crossbars by write-and-verify.

    Every cell of every crossbar is written: a reprogrammed crossbar either gets a new weight or
    must lose the previous round's (blocks that fire together read each other's rows and columns,
    so stale cells corrupt them). Rows go `rows_written_together` at a time (their columns
    `cols_written_together` at a time, default all), each step a pulse and
    a verify read of those rows (one read cycle: array, DACs, one conversion per column).
    """
    rp = hw.reprogram
    rows, cols = hw.crossbar.rows, hw.crossbar.cols
    ns = write_ns(hw, crossbars)
    write_pj = crossbars * rows * cols * rp.pulses_per_cell * rp.write_pj_per_pulse
    full, rest = divmod(rows, rp.rows_written_together)
    verify_pj = 0.0
    for height, count in ((rp.rows_written_together, full), (rest, 1 if rest else 0)):
        read = _read_energy(hw, height, cols, cols, 1, count, hw.precision.activation_bits)
        verify_pj += read["crossbar"] + read["dac"] + read["adc"]
    verify_pj *= crossbars * rp.pulses_per_cell
    return ns, {"write": write_pj, "verify": verify_pj}


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise BasisError(f"batch: must be a whole number of at least 1 inference (got {batch!r})")


def _check_bits(coeff_bits: int) -> None:
    if isinstance(coeff_bits, bool) or not isinstance(coeff_bits, int) or not 1 <= coeff_bits <= MAX_COEFF_BITS:
        raise BasisError(f"coeff bits: must be a whole number from 1 to {MAX_COEFF_BITS} (got {coeff_bits!r})")


# ---- BasisN ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasisLayerCost:
    """One layer on the basis: its crossbar steps, coefficient MACs, time and energy per sample."""

    name: str
    steps_per_pixel: int
    steps: int  # crossbar steps per sample (pixels x steps_per_pixel)
    basis_mvms: int  # group reads per sample (pixels x units)
    digital_macs: int
    analog_ns: float
    digital_ns: float
    time_ns: float
    bound: str  # "analog" or "digital": which side sets the layer time
    energy_pj: float


@dataclass(frozen=True)
class BasisCost:
    """BasisN on a chip: per-inference cycles, latency, energy, area, EDP and EDAP.

    The basis is written once at deployment, so no write is charged per inference; the one-time
    deployment write is reported for information (`deployment_write_*`).
    """

    model: str
    hardware: str
    crossbars: int
    group_crossbars: int
    groups: int
    coeff_bits: int
    batch: int
    mvm_ns: float
    cycles_per_inference: float  # latency_ns / mvm_ns
    latency_ns: float  # per inference: batch_latency_ns / batch
    batch_latency_ns: float  # first_latency_ns + (batch - 1) x period_ns
    first_latency_ns: float  # one sample alone
    period_ns: float  # steady state: the busiest group's reads, or the coefficient unit's MACs, per sample
    energy_pj: float  # per inference
    energy_by_component_pj: dict[str, float]
    area_mm2: float  # C crossbars with periphery and tiles + the coefficient unit
    coeff_unit_mm2: float
    edp: float  # pJ x ns per inference
    edap: float  # pJ x ns x mm^2
    steps: int  # crossbar steps per inference
    basis_mvms: int  # group reads per inference (each reads the P crossbars of one group)
    crossbar_reads: int  # basis_mvms x P
    digital_macs: int
    writes_per_inference: int
    deployment_write_ns: float
    deployment_write_pj: float
    layers: tuple[BasisLayerCost, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(layer) for layer in self.layers]
        d["edp_units"] = "pJ * ns (energy per inference x latency per inference)"
        d["edap_units"] = "pJ * ns * mm^2"
        return d


def _check_layout(layout: BasisLayout, graph: LayerGraph, hw: HardwareSpec) -> None:
    vectors = hw.usable_cols // hw.cols_per_weight
    if layout.rows != hw.crossbar.rows or layout.vectors_per_crossbar != vectors:
        raise BasisError(
            f"layout: planned for {layout.rows}-row crossbars with {layout.vectors_per_crossbar} vectors each,"
            f" but hardware '{hw.name}' has {hw.crossbar.rows} rows and {vectors} vectors per crossbar"
        )
    names = {layer.name for layer in graph.mvm_layers}
    missing = [seg.name for seg in layout.layers if seg.name not in names]
    if missing:
        raise BasisError(f"layout: layer '{missing[0]}' is not an MVM layer of model '{graph.name}'")


def basis_cost(layout: BasisLayout, graph: LayerGraph, hw: HardwareSpec, coeff_bits: int,
               batch: int = 1) -> BasisCost:
    """Cost of running `graph` from the basis of `layout` on `hw` with `coeff_bits`-bit coefficients.

    One sample's layers run one after another (they share the basis crossbars). The samples of a
    batch are pipelined: while one sample's layer reads some groups, the next sample's earlier layer
    may read the others, so in steady state a sample needs the busiest group's reads per sample
    (each unit is pinned to its group) or the coefficient unit's MACs per sample, whichever is
    longer: batch latency = one sample's latency + (batch - 1) x that period. The periodic schedule
    exists because a sample's layers have no dependence on other samples (a modulo schedule reaches
    the resource bound); it needs the feature maps of the samples in flight buffered.
    """
    _check_bits(coeff_bits)
    _check_batch(batch)
    _check_layout(layout, graph, hw)
    ns = hw.mvm_ns
    e = hw.energy
    cyc = hw.input_cycles
    a = hw.precision.activation_bits
    width = layout.vectors_per_crossbar * hw.cols_per_weight  # weight columns of one basis crossbar
    w_read = width + (1 if hw.crossbar.encoding == "offset" else 0)  # plus the reference column
    mac_pj = coeff_mac_pj(hw, coeff_bits)
    totals = dict.fromkeys(BASIS_COMPONENTS, 0.0)
    layers: list[BasisLayerCost] = []
    for seg in layout.layers:
        per_pixel = layout.steps_per_pixel(seg)
        steps = seg.pixels * per_pixel
        macs = seg.pixels * layout.coefficients(seg)
        analog = steps * ns
        digital = macs / hw.digital.coeff_macs_per_ns
        time = max(analog, digital) + ns
        comps = dict.fromkeys(BASIS_COMPONENTS[:-1], 0.0)
        psum_bits = 2 * a if seg.segments > 1 else a  # as energy.py: partial sums of a split layer
        reads = seg.pixels * seg.conv_groups * layout.group_crossbars  # per segment: P crossbars each
        for s in range(seg.segments):
            height = min(layout.rows, seg.rows - s * layout.rows)  # zero-padded rows are not driven
            for k, v in _read_energy(hw, height, width, w_read, cyc, reads, psum_bits).items():
                comps[k] += v
        comps["coeff_mac"] = macs * mac_pj
        comps["coeff_buffer"] = macs * coeff_bits / 8 * e.buffer_pj_per_byte  # a coefficient per MAC
        comps["interconnect"] = math.prod(graph[seg.name].out_shape) * a / 8 * e.interconnect_pj_per_byte
        for k, v in comps.items():
            totals[k] += v
        layers.append(BasisLayerCost(
            name=seg.name, steps_per_pixel=per_pixel, steps=steps, basis_mvms=seg.pixels * seg.units,
            digital_macs=macs, analog_ns=analog, digital_ns=digital, time_ns=time,
            bound="analog" if analog >= digital else "digital", energy_pj=sum(comps.values()),
        ))
    first = sum(layer.time_ns for layer in layers)
    group_reads = [0] * layout.groups
    for seg in layout.layers:
        for g in seg.group_of_unit:
            group_reads[g] += seg.pixels
    period = max(max(group_reads) * ns, sum(layer.digital_ns for layer in layers))
    batch_latency = first + (batch - 1) * period
    latency = batch_latency / batch  # per inference
    totals["leakage"] = e.leakage_mw_per_crossbar * layout.crossbars * latency  # 1 mW x 1 ns = 1 pJ
    energy = sum(totals.values())
    unit_mm2 = hw.digital.coeff_unit_um2 / 1e6
    area = chip_area_mm2(hw, layout.crossbars) + unit_mm2
    deploy_ns, deploy = write_cost(hw, layout.crossbars)
    mvms = sum(layer.basis_mvms for layer in layers)
    return BasisCost(
        model=layout.model, hardware=hw.name, crossbars=layout.crossbars,
        group_crossbars=layout.group_crossbars, groups=layout.groups, coeff_bits=coeff_bits, batch=batch,
        mvm_ns=ns, cycles_per_inference=latency / ns, latency_ns=latency, batch_latency_ns=batch_latency,
        first_latency_ns=first, period_ns=period,
        energy_pj=energy, energy_by_component_pj=totals, area_mm2=area, coeff_unit_mm2=unit_mm2,
        edp=energy * latency, edap=energy * latency * area, steps=sum(layer.steps for layer in layers),
        basis_mvms=mvms, crossbar_reads=mvms * layout.group_crossbars,
        digital_macs=sum(layer.digital_macs for layer in layers), writes_per_inference=0,
        deployment_write_ns=deploy_ns, deployment_write_pj=sum(deploy.values()), layers=tuple(layers),
    )


# ---- reprogramming baseline ------------------------------------------------------------------


@dataclass(frozen=True)
class ReprogramLayerCost:
    """One layer of the baseline: its round, one-sample time and dynamic energy (from evaluate())."""

    name: str
    round: int
    time_ns: float
    energy_pj: float


@dataclass(frozen=True)
class ReprogramCost:
    """The network mapped on `crossbars` crossbars, rewritten between rounds when it does not fit.

    With one round the weights are written once at deployment and no write is charged
    (`writes_charged` False); otherwise every batch rewrites every round's crossbars.
    """

    model: str
    hardware: str
    crossbars: int
    batch: int
    rounds: int
    crossbars_used: int
    writes_charged: bool
    mvm_ns: float
    cycles_per_inference: float  # latency_ns / mvm_ns
    latency_ns: float  # per inference: batch_latency_ns / batch
    batch_latency_ns: float  # write_ns + compute_ns
    write_ns: float  # per batch
    compute_ns: float  # per batch
    write_ns_per_crossbar: float
    round_crossbars: tuple[int, ...]  # crossbars each round writes
    crossbars_written_per_inference: float
    energy_pj: float  # per inference
    energy_by_component_pj: dict[str, float]
    compute_by_component_pj: dict[str, float]  # evaluate()'s breakdown of "compute"
    area_mm2: float  # the chip of `crossbars` crossbars
    edp: float
    edap: float
    layers: tuple[ReprogramLayerCost, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["round_crossbars"] = list(self.round_crossbars)
        d["layers"] = [asdict(layer) for layer in self.layers]
        d["edp_units"] = "pJ * ns (energy per inference x latency per inference)"
        d["edap_units"] = "pJ * ns * mm^2"
        d["note"] = ("weights written once at deployment: no write charged" if not self.writes_charged else
                     f"every batch of {self.batch} rewrites the crossbars of all {self.rounds} rounds")
        return d


def reprogram_cost(graph: LayerGraph, hw: HardwareSpec, crossbars: int, batch: int = 1,
                   mapping: Mapping | None = None) -> ReprogramCost:
    """Cost of `graph` mapped by the compiler on `crossbars` crossbars, for a batch of `batch`.

    The compiler splits a model that does not fit into rounds; each round's crossbars are written
    (write_cost), then its layers run all `batch` samples, streamed as the cost model schedules
    them (evaluate()'s latency for `batch` samples, the fastest static schedule per round). Rounds
    run one after another and a write cannot overlap computing: the crossbars are the same.
    `mapping`: price this mapping of `graph` on `crossbars` crossbars instead of the compiler's
    (e.g. `rounds_mapping(..., partition="naive")`, to check the compiler's choice is the strongest).
    """
    _check_batch(batch)
    if isinstance(crossbars, bool) or not isinstance(crossbars, int) or crossbars < 1:
        raise BasisError(f"crossbars: must be a whole number of at least 1 (got {crossbars!r})")
    ns = hw.mvm_ns
    if mapping is None:
        mapping = compile_graph(graph, hw, crossbars=crossbars, samples=(batch,))
    elif (mapping.model, mapping.hardware, mapping.crossbars_budget or crossbars) != (graph.name, hw.name, crossbars):
        raise BasisError(f"mapping: built for model '{mapping.model}' on '{mapping.hardware}' with"
                         f" {mapping.crossbars_budget} crossbars, not '{graph.name}' on '{hw.name}' with {crossbars}")
    ev = evaluate(mapping, hw, samples=(batch,))
    writes = mapping.rounds > 1
    # the latency model includes the writes: mapping.write_cycles per round, in MVM cycles
    timed_write_ns = sum(mapping.write_cycles) * ns if writes else 0.0
    compute_ns = ev["cycles"][str(batch)] * ns - timed_write_ns
    used = mapping.round_crossbars()
    round_xbars = tuple(used.get(r, 0) for r in range(mapping.rounds)) if writes else ()
    write_ns, write_pj = 0.0, {"write": 0.0, "verify": 0.0}
    for n in round_xbars:
        t, pj = write_cost(hw, n)
        write_ns += t
        write_pj = {k: write_pj[k] + pj[k] for k in write_pj}
    leak_pj = hw.energy.leakage_mw_per_crossbar * mapping.crossbars_used * write_ns
    # evaluate()'s leakage spans the interval between samples, which for one sample includes the
    # writes (Timing.interval(1) = period + write cycles): write_leakage charges those, so take them out
    counted_twice = hw.energy.leakage_mw_per_crossbar * mapping.crossbars_used * timed_write_ns if batch == 1 else 0.0
    comps = {
        "write": write_pj["write"] / batch,
        "verify": write_pj["verify"] / batch,
        "write_leakage": leak_pj / batch,
        "compute": ev["energy_pj"] - counted_twice,  # per inference, with its leakage over the compute period
    }
    compute_comps = dict(ev["energy_by_component_pj"])
    compute_comps["leakage"] -= counted_twice
    energy = sum(comps.values())
    batch_ns = write_ns + compute_ns
    latency = batch_ns / batch
    area = chip_area_mm2(hw, crossbars)
    per_xbar_ns = crossbar_write_ns(hw)
    layers = tuple(ReprogramLayerCost(lr["name"], lr["round"], lr["time_ns"], lr["energy_pj"]) for lr in ev["layers"])
    return ReprogramCost(
        model=graph.name, hardware=hw.name, crossbars=crossbars, batch=batch, rounds=mapping.rounds,
        crossbars_used=mapping.crossbars_used, writes_charged=writes, mvm_ns=ns,
        cycles_per_inference=latency / ns, latency_ns=latency, batch_latency_ns=batch_ns, write_ns=write_ns,
        compute_ns=compute_ns, write_ns_per_crossbar=per_xbar_ns, round_crossbars=round_xbars,
        crossbars_written_per_inference=sum(round_xbars) / batch, energy_pj=energy,
        energy_by_component_pj=comps, compute_by_component_pj=compute_comps,
        area_mm2=area, edp=energy * latency, edap=energy * latency * area, layers=layers,
    )


# ---- side by side ----------------------------------------------------------------------------


def compare(layout: BasisLayout, graph: LayerGraph, hw: HardwareSpec, coeff_bits: int,
            batches: tuple[int, ...] | list[int] = (1, 64)) -> dict[str, Any]:
    """BasisN next to reprogramming on the same C crossbars, per batch size, with basis / reprogramming ratios."""
    if not batches:
        raise BasisError("batches: give at least one batch size")
    out: dict[str, Any] = {
        "model": layout.model, "hardware": hw.name, "crossbars": layout.crossbars,
        "group_crossbars": layout.group_crossbars, "coeff_bits": coeff_bits,
        "ratio_meaning": "basis / reprogramming (below 1: BasisN is better)", "batches": {},
    }
    for batch in batches:
        b = basis_cost(layout, graph, hw, coeff_bits, batch)
        r = reprogram_cost(graph, hw, layout.crossbars, batch)
        out["batches"][str(batch)] = {
            "basis": b.to_dict(),
            "reprogram": r.to_dict(),
            "ratio": {
                "cycles": b.cycles_per_inference / r.cycles_per_inference,
                "latency": b.latency_ns / r.latency_ns,
                "energy": b.energy_pj / r.energy_pj,
                "edp": b.edp / r.edp,
                "edap": b.edap / r.edap,
                "area": b.area_mm2 / r.area_mm2,
            },
        }
    return out

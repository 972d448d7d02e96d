"""The search's hardware price of a network: what `compile_graph` delivers, in milliseconds.

An architecture search asks for thousands of candidates. It used to rank them by a plan without
packing, which ran 1.5-9x faster than the compiled mapping and so ranked candidates by a latency
the compiler never delivered. The compiler now works in counts (runs of identical crossbars) and
caches each layer shape's frontier across calls, so the search calls it directly: `estimate`
compiles the graph with the objective and effort the search's report uses
(`search.run.compiled_costs`: throughput for k > 1, else latency; "fast") and reads the latency
model on the mapping it returns. The estimate and the compiled numbers are therefore the same
numbers (`benchmarks/compile_bench.py`, section estimate, checks it and times it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xbarforge.compiler.compile import _one_copy, compile_graph, min_crossbars
from xbarforge.compiler.frontier import signature
from xbarforge.compiler.lower import LoweredLayer, lower
from xbarforge.compiler.mapping import Mapping
from xbarforge.cost.latency import mapping_timing
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec

__all__ = ["Estimate", "EstimateCache", "estimate", "signature"]


@dataclass
class EstimateCache:
    """Default forms per layer shape, for one hardware (the compiler caches its frontiers itself)."""

    hw: HardwareSpec
    default: dict[tuple, LoweredLayer] = field(default_factory=dict)

    def default_form(self, layer: Layer) -> LoweredLayer:
        """The layer in its default (DESIGN.md) form, as `isaac_like` and `min_crossbars` lower it."""
        key = signature(layer)
        if key not in self.default:
            self.default[key] = lower(layer, self.hw)
        return self.default[key]

    def weight_cells(self, layer: Layer) -> int:
        """Cells holding the layer's weights (every form holds the same weights)."""
        return self.default_form(layer).weight_cells


@dataclass
class Estimate:
    """A graph compiled on a budget: does it fit, and how fast does it run."""

    fits: bool
    fewest: int | None  # fewest crossbars that hold one copy of every layer (packed)
    blocks: int  # blocks of one copy of every layer (isaac-like crossbars)
    budget: int
    cycles: dict[int, int]  # MVM cycles for k samples
    period: float  # cycles between samples in the schedule of the largest k
    copies: dict[str, int]
    mvm_ns: float
    crossbars_used: int = 0
    mapping: Mapping | None = None  # the compiled mapping (None when the graph does not fit)

    def latency_ns(self, k: int) -> float:
        return self.cycles[k] * self.mvm_ns


def estimate(graph: LayerGraph, hw: HardwareSpec, budget: int, samples: tuple[int, ...] = (8,),
             cache: EstimateCache | None = None, need_fewest: bool = False, effort: str = "fast") -> Estimate:
    """`compile_graph`'s mapping of `graph` on `budget` crossbars, timed for `samples`.

    A graph whose one packed copy needs more than `budget` crossbars does not fit (`fits` False,
    `fewest` says how many it needs; `compile_graph` would map it in reprogramming rounds).
    """
    del need_fewest  # the fewest crossbars are counted in shapes now, always cheap
    blocks = sum(low.n_blocks for low in _one_copy(graph, hw))
    fewest = min_crossbars(graph, hw)
    if fewest > budget:
        return Estimate(False, fewest, blocks, budget, {}, 0.0, {}, hw.mvm_ns)
    ks = sorted(set(samples))
    objective = "throughput" if max(ks) > 1 else "latency"
    mapping = compile_graph(graph, hw, crossbars=budget, samples=ks, objective=objective, effort=effort)
    timing = mapping_timing(mapping)
    cycles = {k: timing.cycles(k) for k in ks}
    copies = {lp.name: lp.copies for lp in mapping.layers}
    return Estimate(True, fewest, blocks, budget, cycles, timing.interval(max(ks)), copies, hw.mvm_ns,
                    mapping.crossbars_used, mapping)

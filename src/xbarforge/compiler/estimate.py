"""The compiler's plan without the packing: latency under a budget in about a millisecond.

A search asks for thousands of candidates; `compile_graph` packs every block of every copy for
several pipeline periods (0.5-1 s for a MobileNetV3). `estimate` runs the same steps up to the
packing -- the same lowering, the same Pareto options of (form, copies) per layer, the same
greedy `fill_options` at the fill the packer usually reaches -- and scores each period with the
real latency model on crossbars no two layers share. It ignores only what packing adds
(fragmentation beyond the planned fill, contention where blocks of two layers share a crossbar),
so it is optimistic; `benchmarks/search_bench.py` measures how far from `compile_graph` it lands
and the search reports compiled numbers for every network it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xbarforge.compiler.compile import EFFORTS, PRIOR_FILL, _ceilings
from xbarforge.compiler.duplicate import Option, fill_options, layer_options, min_index
from xbarforge.compiler.lower import LoweredLayer, candidate_forms, lower
from xbarforge.compiler.pack import Item, pack
from xbarforge.cost.latency import pipeline_cycles
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec


def signature(layer: Layer) -> tuple:
    """What the compiler's cost of a layer depends on (not its name, not its weights)."""
    return (layer.kind, layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding,
            layer.dilation, layer.groups, tuple(layer.in_shape), tuple(layer.out_shape))


@dataclass
class EstimateCache:
    """Lowered forms and options per layer signature, for one hardware (reuse it across candidates)."""

    hw: HardwareSpec
    forms: dict[tuple, list[LoweredLayer]] = field(default_factory=dict)
    options: dict[tuple, list[Option]] = field(default_factory=dict)
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

    def fewest_crossbars(self, layers: list[Layer]) -> int:
        """`compile.min_crossbars` from the cached default forms: one copy of every layer, packed."""
        shapes = [(i, b.height, b.width) for i, layer in enumerate(layers) for b in self.default_form(layer).blocks]
        items = [Item(k, h, w, i) for k, (i, h, w) in enumerate(shapes)]
        _, bins = pack(items, self.hw.crossbar.rows, self.hw.usable_cols, separate_layers=False)
        return len(bins)

    def layer_forms(self, layer: Layer) -> list[LoweredLayer]:
        key = signature(layer)
        if key not in self.forms:
            self.forms[key] = [lower(layer, self.hw, f) for f in candidate_forms(layer, self.hw)]
        return self.forms[key]

    def layer_options(self, layer: Layer, budget: int) -> list[Option]:
        key = (*signature(layer), budget)
        if key not in self.options:
            hw = self.hw
            cells = hw.crossbar.rows * hw.usable_cols
            max_blocks = None if hw.fires_blocks_together else budget
            self.options[key] = layer_options(self.layer_forms(layer), max_blocks, budget * cells, cells)
        return self.options[key]


@dataclass
class Estimate:
    """Planned mapping of a graph under a budget: does it fit, and how fast would it run."""

    fits: bool
    fewest: int | None  # fewest crossbars that hold one copy of every layer (packed); None: not needed
    blocks: int  # blocks of one copy of every layer (isaac-like crossbars)
    budget: int
    cycles: dict[int, int]  # MVM cycles for k samples
    period: int
    copies: dict[str, int]
    mvm_ns: float

    def latency_ns(self, k: int) -> float:
        return self.cycles[k] * self.mvm_ns


def estimate(graph: LayerGraph, hw: HardwareSpec, budget: int, samples: tuple[int, ...] = (8,),
             cache: EstimateCache | None = None, fill: float = PRIOR_FILL, need_fewest: bool = False) -> Estimate:
    """The best planned latency over `samples` for `graph` on `budget` crossbars (see module doc).

    A graph whose one packed copy needs more than `budget` crossbars does not fit (`fits` False,
    `fewest` says how many it needs; `compile_graph` would map it in reprogramming rounds).
    `fewest` is only packed for when needed (`need_fewest`, or more blocks than the budget).
    """
    cache = cache if cache is not None and cache.hw is hw else EstimateCache(hw)
    layers = graph.mvm_layers
    blocks = sum(len(cache.default_form(layer).blocks) for layer in layers)
    # a crossbar per block fits without packing; only a tighter budget needs the packed count
    fewest = cache.fewest_crossbars(layers) if (blocks > budget or need_fewest) else None
    if fewest is not None and fewest > budget:
        return Estimate(False, fewest, blocks, budget, {}, 0, {}, hw.mvm_ns)
    options = [cache.layer_options(layer, budget) for layer in layers]
    cells = hw.crossbar.rows * hw.usable_cols
    spread = not hw.fires_blocks_together
    names = [layer.name for layer in layers]
    # the periods compile_graph's "fast" effort packs: none, and multiples of the fastest reachable
    ladder: list[int | None] = [None]
    if max(samples) > 1:
        steps = _ceilings(options, budget, hw, 1)
        ladder += sorted({min(steps[0], round(steps[-1] * m)) for m in EFFORTS["fast"].focus})
    best: tuple[float, dict[int, int], int, list[Option]] | None = None
    for ceiling in ladder:
        start = [0] * len(options) if ceiling is None else [min_index(o, ceiling) for o in options]
        if any(j is None for j in start):
            continue
        idx = fill_options(options, start, budget * cells * fill, cells, ceiling, spread)  # type: ignore[arg-type]
        chosen = [options[i][j] for i, j in enumerate(idx)]
        taus = [o.tau for o in chosen]
        cycles = {k: pipeline_cycles(taus, k) for k in samples}
        score = sum(cycles.values())
        if best is None or score < best[0]:
            best = (score, cycles, max(taus), chosen)
    assert best is not None  # the no-period choice always starts (every layer has a first option)
    _, cycles, period, chosen = best
    copies = {n: o.copies for n, o in zip(names, chosen, strict=True)}
    return Estimate(True, fewest, blocks, budget, cycles, period, copies, hw.mvm_ns)

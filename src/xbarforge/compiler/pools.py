"""Heterogeneous chips: which crossbar pool holds each layer.

A chip with pools of several crossbar sizes (`chip.pools`) holds each layer on one size, every
block on its own crossbar as in the isaac-like mapping. A layer's blocks on pool p take
`n[l, p]` crossbars and leave `waste[l, p]` empty cells; the assignment minimizes the total empty
cells without taking more crossbars from a pool than it has. When every layer's least-waste size
fits the counts that choice is optimal and no solver runs; otherwise OR-Tools' CP-SAT solves the
small assignment problem exactly (a greedy repair can strand a large layer on a pool it overfills).
A model that does not fit every pool's count is not an error: the result says by how many
crossbars each pool is short (`overflow`), from the least-waste assignment without counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xbarforge.compiler.lower import Bits, lower
from xbarforge.errors import CompileError
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import CrossbarPool, HardwareSpec

SOLVER_SECONDS = 5.0  # CP-SAT time limit; the problems here (layers x pools) solve in milliseconds


@dataclass(frozen=True)
class LayerOnPool:
    """One layer's footprint on one pool's crossbar size."""

    crossbars: int
    weight_cells: int
    cells: int  # crossbars x cells per crossbar

    @property
    def waste(self) -> int:
        return self.cells - self.weight_cells


@dataclass
class PoolAssignment:
    """Pool index per layer, with what each pool holds."""

    pools: list[CrossbarPool]
    layer_pool: dict[str, int]
    footprint: dict[str, LayerOnPool]  # of each layer on its chosen pool
    used: list[int]  # crossbars taken from each pool
    overflow: list[int]  # crossbars beyond each pool's count (all 0 when the model fits)
    exact: bool  # True: solved (or least waste already fits); False: least waste ignoring counts

    @property
    def fits(self) -> bool:
        return not any(self.overflow)

    @property
    def weight_cells(self) -> int:
        return sum(f.weight_cells for f in self.footprint.values())

    @property
    def cells_used(self) -> int:
        return sum(f.cells for f in self.footprint.values())

    @property
    def crossbars_used(self) -> int:
        return sum(self.used)

    @property
    def chip_cells(self) -> int | None:
        """Cells of every crossbar of the chip (None when a pool is unbounded)."""
        if any(p.count is None for p in self.pools):
            return None
        return sum(p.rows * p.cols * (p.count or 0) for p in self.pools)


def pool_hardware(hw: HardwareSpec) -> list[HardwareSpec]:
    """The chip once per pool, with that pool's crossbar size (everything else shared)."""
    return [hw if (hw.crossbar.rows, hw.crossbar.cols) == (p.rows, p.cols) else hw.with_crossbar(p.rows, p.cols)
            for p in hw.chip.pools]


def layer_footprint(layer: Layer, hw: HardwareSpec, bits: Bits = None) -> LayerOnPool:
    """The isaac-like footprint of `layer` on `hw`'s crossbars (the compiler's own blocks)."""
    low = lower(layer, hw, bits=bits)
    n = len(low.blocks)
    return LayerOnPool(n, low.weight_cells, n * hw.crossbar.rows * hw.crossbar.cols)


def solve_assignment(names: Sequence[str], options: Sequence[Sequence[LayerOnPool]],
                     pools: Sequence[CrossbarPool]) -> PoolAssignment:
    """Least total empty cells, one pool per layer, within every pool's count (see module doc)."""
    pools = list(pools)
    choice = [min(range(len(pools)), key=lambda p, o=opts: (o[p].waste, o[p].crossbars)) for opts in options]
    exact = True
    if _overflow(choice, options, pools) and any(p.count is not None for p in pools):
        solved = _cp_sat(options, pools)
        if solved is not None:
            choice = solved
        else:
            exact = False  # does not fit: keep the least-waste choice and report the shortfall
    used = [0] * len(pools)
    for li, p in enumerate(choice):
        used[p] += options[li][p].crossbars
    return PoolAssignment(
        pools=pools,
        layer_pool={n: p for n, p in zip(names, choice, strict=True)},
        footprint={n: options[li][p] for li, (n, p) in enumerate(zip(names, choice, strict=True))},
        used=used,
        overflow=_overflow(choice, options, pools),
        exact=exact,
    )


def _overflow(choice: Sequence[int], options: Sequence[Sequence[LayerOnPool]],
              pools: Sequence[CrossbarPool]) -> list[int]:
    used = [0] * len(pools)
    for li, p in enumerate(choice):
        used[p] += options[li][p].crossbars
    return [max(0, u - p.count) if p.count is not None else 0 for u, p in zip(used, pools, strict=True)]


def _cp_sat(options: Sequence[Sequence[LayerOnPool]], pools: Sequence[CrossbarPool]) -> list[int] | None:
    """Exact assignment by CP-SAT; None when no assignment fits the counts."""
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    x = [[model.NewBoolVar(f"x{li}_{p}") for p in range(len(pools))] for li in range(len(options))]
    for row in x:
        model.AddExactlyOne(row)
    for p, pool in enumerate(pools):
        if pool.count is not None:
            model.Add(sum(options[li][p].crossbars * x[li][p] for li in range(len(options))) <= pool.count)
    model.Minimize(sum(options[li][p].waste * x[li][p] for li in range(len(options)) for p in range(len(pools))))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = SOLVER_SECONDS
    solver.parameters.num_workers = 1  # deterministic, and the problems are tiny
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return [next(p for p in range(len(pools)) if solver.Value(x[li][p])) for li in range(len(options))]


def assign_pools(graph: LayerGraph, hw: HardwareSpec, weight_bits: Mapping[str, Bits] | None = None) -> PoolAssignment:
    """Put every MVM layer of `graph` on one of `hw.chip.pools` (see module doc)."""
    pools = list(hw.chip.pools)
    if not pools:
        raise CompileError(f"hardware '{hw.name}' has no chip.pools (a heterogeneous chip needs at least one)")
    bits = weight_bits or {}
    layers = graph.mvm_layers
    pool_hws = pool_hardware(hw)
    try:
        options = [[layer_footprint(layer, phw, bits.get(layer.name)) for phw in pool_hws] for layer in layers]
    except ValueError as exc:
        raise CompileError(str(exc)) from None
    return solve_assignment([layer.name for layer in layers], options, pools)

"""The compiler: LayerGraph + HardwareSpec + budget -> Mapping (with its cost report).

Every layer has a frontier of placements on crossbars of its own (`frontier`: forms x copies x
turns -> crossbars, layer time). For a pipeline period cap P the budget is shared out by
`allocate` (least sum of layer times with every layer within P); light layers, whose one copy
already runs within P, may instead put their small blocks on crossbars shared with other light
layers (`pool`), which frees crossbars for copies of the slow ones. The compiler tries a ladder of
caps with and without the shared pool, ranks the plans with the chain formula
sum T + (k - 1) max(T, busiest shared crossbar), builds the best few and keeps the one the real
latency model (`cost.latency`) scores best for the sample counts asked. The isaac-like mapping is
always a candidate when it fits, so a budget at or above its crossbar count never does worse.

Placement is in counts (`Run`: consecutive crossbars filled alike), so the compile time depends on
the number of layers and shapes, not of blocks or copies. A model whose single packed copy does
not fit the budget is mapped in reprogramming rounds (`rounds`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping as Mapping_
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xbarforge.compiler.allocate import allocate, min_period
from xbarforge.compiler.frontier import Frontier, ParetoSet, frontier, pareto
from xbarforge.compiler.lower import LoweredLayer, default_form, lower
from xbarforge.compiler.mapping import LayerPlan, Mapping, PlacedBlock, Run, Share, SharedRun
from xbarforge.compiler.pack import pack_counts
from xbarforge.compiler.pool import Pool, Shareable, pack_pool, pooled_points, shareable
from xbarforge.cost.bounds import period_bound
from xbarforge.cost.latency import mapping_timing, round_turns
from xbarforge.errors import CompileError
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec

OBJECTIVES = ("balanced", "throughput", "latency", "none")
SCHEDULES = ("chain", "dag")
REAL_SCORED = 3  # plans built and scored with the real latency model
SOFT_PLANS = 2  # plans with overlapping windows, timed for real, when the period caps tried do not fit
PLAN_FILL = 0.9  # share of the pool's cells and time a packing is expected to fill, before the first packing


@dataclass(frozen=True)
class Effort:
    """How many period caps the search ranks: a geometric ladder, then bisection around the best."""

    ladder: int  # caps ranked by the unpacked plan
    packed: int  # of those, how many are packed for real
    refine: int  # bisection steps around the best packed cap
    refits: int = 4  # replans when the pool packing overflows the budget


EFFORTS = {"fast": Effort(ladder=8, packed=3, refine=2), "thorough": Effort(ladder=40, packed=12, refine=6)}

WeightBits = Mapping_[str, int | Sequence[int]]  # layer name -> weight bits (one, or one per output channel)


# ------------------------------------------------------------------------------------------------
# plans: which frontier point each layer takes, and which layers share the pool
# ------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """One candidate mapping before it is built: times per layer and the crossbars it needs."""

    cap: float
    choice: dict[int, int]  # layer index -> frontier point (layers on crossbars of their own)
    pool: Pool | None
    pooled: dict[int, int]  # layer index -> copies, for layers whose small blocks share crossbars
    times: list[int]
    crossbars: int
    period: int  # max over layers and shared crossbars of the cycles per sample
    score: float = math.inf
    soft: bool = False  # shared windows may overlap: the score is optimistic until timed for real

    @property
    def label(self) -> str:
        return "pooled" if self.pooled else "dedicated"


class _Options(ParetoSet):
    """A layer's points on crossbars of its own (kind 0, ref = frontier index) and with its small
    blocks in the shared pool (kind 1, ref = copies), merged into one Pareto set."""

    def __init__(self, x: np.ndarray, t: np.ndarray, kind: np.ndarray, ref: np.ndarray) -> None:
        self.x, self.t, self.kind, self.ref = x, t, kind, ref


@dataclass
class _Context:
    graph: LayerGraph
    hw: HardwareSpec
    frontiers: list[Frontier]
    defaults: list[LoweredLayer]
    ks: list[int]
    base: list[float]  # isaac-like cycles for each k in ks
    shares: list[Shareable | None] = field(default_factory=list)  # None: nothing of the layer can share
    schedule: str = "chain"
    deps: list[list[int]] = field(default_factory=list)  # layers each one waits for (schedule)
    pool_cache: dict[tuple, Pool] = field(default_factory=dict)
    bounds: dict[int, float] = field(default_factory=dict)

    def score(self, times: Sequence[int], period: int) -> float:
        """Sum over k of the chain formula's latency over the isaac-like latency."""
        total = sum(times)
        return sum((total + (k - 1) * period) / b for k, b in zip(self.ks, self.base, strict=True))

    def cycles(self, m: Mapping) -> dict[int, int]:
        """The latency model's cycles for each k asked (cached on the mapping)."""
        if "_cycles" not in m.__dict__:
            timing = mapping_timing(m)
            m.__dict__["_cycles"] = {k: timing.cycles(k) for k in self.ks}
        return m.__dict__["_cycles"]

    def exact(self, plan: _Plan) -> bool:
        """Is the plan's chain-formula score its latency? Under the chain schedule, when no shared
        crossbar can make a layer wait: no sharing, windows kept apart, or one sample at a time."""
        return self.schedule == "chain" and (plan.pool is None or max(self.ks) == 1
                                             or (not plan.soft and not math.isinf(plan.cap)))

    def starts(self, times: Sequence[int]) -> list[int]:
        """When each layer starts on the first sample: after the previous layer (chain) or after the
        layers it reads from (DAG)."""
        out: list[int] = []
        for deps in self.deps:
            out.append(max((out[p] + times[p] for p in deps), default=0))
        return out

    def bound(self, budget: int) -> float:
        """`cost.bounds.period_bound` of these layers on `budget` crossbars (cached)."""
        if budget not in self.bounds:
            self.bounds[budget] = period_bound([f.forms for f in self.frontiers], self.hw, budget)
        return self.bounds[budget]

    def options(self, cap: float, fill: float, max_blocks: float) -> list[ParetoSet]:
        out: list[ParetoSet] = []
        for f, sh in zip(self.frontiers, self.shares, strict=True):
            if sh is None:
                out.append(f)
                continue
            xp, tp, cp = pooled_points(sh, self.hw, cap, fill, max_blocks)
            x = np.concatenate([f.x.astype(float), xp])
            t = np.concatenate([f.t, tp])
            kind = np.concatenate([np.zeros(len(f.x), dtype=np.int64), np.ones(len(xp), dtype=np.int64)])
            ref = np.concatenate([np.arange(len(f.x)), cp])
            keep = pareto(x, t, kind, ref)
            out.append(_Options(x[keep], t[keep], kind[keep], ref[keep]))
        return out


def _context(graph: LayerGraph, hw: HardwareSpec, ks: list[int], schedule: str = "chain") -> _Context:
    layers = graph.mvm_layers
    frontiers = [frontier(layer, hw) for layer in layers]
    defaults = [f.forms[0] if f.forms[0].form == default_form(layer, hw) else lower(layer, hw)
                for f, layer in zip(frontiers, layers, strict=True)]
    taus = [d.tau(1) for d in defaults]
    base = [sum(taus) + (k - 1) * max(taus) for k in ks]
    ctx = _Context(graph, hw, frontiers, defaults, ks, base, schedule=schedule)
    if schedule == "chain":
        ctx.deps = [[i - 1] if i else [] for i in range(len(layers))]
    else:
        pos = {layer.name: i for i, layer in enumerate(layers)}
        preds = graph.mvm_predecessors()
        ctx.deps = [[pos[p] for p in preds[layer.name]] for layer in layers]
    smallest = (min(c.height for d in defaults for c in d.classes), min(c.width for d in defaults for c in d.classes))
    for d in defaults:
        sh = shareable(d, hw, smallest)
        ctx.shares.append(sh if sh.small else None)
    return ctx


WIDEST = 0.5  # first guess at the pool's crossbars (share of the budget): a layer's pooled blocks need one each


def _allocate(ctx: _Context, budget: int, cap: float, fill: float, widest: float
              ) -> tuple[dict[int, int], dict[int, int], list[int], float] | None:
    """One allocation: (frontier point per own layer, copies per pooled layer, times, crossbars planned
    for the pool), or None."""
    opts = ctx.options(cap, fill, widest)
    picked = allocate(opts, budget, cap)
    if picked is None:
        return None
    choice: dict[int, int] = {}
    pooled: dict[int, int] = {}
    share = 0.0
    for i, (o, j) in enumerate(zip(opts, picked, strict=True)):
        if isinstance(o, _Options) and o.kind[j] == 1:
            pooled[i] = int(o.ref[j])
            share += float(o.x[j]) - pooled[i] * ctx.shares[i].big
        else:
            choice[i] = int(o.ref[j]) if isinstance(o, _Options) else j
    return choice, pooled, [int(o.t[j]) for o, j in zip(opts, picked, strict=True)], share


def _period(ctx: _Context, cap: float, times: Sequence[int], pooled: bool) -> tuple[int, int | None]:
    """(period, window): pooled layers keep their windows apart modulo the cap their crossbar time
    was planned for. Without a cap (the plan for one sample at a time) there are no windows: the
    latency model schedules what sharing costs when samples stream."""
    slowest = max(times)
    if not pooled or math.isinf(cap) or max(ctx.ks) == 1:
        return slowest, None
    window = max(slowest, int(cap))
    return window, window


def _estimate(ctx: _Context, budget: int, cap: float) -> _Plan | None:
    """The plan the allocation makes before any packing (for ranking caps)."""
    got = _allocate(ctx, budget, cap, PLAN_FILL, budget * WIDEST)
    if got is None:
        return None
    choice, pooled, times, _ = got
    period, _ = _period(ctx, cap, times, bool(pooled))
    plan = _Plan(cap, choice, None, pooled, times, budget, period)
    plan.score = ctx.score(times, period)
    return plan


def _plan(ctx: _Context, budget: int, cap: float, soft: bool = False, refits: int = 4) -> _Plan | None:
    """Share `budget` out under a period cap: each layer on crossbars of its own or (its small
    blocks) in the shared pool, whichever the allocation prefers. The pool is then packed for real,
    its layers' windows kept apart at the plan's period so sharing never delays the schedule
    (`soft`: kept apart where the packing can, which needs fewer crossbars; the latency model
    then charges the delays). When the packing overflows the budget, the allocation is redone with
    the pool priced at what packing achieved (and, if need be, on a smaller budget) until it fits."""
    room, fill = budget, PLAN_FILL
    for _ in range(refits):
        got = _allocate(ctx, room, cap, fill, room * WIDEST)
        if got is None:
            return None
        choice, pooled, times, share = got
        period, window = _period(ctx, cap, times, bool(pooled))
        own = sum(int(ctx.frontiers[i].x[j]) for i, j in choice.items())
        pool = None
        used = own
        if pooled:
            starts = ctx.starts(times)
            key = (tuple(sorted(pooled.items())), window, soft, tuple(starts[i] for i in sorted(pooled)))
            pool = ctx.pool_cache.get(key)
            if pool is None:
                members = {i: (ctx.shares[i], c, times[i], starts[i]) for i, c in pooled.items()}
                pool = pack_pool(members, ctx.hw, window, soft)
                ctx.pool_cache[key] = pool
            used += pool.crossbars + sum(c * ctx.shares[i].big for i, c in pooled.items())
        if used <= budget:
            plan = _Plan(cap, choice, pool, pooled, times, used, period, soft=soft)
            plan.score = ctx.score(times, period)
            return plan
        # price the pool at the fill packing reached; what that does not absorb comes off the budget
        fill *= max(0.3, min(0.97, share / max(pool.crossbars, 1))) if pool is not None else 1.0
        room -= (used - budget + 1) // 2
        if room < 1:
            return None
    return None


def _dedicated(ctx: _Context, budget: int, cap: float) -> _Plan | None:
    """Every layer on crossbars of its own (no pool): exact, no packing, so cheap to try at any cap."""
    picked = allocate(ctx.frontiers, budget, cap)
    if picked is None:
        return None
    times = [int(f.t[j]) for f, j in zip(ctx.frontiers, picked, strict=True)]
    plan = _Plan(cap, dict(enumerate(picked)), None, {}, times,
                 sum(int(f.x[j]) for f, j in zip(ctx.frontiers, picked, strict=True)), max(times))
    plan.score = ctx.score(times, plan.period)
    return plan


def _search(ctx: _Context, budget: int, effort: Effort) -> list[_Plan]:
    """Plans over a ladder of period caps, best first: layers on crossbars of their own at every cap
    (exact and cheap), and with the shared pool at the caps whose unpacked plan ranks best, then
    bisection around the best cap."""
    pooled: dict[float, _Plan | None] = {}
    own: dict[float, _Plan | None] = {}

    def plan(cap: float, pool: bool = True) -> None:
        if cap not in own:
            own[cap] = _dedicated(ctx, budget, cap)
        if pool and cap not in pooled:
            pooled[cap] = _plan(ctx, budget, cap, refits=effort.refits)

    plan(math.inf)  # least sum of layer times: the plan for one sample at a time
    fastest = [p for p in (own[math.inf], pooled[math.inf]) if p is not None]
    caps: list[float] = []
    if max(ctx.ks) > 1:
        # caps worth trying lie between the smallest period crossbars of their own reach (or, when
        # they cannot hold the model, the bound) and the period of the one-sample plan
        bound = ctx.bound(budget)
        lo = min_period(ctx.frontiers, budget)
        lo = lo if lo is not None else max(1, math.ceil(bound))
        hi = max((p.period for p in fastest), default=max(d.tau(1) for d in ctx.defaults))
        caps = _ladder(lo, max(lo, hi), effort.ladder)
        if bound < lo:
            caps.append(float(max(1, math.ceil(bound))))  # shared crossbars may get below that
    for cap in caps:
        own[cap] = _dedicated(ctx, budget, cap)
    estimates = [(e.score, cap) for cap in caps if (e := _estimate(ctx, budget, cap)) is not None]
    soft: list[_Plan] = []
    for _, cap in sorted(estimates)[:effort.packed]:
        plan(cap)
        if pooled[cap] is None and len(soft) < SOFT_PLANS and (p := _plan(ctx, budget, cap, True, effort.refits)):
            soft.append(p)  # tight budgets: windows that may overlap, timed for real below
    found = lambda: [p for p in (*own.values(), *pooled.values()) if p is not None]  # noqa: E731
    for _ in range(effort.refine):
        ranked = sorted(found(), key=lambda p: p.score)
        if not ranked or math.isinf(ranked[0].cap):
            break
        best = ranked[0].cap
        tried = sorted(c for c in {*own, *pooled} if not math.isinf(c))
        i = tried.index(best)
        for j in (i - 1, i + 1):
            if 0 <= j < len(tried) and abs(tried[j] - best) > 1:
                plan(float((tried[j] + best) // 2), pool=bool(ranked[0].pooled))  # packing only if it won
    return [*sorted(found(), key=lambda p: p.score), *soft]


def _ladder(lo: int, hi: int, steps: int) -> list[float]:
    if hi <= lo:
        return [float(lo)]
    ratio = (hi / lo) ** (1 / max(1, steps))
    return sorted({float(max(lo, min(hi, round(lo * ratio**i)))) for i in range(steps + 1)})


# ------------------------------------------------------------------------------------------------
# building mappings
# ------------------------------------------------------------------------------------------------


def _mapping(graph: LayerGraph, hw: HardwareSpec, plans: list[LayerPlan], placed: list[PlacedBlock],
             runs: list[Run], crossbars: int, budget: int | None, schedule: str, objective: str, seed: int,
             rounds: int = 1, fewest: int | None = None) -> Mapping:
    return Mapping(
        model=graph.name, input_shape=tuple(graph.input_shape), hardware=hw.name,
        crossbar_rows=hw.crossbar.rows, crossbar_cols=hw.crossbar.cols, crossbars_budget=budget,
        layers=plans, placed=placed, crossbars_used=crossbars, rounds=rounds, min_crossbars=fewest,
        schedule=schedule, objective=objective, seed=seed, runs=runs, fires_together=hw.fires_blocks_together,
    )


def _placed(name: str, low: LoweredLayer, block: int, crossbar: int, row: int, col: int, round_: int = 0,
            copy: int = 0) -> PlacedBlock:
    b = low.blocks[block]
    return PlacedBlock(name, copy, b.group0, b.group1, b.row0, b.row1, b.col0, b.col1, crossbar, row, col,
                       b.height, b.width, b.weights, round_)


def _build(ctx: _Context, plan: _Plan, budget: int | None, schedule: str, objective: str, seed: int,
           fewest: int | None) -> Mapping:
    graph, hw = ctx.graph, ctx.hw
    preds = graph.mvm_predecessors()
    layers = graph.mvm_layers
    plans: list[LayerPlan] = []
    runs: list[Run] = []
    placed: list[PlacedBlock] = []
    x = 0
    for i, layer in enumerate(layers):
        if i in plan.choice:
            f = ctx.frontiers[i]
            j = plan.choice[i]
            own, n, turns = f.runs(j, x)
            low = f.forms[int(f.form[j])]
            lp = LayerPlan.from_lowered(low, int(f.copies[j]), preds[layer.name])
            lp.serial = turns
            runs.extend(own)
            x += n
        else:
            sh = ctx.shares[i]
            assert sh is not None
            copies = plan.pooled[i]
            lp = LayerPlan.from_lowered(sh.low, copies, preds[layer.name])
            for k, cls in enumerate(sh.low.classes):
                if k not in sh.classes:  # blocks that fill a crossbar keep their own
                    runs.append(Run(layer.name, cls.start, cls.start + cls.count, 0, copies, 1, ((0, 0),), x, 1))
                    x += cls.count * copies
        plans.append(lp)
    shared: list[SharedRun] = []
    if plan.pool is not None:
        for pat in plan.pool.patterns:
            shares = []
            for li, k, inst, row, col in pat.entries:
                cls = ctx.defaults[li].classes[k]
                shares.append(Share(layers[li].name, cls.start, cls.start + cls.count, inst, row, col))
            shared.append(SharedRun(x, pat.count, tuple(shares)))
            x += pat.count
    m = _mapping(graph, hw, plans, placed, runs, x, budget, schedule, objective, seed, fewest=fewest)
    m.shared = shared
    _set_serial(m)
    m.period_hint = plan.period if plan.pool is not None and max(ctx.ks) > 1 else None
    m.report["plan"] = {"label": plan.label, "period_cap_cycles": None if math.isinf(plan.cap) else int(plan.cap),
                        "pooled_layers": len(plan.pooled), "shared_crossbars": plan.pool.crossbars if plan.pool else 0}
    return m


def _real_score(ctx: _Context, m: Mapping) -> float:
    return sum(c / b for c, b in zip(ctx.cycles(m).values(), ctx.base, strict=True))


# ------------------------------------------------------------------------------------------------
# one copy, isaac-like, fewest crossbars
# ------------------------------------------------------------------------------------------------


def _check_weight_bits(graph: LayerGraph, weight_bits: WeightBits | None) -> dict:
    bits = dict(weight_bits or {})
    unknown = set(bits) - {layer.name for layer in graph.mvm_layers}
    if unknown:
        raise CompileError(f"weight bits given for layers the model does not have: {', '.join(sorted(unknown)[:3])}")
    return bits


def _one_copy(graph: LayerGraph, hw: HardwareSpec, weight_bits: WeightBits | None = None) -> list[LoweredLayer]:
    """One copy of every layer in its default (DESIGN.md) form, at its own weight bits if given."""
    bits = _check_weight_bits(graph, weight_bits)
    try:
        return [lower(layer, hw, bits=bits.get(layer.name)) for layer in graph.mvm_layers]
    except ValueError as exc:
        raise CompileError(str(exc)) from None


def _recorded_bits(weight_bits: WeightBits | None) -> dict[str, int | list[int]] | None:
    if not weight_bits:
        return None
    return {k: v if isinstance(v, int) else [int(b) for b in v] for k, v in weight_bits.items()}


def isaac_like(graph: LayerGraph, hw: HardwareSpec, schedule: str = "chain",
               weight_bits: WeightBits | None = None) -> Mapping:
    """Every block of every layer on its own crossbar: no packing, no duplication.

    `weight_bits` (mixed precision): bits per layer, one number or one per output channel.
    """
    lows = _one_copy(graph, hw, weight_bits)
    preds = graph.mvm_predecessors()
    plans, runs, x = [], [], 0
    for low in lows:
        plans.append(LayerPlan.from_lowered(low, 1, preds[low.name]))
        runs.append(Run(low.name, 0, low.n_blocks, 0, 1, 1, ((0, 0),), x, 1))
        x += low.n_blocks
    m = _mapping(graph, hw, plans, [], runs, x, None, schedule, "isaac-like", 0)
    m.weight_bits = _recorded_bits(weight_bits)
    return m


def _shape_groups(lows: Sequence[LoweredLayer]) -> tuple[list[tuple[int, int, int]], list[list[tuple[int, int]]]]:
    """Blocks of one copy of every layer grouped by shape: (count, h, w) and, per group, (layer, block)."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for li, low in enumerate(lows):
        for cls in low.classes:
            groups.setdefault((cls.height, cls.width), []).extend(
                (li, b) for b in range(cls.start, cls.start + cls.count))
    shapes = [(len(v), h, w) for (h, w), v in groups.items()]
    return shapes, list(groups.values())


def min_crossbars(graph: LayerGraph, hw: HardwareSpec, weight_bits: WeightBits | None = None) -> int:
    """Fewest crossbars that hold one copy of every layer (packed, default forms, in counts)."""
    return _fewest(_one_copy(graph, hw, weight_bits), hw)


def _fewest(lows: Sequence[LoweredLayer], hw: HardwareSpec) -> int:
    counts = defaultdict(int)
    for low in lows:
        for cls in low.classes:
            counts[(cls.height, cls.width)] += cls.count
    types = pack_counts([(n, h, w) for (h, w), n in counts.items()], hw.crossbar.rows, hw.usable_cols)
    return sum(t.count for t in types)


def _packed_copy(graph: LayerGraph, hw: HardwareSpec, lows: list[LoweredLayer], budget: int | None,
                 schedule: str, seed: int, fewest: int | None, objective: str = "none") -> Mapping:
    """One copy of every layer on the fewest crossbars (blocks of several layers share crossbars)."""
    shapes, members = _shape_groups(lows)
    types = pack_counts(shapes, hw.crossbar.rows, hw.usable_cols)
    preds = graph.mvm_predecessors()
    plans = [LayerPlan.from_lowered(low, 1, preds[low.name]) for low in lows]
    placed: list[PlacedBlock] = []
    taken = [0] * len(shapes)
    x = 0
    for bt in types:
        for _ in range(bt.count):
            for key, row, col in bt.content:
                li, b = members[key][taken[key]]
                taken[key] += 1
                placed.append(_placed(lows[li].name, lows[li], b, x, row, col))
            x += 1
    m = _mapping(graph, hw, plans, placed, [], x, budget, schedule, objective, seed, fewest=fewest)
    _set_serial(m)
    return m


def _set_serial(m: Mapping) -> None:
    """Each layer's serial turns: the most its blocks take on one crossbar, as the latency model counts
    them (blocks of a layer sharing a crossbar take turns unless the chip fires them together)."""
    turns: dict[str, int] = {}
    for rl in round_turns(m):
        for name, t in rl.items():
            turns[name] = max(turns.get(name, 1), t)
    for lp in m.layers:
        lp.serial = turns.get(lp.name, lp.serial)


# ------------------------------------------------------------------------------------------------
# the entry point
# ------------------------------------------------------------------------------------------------


def _check(graph: LayerGraph, samples: Sequence[int], objective: str, schedule: str, effort: str,
           budget: int | None) -> None:
    if objective not in OBJECTIVES:
        raise CompileError(f"objective '{objective}' is not one of {', '.join(OBJECTIVES)}")
    if schedule not in SCHEDULES:
        raise CompileError(f"schedule '{schedule}' is not one of {', '.join(SCHEDULES)}")
    if effort not in EFFORTS:
        raise CompileError(f"effort '{effort}' is not one of {', '.join(EFFORTS)}")
    if not graph.mvm_layers:
        raise CompileError(f"model '{graph.name}' has no conv or linear layer to map")
    if not samples or any(k < 1 for k in samples):
        raise CompileError("samples: every sample count must be at least 1")
    if budget is not None and budget < 1:
        raise CompileError(f"crossbars: budget must be at least 1 (got {budget})")


def compile_graph(
    graph: LayerGraph,
    hw: HardwareSpec,
    crossbars: int | None = None,
    samples: list[int] | tuple[int, ...] = (1, 8, 64),
    objective: str = "balanced",
    schedule: str = "chain",
    seed: int = 0,
    min_utilization: float | None = None,
    effort: str = "fast",
) -> Mapping:
    """Map `graph` onto `hw` under a budget of `crossbars` (default: the chip's own budget).

    objective: "balanced" minimizes the sum over `samples` of latency(k) / isaac-like(k);
    "throughput" the latency of max(samples) (steady state); "latency" one sample; "none" maps
    one copy of every layer on the fewest crossbars. Without a budget, one copy of every layer
    on as few crossbars as keep it as fast as the isaac-like mapping. `min_utilization`: fill the
    crossbars used at least this much (weights / cells), using fewer crossbars if need be.
    `effort`: "fast" or "thorough" (ranks more period caps).
    """
    budget = crossbars if crossbars is not None else hw.chip.budget
    _check(graph, samples, objective, schedule, effort, budget)
    lows = _one_copy(graph, hw)
    fewest = _fewest(lows, hw)
    if budget is not None and fewest > budget:
        from xbarforge.compiler.rounds import rounds_mapping  # rounds builds on this module

        return rounds_mapping(graph, hw, budget, list(samples), schedule, seed, fewest)
    if objective == "none":
        return _packed_copy(graph, hw, lows, budget, schedule, seed, fewest)
    ks = {"balanced": sorted(set(samples)), "throughput": [max(samples)], "latency": [1]}[objective]
    if budget is None:
        return _unbudgeted(graph, hw, ks, schedule, seed, fewest)
    ctx = _context(graph, hw, ks, schedule)
    best = _best(ctx, budget, objective, seed, fewest, EFFORTS[effort])
    if min_utilization is not None:
        best = _with_utilization(ctx, budget, objective, seed, fewest, EFFORTS[effort], min_utilization, best)
    best.report["period_bound_cycles"] = ctx.bound(budget)
    return best


def _best(ctx: _Context, budget: int, objective: str, seed: int, fewest: int, effort: Effort) -> Mapping:
    """The best of the ranked plans, the isaac-like mapping and (if nothing else fits) one packed copy.

    Under the chain schedule a plan without overlapping windows is scored exactly by the chain
    formula (its periodic schedule never waits), so only the others are timed with the latency
    model: plans with overlapping windows, the one-sample plan streaming samples, and every plan
    under the DAG schedule."""
    graph, hw, schedule = ctx.graph, ctx.hw, ctx.schedule
    ranked = _search(ctx, budget, effort)
    exact = [p for p in ranked if ctx.exact(p)]
    timed = [p for p in ranked if not ctx.exact(p)][:REAL_SCORED]
    scored: list[tuple[float, int, Mapping]] = []
    for p in exact[:1]:
        m = _build(ctx, p, budget, schedule, objective, seed, fewest)
        total = sum(p.times)
        m.__dict__["_cycles"] = {k: total + (k - 1) * p.period for k in ctx.ks}  # exact (see above)
        scored.append((p.score, len(scored), m))
    for p in timed:
        m = _build(ctx, p, budget, schedule, objective, seed, fewest)
        scored.append((_real_score(ctx, m), len(scored), m))
    base = isaac_like(graph, hw, schedule)
    if base.crossbars_used <= budget:
        base.crossbars_budget, base.objective, base.seed, base.min_crossbars = budget, objective, seed, fewest
        base.report["plan"] = {"label": "isaac-like"}
        # a budget that holds the isaac-like mapping never gets a mapping slower at any k asked
        limit = ctx.cycles(base)
        scored = [s for s in scored if all(c <= limit[k] for k, c in ctx.cycles(s[2]).items())]
        scored.append((_real_score(ctx, base), len(scored), base))
    if not scored:  # no plan fits: one packed copy always does (fewest <= budget)
        packed = _packed_copy(graph, hw, ctx.defaults, budget, schedule, seed, fewest, objective)
        packed.report["plan"] = {"label": "packed"}
        scored.append((_real_score(ctx, packed), 0, packed))
    return min(scored, key=lambda s: (s[0], s[1]))[2]


def _unbudgeted(graph: LayerGraph, hw: HardwareSpec, ks: list[int], schedule: str, seed: int,
                fewest: int) -> Mapping:
    """No budget: one copy of every layer, each on the fewest crossbars that keep it as fast as its
    isaac-like placement; the small blocks of layers shared where that costs no time."""
    ctx = _context(graph, hw, ks, schedule)
    base = isaac_like(graph, hw, schedule)
    base.min_crossbars, base.seed, base.objective = fewest, seed, "none"
    t1 = [d.tau(1) for d in ctx.defaults]
    cap = max(t1)
    own = {i: ctx.frontiers[i].first_within(t1[i]) for i in range(len(t1))}
    choice = {i: j for i, j in own.items() if j is not None}
    candidates = [base]
    plain = _Plan(math.inf, choice, None, {}, t1, 0, cap)
    candidates.append(_build(ctx, plain, None, schedule, "none", seed, fewest))
    pooled = {i: 1 for i, sh in enumerate(ctx.shares) if sh is not None}
    if pooled:
        starts = ctx.starts(t1)
        pool = pack_pool({i: (ctx.shares[i], 1, t1[i], starts[i]) for i in pooled}, hw, cap)
        shared = _Plan(float(cap), {i: j for i, j in choice.items() if i not in pooled}, pool, pooled, t1, 0, cap)
        candidates.append(_build(ctx, shared, None, schedule, "none", seed, fewest))
    limit = _real_score(ctx, base)
    fine = [m for m in candidates if _real_score(ctx, m) <= limit * (1 + 1e-9)]
    return min(fine, key=lambda m: (m.crossbars_used, candidates.index(m)))


def _with_utilization(ctx: _Context, budget: int, objective: str, seed: int, fewest: int, effort: Effort,
                      target: float, best: Mapping) -> Mapping:
    """Re-plan for fewer crossbars until the crossbars used are filled at least `target`."""
    rows_cells = ctx.hw.crossbar.rows * ctx.hw.crossbar.cols
    m = best
    cap = budget
    for _ in range(8):
        util = m.weight_cells / (m.crossbars_used * rows_cells)
        if util >= target:
            m.report["min_utilization_met"] = True
            return m
        cap = min(cap - 1, math.floor(m.weight_cells / (target * rows_cells)))
        if cap < fewest:
            break
        m = _best(ctx, cap, objective, seed, fewest, effort)
        m.crossbars_budget = budget
    m.report["min_utilization_met"] = False
    return m

"""Plans: which frontier point each layer takes, which layers share crossbars, at which period cap.

For a pipeline period cap P the budget is shared out by `allocate` (least sum of layer times with
every layer within P) over each layer's options: its frontier on crossbars of its own and, for
layers with small blocks, a place in the shared pool (`pool`). A plan whose pool overflows the
budget when packed is planned again at the fill packing reached. `search` tries the cap-free plan
(one sample at a time), layers on their own crossbars at every cap of a ladder (exact, no
packing), the pool at the caps whose unpacked plan ranks best, and bisection around the best cap,
and returns the plans best first by the chain formula sum T + (k - 1) x period summed over the
sample counts asked, each relative to the isaac-like mapping. See docs/compiler.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xbarforge.compiler.allocate import allocate, min_period
from xbarforge.compiler.frontier import Frontier, ParetoSet, frontier, pareto
from xbarforge.compiler.lower import LoweredLayer, lower
from xbarforge.compiler.mapping import Mapping
from xbarforge.compiler.pool import TIME_SHARE, TIME_SHARE_OVERLAP, Pool, Shareable, pack_pool, pooled_points, shareable
from xbarforge.cost.bounds import period_bound
from xbarforge.cost.latency import mapping_timing
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec

SOFT_PLANS = 2  # plans with overlapping windows, timed for real, when the period caps tried do not fit
PLAN_FILL = 0.9  # share of the pool's cells and time a packing is expected to fill, before the first packing
WIDEST = 0.5  # first guess at the pool's crossbars (share of the budget): a layer's pooled blocks need one each


@dataclass(frozen=True)
class Effort:
    """How many period caps the search ranks: a geometric ladder, then bisection around the best."""

    ladder: int  # caps ranked by the unpacked plan
    packed: int  # of those, how many are packed for real
    refine: int  # bisection steps around the best packed cap
    refits: int = 4  # replans when the pool packing overflows the budget


EFFORTS = {"fast": Effort(ladder=8, packed=3, refine=2), "thorough": Effort(ladder=40, packed=12, refine=6)}

@dataclass
class Plan:
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
class Context:
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
    allocations: dict[tuple, tuple | None] = field(default_factory=dict)
    bounds: dict[int, float] = field(default_factory=dict)

    def score(self, times: Sequence[int], period: int) -> float:
        """Sum over k of the chain formula's latency over the isaac-like latency."""
        total = sum(times)
        return sum((total + (k - 1) * period) / b for k, b in zip(self.ks, self.base, strict=True))

    def cycles(self, m: Mapping) -> dict[int, int]:
        """The latency model's cycles for each k asked (cached on the mapping)."""
        if "_cycles" not in m.__dict__:
            timing = mapping_timing(m, digital=False)
            m.__dict__["_cycles"] = {k: timing.cycles(k) for k in self.ks}
        return m.__dict__["_cycles"]

    def exact(self, plan: Plan) -> bool:
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

    def options(self, cap: float, fill: float, max_blocks: float, time_share: float = TIME_SHARE
                ) -> list[ParetoSet]:
        out: list[ParetoSet] = []
        for f, sh in zip(self.frontiers, self.shares, strict=True):
            if sh is None:
                out.append(f)
                continue
            xp, tp, cp = pooled_points(sh, self.hw, cap, fill, max_blocks, time_share)
            x = np.concatenate([f.x.astype(float), xp])
            t = np.concatenate([f.t, tp])
            kind = np.concatenate([np.zeros(len(f.x), dtype=np.int64), np.ones(len(xp), dtype=np.int64)])
            ref = np.concatenate([np.arange(len(f.x)), cp])
            keep = pareto(x, t, kind, ref)
            out.append(_Options(x[keep], t[keep], kind[keep], ref[keep]))
        return out


def context(graph: LayerGraph, hw: HardwareSpec, ks: list[int], schedule: str = "chain",
            defaults: list[LoweredLayer] | None = None) -> Context:
    """What planning needs of a graph: frontiers, default (isaac-like) forms given or lowered here,
    the isaac-like cycles for each k, dependencies, and which blocks may share crossbars."""
    layers = graph.mvm_layers
    frontiers = [frontier(layer, hw) for layer in layers]
    if defaults is None:
        defaults = [lower(layer, hw) for layer in layers]
    taus = [d.tau(1) for d in defaults]
    base = [sum(taus) + (k - 1) * max(taus) for k in ks]
    ctx = Context(graph, hw, frontiers, defaults, ks, base, schedule=schedule)
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




def _allocate(ctx: Context, budget: int, cap: float, fill: float, widest: float, time_share: float = TIME_SHARE
              ) -> tuple[dict[int, int], dict[int, int], list[int], float] | None:
    """One allocation: (frontier point per own layer, copies per pooled layer, times, crossbars planned
    for the pool), or None. Cached: a cap's unpacked estimate is its packed plan's first try."""
    key = (budget, cap, fill, widest, time_share)
    if key not in ctx.allocations:
        ctx.allocations[key] = _allocate_uncached(ctx, budget, cap, fill, widest, time_share)
    return ctx.allocations[key]


def _allocate_uncached(ctx: Context, budget: int, cap: float, fill: float, widest: float, time_share: float
                       ) -> tuple[dict[int, int], dict[int, int], list[int], float] | None:
    opts = ctx.options(cap, fill, widest, time_share)
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


def _period(ctx: Context, cap: float, times: Sequence[int], pooled: bool) -> tuple[int, int | None]:
    """(period, window): pooled layers keep their windows apart modulo the cap their crossbar time
    was planned for. Without a cap (the plan for one sample at a time) there are no windows: the
    latency model schedules what sharing costs when samples stream."""
    slowest = max(times)
    if not pooled or math.isinf(cap) or max(ctx.ks) == 1:
        return slowest, None
    window = max(slowest, int(cap))
    return window, window


def _estimate(ctx: Context, budget: int, cap: float) -> Plan | None:
    """The plan the allocation makes before any packing (for ranking caps)."""
    got = _allocate(ctx, budget, cap, PLAN_FILL, budget * WIDEST)
    if got is None:
        return None
    choice, pooled, times, _ = got
    period, _ = _period(ctx, cap, times, bool(pooled))
    plan = Plan(cap, choice, None, pooled, times, budget, period)
    plan.score = ctx.score(times, period)
    return plan


def _plan(ctx: Context, budget: int, cap: float, soft: bool = False, refits: int = 4) -> Plan | None:
    """Share `budget` out under a period cap: each layer on crossbars of its own or (its small
    blocks) in the shared pool, whichever the allocation prefers. The pool is then packed for real,
    its layers' windows kept apart at the plan's period so sharing never delays the schedule
    (`soft`: kept apart where the packing can, which needs fewer crossbars; the latency model
    then charges the delays). When the packing overflows the budget, the allocation is redone with
    the pool priced at what packing achieved (and, if need be, on a smaller budget) until it fits."""
    room, fill = budget, PLAN_FILL
    for attempt in range(refits):
        got = _allocate(ctx, room, cap, fill, room * WIDEST, TIME_SHARE_OVERLAP if soft else TIME_SHARE)
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
            plan = Plan(cap, choice, pool, pooled, times, used, period, soft=soft)
            plan.score = ctx.score(times, period)
            return plan
        # price the pool at the fill packing reached; after the first try, what that does not absorb
        # also comes off the budget
        fill *= max(0.3, min(0.97, share / max(pool.crossbars, 1))) if pool is not None else 1.0
        if attempt:
            room -= (used - budget + 1) // 2
        if room < 1:
            return None
    return None


def _dedicated(ctx: Context, budget: int, cap: float) -> Plan | None:
    """Every layer on crossbars of its own (no pool): exact, no packing, so cheap to try at any cap."""
    picked = allocate(ctx.frontiers, budget, cap)
    if picked is None:
        return None
    times = [int(f.t[j]) for f, j in zip(ctx.frontiers, picked, strict=True)]
    plan = Plan(cap, dict(enumerate(picked)), None, {}, times,
                 sum(int(f.x[j]) for f, j in zip(ctx.frontiers, picked, strict=True)), max(times))
    plan.score = ctx.score(times, plan.period)
    return plan


def search(ctx: Context, budget: int, effort: Effort) -> list[Plan]:
    """Plans over a ladder of period caps, best first: layers on crossbars of their own at every cap
    (exact and cheap), and with the shared pool at the caps whose unpacked plan ranks best, then
    bisection around the best cap."""
    pooled: dict[float, Plan | None] = {}
    own: dict[float, Plan | None] = {}

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
        # (a cap-free plan with shared crossbars has no real period: their windows were not kept apart)
        hi = max((p.period for p in fastest if not p.pooled), default=max(d.tau(1) for d in ctx.defaults))
        caps = _ladder(lo, max(lo, hi), effort.ladder)
        if bound < lo:
            caps.append(float(max(1, math.ceil(bound))))  # shared crossbars may get below that
    for cap in caps:
        own[cap] = _dedicated(ctx, budget, cap)
    estimates = [(e.score, cap) for cap in caps if (e := _estimate(ctx, budget, cap)) is not None]
    soft: list[Plan] = []
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

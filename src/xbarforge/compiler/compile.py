"""The compiler: LayerGraph + HardwareSpec + budget -> Mapping (with its cost report).

`plan.search` ranks plans over pipeline period caps (layers on crossbars of their own, light
layers' small blocks in a shared pool); this module builds the best of them as a Mapping in counts
(`Run`, `SharedRun`), times those the chain formula does not score exactly with the latency model
(`cost.latency`), and keeps the best, the isaac-like mapping being a candidate whenever it fits.
It also holds the isaac-like baseline, the fewest crossbars for one copy (`min_crossbars`,
counted in block shapes by `pack.pack_counts`) and one packed copy. A model whose one packed copy
does not fit the budget goes to `rounds`. See docs/compiler.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping as Mapping_
from collections.abc import Sequence

from xbarforge.compiler.lower import LoweredLayer, lower
from xbarforge.compiler.mapping import LayerPlan, Mapping, PlacedBlock, Run, Share, SharedRun, new_mapping
from xbarforge.compiler.pack import pack_counts
from xbarforge.compiler.plan import EFFORTS, Context, Effort, Plan, context, search
from xbarforge.compiler.pool import pack_pool
from xbarforge.compiler.rounds import rounds_mapping
from xbarforge.cost.latency import round_turns
from xbarforge.errors import CompileError
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec

OBJECTIVES = ("balanced", "throughput", "latency", "none")
SCHEDULES = ("chain", "dag")
REAL_SCORED = 3  # plans timed with the latency model (those the chain formula does not score exactly)

WeightBits = Mapping_[str, int | Sequence[int]]  # layer name -> weight bits (one, or one per output channel)


# ------------------------------------------------------------------------------------------------
# building mappings
# ------------------------------------------------------------------------------------------------


def _placed(name: str, low: LoweredLayer, block: int, crossbar: int, row: int, col: int, round_: int = 0,
            copy: int = 0) -> PlacedBlock:
    b = low.blocks[block]
    return PlacedBlock(name, copy, b.group0, b.group1, b.row0, b.row1, b.col0, b.col1, crossbar, row, col,
                       b.height, b.width, b.weights, round_)


def _build(ctx: Context, plan: Plan, budget: int | None, schedule: str, objective: str, seed: int,
           fewest: int | None) -> Mapping:
    graph, hw = ctx.graph, ctx.hw
    preds = graph.mvm_predecessors()
    layers = graph.mvm_layers
    plans: list[LayerPlan] = []
    runs: list[Run] = []
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
    m = new_mapping(graph, hw, plans, [], runs, x, budget, schedule, objective, seed, fewest=fewest)
    m.shared = shared
    _set_serial(m)
    m.period_hint = plan.period if plan.pool is not None and max(ctx.ks) > 1 else None
    m.report["plan"] = {"label": plan.label, "period_cap_cycles": None if math.isinf(plan.cap) else int(plan.cap),
                        "pooled_layers": len(plan.pooled), "shared_crossbars": plan.pool.crossbars if plan.pool else 0}
    return m


def _real_score(ctx: Context, m: Mapping) -> float:
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
    m = _isaac_like(graph, hw, _one_copy(graph, hw, weight_bits), schedule)
    m.weight_bits = _recorded_bits(weight_bits)
    return m


def _isaac_like(graph: LayerGraph, hw: HardwareSpec, lows: Sequence[LoweredLayer], schedule: str) -> Mapping:
    """The isaac-like mapping of layers already lowered in their default forms."""
    preds = graph.mvm_predecessors()
    plans, runs, x = [], [], 0
    for low in lows:
        plans.append(LayerPlan.from_lowered(low, 1, preds[low.name]))
        runs.append(Run(low.name, 0, low.n_blocks, 0, 1, 1, ((0, 0),), x, 1))
        x += low.n_blocks
    return new_mapping(graph, hw, plans, [], runs, x, None, schedule, "isaac-like", 0)


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
    m = new_mapping(graph, hw, plans, placed, [], x, budget, schedule, objective, seed, fewest=fewest)
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
        return rounds_mapping(graph, hw, budget, list(samples), schedule, seed, fewest)
    if objective == "none":
        return _packed_copy(graph, hw, lows, budget, schedule, seed, fewest)
    ks = {"balanced": sorted(set(samples)), "throughput": [max(samples)], "latency": [1]}[objective]
    if budget is None:
        return _unbudgeted(context(graph, hw, ks, schedule, lows), seed, fewest)
    ctx = context(graph, hw, ks, schedule, lows)
    best = _best(ctx, budget, objective, seed, fewest, EFFORTS[effort])
    if min_utilization is not None:
        best = _with_utilization(ctx, budget, objective, seed, fewest, EFFORTS[effort], min_utilization, best)
    best.report["period_bound_cycles"] = ctx.bound(budget)
    return best


def _best(ctx: Context, budget: int, objective: str, seed: int, fewest: int, effort: Effort) -> Mapping:
    """The best of the ranked plans, the isaac-like mapping and (if nothing else fits) one packed copy.

    Under the chain schedule a plan without overlapping windows is scored exactly by the chain
    formula (its periodic schedule never waits), so only the others are timed with the latency
    model: plans with overlapping windows, the one-sample plan streaming samples, and every plan
    under the DAG schedule."""
    graph, hw, schedule = ctx.graph, ctx.hw, ctx.schedule
    ranked = search(ctx, budget, effort)
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
    base = _isaac_like(graph, hw, ctx.defaults, schedule)
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
    if effort is not EFFORTS["fast"]:  # a harder search never ends worse than the fast one
        fast = _best(ctx, budget, objective, seed, fewest, EFFORTS["fast"])
        scored.append((_real_score(ctx, fast), len(scored), fast))
    return min(scored, key=lambda s: (s[0], s[1]))[2]


def _unbudgeted(ctx: Context, seed: int, fewest: int) -> Mapping:
    """No budget: one copy of every layer, each on the fewest crossbars that keep it as fast as its
    isaac-like placement; the small blocks of layers shared where that costs no time."""
    graph, hw, schedule = ctx.graph, ctx.hw, ctx.schedule
    base = _isaac_like(graph, hw, ctx.defaults, schedule)
    base.min_crossbars, base.seed, base.objective = fewest, seed, "none"
    t1 = [d.tau(1) for d in ctx.defaults]
    cap = max(t1)
    own = {i: ctx.frontiers[i].first_within(t1[i]) for i in range(len(t1))}
    choice = {i: j for i, j in own.items() if j is not None}
    candidates = [base]
    plain = Plan(math.inf, choice, None, {}, t1, 0, cap)
    candidates.append(_build(ctx, plain, None, schedule, "none", seed, fewest))
    pooled = {i: 1 for i, sh in enumerate(ctx.shares) if sh is not None}
    if pooled:
        starts = ctx.starts(t1)
        pool = pack_pool({i: (ctx.shares[i], 1, t1[i], starts[i]) for i in pooled}, hw, cap)
        shared = Plan(float(cap), {i: j for i, j in choice.items() if i not in pooled}, pool, pooled, t1, 0, cap)
        candidates.append(_build(ctx, shared, None, schedule, "none", seed, fewest))
    limit = _real_score(ctx, base)
    fine = [m for m in candidates if _real_score(ctx, m) <= limit * (1 + 1e-9)]
    return min(fine, key=lambda m: (m.crossbars_used, candidates.index(m)))


def _with_utilization(ctx: Context, budget: int, objective: str, seed: int, fewest: int, effort: Effort,
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

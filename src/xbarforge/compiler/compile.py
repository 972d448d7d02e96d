"""The compiler: LayerGraph + HardwareSpec + budget -> Mapping (with its cost report).

Steps: lower every MVM layer (forms), build each layer's Pareto options of (form, copies), then
search pipeline periods: for each, choose options greedily, pack the chosen blocks into the
budget (MaxRects, layers' windows in the period respected), move blocks that would make the
schedule wait, feed the packer's achieved fill back into the choice when it overflows, and score
the result with the real latency model for the sample counts asked. A model whose single copy
does not fit the budget is mapped in reprogramming rounds instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping as Mapping_
from collections.abc import Sequence
from dataclasses import dataclass

from xbarforge.compiler.duplicate import MAX_BLOCKS, Option, fill_options, layer_options, min_index
from xbarforge.compiler.lower import LoweredLayer, candidate_forms, lower
from xbarforge.compiler.mapping import LayerPlan, Mapping, PlacedBlock
from xbarforge.compiler.pack import Item, Packer, PackingOverflow, Placement, pack, repair_windows, sort_items
from xbarforge.cost.bounds import period_bound
from xbarforge.cost.latency import mapping_timing
from xbarforge.errors import CompileError
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec

OBJECTIVES = ("balanced", "throughput", "latency", "none")
SCHEDULES = ("chain", "dag")
MAX_REFITS = 6
PRIOR_FILL = 0.9  # packing fill assumed before the first real packing
REFINE_TOP = 3  # periods refined per round


@dataclass
class _Choice:
    lowered: LoweredLayer
    copies: int


def _plans(graph: LayerGraph, choices: list[_Choice]) -> list[LayerPlan]:
    preds = graph.mvm_predecessors()
    return [LayerPlan.from_lowered(ch.lowered, ch.copies, preds[ch.lowered.name]) for ch in choices]


def _items(choices: list[_Choice], starts: list[int] | None = None) -> tuple[list[Item], list[tuple[int, int, int]]]:
    """Packing items for every block of every copy; keys index the returned (layer, copy, block)."""
    items: list[Item] = []
    index: list[tuple[int, int, int]] = []
    for li, ch in enumerate(choices):
        tau = ch.lowered.tau(ch.copies)
        start = starts[li] if starts else 0
        for c in range(ch.copies):
            for bi, b in enumerate(ch.lowered.blocks):
                items.append(Item(len(index), b.height, b.width, li, tau, start))
                index.append((li, c, bi))
    return items, index


def _deps(graph: LayerGraph, schedule: str) -> dict[int, list[int]]:
    """Which MVM layers (by index) each one waits for: the previous one (chain) or its inputs (DAG)."""
    n = len(graph.mvm_layers)
    if schedule == "chain":
        return {i: [i - 1] if i else [] for i in range(n)}
    pos = {layer.name: i for i, layer in enumerate(graph.mvm_layers)}
    preds = graph.mvm_predecessors()
    return {i: [pos[p] for p in preds[layer.name]] for i, layer in enumerate(graph.mvm_layers)}


def _window_starts(deps: dict[int, list[int]], taus: list[int]) -> list[int]:
    """When each layer starts for the first sample, right after the layers it waits for."""
    starts = [0] * len(taus)
    for i in range(len(taus)):
        starts[i] = max((starts[p] + taus[p] for p in deps[i]), default=0)
    return starts


def _placed(choices: list[_Choice], index: list[tuple[int, int, int]], placements, rounds=None) -> list[PlacedBlock]:
    out = []
    for pl in placements:
        li, c, bi = index[pl.key]
        b = choices[li].lowered.blocks[bi]
        out.append(
            PlacedBlock(
                layer=choices[li].lowered.name, copy=c, group0=b.group0, group1=b.group1,
                row0=b.row0, row1=b.row1, col0=b.col0, col1=b.col1, crossbar=pl.crossbar,
                row_offset=pl.row, col_offset=pl.col, height=b.height, width=b.width, weights=b.weights,
                round=0 if rounds is None else rounds[pl.key],
            )
        )
    out.sort(key=lambda b: (b.round, b.crossbar, b.row_offset, b.col_offset))
    return out


def _serial_counts(blocks: list[PlacedBlock], concurrent: bool) -> dict[str, int]:
    """Blocks of a layer that must take turns in one crossbar (max over crossbars)."""
    groups: dict[tuple[str, int, int], list[PlacedBlock]] = defaultdict(list)
    for b in blocks:
        groups[(b.layer, b.round, b.crossbar)].append(b)
    serial: dict[str, int] = defaultdict(lambda: 1)
    for (name, _, _), bs in groups.items():
        if len(bs) == 1:
            continue
        if not concurrent:
            turns = len(bs)
        else:  # greedy colouring: blocks sharing rows or columns cannot fire in one MVM
            colours: list[list[PlacedBlock]] = []
            for b in bs:
                for col in colours:
                    if all(not _shares_lines(b, o) for o in col):
                        col.append(b)
                        break
                else:
                    colours.append([b])
            turns = len(colours)
        serial[name] = max(serial[name], turns)
    return serial


def _shares_lines(a: PlacedBlock, b: PlacedBlock) -> bool:
    rows = a.row_offset < b.row_offset + b.height and b.row_offset < a.row_offset + a.height
    cols = a.col_offset < b.col_offset + b.width and b.col_offset < a.col_offset + a.width
    return rows or cols


def _finish(graph, hw, choices, blocks, crossbars_used, budget, schedule, objective, seed,
            rounds=1, min_crossbars=None) -> Mapping:
    plans = _plans(graph, choices)
    serial = _serial_counts(blocks, hw.fires_blocks_together)
    first_round: dict[str, int] = {}
    for b in blocks:
        first_round.setdefault(b.layer, b.round)
    for p in plans:
        p.serial = serial[p.name]
        p.round = first_round.get(p.name, 0)
    return Mapping(
        model=graph.name, input_shape=tuple(graph.input_shape), hardware=hw.name,
        crossbar_rows=hw.crossbar.rows, crossbar_cols=hw.crossbar.cols, crossbars_budget=budget,
        layers=plans, blocks=blocks, crossbars_used=crossbars_used, rounds=rounds,
        min_crossbars=min_crossbars, schedule=schedule, objective=objective, seed=seed,
    )


WeightBits = Mapping_[str, int | Sequence[int]]  # layer name -> weight bits (one, or one per output channel)


def _one_copy(graph: LayerGraph, hw: HardwareSpec, weight_bits: WeightBits | None = None) -> list[_Choice]:
    """One copy of every layer in its default (DESIGN.md) form, at its own weight bits if given."""
    bits = weight_bits or {}
    unknown = set(bits) - {layer.name for layer in graph.mvm_layers}
    if unknown:
        raise CompileError(f"weight bits given for layers the model does not have: {', '.join(sorted(unknown)[:3])}")
    try:
        return [_Choice(lower(layer, hw, bits=bits.get(layer.name)), 1) for layer in graph.mvm_layers]
    except ValueError as exc:
        raise CompileError(str(exc)) from None


def _recorded_bits(weight_bits: WeightBits | None) -> dict[str, int | list[int]] | None:
    if not weight_bits:
        return None
    return {k: v if isinstance(v, int) else [int(b) for b in v] for k, v in weight_bits.items()}


def _pack_one_copy(choices: list[_Choice], hw: HardwareSpec, budget: int | None):
    """Pack one copy of every layer, keeping a layer's blocks apart where the budget allows (so
    they need not take turns), else letting them share."""
    items, index = _items(choices)
    rows, cols = hw.crossbar.rows, hw.usable_cols
    try:
        placements, bins = pack(items, rows, cols, budget, separate_layers=not hw.fires_blocks_together,
                                fire_together=True)
    except PackingOverflow:
        placements, bins = pack(items, rows, cols, budget, separate_layers=False)
    return index, placements, len(bins)


def isaac_like(graph: LayerGraph, hw: HardwareSpec, schedule: str = "chain",
               weight_bits: WeightBits | None = None) -> Mapping:
    """Every block of every layer on its own crossbar: no packing, no duplication.

    `weight_bits` (mixed precision): bits per layer, one number or one per output channel.
    """
    choices = _one_copy(graph, hw, weight_bits)
    _, index = _items(choices)
    placements = [Placement(k, k, 0, 0) for k in range(len(index))]
    blocks = _placed(choices, index, placements)
    mapping = _finish(graph, hw, choices, blocks, len(blocks), None, schedule, "isaac-like", 0)
    mapping.weight_bits = _recorded_bits(weight_bits)
    return mapping


def min_crossbars(graph: LayerGraph, hw: HardwareSpec, weight_bits: WeightBits | None = None) -> int:
    """Fewest crossbars that hold one copy of every layer (packed, default forms)."""
    items, _ = _items(_one_copy(graph, hw, weight_bits))
    _, bins = pack(items, hw.crossbar.rows, hw.usable_cols, separate_layers=False)
    return len(bins)


def _rounds_mapping(graph, hw, budget, schedule, seed, fewest) -> Mapping:
    """One copy of every layer, split into reprogramming rounds of at most `budget` crossbars."""
    choices = _one_copy(graph, hw)
    items, index = _items(choices)
    by_layer: dict[int, list[Item]] = defaultdict(list)
    for it in items:
        by_layer[it.layer].append(it)
    rounds: dict[int, int] = {}
    placements = []
    rnd, packer, used = 0, Packer(hw.crossbar.rows, hw.usable_cols, budget, separate_layers=False), 0
    for li in range(len(choices)):
        for it in sort_items(by_layer[li]):
            pl = packer.add(it)
            if pl is None:
                used = max(used, len(packer.bins))
                rnd += 1
                packer = Packer(hw.crossbar.rows, hw.usable_cols, budget, separate_layers=False)
                pl = packer.add(it)
            rounds[it.key] = rnd
            placements.append(pl)
    used = max(used, len(packer.bins))
    blocks = _placed(choices, index, placements, rounds)
    return _finish(graph, hw, choices, blocks, used, budget, schedule, "rounds", seed,
                   rounds=rnd + 1, min_crossbars=fewest)


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
    one copy of every layer, packed (no duplication). `min_utilization`: fill the crossbars used
    at least this much (weights / cells), using fewer crossbars if need be. `effort`: "fast"
    (milliseconds, for search loops) or "thorough" (packs many more pipeline periods).
    """
    if objective not in OBJECTIVES:
        raise CompileError(f"objective '{objective}' is not one of {', '.join(OBJECTIVES)}")
    if schedule not in SCHEDULES:
        raise CompileError(f"schedule '{schedule}' is not one of {', '.join(SCHEDULES)}")
    if effort not in EFFORTS:
        raise CompileError(f"effort '{effort}' is not one of {', '.join(EFFORTS)}")
    if not graph.mvm_layers:
        raise CompileError(f"model '{graph.name}' has no conv or linear layer to map")
    if any(k < 1 for k in samples):
        raise CompileError("samples: every sample count must be at least 1")
    budget = crossbars if crossbars is not None else hw.chip.budget
    if budget is not None and budget < 1:
        raise CompileError(f"crossbars: budget must be at least 1 (got {budget})")
    rows, cols = hw.crossbar.rows, hw.usable_cols
    fewest = min_crossbars(graph, hw)
    if budget is not None and fewest > budget:
        return _rounds_mapping(graph, hw, budget, schedule, seed, fewest)
    if budget is None or objective == "none":
        choices = _one_copy(graph, hw)
        index, placements, used = _pack_one_copy(choices, hw, budget)
        blocks = _placed(choices, index, placements)
        return _finish(graph, hw, choices, blocks, used, budget, schedule, "none", seed, min_crossbars=fewest)

    layers = graph.mvm_layers
    forms = [[lower(layer, hw, f) for f in candidate_forms(layer, hw)] for layer in layers]
    max_blocks = None if hw.fires_blocks_together else budget
    options = [layer_options(fs, max_blocks, budget * rows * cols, rows * cols) for fs in forms]
    base = _one_copy(graph, hw)
    base_first = sum(b.lowered.tau(1) for b in base)
    base_max = max(b.lowered.tau(1) for b in base)
    ks = {"balanced": list(samples), "throughput": [max(samples)], "latency": [1]}[objective]
    best = _search(graph, hw, options, budget, ks, base_first, base_max, schedule, min_utilization,
                   EFFORTS[effort])
    if best is None:  # no duplication fits: one packed copy always does (fewest <= budget)
        best = (base, *_pack_one_copy(base, hw, budget), None)
    choices, index, placements, used, period = best
    blocks = _placed(choices, index, placements)
    mapping = _finish(graph, hw, choices, blocks, used, budget, schedule, objective, seed, min_crossbars=fewest)
    mapping.period_hint = period
    mapping.report["period_bound_cycles"] = period_bound(forms, hw, budget)
    return mapping


def _ceilings(options: list[list[Option]], budget: int, hw: HardwareSpec, steps: int) -> list[int]:
    """Pipeline periods to try, slowest first: a geometric ladder from no duplication down to the
    fastest period reachable (where crossbars fire one block at a time, a crossbar does at most
    one block-MVM per cycle, so the period is at least the block-MVMs per sample / budget)."""
    hi = max(opts[0].tau for opts in options)
    lo = max(opts[-1].tau for opts in options)
    if not hw.fires_blocks_together:
        lo = max(lo, math.ceil(sum(min(o.time for o in opts) for opts in options) / budget))
    if lo >= hi:
        return [hi]
    ratio = (hi / lo) ** (1 / steps)
    return sorted({max(lo, min(hi, round(lo * ratio**i))) for i in range(steps + 1)}, reverse=True)


@dataclass(frozen=True)
class Effort:
    """How hard the period search looks: ladder steps, how many to pack, refinement passes."""

    steps: int
    stride: int
    refine: int
    fills: tuple[float, ...] = ()  # planning fills tried per period; () = the last one packing reached
    focus: tuple[float, ...] = ()  # also try these multiples of the fastest reachable period


# Pipelined mappings that pay off sit at 2x to 3.5x the fastest reachable period (measured on the
# RNC SqueezeNet comparison, benchmarks/compile_bench.py): "fast" packs only those and no period at
# all; "thorough" also walks a fine ladder from no duplication down, with three fills per period.
EFFORTS = {
    "fast": Effort(steps=1, stride=2, refine=0, focus=(2.0, 2.75, 3.5)),
    "thorough": Effort(steps=40, stride=1, refine=2, fills=(1.0, 0.95, 0.9, 0.85),
                       focus=(2.0, 2.25, 2.5, 2.75, 3.0, 3.5)),
}


def _search(graph, hw, options, budget, ks, base_first, base_max, schedule, min_utilization, effort):
    """Find the pipeline period whose mapping has the best latency over the samples asked.

    For a period P every layer first takes its cheapest option with tau <= P, then the capacity
    left goes to cutting sum tau (`fill_options`); P = None means no period (the k = 1 choice).
    Packing is what costs time, so `effort` decides how many periods are packed: every
    `stride`-th step of a geometric ladder, a few multiples of the fastest reachable period
    (`focus`), then `refine` rounds that try halfway between each of the best periods and its
    neighbours. Packing lets the windows of layers that share a crossbar overlap as long as they
    fit one period (dense); the schedules pay any delay, and every score comes from the real
    latency model on the real packing.
    """
    ladder = [] if max(ks) == 1 else _ceilings(options, budget, hw, effort.steps)
    fill = [PRIOR_FILL]
    results: dict[int | None, tuple[object, float]] = {}

    def real(ceiling: int | None) -> float:
        if ceiling not in results:
            start = [0] * len(options) if ceiling is None else [min_index(o, ceiling) for o in options]
            if any(j is None for j in start) or sum(options[i][j].blocks for i, j in enumerate(start)) > MAX_BLOCKS:
                results[ceiling] = (None, math.inf)
            else:
                # the landscape is rugged: fewer copies can leave room that removes contention
                best: tuple[object, float] = (None, math.inf)
                # fast: start from the fill the last packing reached; thorough: fixed fills, so the
                # result does not depend on the order periods are tried in
                for f in effort.fills or (fill[0],):
                    found, score, achieved = _try(graph, hw, options, budget, ks, base_first, base_max, schedule,
                                                  ceiling, start, f, min_utilization)
                    if found is not None and not effort.fills:  # a failed period says nothing of others
                        fill[0] = achieved
                    if score < best[1]:
                        best = (found, score)
                results[ceiling] = best
        return results[ceiling][1]

    if real(None) == math.inf:  # not even the k = 1 choice packs: periods only add constraints
        return None
    for c in ladder[:: effort.stride]:
        real(c)
    for m in effort.focus if ladder else ():
        real(min(ladder[0], round(ladder[-1] * m)))
    tried = sorted(c for c in results if c is not None)
    for _ in range(effort.refine if tried else 0):
        for best in sorted(tried, key=lambda c: results[c][1])[:REFINE_TOP]:  # rugged: refine several
            i = tried.index(best)
            for j in (i - 1, i + 1):
                if 0 <= j < len(tried) and abs(tried[j] - best) > 1:
                    real((tried[j] + best) // 2)
        tried = sorted(c for c in results if c is not None)
    found, _ = min(results.values(), key=lambda r: r[1])
    return None if found is None else found[:-1]


def _try(graph, hw, options, budget, ks, base_first, base_max, schedule, ceiling, start, fill,
         min_utilization):
    """Choose, pack and score for one period; returns (mapping parts, score, fill achieved).

    The choice is planned with the fill packing achieves (`fill`, lowered on overflow); when the
    packing leaves crossbars unused, one more choice is tried with the room that freed; when the
    crossbars used are filled below `min_utilization`, the choice is made again for fewer
    crossbars, which is how a high-utilization mapping is found rather than filtered for.
    """
    rows, cols = hw.crossbar.rows, hw.usable_cols
    xbar_cells = rows * cols
    spread = not hw.fires_blocks_together
    deps = _deps(graph, schedule)
    cap_bins, best, best_fill, grown = budget, None, fill, False
    for _ in range(MAX_REFITS):
        idx = fill_options(options, start, cap_bins * xbar_cells * fill, xbar_cells, ceiling, spread)
        chosen = [options[i][j] for i, j in enumerate(idx)]
        choices = [_Choice(o.lowered, o.copies) for o in chosen]
        starts = _window_starts(deps, [o.tau for o in chosen]) if ceiling else None
        items, index = _items(choices, starts)
        try:
            placements, bins = pack(items, rows, cols, cap_bins, ceiling, separate_layers=spread, soft=True,
                                    fire_together=True)
        except PackingOverflow as over:
            if best is not None:  # growing did not fit: keep what did
                break
            fill *= min(0.97, cap_bins / over.needed * 0.995)  # plan with the fill packing reached
            continue
        if ceiling and spread:
            placements = _repair(deps, items, placements, bins, ceiling, cap_bins)
        weights = sum(o.copies * o.lowered.weight_cells for o in chosen)
        util = weights / (len(bins) * hw.crossbar.rows * hw.crossbar.cols)
        if min_utilization is not None and util < min_utilization and best is None:
            cap_bins = max(1, min(cap_bins - 1, math.floor(weights / (min_utilization * rows * hw.crossbar.cols))))
            continue
        score = _score(graph, hw, choices, index, placements, len(bins), schedule, ks, base_first, base_max,
                       ceiling)
        if min_utilization is not None and util < min_utilization:
            score += 1e6  # feasible but below the utilization asked for: last resort only
        if best is None or score < best[1]:
            best, best_fill = ((choices, index, placements, len(bins), ceiling, util), score), fill
        if grown or len(bins) >= cap_bins or (min_utilization is not None and util < min_utilization):
            break
        grown = True  # room left: plan once more with the fill this packing reached
        fill = min(1.0, fill * cap_bins / len(bins))
    if best is None:
        return None, math.inf, fill
    return best[0], best[1], best_fill


def _repair(deps, items, placements, bins, period, max_bins):
    """Move blocks that would make the periodic schedule wait (see `repair_windows`)."""
    placements = repair_windows(items, placements, bins, period, list(range(len(deps))), deps, max_bins)
    used = {pl.crossbar for pl in placements}
    if len(used) < len(bins):  # a crossbar emptied by the moves: renumber densely
        renum = {x: i for i, x in enumerate(sorted(used))}
        placements = [Placement(pl.key, renum[pl.crossbar], pl.row, pl.col) for pl in placements]
        bins[:] = [bins[x] for x in sorted(used)]
    return placements


def _score(graph, hw, choices, index, placements, used, schedule, ks, base_first, base_max, period) -> float:
    """Sum over k of latency(k) / isaac-like latency(k), from the real latency model."""
    blocks = _placed(choices, index, placements)
    m = _finish(graph, hw, choices, blocks, used, None, schedule, "", 0)
    m.period_hint = period
    timing = mapping_timing(m)
    return sum(timing.cycles(k) / (base_first + (k - 1) * base_max) for k in ks)




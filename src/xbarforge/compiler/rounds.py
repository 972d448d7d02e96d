"""Reprogramming rounds: a model larger than the budget runs in rounds, each written before it computes.

Every batch of k samples goes through round 0, then the chip is rewritten for round 1, and so on;
with more than one round every round is rewritten for every batch (the last round overwrote the
first). Latency(k) = sum over rounds of (write time of its crossbars + its compute for k samples).

The partition is chosen by dynamic programming over the layer chain (anchor: COMPASS,
arXiv 2501.06780, which partitions a network into rounds to minimize reprogramming plus compute):
a round is a run of consecutive layers whose cheapest placement fits the budget; its cost is the
best allocation of the budget among its layers (`allocate`, copies inside the round when they pay
for the crossbars they add to the writes) scored as writes + sum T + (k - 1) max T, summed over
the sample counts asked, each relative to the naive schedule. A layer that alone exceeds the
budget is split into consecutive parts, one round each, each block on a crossbar of its own.

`naive` rounds (layers in order, one copy, a new round when the next layer does not fit) and
isaac-like rounds are built too; the compiler keeps whichever the latency model scores best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from xbarforge.compiler.allocate import allocate
from xbarforge.compiler.frontier import Frontier, frontier
from xbarforge.compiler.lower import LoweredLayer, lower
from xbarforge.compiler.mapping import LayerPlan, Mapping, Run, new_mapping
from xbarforge.cost.latency import mapping_timing
from xbarforge.cost.reprogram import write_cycles
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec

CAPS = 6  # period caps tried per round (geometric between the fastest and one copy)
ROUND_TIE = 1e-9  # between partitions that cost the same, the one with fewer rounds


@dataclass
class _Round:
    layers: list[int]  # layer indices, in order
    choice: list[int]  # frontier point per layer (empty for a split layer's part)
    crossbars: int
    cost: float  # score contribution (sum over k of cycles / naive cycles)
    part: tuple[int, int] | None = None  # block range of a split layer


def _segment(frontiers: Sequence[Frontier], budget: int, ks: Sequence[int], norm: Sequence[float],
             write: float, lo: int, hi: int) -> tuple[float, list[int], int] | None:
    """Best allocation of one round holding layers [lo, hi): (cost, choice, crossbars)."""
    fs = frontiers[lo:hi]
    if sum(int(f.x[0]) for f in fs) > budget:
        return None
    fastest = max(int(f.t[-1]) for f in fs)
    slowest = max(int(f.t[0]) for f in fs)
    caps = [math.inf]
    if max(ks) > 1 and slowest > fastest:
        ratio = (slowest / fastest) ** (1 / CAPS)
        caps += sorted({round(fastest * ratio**i) for i in range(CAPS + 1)})
    best = None
    for cap in caps:
        choice = allocate(fs, budget, cap, crossbar_cost=write)
        if choice is None:
            continue
        times = [int(f.t[j]) for f, j in zip(fs, choice, strict=True)]
        x = sum(int(f.x[j]) for f, j in zip(fs, choice, strict=True))
        w = write * x
        cost = sum((w + sum(times) + (k - 1) * max(times)) / n for k, n in zip(ks, norm, strict=True))
        if best is None or cost < best[0]:
            best = (cost, choice, x)
    return best


def _naive(frontiers: Sequence[Frontier], budget: int) -> list[list[int]]:
    """Layers in order, one copy at its cheapest placement, a new round when the next does not fit."""
    rounds: list[list[int]] = [[]]
    used = 0
    for i, f in enumerate(frontiers):
        need = int(f.x[0])
        if rounds[-1] and used + need > budget:
            rounds.append([])
            used = 0
        rounds[-1].append(i)
        used += need
    return rounds


def _parts(low: LoweredLayer, budget: int) -> list[tuple[int, int]]:
    """Block ranges of a layer too large for one round: `budget` blocks per round, each alone."""
    return [(b, min(b + budget, low.n_blocks)) for b in range(0, low.n_blocks, budget)]


def plan_rounds(frontiers: Sequence[Frontier], defaults: Sequence[LoweredLayer], budget: int, ks: Sequence[int],
                write: float) -> list[_Round]:
    """The partition into rounds with the least total cost (dynamic programming over the chain)."""
    n = len(frontiers)
    naive = _naive(frontiers, budget)
    # normalise each k by the naive schedule's cycles, so sample counts weigh alike
    norm = []
    for k in ks:
        total = 0.0
        for r in naive:
            times = [int(frontiers[i].t[0]) for i in r]
            total += write * sum(int(frontiers[i].x[0]) for i in r) + sum(times) + (k - 1) * max(times)
        norm.append(max(total, 1.0))
    best: list[tuple[float, list[_Round]] | None] = [None] * (n + 1)
    best[0] = (0.0, [])
    for j in range(1, n + 1):
        candidates: list[tuple[float, list[_Round]]] = []
        giant = int(frontiers[j - 1].x[0]) > budget
        if giant and best[j - 1] is not None:
            low = defaults[j - 1]
            parts = []
            cost = 0.0
            for b0, b1 in _parts(low, budget):
                t = low.tau(1)
                w = write * (b1 - b0)
                c = sum((w + k * t) / nk for k, nk in zip(ks, norm, strict=True))
                parts.append(_Round([j - 1], [], b1 - b0, c, (b0, b1)))
                cost += c
            prev = best[j - 1]
            candidates.append((prev[0] + cost, [*prev[1], *parts]))
        else:
            need = 0
            for i in range(j - 1, -1, -1):
                need += int(frontiers[i].x[0])
                if need > budget:
                    break
                if best[i] is None:
                    continue
                seg = _segment(frontiers, budget, ks, norm, write, i, j)
                if seg is None:
                    continue
                prev = best[i]
                rd = _Round(list(range(i, j)), seg[1], seg[2], seg[0])
                candidates.append((prev[0] + seg[0] + ROUND_TIE, [*prev[1], rd]))
        best[j] = min(candidates, key=lambda c: c[0]) if candidates else None
    final = best[n]
    assert final is not None  # every layer fits alone or is split
    return final[1]


def naive_rounds(frontiers: Sequence[Frontier], defaults: Sequence[LoweredLayer], budget: int) -> list[_Round]:
    """Layers in order at one copy each (giant layers split), for comparison."""
    out: list[_Round] = []
    for r in _naive(frontiers, budget):
        if len(r) == 1 and int(frontiers[r[0]].x[0]) > budget:
            out.extend(_Round(r, [], b1 - b0, 0.0, (b0, b1)) for b0, b1 in _parts(defaults[r[0]], budget))
        else:
            out.append(_Round(r, [0] * len(r), sum(int(frontiers[i].x[0]) for i in r), 0.0))
    return out


def _build(graph: LayerGraph, hw: HardwareSpec, frontiers: Sequence[Frontier], defaults: Sequence[LoweredLayer],
           rounds: list[_Round], budget: int, schedule: str, seed: int, fewest: int, label: str) -> Mapping:
    preds = graph.mvm_predecessors()
    layers = graph.mvm_layers
    plans: dict[int, LayerPlan] = {}
    runs: list[Run] = []
    writes: list[int] = []
    used = 0
    for r, rd in enumerate(rounds):
        x = 0
        if rd.part is not None:
            li = rd.layers[0]
            low = defaults[li]
            b0, b1 = rd.part
            runs.append(Run(low.name, b0, b1, 0, 1, 1, ((0, 0),), 0, 1, r))
            x = b1 - b0
            if li not in plans:
                plans[li] = LayerPlan.from_lowered(low, 1, preds[low.name])
                plans[li].round = r
        else:
            for li, j in zip(rd.layers, rd.choice, strict=True):
                f = frontiers[li]
                own, n, turns = f.runs(j, x, r)
                runs.extend(own)
                lp = LayerPlan.from_lowered(f.forms[int(f.form[j])], int(f.copies[j]), preds[layers[li].name])
                lp.serial, lp.round = turns, r
                plans[li] = lp
                x += n
        writes.append(write_cycles(hw, x))
        used = max(used, x)
    m = new_mapping(graph, hw, [plans[i] for i in range(len(layers))], [], runs, used, budget, schedule, "rounds",
                    seed, rounds=len(rounds), fewest=fewest)
    m.write_cycles = writes
    m.report["plan"] = {"label": label, "rounds": len(rounds)}
    return m


def isaac_like_rounds(graph: LayerGraph, hw: HardwareSpec, budget: int, schedule: str = "chain") -> Mapping:
    """Every block on its own crossbar, layers in order, a new round every `budget` crossbars."""
    preds = graph.mvm_predecessors()
    plans, runs, writes = [], [], []
    r, x = 0, 0
    for layer in graph.mvm_layers:
        low = lower(layer, hw)
        lp = LayerPlan.from_lowered(low, 1, preds[layer.name])
        lp.round = r if x < budget else r + 1
        b = 0
        while b < low.n_blocks:
            if x == budget:
                writes.append(write_cycles(hw, x))
                r, x = r + 1, 0
            take = min(low.n_blocks - b, budget - x)
            runs.append(Run(layer.name, b, b + take, 0, 1, 1, ((0, 0),), x, 1, r))
            b += take
            x += take
        plans.append(lp)
    writes.append(write_cycles(hw, x))
    m = new_mapping(graph, hw, plans, [], runs, budget if r else x, budget, schedule, "isaac-like", 0, rounds=r + 1)
    m.write_cycles = writes
    m.report["plan"] = {"label": "isaac-like rounds", "rounds": r + 1}
    return m


def rounds_mapping(graph: LayerGraph, hw: HardwareSpec, budget: int, samples: list[int], schedule: str, seed: int,
                   fewest: int, partition: str = "optimal") -> Mapping:
    """The model in reprogramming rounds on `budget` crossbars: the best of the optimal partition,
    the naive one and isaac-like rounds by the latency model (writes included).

    `partition`: "optimal" (that best), "naive" or "isaac-like" (just that one, for comparisons).
    """
    layers = graph.mvm_layers
    frontiers = [frontier(layer, hw) for layer in layers]
    defaults = [lower(layer, hw) for layer in layers]
    write = write_cycles(hw, 1) / hw.reprogram.crossbars_written_together  # cycles per crossbar written
    ks = sorted(set(samples))
    built = []
    if partition in ("optimal", "isaac-like"):
        built.append(isaac_like_rounds(graph, hw, budget, schedule))
    if partition in ("optimal", "naive"):
        built.append(_build(graph, hw, frontiers, defaults, naive_rounds(frontiers, defaults, budget), budget,
                            schedule, seed, fewest, "naive rounds"))
    if partition == "optimal":
        built.append(_build(graph, hw, frontiers, defaults, plan_rounds(frontiers, defaults, budget, ks, write),
                            budget, schedule, seed, fewest, "partitioned rounds"))
    if not built:
        raise ValueError(f"partition '{partition}' is not one of optimal, naive, isaac-like")
    base = [mapping_timing(built[0], digital=False).cycles(k) for k in ks]

    def score(m: Mapping) -> float:
        t = mapping_timing(m, digital=False)
        return sum(t.cycles(k) / b for k, b in zip(ks, base, strict=True))

    best = min(built, key=score)
    best.objective, best.seed, best.min_crossbars, best.crossbars_budget = "rounds", seed, fewest, budget
    return best

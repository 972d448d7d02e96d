"""Share a crossbar budget among layers that own their crossbars: which frontier point each layer gets.

With every layer on crossbars of its own there is no contention, and the chain schedule's latency
for k samples is DESIGN.md's sum_l T_l + (k - 1) max_l T_l. For a period cap P the compiler
wants the smallest sum of T_l with every T_l <= P and sum of crossbars <= budget: a
multiple-choice knapsack. `allocate` solves its Lagrangian relaxation exactly and cheaply: each
layer starts at its cheapest point under the cap, every layer's frontier is reduced to its lower
convex hull, and the hull segments (crossbars added, cycles saved) are taken in order of cycles
saved per crossbar while they fit; what is left of the budget then goes to the best next points,
best ratio first. `min_period` finds the smallest feasible cap by bisection.

`crossbar_cost` prices a crossbar in cycles (reprogramming rounds: writing a crossbar costs time),
so a segment is taken only if it saves more than it costs.

Hand-written: an exact MCKP solver (OR-Tools) takes seconds on these sizes, and this sits in the
compiler's inner loop (milliseconds); the greedy on convex hulls is the classical LP-relaxation
optimum, and the gap to the integer optimum is at most one segment per layer.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from xbarforge.compiler.frontier import Frontier

LOOKAHEAD = 8  # points looked at per layer when spending what the hull steps left over


def starts(frontiers: Sequence[Frontier], cap: float) -> list[int] | None:
    """Each layer's cheapest point with t <= cap, or None if some layer cannot get that fast."""
    out = []
    for f in frontiers:
        j = f.first_within(cap)
        if j is None:
            return None
        out.append(j)
    return out


def crossbars_at(frontiers: Sequence[Frontier], choice: Sequence[int]) -> float:
    """Crossbars of the chosen points (fractional where a point shares crossbars with other layers)."""
    return float(sum(f.x[j] for f, j in zip(frontiers, choice, strict=True)))


def min_period(frontiers: Sequence[Frontier], budget: float) -> int | None:
    """The smallest cap P such that every layer reaches t <= P within `budget` crossbars in total."""
    if not frontiers:
        return 0
    values = np.unique(np.concatenate([f.t for f in frontiers]))
    lo = int(np.searchsorted(values, max(int(f.t[-1]) for f in frontiers)))
    hi = len(values) - 1

    def fits(i: int) -> bool:
        s = starts(frontiers, float(values[i]))
        return s is not None and crossbars_at(frontiers, s) <= budget

    if not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return int(values[lo])


def _chain(f: Frontier, s: int) -> np.ndarray:
    """Point s followed by the hull points beyond it, kept convex (cycles saved per crossbar falling)."""
    hull = f.hull
    chain = [s, *hull[np.searchsorted(hull, s, side="right"):].tolist()]
    x, t = f.x, f.t
    while len(chain) >= 3:
        a, b, c = chain[0], chain[1], chain[2]
        if (t[a] - t[c]) * (x[b] - x[a]) >= (t[a] - t[b]) * (x[c] - x[a]):
            del chain[1]
        else:
            break
    return np.asarray(chain, dtype=np.int64)


def allocate(frontiers: Sequence[Frontier], budget: float, cap: float = math.inf,
             crossbar_cost: float = 0.0) -> list[int] | None:
    """Frontier index per layer: least sum of layer times with every time <= cap, within `budget`.

    None when even the cheapest points under the cap exceed the budget.
    """
    s = starts(frontiers, cap)
    if s is None:
        return None
    left = budget - crossbars_at(frontiers, s)
    if left < 0:
        return None
    chains = [_chain(f, j) for f, j in zip(frontiers, s, strict=True)]
    seg_layer, seg_dx, seg_gain = [], [], []
    for li, (f, ch) in enumerate(zip(frontiers, chains, strict=True)):
        if len(ch) > 1:
            dx = np.diff(f.x[ch])
            seg_layer.append(np.full(len(dx), li, dtype=np.int64))
            seg_dx.append(dx)
            seg_gain.append(-np.diff(f.t[ch]))
    pos = [0] * len(frontiers)  # how far along its chain each layer got
    if seg_layer:
        layers = np.concatenate(seg_layer)
        dxs = np.concatenate(seg_dx)
        gains = np.concatenate(seg_gain)
        eff = gains / dxs
        order = np.argsort(-eff, kind="stable")  # a layer's segments keep their (convex) order
        layers, dxs, eff = layers[order], dxs[order], eff[order]
        # the prefix that fits is taken whole (the relaxation's optimum up to its last full step);
        # the rest of the budget goes to the best next points, hull or not
        within = np.cumsum(dxs) <= left
        within &= eff > crossbar_cost
        n = int(np.argmin(within)) if not within.all() else len(within)
        if n:
            taken = np.bincount(layers[:n], minlength=len(frontiers))
            pos = taken.tolist()
            left -= float(dxs[:n].sum())
    choice = [int(ch[p]) for ch, p in zip(chains, pos, strict=True)]
    return _spend(frontiers, choice, left, crossbar_cost)


def _spend(frontiers: Sequence[Frontier], choice: list[int], left: float, crossbar_cost: float) -> list[int]:
    """Spend crossbars left after the hull steps on the best next moves, LOOKAHEAD points ahead
    (lazy greedy on cycles saved per crossbar)."""

    def best_move(li: int) -> tuple[float, int] | None:
        f, j = frontiers[li], choice[li]
        best = None
        for k in range(j + 1, min(j + 1 + LOOKAHEAD, len(f.x))):
            dx = float(f.x[k] - f.x[j])
            if dx > left:
                break
            ratio = float(f.t[j] - f.t[k]) / max(dx, 1e-9)
            if ratio > crossbar_cost and (best is None or ratio > best[0]):
                best = (ratio, k)
        return best

    heap = []
    for li in range(len(frontiers)):
        m = best_move(li)
        if m is not None:
            heap.append((-m[0], li))
    heapq.heapify(heap)
    while heap and left > 0:
        _, li = heapq.heappop(heap)
        m = best_move(li)
        if m is None:
            continue
        if heap and m[0] < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-m[0], li))
            continue
        f = frontiers[li]
        left -= float(f.x[m[1]] - f.x[choice[li]])
        choice[li] = m[1]
        m = best_move(li)
        if m is not None:
            heapq.heappush(heap, (-m[0], li))
    return choice


def times(frontiers: Sequence[Frontier], choice: Sequence[int]) -> list[int]:
    return [int(f.t[j]) for f, j in zip(frontiers, choice, strict=True)]

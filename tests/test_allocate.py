"""Budget allocation among layers (compiler/allocate.py) against brute force.

`allocate(frontiers, budget, cap)` picks one point per layer: every layer time <= cap, crossbars
within the budget, and a small sum of layer times. It is a greedy on convex hulls (the LP relaxation
of the multiple-choice knapsack), so it is not always the integer optimum. Tolerance used here: the
greedy takes hull segments in order of cycles saved per crossbar; the LP optimum takes the same
segments plus a fraction of the first one that does not fit, and is never worse than the integer
optimum. So the greedy's sum exceeds the brute-force optimum by at most the cycles of that one
segment: the largest step of any layer's lower convex hull over its points within the cap. Both hulls
and the optimum are computed here independently of allocate.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from torch import nn

from xbarforge.compiler.allocate import allocate, min_period
from xbarforge.compiler.frontier import ParetoSet, frontier
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware


class Points(ParetoSet):
    """A synthetic layer: x crossbars ascending, t cycles strictly descending."""

    def __init__(self, x: list[int], t: list[int]) -> None:
        self.x = np.asarray(x, dtype=np.int64)
        self.t = np.asarray(t, dtype=np.int64)


def random_layer(rng: np.random.Generator) -> Points:
    n = int(rng.integers(1, 7))
    x = np.cumsum(rng.integers(1, 5, size=n)).tolist()
    t = sorted(rng.choice(np.arange(1, 200), size=n, replace=False).tolist(), reverse=True)
    return Points(x, t)


def random_case(seed: int) -> list[Points]:
    rng = np.random.default_rng(seed)
    return [random_layer(rng) for _ in range(int(rng.integers(1, 5)))]


def brute(layers: list[Points], budget: float, cap: float) -> float | None:
    """Least sum of layer times with every time <= cap and crossbars <= budget (None: infeasible)."""
    best = None
    for combo in itertools.product(*(range(len(f)) for f in layers)):
        if any(f.t[j] > cap for f, j in zip(layers, combo, strict=True)):
            continue
        if sum(int(f.x[j]) for f, j in zip(layers, combo, strict=True)) > budget:
            continue
        total = sum(int(f.t[j]) for f, j in zip(layers, combo, strict=True))
        best = total if best is None else min(best, total)
    return best


def brute_period(layers: list[Points], budget: float) -> int | None:
    """Smallest max layer time over all combinations within the budget."""
    best = None
    for combo in itertools.product(*(range(len(f)) for f in layers)):
        if sum(int(f.x[j]) for f, j in zip(layers, combo, strict=True)) <= budget:
            p = max(int(f.t[j]) for f, j in zip(layers, combo, strict=True))
            best = p if best is None else min(best, p)
    return best


def lower_hull(pts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Lower convex hull of points sorted by x (monotone chain)."""
    hull: list[tuple[int, int]] = []
    for p in sorted(pts):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:  # not a left turn
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def tolerance(layers: list[Points], cap: float) -> int:
    """The largest single step of any layer's lower hull over its points within the cap."""
    step = 0
    for f in layers:
        pts = [(int(a), int(b)) for a, b in zip(f.x, f.t, strict=True) if b <= cap]
        hull = lower_hull(pts)
        step = max([step, *(a[1] - b[1] for a, b in itertools.pairwise(hull))])
    return step


def check(layers: list[Points], budget: float, cap: float) -> list[int] | None:
    got = allocate(layers, budget, cap)
    best = brute(layers, budget, cap)
    if best is None:
        assert got is None, (budget, cap, got)
        return None
    assert got is not None, (budget, cap)
    assert len(got) == len(layers)
    assert all(0 <= j < len(f) for f, j in zip(layers, got, strict=True))
    assert sum(int(f.x[j]) for f, j in zip(layers, got, strict=True)) <= budget
    assert all(int(f.t[j]) <= cap for f, j in zip(layers, got, strict=True))
    total = sum(int(f.t[j]) for f, j in zip(layers, got, strict=True))
    assert best <= total <= best + tolerance(layers, cap), (budget, cap, total, best)
    return got


@pytest.mark.parametrize("seed", range(60))
def test_allocate_matches_brute_force(seed):
    layers = random_case(seed)
    most = sum(int(f.x[-1]) for f in layers)
    caps = [math.inf, *sorted({int(f.t[len(f) // 2]) for f in layers})]
    for cap in caps:
        for budget in range(0, most + 2):
            check(layers, budget, cap)


def test_allocate_is_exact_where_hulls_hold_every_point():
    """Convex frontiers and a budget that ends on a segment boundary: the greedy is optimal."""
    a = Points([1, 2, 4, 8], [100, 60, 40, 30])  # steps: 40/1, 20/2, 10/4
    b = Points([1, 3, 6], [80, 50, 35])  # steps: 30/2, 15/3
    # order of efficiency: a1 (40), b1 (15), a2 (10), b2 (5), a3 (2.5)
    assert allocate([a, b], 2, math.inf) == [0, 0]
    assert allocate([a, b], 3, math.inf) == [1, 0]
    assert allocate([a, b], 5, math.inf) == [1, 1]
    assert allocate([a, b], 7, math.inf) == [2, 1]
    assert allocate([a, b], 10, math.inf) == [2, 2]
    assert allocate([a, b], 14, math.inf) == [3, 2]
    assert allocate([a, b], 1, math.inf) is None
    # a cap of 55 rules out a's two slowest points and b's slowest
    assert allocate([a, b], 10, 55) == [2, 2]
    assert allocate([a, b], 6, 55) is None


def test_allocate_crossbar_cost():
    """A crossbar priced above every step's cycles per crossbar: nothing beyond the cheapest point."""
    a = Points([1, 2, 4, 8], [100, 60, 40, 30])
    b = Points([1, 3, 6], [80, 50, 35])
    assert allocate([a, b], 100, math.inf, crossbar_cost=1000.0) == [0, 0]
    assert allocate([a, b], 100, 55, crossbar_cost=1000.0) == [2, 1]
    # priced between the steps: only the steps saving more than 12 cycles per crossbar are taken
    assert allocate([a, b], 100, math.inf, crossbar_cost=12.0) == [1, 1]


@pytest.mark.parametrize("seed", range(60))
def test_min_period_matches_brute_force(seed):
    layers = random_case(seed)
    most = sum(int(f.x[-1]) for f in layers)
    for budget in range(0, most + 2):
        assert min_period(layers, budget) == brute_period(layers, budget), budget


def budget_sweep(layers: list[Points], cap: float) -> list[tuple[int, int | None]]:
    """(budget, sum of layer times or None) for every budget from 0 to a little past the most useful."""
    out = []
    for budget in range(0, sum(int(f.x[-1]) for f in layers) + 3):
        got = allocate(layers, budget, cap)
        out.append((budget, None if got is None else sum(int(f.t[j]) for f, j in zip(layers, got, strict=True))))
    return out


@pytest.mark.parametrize("seed", range(60))
def test_more_budget_stays_feasible(seed):
    layers = random_case(seed)
    for cap in (math.inf, max(int(f.t[0]) for f in layers) - 1):
        sums = [s for _, s in budget_sweep(layers, cap)]
        first = next((i for i, s in enumerate(sums) if s is not None), len(sums))
        assert all(s is not None for s in sums[first:]), cap
        if first < len(sums):  # with every crossbar it can use, each layer takes its fastest point
            assert sums[-1] == sum(int(f.t[-1]) for f in layers), cap


def test_more_budget_never_slower():
    """More crossbars never give a larger sum of layer times: a case the skip pass once got wrong (258 at
    budget 10, 271 at 11), then random ones."""
    b = Points([2, 3, 7], [196, 170, 32])
    c = Points([3, 6, 9], [190, 88, 75])
    sums = [sum(int(f.t[j]) for f, j in zip([b, c], allocate([b, c], n), strict=True)) for n in (10, 11)]
    assert sums[1] <= sums[0], sums
    for seed in range(60):
        layers = random_case(seed)
        for cap in (math.inf, max(int(f.t[0]) for f in layers) - 1):
            last = None
            for budget, total in budget_sweep(layers, cap):
                if total is None:
                    continue
                assert last is None or total <= last, (seed, budget, cap, total, last)
                last = total


def test_allocate_on_real_frontiers():
    """Real frontiers of a small model: the same brute-force check."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(16, 10))
    graph = capture(model, (3, 8, 8))
    hw = load_hardware("rnc-paper").with_crossbar(32, 32)
    fs = [frontier(layer, hw) for layer in graph.mvm_layers]
    assert sum(len(f) for f in fs) > 10
    most = sum(int(f.x[-1]) for f in fs)
    for budget in range(0, most + 1, max(1, most // 25)):
        check(fs, budget, math.inf)
        check(fs, budget, 20)
        assert min_period(fs, budget) == brute_period(fs, budget)

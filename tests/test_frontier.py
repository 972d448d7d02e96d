"""The per-layer frontier (compiler/frontier.py), checked from its definitions.

A frontier point (x, t) says: the layer can run with layer time t (cycles per sample) on x crossbars
of its own, and `Frontier.runs` builds that placement. The checks expand the runs into blocks on
crossbars and recompute, without the compiler's formulas, that the blocks fit and do not overlap, that
every block of every copy is placed once, that exactly x crossbars are used, and that the layer time is
tau x the most turns any crossbar needs: a chip that fires blocks on disjoint rows and columns
together needs as many turns as a colouring of the blocks' row/column conflicts has colours, any
other chip one turn per block.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from torch import nn

from xbarforge.compiler.frontier import clear_cache, copy_counts, frontier, pareto
from xbarforge.compiler.lower import candidate_forms, lower
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware import load_hardware
from xbarforge.hardware.spec import HardwareSpec

# (preset, rows, cols): one chip that fires one block per MVM, one that fires disjoint blocks together,
# and one with offset encoding (a reference column, and no firing together)
CHIPS = [("rnc-paper", 32, 32), ("edge", 32, 32), ("edge", 64, 48), ("isaac", 32, 32)]


def model_layers() -> list[Layer]:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),  # dense conv, 36 pixels
        nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise: diag/stack forms
        nn.Conv2d(16, 40, 1),  # 1x1 conv, columns tiled
        nn.Conv2d(40, 40, 3, stride=2, groups=2),  # grouped, group matrix larger than a crossbar
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(40, 50),  # one pixel: copies never help
    )
    return capture(model, (3, 6, 6)).mvm_layers


LAYERS = model_layers()


def hw_of(preset: str, rows: int, cols: int) -> HardwareSpec:
    return load_hardware(preset).with_crossbar(rows, cols)


# ------------------------------------------------------------------------------------------------
# independent helpers
# ------------------------------------------------------------------------------------------------


def conflict(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Do two blocks (r0, r1, c0, c1) share a row or a column (so they cannot fire in one MVM)?"""
    return (a[0] < b[1] and b[0] < a[1]) or (a[2] < b[3] and b[2] < a[3])


def colourable(rects: list[tuple[int, int, int, int]], k: int) -> bool:
    """Can the blocks fire in k turns, each turn a set of blocks on pairwise disjoint rows and columns?
    (Backtracking, most constrained block first.)"""
    n = len(rects)
    adj = [[j for j in range(n) if j != i and conflict(rects[i], rects[j])] for i in range(n)]
    colour = [-1] * n
    budget = [200_000]

    def pick() -> int:
        best, key = -1, None
        for i in range(n):
            if colour[i] < 0:
                seen = {colour[j] for j in adj[i] if colour[j] >= 0}
                cand = (len(seen), len(adj[i]))
                if key is None or cand > key:
                    best, key = i, cand
        return best

    def go(done: int) -> bool:
        budget[0] -= 1
        assert budget[0] > 0, "colouring search too long for a test"
        if done == n:
            return True
        i = pick()
        used = {colour[j] for j in adj[i] if colour[j] >= 0}
        for c in range(k):
            if c not in used:
                colour[i] = c
                if go(done + 1):
                    return True
                colour[i] = -1
        return False

    return go(0)


def turns_needed(rects: list[tuple[int, int, int, int]], together: bool) -> int:
    """Fewest turns that fire every block of one layer on one crossbar."""
    if not together:
        return len(rects)
    # blocks covering one row (or one column) pairwise conflict: a lower bound
    lines = [r for rect in rects for r in range(rect[0], rect[1])]
    lower_bound = max(sum(1 for a in rects if a[0] <= r < a[1]) for r in set(lines))
    cols = [c for rect in rects for c in range(rect[2], rect[3])]
    lower_bound = max(lower_bound, max(sum(1 for a in rects if a[2] <= c < a[3]) for c in set(cols)))
    k = lower_bound
    while not colourable(rects, k):
        k += 1
    return k


def expand(f, j: int, crossbar0: int):
    """Blocks of point j as (crossbar, copy, block index, rect), from the runs' documented layout."""
    runs, n, turns = f.runs(j, crossbar0)
    low = f.forms[int(f.form[j])]
    out = []
    for run in runs:
        assert run.layer == f.layer.name
        nb = run.block1 - run.block0
        assert len(run.slots) == run.per_crossbar
        for i in range(run.copies * nb):
            copy, b = run.copy0 + i // nb, run.block0 + i % nb
            r, c = run.slots[i % run.per_crossbar]
            blk = low.blocks[b]
            out.append((run.crossbar0 + i // run.per_crossbar, copy, b, (r, r + blk.height, c, c + blk.width), run))
    return runs, n, turns, low, out


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chip", CHIPS, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}")
def test_frontier_is_pareto(chip):
    hw = hw_of(*chip)
    for layer in LAYERS:
        f = frontier(layer, hw)
        assert len(f) >= 1
        assert np.all(np.diff(f.x) > 0), (layer.name, f.x)
        assert np.all(np.diff(f.t) < 0), (layer.name, f.t)
        assert int(f.x[0]) >= 1 and int(f.t[-1]) >= 1


@pytest.mark.parametrize("chip", CHIPS, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}")
def test_frontier_runs_realise_their_points(chip):
    hw = hw_of(*chip)
    rows, cols = hw.crossbar.rows, hw.usable_cols
    together = hw.fires_blocks_together
    crossbar0 = 7  # runs must start where they are told
    for layer in LAYERS:
        f = frontier(layer, hw)
        for j in range(len(f)):
            runs, n, turns, low, blocks = expand(f, j, crossbar0)
            copies = int(f.copies[j])
            # every block of every copy exactly once
            placed = sorted((c, b) for _, c, b, _, _ in blocks)
            assert placed == [(c, b) for c in range(copies) for b in range(low.n_blocks)], (layer.name, j)
            # exactly x crossbars, numbered from crossbar0
            used = {x for x, *_ in blocks}
            assert n == int(f.x[j]) and used == set(range(crossbar0, crossbar0 + n)), (layer.name, j)
            per_xbar: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
            run_of: dict[int, set[int]] = defaultdict(set)
            for x, _, _, rect, run in blocks:
                assert 0 <= rect[0] and rect[1] <= rows and 0 <= rect[2] and rect[3] <= cols, (layer.name, rect)
                assert not any(r[0] < rect[1] and rect[0] < r[1] and r[2] < rect[3] and rect[2] < r[3]
                               for r in per_xbar[x]), (layer.name, j, x, rect)
                per_xbar[x].append(rect)
                run_of[x].add(id(run))
            # layer time = tau x the most turns any crossbar needs
            worst = 1
            need_by_run: dict[int, int] = defaultdict(int)
            for x, rects in per_xbar.items():
                need = turns_needed(rects, together)
                worst = max(worst, need)
                for r in run_of[x]:
                    need_by_run[r] = max(need_by_run[r], need)
            tau = math.ceil(layer.output_pixels / copies) * (1 if low.form.tiled else low.form.stack)
            assert turns == worst, (layer.name, j, turns, worst)
            assert int(f.t[j]) == tau * worst, (layer.name, j, int(f.t[j]), tau, worst)
            for run in runs:
                assert run.turns == need_by_run[id(run)], (layer.name, j, run)


@pytest.mark.parametrize("chip", CHIPS, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}")
def test_frontier_dominates_simple_placements(chip):
    """Any form with c copies and every block on a crossbar of its own is a valid placement: some
    frontier point is at least as cheap and as fast. The fastest point takes one MVM per pixel."""
    hw = hw_of(*chip)
    for layer in LAYERS:
        f = frontier(layer, hw)
        for form in candidate_forms(layer, hw):
            low = lower(layer, hw, form)
            mvms = 1 if form.tiled else form.stack
            for c in range(1, layer.output_pixels + 1):
                x, t = c * low.n_blocks, math.ceil(layer.output_pixels / c) * mvms
                assert np.any((f.x <= x) & (f.t <= t)), (layer.name, form, c, x, t)
        assert int(f.t[-1]) == 1, (layer.name, int(f.t[-1]))


def test_frontier_one_copy_on_fewest_crossbars():
    """A 1x1 conv 16->16 on a 16x16 crossbar is one full block: one copy needs one crossbar, and with
    36 pixels the cheapest point is (1, 36); 36 copies on 36 crossbars give one cycle."""
    hw = hw_of("rnc-paper", 16, 16)
    layer = capture(nn.Conv2d(16, 16, 1), (16, 6, 6)).mvm_layers[0]
    f = frontier(layer, hw)
    assert (int(f.x[0]), int(f.t[0])) == (1, 36)
    assert (int(f.x[-1]), int(f.t[-1])) == (36, 1)
    # every point: copies on crossbars of their own, distinct values of ceil(36 / c)
    assert [int(t) for t in f.t] == sorted({math.ceil(36 / c) for c in range(1, 37)}, reverse=True)


@pytest.mark.parametrize("pixels", [*range(1, 60), 97, 256, 1000, 3136])
def test_copy_counts(pixels):
    counts = [int(c) for c in copy_counts(pixels)]
    values = [math.ceil(pixels / c) for c in counts]
    assert counts == sorted(counts) and counts[0] == 1
    assert len(set(values)) == len(values)
    every = {math.ceil(pixels / c) for c in range(1, pixels + 1)}
    assert set(values) == every
    for c, v in zip(counts, values, strict=True):
        assert min(d for d in range(1, pixels + 1) if math.ceil(pixels / d) == v) == c


def test_pareto_helper():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.integers(1, 12, size=25)
        t = rng.integers(1, 40, size=25)
        keep = pareto(x, t)
        kx, kt = x[keep], t[keep]
        assert np.all(np.diff(kx) > 0) and np.all(np.diff(kt) < 0)
        pts = set(zip(x.tolist(), t.tolist(), strict=True))
        front = {(a, b) for a, b in pts if not any(c <= a and d <= b and (c, d) != (a, b) for c, d in pts)}
        assert set(zip(kx.tolist(), kt.tolist(), strict=True)) == front


def test_cached_frontier_for_a_second_layer_is_renamed():
    clear_cache()
    graph = capture(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)), (8, 5, 5))
    first, second = graph.mvm_layers
    assert first.name != second.name
    hw = hw_of("rnc-paper", 32, 32)
    f1 = frontier(first, hw)
    f2 = frontier(second, hw)  # same shape: served from the cache
    assert f2.layer is second
    np.testing.assert_array_equal(f1.x, f2.x)
    np.testing.assert_array_equal(f1.t, f2.t)
    for j in range(len(f2)):
        runs, _, _ = f2.runs(j, 0)
        assert runs and all(r.layer == second.name for r in runs)
        runs1, _, _ = f1.runs(j, 0)
        assert all(r.layer == first.name for r in runs1)
    assert all(low.layer is second for low in f2.forms)
    # asking again for the first layer still names the first
    again, _, _ = frontier(first, hw).runs(0, 0)
    assert all(r.layer == first.name for r in again)

"""The shared pool (compiler/pool.py): small blocks of light layers packed onto shared crossbars.

`pack_pool` (and `pack_pool_counts`, where the module has it) returns patterns: `count` identical
crossbars, each entry putting instance `instance0 + j` of a layer's block class on the j-th of them.
The checks expand the patterns and verify, from the definitions in pool.py's docstrings:
every requested instance is placed exactly once, blocks fit their crossbar and never overlap, a
crossbar holds at most one block of each layer, a crossbar serves its layers within one period
(busy = sum of their layer times <= period), and with a period and `soft=False` the windows
[S_i, S_i + T_i) of the layers on one crossbar do not overlap modulo the period.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest
from model_helpers import random_cnn
from torch import nn

from xbarforge.compiler import pool as pool_mod
from xbarforge.compiler.frontier import copy_counts
from xbarforge.compiler.lower import lower
from xbarforge.compiler.pool import Shareable, pack_pool, pooled_points, shareable
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware
from xbarforge.hardware.spec import HardwareSpec

PACKERS = [pack_pool] + ([pool_mod.pack_pool_counts] if hasattr(pool_mod, "pack_pool_counts") else [])
CHIPS = [("rnc-paper", 64, 64), ("edge", 64, 64), ("isaac", 64, 64), ("rnc-paper", 32, 48)]

Members = dict[int, tuple[Shareable, int, int, int]]


def random_case(seed: int) -> tuple[HardwareSpec, Members, int]:
    """A few small layers (convs with pixels, linears with one) with copies, layer times and starts."""
    rng = random.Random(seed)
    preset, rows, cols = rng.choice(CHIPS)
    hw = load_hardware(preset).with_crossbar(rows, cols)
    model, c = random_cnn(rng, channels=12, conv_out=24, linear_out=40, max_linears=3)
    graph = capture(model, (c, rng.randint(2, 5), rng.randint(2, 5)))
    lows = [lower(layer, hw) for layer in graph.mvm_layers]
    smallest = (min(k.height for d in lows for k in d.classes), min(k.width for d in lows for k in d.classes))
    members: Members = {}
    start = 0
    for i, low in enumerate(lows):
        sh = shareable(low, hw, smallest)
        if not sh.small:
            continue
        copies = int(rng.choice(copy_counts(low.pixels)[:4]))
        t_l = low.tau(copies) * rng.choice([1, 1, 2])
        members[i] = (sh, copies, t_l, start)
        start += t_l + rng.choice([0, 0, 3])
    period = max((m[2] for m in members.values()), default=1)
    period = int(period * rng.choice([1, 1.5, 2, 3, 5]))
    return hw, members, period


def expand(p, members: Members) -> list[tuple[int, int, int, int, tuple[int, int, int, int]]]:
    """(crossbar, layer, class, instance, rect) of every pooled block."""
    out = []
    x = 0
    for pat in p.patterns:
        assert pat.count >= 1
        for j in range(pat.count):
            for li, k, inst0, row, col in pat.entries:
                cls = members[li][0].low.classes[k]
                out.append((x, li, k, inst0 + j, (row, row + cls.height, col, col + cls.width)))
            x += 1
    assert x == p.crossbars
    return out


def check_pool(p, members: Members, hw: HardwareSpec, period: int | None, soft: bool) -> None:
    rows, cols = hw.crossbar.rows, hw.usable_cols
    blocks = expand(p, members)
    # every requested instance exactly once
    want = sorted((li, k, i) for li, (sh, copies, _, _) in members.items() for k in sh.classes
                  for i in range(copies * sh.low.classes[k].count))
    assert sorted((li, k, i) for _, li, k, i, _ in blocks) == want
    per_xbar: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = defaultdict(list)
    for x, li, _, _, rect in blocks:
        assert 0 <= rect[0] and rect[1] <= rows and 0 <= rect[2] and rect[3] <= cols, rect
        for _, o in per_xbar[x]:
            assert not (rect[0] < o[1] and o[0] < rect[1] and rect[2] < o[3] and o[2] < rect[3]), (x, rect, o)
        per_xbar[x].append((li, rect))
    limit = period if period is not None else math.inf
    for pat_x, content in per_xbar.items():
        layers = [li for li, _ in content]
        # one block per layer: two would take turns
        assert len(layers) == len(set(layers)), (pat_x, layers)
        busy = sum(members[li][2] for li in set(layers))
        assert busy <= limit, (pat_x, busy, period)
        if period is not None and not soft:
            seen: set[int] = set()
            for li in set(layers):
                _, _, t_l, s_l = members[li]
                cycles = {(s_l + t) % period for t in range(t_l)}
                assert not cycles & seen, (pat_x, li, sorted(set(layers)))
                seen |= cycles
    # the busy cycles a pattern reports are those of its layers
    for pat in p.patterns:
        assert pat.busy == sum(members[li][2] for li in {e[0] for e in pat.entries})


@pytest.mark.parametrize("packer", PACKERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("seed", range(40))
def test_pool_packing(packer, seed):
    hw, members, period = random_case(seed)
    assert members, "every case pools something"
    for per in (None, period):
        for soft in (False, True):
            p = packer(members, hw, per, soft)
            check_pool(p, members, hw, per, soft)


@pytest.mark.parametrize("packer", PACKERS, ids=lambda f: f.__name__)
def test_pool_windows_force_crossbars_apart(packer):
    """Two layers whose windows overlap in every period cannot share; apart in time, they do."""
    hw = load_hardware("rnc-paper").with_crossbar(64, 64)
    graph = capture(nn.Sequential(nn.Linear(10, 8), nn.Linear(8, 6)), (10,))
    lows = [lower(layer, hw) for layer in graph.mvm_layers]
    shs = [shareable(low, hw, (8, 6)) for low in lows]
    together = {0: (shs[0], 3, 10, 0), 1: (shs[1], 3, 10, 10)}
    p = packer(together, hw, 20)
    check_pool(p, together, hw, 20, False)
    assert p.crossbars == 3  # both layers' three copies side by side on three crossbars
    clash = {0: (shs[0], 3, 10, 0), 1: (shs[1], 3, 10, 25)}  # [0, 10) and [5, 15) modulo 20
    p = packer(clash, hw, 20)
    check_pool(p, clash, hw, 20, False)
    assert p.crossbars == 6
    p = packer(clash, hw, 20, True)  # soft: overlap allowed
    check_pool(p, clash, hw, 20, True)
    too_busy = {0: (shs[0], 3, 10, 0), 1: (shs[1], 3, 11, 10)}  # 21 cycles > a period of 20
    p = packer(too_busy, hw, 20, True)
    check_pool(p, too_busy, hw, 20, True)
    assert p.crossbars == 6


def test_shareable_keeps_full_blocks_apart():
    """A block shares only if the smallest block fits beside or below it."""
    hw = load_hardware("rnc-paper").with_crossbar(32, 32)
    graph = capture(nn.Sequential(nn.Linear(40, 40), nn.Linear(40, 8)), (40,))
    lows = [lower(layer, hw) for layer in graph.mvm_layers]
    smallest = (min(c.height for d in lows for c in d.classes), min(c.width for d in lows for c in d.classes))
    assert smallest == (8, 8)
    for low in lows:
        sh = shareable(low, hw, smallest)
        for i, c in enumerate(low.classes):
            room = c.height + smallest[0] <= 32 or c.width + smallest[1] <= 32
            assert (i in sh.classes) == room, (low.name, c)
        assert sh.small + sh.big == low.n_blocks
        # each shape as densely as it packs with its own kind: (32 // h) x (32 // w) per crossbar
        assert sh.small_room == pytest.approx(sum(low.classes[i].count / ((32 // low.classes[i].height)
                                                                          * (32 // low.classes[i].width))
                                                  for i in sh.classes))
    big = shareable(lows[0], hw, smallest)  # 40x40 -> 32x32, 32x8, 8x32, 8x8: the full tile keeps its own
    assert big.big == 1 and big.small == 3


def test_pooled_points_respect_cap():
    hw = load_hardware("rnc-paper").with_crossbar(64, 64)
    layer = capture(nn.Conv2d(4, 6, 3, padding=1), (4, 6, 6)).mvm_layers[0]
    low = lower(layer, hw)
    sh = shareable(low, hw, (6, 6))
    for cap in (4.0, 10.0, 36.0, 100.0, math.inf):
        x, t, copies = pooled_points(sh, hw, cap, 1.0)
        for xi, ti, ci in zip(x, t, copies, strict=True):
            # one copy's time, within the share of the period a pooled layer may take
            assert ti == math.ceil(36 / ci) and ti <= cap * pool_mod.TIME_SHARE
            # at least the room its copies fill and, with a cap, its crossbar time within the cap
            assert xi >= ci * sh.small_room - 1e-9
            assert xi >= ci * sh.small * 3 * 3 * 4 * 6 / (64 * 64) - 1e-9  # never less than its cells
            if not math.isinf(cap):
                assert xi >= ci * sh.small * ti / cap - 1e-9
        if math.isinf(cap):  # copy counts thinned to times at least THIN apart, the fastest kept
            kept = list(copies)
            assert set(kept) <= set(copy_counts(36).tolist()) and kept[0] == 1 and kept[-1] == 36
            times = [math.ceil(36 / c) for c in kept]
            assert all(b <= a * (1 - pool_mod.THIN) for a, b in zip(times[:-2], times[1:-1], strict=True))

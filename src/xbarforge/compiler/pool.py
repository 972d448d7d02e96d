"""Crossbars shared by light layers: the small blocks of layers that need no copies, packed together.

A layer whose one copy already runs within the pipeline period wastes most of a crossbar of its
own when its blocks are small (a 1x1 squeeze conv, a classifier with ten outputs). Packing such
blocks together frees those crossbars for copies of the slow layers. Each shared crossbar serves
its layers one at a time, so the packer keeps the layers it puts together within one period and
their windows apart (`pack.Packer` with the period); the latency model schedules what remains.

Only blocks that leave room for another are pooled; a pooled layer's blocks that fill a crossbar
keep crossbars of their own. A pooled layer may have copies too; what it costs in
shared crossbars is planned from cells and crossbar time (`pooled_points`) and checked by packing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xbarforge.compiler.frontier import copy_counts
from xbarforge.compiler.lower import LoweredLayer
from xbarforge.compiler.pack import Item, _fill, pack, windows_overlap
from xbarforge.hardware.spec import HardwareSpec

# A pooled layer may keep a shared crossbar busy for at most this share of the period: a layer that
# fills a crossbar's time leaves it to nobody else, and is as well off on crossbars of its own
TIME_SHARE = 0.5


@dataclass(frozen=True)
class PoolBlock:
    layer: int  # index among the graph's MVM layers
    block: int  # block index within one copy
    copy: int
    crossbar: int  # among the pool's crossbars
    row: int
    col: int


@dataclass
class Pool:
    blocks: list[PoolBlock]
    crossbars: int
    busy: list[int]  # per pool crossbar: sum of the layer times of the layers on it


@dataclass(frozen=True)
class Shareable:
    """What pooling one layer involves: its default form, which blocks may share, their cells."""

    low: LoweredLayer
    small: list[int]  # block indices of one copy that go to shared crossbars
    big: int  # blocks of one copy that keep crossbars of their own
    small_cells: int  # rectangle cells of the small blocks of one copy


def shareable(low: LoweredLayer, hw: HardwareSpec, smallest: tuple[int, int]) -> Shareable:
    """Which blocks of the layer may share a crossbar: those that leave room beside or below them
    for the smallest block of the model (`smallest` = (height, width))."""
    rows, cols = hw.crossbar.rows, hw.usable_cols
    small: list[int] = []
    cells = 0
    for c in low.classes:
        if c.height <= rows - smallest[0] or c.width <= cols - smallest[1]:
            small.extend(range(c.start, c.start + c.count))
            cells += c.height * c.width * c.count
    return Shareable(low, small, low.n_blocks - len(small), cells)


def pooled_points(sh: Shareable, hw: HardwareSpec, cap: float, fill: float,
                  max_blocks: float = math.inf) -> tuple[np.ndarray, ...]:
    """(crossbars, time, copies) of a pooled layer for each copy count with time <= cap.

    Crossbars = copies x big blocks + the share of the pool: the larger of its cells and, with a
    period cap, its crossbar time over the cap, divided by how full packing gets the pool (`fill`,
    fed back from real packings). Where a crossbar fires one block at a time, a layer's pooled
    blocks need crossbars of their own (else they take turns): copy counts with more small blocks
    than `max_blocks` are left out.
    """
    low = sh.low
    copies = copy_counts(low.pixels)
    tau = -(-low.pixels // copies) * low.mvms_per_pixel
    keep = tau <= cap * TIME_SHARE
    if not hw.fires_blocks_together:
        keep &= copies * len(sh.small) <= max(max_blocks, len(sh.small))
    copies, tau = copies[keep], tau[keep]
    share = copies * sh.small_cells / (hw.crossbar.rows * hw.usable_cols)
    if not math.isinf(cap):
        share = np.maximum(share, copies * len(sh.small) * tau / cap)
    return copies * sh.big + share / fill, tau, copies


@dataclass
class _Shared:
    """`count` identical shared crossbars: free rectangles, content, layers on them, busy cycles."""

    count: int
    free: list[tuple[int, int, int, int]]
    content: list[tuple[int, int, int]]  # (group, row, col)
    layers: frozenset[int]
    busy: int
    windows: tuple[tuple[int, int], ...] = ()  # (start mod period, length) per layer


EXACT_ITEMS = 1000  # up to this many pooled blocks, pack them one by one (MaxRects, windows)


def pack_pool(members: dict[int, tuple[Shareable, int, int, int]], hw: HardwareSpec, period: int | None,
              soft: bool = False) -> Pool:
    """Pack the small blocks of the member layers' copies into shared crossbars.

    `members[i] = (layer, copies, layer time T_i, start S_i of its window)`. With a period, layers
    that share a crossbar get windows [S_i, S_i + T_i) that do not overlap modulo the period, so the
    periodic schedule runs them at their planned starts with no crossbar ever making one wait
    (`soft`: apart where possible, overlaps left to the schedule). Up
    to EXACT_ITEMS blocks are packed one by one (`pack.pack`: MaxRects, two strategies); more are
    packed in counts (`pack_pool_counts`).
    """
    total = sum(c * len(sh.small) for sh, c, _, _ in members.values())
    if total > EXACT_ITEMS and not soft:
        return pack_pool_counts(members, hw, period)
    items: list[Item] = []
    keys: list[tuple[int, int, int]] = []
    for li, (sh, copies, t_l, s_l) in members.items():
        for c in range(copies):
            for b in sh.small:
                shape = sh.low.blocks[b]
                items.append(Item(len(keys), shape.height, shape.width, li, t_l, s_l))
                keys.append((li, b, c))
    if not items:
        return Pool([], 0, [])
    spread = not hw.fires_blocks_together
    placements, bins = pack(items, hw.crossbar.rows, hw.usable_cols, None, period, separate_layers=spread,
                            soft=soft, fire_together=True)
    out = [PoolBlock(*keys[p.key], p.crossbar, p.row, p.col) for p in placements]
    busy = [0] * len(bins)
    seen: set[tuple[int, int]] = set()
    for pb in out:
        if (pb.crossbar, pb.layer) not in seen:
            seen.add((pb.crossbar, pb.layer))
            busy[pb.crossbar] += members[pb.layer][2]
    return Pool(out, len(bins), busy)


def pack_pool_counts(members: dict[int, tuple[Shareable, int, int, int]], hw: HardwareSpec,
                     period: int | None) -> Pool:
    """Pack the small blocks of the member layers' copies into shared crossbars, in counts.

    `members[i] = (layer, copies, layer time T_i, start S_i of its window)`. A shared crossbar
    holds at most one block of each layer (two would take turns) and, with a period, layers whose
    times add up to at most the period (it serves one layer at a time). Identical crossbars are
    filled together (first fit, tallest blocks first), so the cost is in layers and block shapes,
    not in copies; the latency model places the layers' windows.
    """
    groups: list[tuple[int, int, int, int, list[tuple[int, int]]]] = []  # (layer, h, w, tau, instances)
    start = {li: s_l for li, (_, _, _, s_l) in members.items()}
    for li, (sh, copies, t_l, _) in members.items():
        by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for b in sh.small:
            shape = sh.low.blocks[b]
            by_shape.setdefault((shape.height, shape.width), []).extend((b, c) for c in range(copies))
        for (h, w), inst in by_shape.items():
            groups.append((li, h, w, t_l, inst))
    if not groups:
        return Pool([], 0, [])
    rows, cols = hw.crossbar.rows, hw.usable_cols
    limit = period if period is not None else math.inf
    types: list[_Shared] = []
    order = sorted(range(len(groups)), key=lambda g: (-groups[g][1], -groups[g][2], groups[g][0], g))
    for g in order:
        li, h, w, t_l, inst = groups[g]
        n = len(inst)
        i = 0
        while n and i < len(types):
            st = types[i]
            if li in st.layers or st.busy + t_l > limit or (period is not None and any(
                    windows_overlap(start[li] % period, t_l, s, ln, period) for s, ln in st.windows)):
                i += 1
                continue
            spots, free = _fill(st.free, h, w, 1)
            if not spots:
                i += 1
                continue
            use = min(st.count, n)
            (r, c), = spots
            win = st.windows + (((start[li] % period, t_l),) if period is not None else ())
            done = [_Shared(use, free, [*st.content, (g, r, c)], st.layers | {li}, st.busy + t_l, win)]
            if st.count > use:
                done.append(_Shared(st.count - use, st.free, st.content, st.layers, st.busy, st.windows))
            types[i:i + 1] = done
            i += len(done)
            n -= use
        if n:
            _, free = _fill([(0, 0, rows, cols)], h, w, 1)
            win = ((start[li] % period, t_l),) if period is not None else ()
            types.append(_Shared(n, free, [(g, 0, 0)], frozenset({li}), t_l, win))
    out: list[PoolBlock] = []
    busy: list[int] = []
    taken = [0] * len(groups)
    x = 0
    for st in types:
        for _ in range(st.count):
            for g, r, c in st.content:
                li = groups[g][0]
                b, copy = groups[g][4][taken[g]]
                taken[g] += 1
                out.append(PoolBlock(li, b, copy, x, r, c))
            busy.append(st.busy)
            x += 1
    return Pool(out, x, busy)

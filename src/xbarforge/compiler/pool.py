"""Crossbars shared by light layers: the small blocks of layers that need no copies, packed together.

A layer whose one copy already runs within the pipeline period wastes most of a crossbar of its
own when its blocks are small (a 1x1 squeeze conv, a classifier with ten outputs). Packing such
blocks together frees those crossbars for copies of the slow layers. Each shared crossbar serves
its layers one at a time, so the packer keeps the layers it puts together within one period and
their windows apart; the latency model schedules what remains.

Only blocks that leave room for another are pooled; a pooled layer's blocks that fill a crossbar
keep crossbars of their own. A pooled layer may have copies too; what it costs in shared crossbars
is planned from the room its blocks fill and their crossbar time (`pooled_points`) and checked by
packing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xbarforge.compiler.frontier import copy_counts
from xbarforge.compiler.lower import LoweredLayer
from xbarforge.compiler.pack import place, windows_overlap
from xbarforge.hardware.spec import HardwareSpec

# A pooled layer may keep a shared crossbar busy for at most this share of the period: a layer that
# fills a crossbar's time leaves it to nobody else, and is as well off on crossbars of its own. Where
# windows may overlap (tight budgets), a layer may take the whole period: sharing then costs time.
TIME_SHARE = 0.5
TIME_SHARE_OVERLAP = 1.0


@dataclass(frozen=True)
class Pattern:
    """`count` identical shared crossbars. Each entry (layer, class index, instance0, row, col) puts,
    on the j-th of them, instance `instance0 + j` of that layer's blocks of that class."""

    count: int
    entries: tuple[tuple[int, int, int, int, int], ...]
    busy: int  # cycles per sample the crossbar serves its layers


@dataclass
class Pool:
    patterns: list[Pattern]

    @property
    def crossbars(self) -> int:
        return sum(p.count for p in self.patterns)


@dataclass(frozen=True)
class Shareable:
    """What pooling one layer involves: its default form, which blocks may share, their cells."""

    low: LoweredLayer
    classes: list[int]  # indices of the block classes (of one copy) that go to shared crossbars
    small: int  # blocks of one copy in those classes
    big: int  # blocks of one copy that keep crossbars of their own
    small_room: float  # crossbars the small blocks of one copy fill, each shape packed with its own kind


def shareable(low: LoweredLayer, hw: HardwareSpec, smallest: tuple[int, int]) -> Shareable:
    """Which blocks of the layer may share a crossbar: those that leave room beside or below them
    for the smallest block of the model (`smallest` = (height, width))."""
    rows, cols = hw.crossbar.rows, hw.usable_cols
    classes = [i for i, c in enumerate(low.classes) if c.height <= rows - smallest[0] or c.width <= cols - smallest[1]]
    small = sum(low.classes[i].count for i in classes)
    # a crossbar holds (rows // h) x (cols // w) blocks of one shape: what their cells alone would
    # say is too little for tall or wide blocks, which leave strips few others fit in
    room = sum(low.classes[i].count / ((rows // low.classes[i].height) * (cols // low.classes[i].width))
               for i in classes)
    return Shareable(low, classes, small, low.n_blocks - small, room)


def pooled_points(sh: Shareable, hw: HardwareSpec, cap: float, fill: float, max_blocks: float = math.inf,
                  time_share: float = TIME_SHARE) -> tuple[np.ndarray, ...]:
    """(crossbars, time, copies) of a pooled layer for each copy count with time <= cap.

    Crossbars = copies x big blocks + the share of the pool: the larger of the room its blocks fill
    (each shape as densely as it packs with its own kind) and, with a period cap, its crossbar time
    over the cap, divided by how full packing gets the pool (`fill`, fed back from real packings).
    Where a crossbar fires one block at a time, a layer's pooled
    blocks need crossbars of their own (else they take turns): copy counts with more small blocks
    than `max_blocks` are left out.
    """
    low = sh.low
    copies = copy_counts(low.pixels)
    tau = -(-low.pixels // copies) * low.mvms_per_pixel
    keep = tau <= cap * time_share
    if not hw.fires_blocks_together:
        keep &= copies * sh.small <= max(max_blocks, sh.small)
    copies, tau = copies[keep], tau[keep]
    copies, tau = _thin(copies, tau)
    share = copies * sh.small_room
    if not math.isinf(cap):
        share = np.maximum(share, copies * sh.small * tau / cap)
    return copies * sh.big + share / fill, tau, copies


THIN = 0.05  # pooled copy counts kept: each at least this much faster than the last one kept


def _thin(copies: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copy counts whose time falls by at least THIN from the last kept (and the last one): a layer
    with 12,544 output pixels has ~220 distinct times, a handful of which matter for a pooled layer."""
    if len(tau) <= 8:
        return copies, tau
    keep, last = [], math.inf
    for i, t in enumerate(tau.tolist()):
        if t <= last * (1 - THIN) or i == len(tau) - 1:
            keep.append(i)
            last = t
    return copies[keep], tau[keep]


def pack_pool(members: dict[int, tuple[Shareable, int, int, int]], hw: HardwareSpec, period: int | None,
              soft: bool = False) -> Pool:
    """Pack the small blocks of the member layers' copies into shared crossbars, in counts.

    `members[i] = (layer, copies, layer time T_i, start S_i of its window)`. With a period, layers
    that share a crossbar get windows [S_i, S_i + T_i) that do not overlap modulo the period, so
    the periodic schedule runs them at their planned starts and no crossbar ever makes one wait
    (`soft`: overlaps allowed, the latency model charges the delays). A shared crossbar holds at
    most one block of each layer (two would take turns) and layers whose times add up to at most
    the period (it serves one layer at a time). Crossbar by crossbar: fill one with a block of each
    layer that fits, layers with the most area left first (this spreads many-copy layers over crossbars),
    then repeat that crossbar as often as every layer on it still has blocks of that shape. The
    cost is in layers and block shapes, not in copies: a crossbar pattern repeats until one of its
    groups runs out, so there are at most as many patterns as groups.
    """
    groups: list[tuple[int, int, int, int, int, int]] = []  # (layer, class, h, w, tau, instances)
    start = {li: s_l for li, (_, _, _, s_l) in members.items()}
    for li, (sh, copies, t_l, _) in members.items():
        for k in sh.classes:
            cls = sh.low.classes[k]
            groups.append((li, k, cls.height, cls.width, t_l, copies * cls.count))
    rows, cols = hw.crossbar.rows, hw.usable_cols
    left = [g[5] for g in groups]
    limit = period if period is not None else math.inf
    by_layer: dict[int, list[int]] = {}
    for g, grp in enumerate(groups):
        by_layer.setdefault(grp[0], []).append(g)
    for gs in by_layer.values():
        gs.sort(key=lambda g: (-groups[g][2] * groups[g][3], -groups[g][2]))
    patterns: list[Pattern] = []
    area = {li: sum(left[g] * groups[g][2] * groups[g][3] for g in gs) for li, gs in by_layer.items()}
    while any(left):
        free = [(0, 0, rows, cols)]
        tall, wide, room = rows, cols, rows * cols  # tallest and widest free rectangle, free cells
        smallest = min(groups[g][2] * groups[g][3] for g in range(len(groups)) if left[g])
        content: list[tuple[int, int, int]] = []
        busy = 0
        windows: tuple[tuple[int, int], ...] = ()
        for li in sorted((li for li in by_layer if area[li]), key=lambda li: (-area[li], li)):
            if room < smallest:
                break
            t_l = groups[by_layer[li][0]][4]
            if busy + t_l > limit and content:
                continue
            if period is not None and not soft and content and _clash(windows, start[li] % period, t_l, period):
                continue
            for g in by_layer[li]:
                h, w = groups[g][2], groups[g][3]
                if not left[g] or h > tall or w > wide or h * w > room:
                    continue
                got = place(free, h, w)
                if got is not None:
                    r, c, free = got
                    content.append((g, r, c))
                    tall = max((f[2] for f in free), default=0)
                    wide = max((f[3] for f in free), default=0)
                    room -= h * w
                    busy += t_l
                    if period is not None:
                        windows += ((start[li] % period, t_l),)
                    break
        count = min(left[g] for g, _, _ in content)  # repeated until one of its groups runs out
        taken = []
        for g, r, c in content:
            taken.append((groups[g][0], groups[g][1], groups[g][5] - left[g], r, c))
            left[g] -= count
            area[groups[g][0]] -= count * groups[g][2] * groups[g][3]
        patterns.append(Pattern(count, tuple(taken), busy))
    return Pool(patterns)


def _clash(windows: tuple[tuple[int, int], ...], start: int, length: int, period: int) -> bool:
    for s, ln in windows:
        if windows_overlap(start, length, s, ln, period):
            return True
    return False

"""2-D bin packing of blocks into crossbars (MaxRects placement inside a crossbar).

Written by hand because the packing here carries constraints no packing library offers: no
rotation (rows are inputs, columns are outputs), no two blocks of one layer in a crossbar when
they would take turns, and, for a pipelined schedule, layers that share a crossbar must use it in
windows that fit one period. Inside a crossbar the free space is kept as maximal rectangles
(Jylänki's MaxRects) and a block goes where its shorter leftover side is smallest.

Two strategies are run and the one using fewer crossbars kept: item by item in decreasing
height (first fit over crossbars), and crossbar by crossbar, each filled with at most one block
per layer, layers with the most area still to place first (this spreads many-copy layers across
crossbars, which the item order cannot see).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


def windows_overlap(a: int, la: int, b: int, lb: int, period: int) -> bool:
    """Do the windows [a, a+la) and [b, b+lb) overlap on a circle of length `period`?"""
    if la <= 0 or lb <= 0:
        return False
    d = (b - a) % period
    return d < la or (period - d) < lb


@dataclass(frozen=True)
class Item:
    """A rectangle to place: `h` crossbar rows by `w` columns.

    In a pipelined schedule of period P its layer occupies the crossbar during the window
    [start, start + tau) modulo P of every sample.
    """

    key: int
    h: int
    w: int
    layer: int
    tau: int = 0
    start: int = 0


@dataclass(frozen=True)
class Placement:
    key: int
    crossbar: int
    row: int
    col: int


@dataclass
class Bin:
    rows: int
    cols: int
    free: list[tuple[int, int, int, int]] = field(default_factory=list)  # (row, col, h, w)
    free_cells: int = 0
    largest: tuple[int, int] = (0, 0)  # tallest and widest free rectangle (a quick reject test)
    layers: set[int] = field(default_factory=set)
    lines: dict[int, list[tuple[int, int, int, int]]] = field(default_factory=dict)  # layer -> its rects
    windows: list[tuple[int, int]] = field(default_factory=list)  # (start mod P, length) per layer
    busy: int = 0  # sum of window lengths

    def __post_init__(self) -> None:
        self.free = [(0, 0, self.rows, self.cols)]
        self.free_cells = self.rows * self.cols
        self.largest = (self.rows, self.cols)

    def may_fit(self, h: int, w: int) -> bool:
        return h * w <= self.free_cells and h <= self.largest[0] and w <= self.largest[1]

    def best_fit(self, h: int, w: int, avoid: list[tuple[int, int, int, int]] | None = None
                 ) -> tuple[int, int, int] | None:
        """(score, row, col) of the best free position for an h x w item, or None.

        `avoid`: rectangles (row0, row1, col0, col1) whose rows and columns the item may not
        share (blocks of its own layer, so that all of them fire in one MVM)."""
        best: tuple[int, int, int] | None = None
        for fr, fc, fh, fw in self.free:
            if h <= fh and w <= fw:
                if avoid and any(fr < r1 and r0 < fr + h or fc < c1 and c0 < fc + w for r0, r1, c0, c1 in avoid):
                    continue
                score = min(fh - h, fw - w)
                if best is None or score < best[0]:
                    best = (score, fr, fc)
        return best

    def place(self, row: int, col: int, it: Item, period: int | None) -> None:
        h, w = it.h, it.w
        new_free: list[tuple[int, int, int, int]] = []
        r1, c1 = row + h, col + w
        for fr, fc, fh, fw in self.free:
            fr1, fc1 = fr + fh, fc + fw
            if row >= fr1 or r1 <= fr or col >= fc1 or c1 <= fc:
                new_free.append((fr, fc, fh, fw))
                continue
            if row > fr:
                new_free.append((fr, fc, row - fr, fw))
            if r1 < fr1:
                new_free.append((r1, fc, fr1 - r1, fw))
            if col > fc:
                new_free.append((fr, fc, fh, col - fc))
            if c1 < fc1:
                new_free.append((fr, c1, fh, fc1 - c1))
        self.free = _prune(new_free)
        self.free_cells -= h * w
        self.largest = (max((f[2] for f in self.free), default=0), max((f[3] for f in self.free), default=0))
        if period and it.layer not in self.layers:
            self.windows.append((it.start % period, it.tau))
            self.busy += it.tau
        self.layers.add(it.layer)
        self.lines.setdefault(it.layer, []).append((row, row + h, col, col + w))

    def window_state(self, it: Item, period: int | None, soft: bool) -> int:
        """0: the item's window is free here; 1 + cycles of overlap: it overlaps but the layers
        fit one period (soft only); -1: it cannot share this crossbar."""
        if not period or it.layer in self.layers:
            return 0
        if self.busy + it.tau > period:
            return -1

        start = it.start % period
        overlap = 0
        for s, ln in self.windows:
            if windows_overlap(start, it.tau, s, ln, period):
                if not soft:
                    return -1
                d = (s - start) % period  # where the other window starts, relative to this one
                a = min(it.tau, d + ln) - d if d < it.tau else 0
                b = min(ln - (period - d), it.tau) if period - d < ln else 0
                overlap += max(a, 0) + max(b, 0)
        return 1 + overlap if overlap else 0


def _prune(rects: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Drop free rectangles contained in another one (MaxRects keeps only maximal ones)."""
    rects = sorted(set(rects), key=lambda r: -r[2] * r[3])
    kept: list[tuple[int, int, int, int]] = []
    for r in rects:
        rr, rc, rh, rw = r
        if not any(
            rr >= kr and rc >= kc and rr + rh <= kr + kh and rc + rw <= kc + kw for kr, kc, kh, kw in kept
        ):
            kept.append(r)
    return kept


class Packer:
    """First-fit packer, one item at a time.

    Identical items (same layer and size) resume the search at the crossbar the previous one went
    to (after it when layers are kept apart): every crossbar before it lacked room or clashed in
    time, and crossbars only fill up. When layers may share a crossbar (chips that fire blocks on
    disjoint rows and columns together), a block joins its own layer only on rows and columns
    none of that layer's blocks use, so they still fire in one MVM.
    """

    def __init__(self, rows: int, cols: int, period: int | None = None, separate_layers: bool = True,
                 soft: bool = False, fire_together: bool = False) -> None:
        self.fire_together = fire_together
        self.rows, self.cols = rows, cols
        self.period = period
        self.separate_layers = separate_layers
        self.soft = soft
        self.bins: list[Bin] = []
        self._resume: dict[tuple[int, int, int], int] = {}

    def add(self, it: Item) -> Placement:
        """Place one item (on a new crossbar if no open one takes it)."""
        if it.h > self.rows or it.w > self.cols:
            raise ValueError(f"block {it.h}x{it.w} is larger than a {self.rows}x{self.cols} crossbar")
        kind = (it.layer, it.h, it.w)
        first = self._resume.get(kind, 0)
        target: tuple[int, int, int] | None = None
        fallback: tuple[int, int, int, int] | None = None  # least overlapping crossbar (soft windows)
        for i in range(first, len(self.bins)):
            b = self.bins[i]
            if not b.may_fit(it.h, it.w) or (self.separate_layers and it.layer in b.layers):
                continue
            state = b.window_state(it, self.period, self.soft)
            if state < 0 or (state > 0 and fallback is not None and state >= fallback[0]):
                continue
            fit = b.best_fit(it.h, it.w, b.lines.get(it.layer) if self.fire_together else None)
            if fit is None:
                continue
            if state == 0:
                target = (i, fit[1], fit[2])
                break
            fallback = (state, i, fit[1], fit[2])
        if target is None and fallback is not None:
            target = fallback[1:]
        if target is None:
            self.bins.append(Bin(self.rows, self.cols))
            target = (len(self.bins) - 1, 0, 0)
        i, row, col = target
        self.bins[i].place(row, col, it, self.period)
        # an identical item fits no crossbar before this one; with layers kept apart, not this one
        self._resume[kind] = i + 1 if self.separate_layers else i
        return Placement(it.key, i, row, col)


def sort_items(items: list[Item]) -> list[Item]:
    """Decreasing height, then width: the order MaxRects packs best."""
    return sorted(items, key=lambda it: (-it.h, -it.w, it.layer, it.key))


def pack(
    items: list[Item],
    rows: int,
    cols: int,
    period: int | None = None,
    separate_layers: bool = True,
    soft: bool = False,
    fire_together: bool = False,
) -> tuple[list[Placement], list[Bin]]:
    """Place every item in crossbars of rows x cols, on as few crossbars as the two strategies find.

    `separate_layers`: no crossbar holds two blocks of one layer (they would take turns);
    otherwise, with `fire_together`, blocks of one layer share a crossbar only on disjoint rows
    and columns (where the chip fires such blocks in one MVM).
    `period`: layers sharing a crossbar must together be busy at most one period, and their
    windows must not overlap modulo the period (`soft`: overlap is allowed but avoided; the
    periodic schedule then pays delays, which the latency model counts).
    """
    for it in items:
        if it.h > rows or it.w > cols:
            raise ValueError(f"block {it.h}x{it.w} is larger than a {rows}x{cols} crossbar")
    packer = Packer(rows, cols, period, separate_layers, soft, fire_together and not separate_layers)
    best = ([packer.add(it) for it in sort_items(items)], packer.bins)
    if separate_layers:
        other = _bins_first(items, rows, cols, period, soft)
        if len(other[1]) < len(best[1]):
            best = other
    return best


def _bins_first(items: list[Item], rows: int, cols: int, period: int | None,
                soft: bool) -> tuple[list[Placement], list[Bin]]:
    # items of one layer and one size are interchangeable: keep them as stacks per shape
    shapes: dict[int, dict[tuple[int, int], list[Item]]] = defaultdict(lambda: defaultdict(list))
    for it in sorted(items, key=lambda it: -it.key):
        shapes[it.layer][(it.h, it.w)].append(it)
    probe = {layer: next(iter(by_shape.values()))[0] for layer, by_shape in shapes.items()}  # window
    order_shapes = {
        layer: sorted(by_shape, key=lambda hw: (-hw[0] * hw[1], -hw[0])) for layer, by_shape in shapes.items()
    }
    left = {layer: sum(h * w * len(v) for (h, w), v in by_shape.items()) for layer, by_shape in shapes.items()}

    def smallest(layer: int) -> int:
        return min((h * w for (h, w), v in shapes[layer].items() if v), default=0)

    least = {layer: smallest(layer) for layer in shapes}  # smallest block a layer still has
    bins: list[Bin] = []
    placements: list[Placement] = []
    while any(left.values()):
        b = Bin(rows, cols)
        # placing a layer only changes that layer's standing, so one ordering serves the whole bin;
        # with soft windows, layers whose window overlaps the bin's come in a second pass
        order = sorted((layer for layer in shapes if left[layer]), key=lambda layer: (-left[layer], layer))
        floor = min(least[layer] for layer in order)
        for overlapping in (False, True) if (soft and period) else (False,):
            for layer in order:
                if b.free_cells < floor:
                    break
                if layer in b.layers or least[layer] > b.free_cells:
                    continue
                state = b.window_state(probe[layer], period, soft)
                if state < 0 or (state > 0 and not overlapping):
                    continue
                by_shape = shapes[layer]
                for hw in order_shapes[layer]:
                    stack = by_shape[hw]
                    if not stack or not b.may_fit(*hw):
                        continue
                    fit = b.best_fit(*hw)
                    if fit is None:
                        continue
                    it = stack.pop()
                    b.place(fit[1], fit[2], it, period)
                    placements.append(Placement(it.key, len(bins), fit[1], fit[2]))
                    left[layer] -= it.h * it.w
                    if not stack:
                        least[layer] = smallest(layer)
                    break
        if not b.layers:  # nothing passed the window test (a layer busier than the period): force one
            layer = order[0]
            hw_ = order_shapes[layer][next(i for i, s in enumerate(order_shapes[layer]) if shapes[layer][s])]
            it = shapes[layer][hw_].pop()
            b.place(0, 0, it, period)
            placements.append(Placement(it.key, len(bins), 0, 0))
            left[layer] -= it.h * it.w
            if not shapes[layer][hw_]:
                least[layer] = smallest(layer)
        bins.append(b)
    return placements, bins



# ------------------------------------------------------------------------------------------------
# packing in counts: identical crossbars filled alike, for one copy of a whole model
# ------------------------------------------------------------------------------------------------


@dataclass
class BinType:
    """`count` identical crossbars, each holding the blocks `content` (key, row, col) and the free
    rectangles `free`. Packing shapes into bin types costs in the number of distinct shapes, not
    of blocks: a VGG-16 on ISAAC's crossbars (70,000 blocks) packs as fast as a LeNet."""

    count: int
    free: list[tuple[int, int, int, int]]
    content: list[tuple[int, int, int]] = field(default_factory=list)


def _fill(free: list[tuple[int, int, int, int]], h: int, w: int, limit: int
          ) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, int]]]:
    """Place up to `limit` h x w blocks into one crossbar's free rectangles (MaxRects, best short side)."""
    if not any(h <= f[2] and w <= f[3] for f in free):
        return [], free
    scratch = Bin(0, 0)
    scratch.free = list(free)
    scratch.free_cells = sum(f[2] * f[3] for f in free)
    scratch.largest = (max((f[2] for f in free), default=0), max((f[3] for f in free), default=0))
    spots: list[tuple[int, int]] = []
    probe = Item(0, h, w, 0)
    while len(spots) < limit and scratch.may_fit(h, w):
        fit = scratch.best_fit(h, w)
        if fit is None:
            break
        scratch.place(fit[1], fit[2], probe, None)
        spots.append((fit[1], fit[2]))
    return spots, scratch.free


def pack_counts(shapes: list[tuple[int, int, int]], rows: int, cols: int) -> list[BinType]:
    """First-fit decreasing of blocks given as (key, h, w) groups of identical shape, into bin types.

    `shapes[i] = (count, h, w)`; content keys are indices into `shapes`. Blocks of one key placed in
    a bin type are numbered in bin-type order, so callers can hand them out in that order.
    """
    types: list[BinType] = []
    order = sorted(range(len(shapes)), key=lambda i: (-shapes[i][1], -shapes[i][2], i))
    for key in order:
        n, h, w = shapes[key]
        if h > rows or w > cols:
            raise ValueError(f"block {h}x{w} is larger than a {rows}x{cols} crossbar")
        i = 0
        while n and i < len(types):
            bt = types[i]
            spots, free = _fill(bt.free, h, w, n)
            k = len(spots)
            if not k:
                i += 1
                continue
            full = min(bt.count, n // k)
            done: list[BinType] = []
            if full:
                done.append(BinType(full, free, [*bt.content, *((key, r, c) for r, c in spots)]))
                n -= full * k
            rest = bt.count - full
            if rest and 0 < n < k:  # one more crossbar of this type takes the last few
                spots_r, free_r = _fill(bt.free, h, w, n)
                done.append(BinType(1, free_r, [*bt.content, *((key, r, c) for r, c in spots_r)]))
                n, rest = 0, rest - 1
            if rest:
                done.append(BinType(rest, bt.free, bt.content))
            types[i:i + 1] = done
            i += len(done)
        if n:
            spots, free = _fill([(0, 0, rows, cols)], h, w, n)
            k = len(spots)
            full, rem = divmod(n, k)
            if full:
                types.append(BinType(full, free, [(key, r, c) for r, c in spots]))
            if rem:
                spots_r, free_r = _fill([(0, 0, rows, cols)], h, w, rem)
                types.append(BinType(1, free_r, [(key, r, c) for r, c in spots_r]))
    return types

"""2-D bin packing of blocks into crossbars (MaxRects, best short side fit).

Written by hand because the packing here carries constraints no packing library offers: layers
that share a crossbar must use it in disjoint windows of the pipeline period,
keeping blocks of one layer apart when they would serialize, and no rotation (rows are inputs,
columns are outputs). The algorithm is Jylänki's MaxRects with the best-short-side-fit rule and
items sorted by decreasing height then width, which packs this kind of block set to 90%+.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


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


@dataclass
class Bin:
    rows: int
    cols: int
    free: list[tuple[int, int, int, int]] = field(default_factory=list)  # (row, col, h, w)
    cells: int = 0
    free_cells: int = 0
    layers: set[int] = field(default_factory=set)
    windows: list[tuple[int, int]] = field(default_factory=list)  # (start mod P, length) per layer
    largest: tuple[int, int] = (0, 0)  # tallest and widest free rectangle (a quick reject test)
    clash_cache: dict[int, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.free:
            self.free = [(0, 0, self.rows, self.cols)]
        self.largest = (self.rows, self.cols)
        self.free_cells = self.rows * self.cols - self.cells

    def best_fit(self, h: int, w: int) -> tuple[int, int, int] | None:
        """(score, row, col) of the best free position for an h x w item, or None."""
        best: tuple[int, int, int] | None = None
        for fr, fc, fh, fw in self.free:
            if h <= fh and w <= fw:
                score = min(fh - h, fw - w)
                if best is None or score < best[0]:
                    best = (score, fr, fc)
        return best

    def place(self, row: int, col: int, h: int, w: int) -> None:
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
        self.cells += h * w
        self.free_cells -= h * w
        self.largest = (max((f[2] for f in self.free), default=0), max((f[3] for f in self.free), default=0))

    def add_window(self, start: int, tau: int, period: int) -> None:
        self.windows.append((start % period, tau))
        self.clash_cache.clear()


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


@dataclass(frozen=True)
class Placement:
    key: int
    crossbar: int
    row: int
    col: int


class PackingOverflow(Exception):
    """More crossbars are needed than allowed; `needed` says how many the best packing used."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"needs {needed} crossbars")
        self.needed = needed


class Packer:
    """Incremental MaxRects packer over up to `max_bins` crossbars."""

    def __init__(self, rows: int, cols: int, max_bins: int | None = None, period: int | None = None,
                 separate_layers: bool = True, strict: bool = False, soft: bool = False) -> None:
        self.soft = soft
        self.rows, self.cols = rows, cols
        self.strict = strict
        self.max_bins = max_bins
        self.period = period
        self.separate_layers = separate_layers
        self.bins: list[Bin] = []

    @property
    def full(self) -> bool:
        return self.max_bins is not None and len(self.bins) >= self.max_bins

    def add(self, it: Item) -> Placement | None:
        """Place one item; None when it needs a crossbar beyond `max_bins`."""
        if it.h > self.rows or it.w > self.cols:
            raise ValueError(f"block {it.h}x{it.w} is larger than a {self.rows}x{self.cols} crossbar")
        target = _choose(self.bins, it, self.period, not self.separate_layers, self.soft)
        if target is None and self.full and self.separate_layers and not self.strict:
            target = _choose(self.bins, it, self.period, True, self.soft)
        if target is None:
            if self.full:
                return None
            self.bins.append(Bin(self.rows, self.cols))
            target = (len(self.bins) - 1, 0, 0)
        b_idx, row, col = target
        b = self.bins[b_idx]
        b.place(row, col, it.h, it.w)
        if it.layer not in b.layers and self.period:
            b.add_window(it.start, it.tau, self.period)
        b.layers.add(it.layer)
        return Placement(it.key, b_idx, row, col)


def sort_items(items: list[Item]) -> list[Item]:
    """Decreasing height, then width: the order MaxRects packs best."""
    return sorted(items, key=lambda it: (-it.h, -it.w, it.layer, it.key))


def pack(
    items: list[Item],
    rows: int,
    cols: int,
    max_bins: int | None = None,
    period: int | None = None,
    separate_layers: bool = True,
    soft: bool = False,
) -> tuple[list[Placement], list[Bin]]:
    """Place every item in crossbars of rows x cols; raise PackingOverflow past `max_bins`.

    `period`: blocks of different layers share a crossbar only if the layers' windows do not
    overlap modulo the pipeline period, so the periodic schedule runs without contention
    (`soft`: only if together they are busy at most one period; see `_windows_clash`).
    `separate_layers`: no crossbar holds two blocks of one layer (they would take turns).
    With separated layers two strategies are tried and the one using fewer crossbars kept:
    item by item in decreasing size (MaxRects), and crossbar by crossbar, each filled with at
    most one block per layer, layers with the most area still to place first (this spreads
    many-copy layers across crossbars, which the item order cannot see).
    """
    best = _items_first(items, rows, cols, period, separate_layers, soft)
    if separate_layers:
        other = _bins_first(items, rows, cols, period, soft)
        if len(other[1]) < len(best[1]):
            best = other
    if max_bins is not None and len(best[1]) > max_bins:
        raise PackingOverflow(len(best[1]))
    return best


def _items_first(items, rows, cols, period, separate_layers, soft) -> tuple[list[Placement], list[Bin]]:
    packer = Packer(rows, cols, None, period, separate_layers, strict=True, soft=soft)
    placements = [packer.add(it) for it in sort_items(items)]
    return placements, packer.bins  # type: ignore[return-value]


def _bins_first(items: list[Item], rows: int, cols: int, period: int | None,
                soft: bool = False) -> tuple[list[Placement], list[Bin]]:
    remaining: dict[int, list[Item]] = defaultdict(list)
    for it in items:
        if it.h > rows or it.w > cols:
            raise ValueError(f"block {it.h}x{it.w} is larger than a {rows}x{cols} crossbar")
        remaining[it.layer].append(it)
    for lst in remaining.values():
        lst.sort(key=lambda it: (-it.h * it.w, -it.h, it.key))
    left = {layer: sum(it.h * it.w for it in lst) for layer, lst in remaining.items()}
    bins: list[Bin] = []
    placements: list[Placement] = []
    while any(remaining.values()):
        b = Bin(rows, cols)
        # placing a layer only changes that layer's standing, so one ordering serves the whole bin;
        # with soft windows, layers whose window overlaps the bin's come in a second pass
        order = sorted((layer for layer, lst in remaining.items() if lst), key=lambda layer: (-left[layer], layer))
        for second_pass in (False, True) if (soft and period) else (False,):
            for layer in order:
                lst = remaining[layer]
                if not lst or layer in b.layers:
                    continue
                if period and _windows_clash(b, lst[0], period, soft):
                    continue
                if soft and period and not second_pass and _windows_clash(b, lst[0], period):
                    continue
                for k, it in enumerate(lst):
                    if it.h * it.w > b.free_cells or it.h > b.largest[0] or it.w > b.largest[1]:
                        continue
                    fit = b.best_fit(it.h, it.w)
                    if fit is None:
                        continue
                    b.place(fit[1], fit[2], it.h, it.w)
                    b.layers.add(layer)
                    if period:
                        b.add_window(it.start, it.tau, period)
                    placements.append(Placement(it.key, len(bins), fit[1], fit[2]))
                    left[layer] -= it.h * it.w
                    lst.pop(k)
                    break
        bins.append(b)
    return placements, bins


def _windows_clash(b: Bin, it: Item, period: int, soft: bool = False) -> bool:
    """Does the item's layer window overlap (modulo the period) a window already in the bin?

    `soft`: only refuse when the layers together would be busy longer than the period; the
    periodic schedule then delays overlapping windows (counted by the latency model), and the
    packers prefer crossbars without overlap.
    """
    if soft:
        return sum(ln for _, ln in b.windows) + it.tau > period
    hit = b.clash_cache.get(it.layer)
    if hit is None:
        start = it.start % period
        hit = False
        for s, ln in b.windows:
            d = (s - start) % period
            if d < it.tau or period - d < ln:
                hit = True
                break
        b.clash_cache[it.layer] = hit
    return hit


def _choose(bins: list[Bin], it: Item, period: int | None, allow_clash: bool,
            soft: bool = False) -> tuple[int, int, int] | None:
    area = it.h * it.w
    best: tuple[tuple[int, int], int, int, int] | None = None
    for i, b in enumerate(bins):
        if b.free_cells < area or it.h > b.largest[0] or it.w > b.largest[1]:
            continue
        clash = it.layer in b.layers
        if clash and not allow_clash:
            continue
        if period and not clash and _windows_clash(b, it, period, soft):
            continue
        overlap = bool(soft and period and not clash and _windows_clash(b, it, period))
        fit = b.best_fit(it.h, it.w)
        if fit is None:
            continue
        score = (int(clash), int(overlap), fit[0])
        if best is None or score < best[0]:
            best = (score, i, fit[1], fit[2])
            if score == (0, 0, 0):
                break
    return None if best is None else (best[1], best[2], best[3])

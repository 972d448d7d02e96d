"""2-D bin packing of blocks into crossbars (MaxRects, best short side fit).

Written by hand because the packing here carries constraints no packing library offers: layers
that share a crossbar must use it in disjoint windows of the pipeline period,
keeping blocks of one layer apart when they would serialize, and no rotation (rows are inputs,
columns are outputs). The algorithm is Jylänki's MaxRects with the best-short-side-fit rule and
items sorted by decreasing height then width, which packs this kind of block set to 90%+.
"""

from __future__ import annotations

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
    layers: set[int] = field(default_factory=set)
    windows: list[tuple[int, int]] = field(default_factory=list)  # (start mod P, length) per layer

    def __post_init__(self) -> None:
        if not self.free:
            self.free = [(0, 0, self.rows, self.cols)]

    @property
    def free_cells(self) -> int:
        return self.rows * self.cols - self.cells

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
    """More crossbars are needed than allowed."""


class Packer:
    """Incremental MaxRects packer over up to `max_bins` crossbars."""

    def __init__(self, rows: int, cols: int, max_bins: int | None = None, period: int | None = None,
                 separate_layers: bool = True, strict: bool = False) -> None:
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
        target = _choose(self.bins, it, self.period, allow_clash=not self.separate_layers)
        if target is None and self.full and self.separate_layers and not self.strict:
            target = _choose(self.bins, it, self.period, allow_clash=True)
        if target is None:
            if self.full:
                return None
            self.bins.append(Bin(self.rows, self.cols))
            target = (len(self.bins) - 1, 0, 0)
        b_idx, row, col = target
        b = self.bins[b_idx]
        b.place(row, col, it.h, it.w)
        if it.layer not in b.layers and self.period:
            b.windows.append((it.start % self.period, it.tau))
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
    strict: bool = False,
) -> tuple[list[Placement], list[Bin]]:
    """Place every item in crossbars of rows x cols; raise PackingOverflow past `max_bins`.

    `period`: blocks of different layers share a crossbar only if the layers' windows do not
    overlap modulo the pipeline period, so the periodic schedule runs without contention.
    `separate_layers`: prefer crossbars that hold no other block of the same layer (such blocks
    would take turns); a block goes beside its own layer only when nothing else fits, never when
    `strict`.
    """
    packer = Packer(rows, cols, max_bins, period, separate_layers, strict)
    placements: list[Placement] = []
    for it in sort_items(items):
        pl = packer.add(it)
        if pl is None:
            raise PackingOverflow(len(packer.bins) + 1)
        placements.append(pl)
    return placements, packer.bins


def _windows_clash(b: Bin, it: Item, period: int) -> bool:
    start = it.start % period
    for s, ln in b.windows:
        d = (s - start) % period
        if d < it.tau or period - d < ln:
            return True
    return False


def _choose(bins: list[Bin], it: Item, period: int | None, allow_clash: bool) -> tuple[int, int, int] | None:
    area = it.h * it.w
    best: tuple[tuple[int, int], int, int, int] | None = None
    for i, b in enumerate(bins):
        if b.free_cells < area:
            continue
        clash = it.layer in b.layers
        if clash and not allow_clash:
            continue
        if period and not clash and _windows_clash(b, it, period):
            continue
        fit = b.best_fit(it.h, it.w)
        if fit is None:
            continue
        score = (int(clash), fit[0])
        if best is None or score < best[0]:
            best = (score, i, fit[1], fit[2])
            if score == (0, 0):
                break
    return None if best is None else (best[1], best[2], best[3])

"""Rectangles in crossbars: MaxRects placement, windows on a period, and packing in counts.

Written by hand because the packing here carries constraints no packing library offers: no
rotation (rows are inputs, columns are outputs), crossbars that repeat (a model's blocks come in
a few shapes and many copies, so identical crossbars are filled together and counted, never
listed), and windows of time that layers sharing a crossbar must keep apart. Inside a crossbar
the free space is kept as maximal rectangles (Jylänki's MaxRects) and a block goes where its
shorter leftover side is smallest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Rect = tuple[int, int, int, int]  # free rectangle: (row, col, height, width)


def windows_overlap(a: int, la: int, b: int, lb: int, period: int) -> bool:
    """Do the windows [a, a+la) and [b, b+lb) overlap on a circle of length `period`?"""
    if la <= 0 or lb <= 0:
        return False
    d = (b - a) % period
    return d < la or (period - d) < lb


def place(free: list[Rect], h: int, w: int) -> tuple[int, int, list[Rect]] | None:
    """Put one h x w block in the free rectangle where its shorter leftover side is smallest:
    (row, col, free rectangles left), or None if it fits nowhere."""
    best: tuple[int, int, int] | None = None
    for fr, fc, fh, fw in free:
        if h <= fh and w <= fw:
            score = min(fh - h, fw - w)
            if best is None or score < best[0]:
                best = (score, fr, fc)
    if best is None:
        return None
    _, row, col = best
    r1, c1 = row + h, col + w
    split: list[Rect] = []
    for f in free:
        fr, fc, fh, fw = f
        fr1, fc1 = fr + fh, fc + fw
        if row >= fr1 or r1 <= fr or col >= fc1 or c1 <= fc:
            split.append(f)
            continue
        if row > fr:
            split.append((fr, fc, row - fr, fw))
        if r1 < fr1:
            split.append((r1, fc, fr1 - r1, fw))
        if col > fc:
            split.append((fr, fc, fh, col - fc))
        if c1 < fc1:
            split.append((fr, c1, fh, fc1 - c1))
    return row, col, _prune(split)


def _prune(rects: list[Rect]) -> list[Rect]:
    """Drop free rectangles contained in another one (MaxRects keeps only maximal ones)."""
    rects = sorted(set(rects), key=lambda r: -r[2] * r[3])
    kept: list[Rect] = []
    for r in rects:
        rr, rc, rh, rw = r
        if not any(rr >= kr and rc >= kc and rr + rh <= kr + kh and rc + rw <= kc + kw for kr, kc, kh, kw in kept):
            kept.append(r)
    return kept


@dataclass
class BinType:
    """`count` identical crossbars, each holding the blocks `content` (key, row, col) and the free
    rectangles `free`. Packing shapes into bin types costs in the number of distinct shapes, not
    of blocks: a VGG-16 on ISAAC's crossbars (70,000 blocks) packs as fast as a LeNet."""

    count: int
    free: list[Rect]
    content: list[tuple[int, int, int]] = field(default_factory=list)


def fill(free: list[Rect], h: int, w: int, limit: int) -> tuple[list[tuple[int, int]], list[Rect]]:
    """Place up to `limit` h x w blocks into one crossbar's free rectangles: (offsets, free left)."""
    spots: list[tuple[int, int]] = []
    while len(spots) < limit:
        got = place(free, h, w)
        if got is None:
            break
        row, col, free = got
        spots.append((row, col))
    return spots, free


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
            spots, free = fill(bt.free, h, w, n)
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
                spots_r, free_r = fill(bt.free, h, w, n)
                done.append(BinType(1, free_r, [*bt.content, *((key, r, c) for r, c in spots_r)]))
                n, rest = 0, rest - 1
            if rest:
                done.append(BinType(rest, bt.free, bt.content))
            types[i:i + 1] = done
            i += len(done)
        if n:
            spots, free = fill([(0, 0, rows, cols)], h, w, n)
            k = len(spots)
            full, rem = divmod(n, k)
            if full:
                types.append(BinType(full, free, [(key, r, c) for r, c in spots]))
            if rem:
                spots_r, free_r = fill([(0, 0, rows, cols)], h, w, rem)
                types.append(BinType(1, free_r, [(key, r, c) for r, c in spots_r]))
    return types

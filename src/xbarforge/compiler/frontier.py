"""How fast one layer runs on crossbars of its own: the (crossbars, layer time) frontier.

A layer that owns its crossbars never waits for another layer, so its time depends only on how its
blocks sit on them. For one form of the layer (lower.py) and `c` copies, the blocks of each shape
class s (h x w, n_s per copy) go on crossbars of their own, `q_s` per crossbar, laid out on the
crossbar's grid of (rows // h) x (cols // w) slots. On a chip that fires blocks of one layer on
disjoint rows and columns together (`HardwareSpec.fires_blocks_together`) the slots are filled
diagonal by diagonal, so d_s = min(rows // h, cols // w) of them fire in one MVM; elsewhere a
crossbar fires one block per MVM (d_s = 1). With t turns allowed per crossbar:

    q_s   = min(slots_s, d_s * t, c * n_s)      instances per crossbar
    x     = sum_s ceil(c * n_s / q_s)           crossbars
    turns = max_s ceil(q_s / d_s)
    T     = ceil(pixels / c) * mvms_per_pixel * turns     layer time per sample (cycles)

Every (form, c, t) gives a point (x, T); the frontier keeps the Pareto points (more crossbars,
strictly less time), each with the recipe that builds it (`runs`). Copies only take the values
where ceil(pixels / c) changes, so a layer with P output pixels has about 2 sqrt(P) of them.
Frontiers depend on the layer's shape and the hardware only, and are cached across calls: a
search pricing thousands of sub-nets computes each layer shape once.

Written here, not taken from a library: this is the crossbar-specific cost of the
multiple-choice knapsack that `allocate` solves.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from xbarforge.compiler.lower import BlockClass, LoweredLayer, candidate_forms, lower
from xbarforge.compiler.mapping import Run
from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware.spec import HardwareSpec

TURNS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # turns per crossbar tried (beyond 64 nothing is gained)
CACHE_SIZE = 4096


@dataclass(frozen=True)
class Grid:
    """How blocks of one shape sit on a crossbar: a rows x cols grid of slots, d firing together."""

    rows: int
    cols: int
    together: int  # blocks on disjoint rows and columns that fire in one MVM

    @property
    def slots(self) -> int:
        return self.rows * self.cols

    def offsets(self, q: int, h: int, w: int) -> tuple[tuple[int, int], ...]:
        """(row, col) offsets of the first q slots, diagonal by diagonal: slots i*d .. i*d+d-1 share
        no row and no column (a transversal of the grid), so each turn fires a whole diagonal."""
        a, b = self.rows, self.cols
        out = []
        for k in range(q):
            j, i = divmod(k, min(a, b))
            r, c = (i, (i + j) % b) if a <= b else ((i + j) % a, i)
            out.append((r * h, c * w))
        return tuple(out)


def grid_of(cls: BlockClass, hw: HardwareSpec) -> Grid:
    a, b = hw.crossbar.rows // cls.height, hw.usable_cols // cls.width
    return Grid(a, b, min(a, b) if hw.fires_blocks_together else 1)


@lru_cache(maxsize=4096)
def copy_counts(pixels: int) -> np.ndarray:
    """The fewest copies for each distinct value of ceil(pixels / copies), ascending (read-only)."""
    out, c = [], 1
    while True:
        out.append(c)
        q = math.ceil(pixels / c)
        if q == 1:
            arr = np.asarray(out, dtype=np.int64)
            arr.flags.writeable = False
            return arr
        c = math.ceil(pixels / (q - 1))


def pareto(x: np.ndarray, t: np.ndarray, *tie: np.ndarray) -> np.ndarray:
    """Indices of the Pareto points (x ascending, t strictly falling); ties go to the cheapest, then
    the fastest, then the smallest `tie` keys."""
    order = np.lexsort((*reversed(tie), t, x))
    ts = t[order]
    best = np.minimum.accumulate(ts)
    keep = np.ones(len(ts), dtype=bool)
    keep[1:] = ts[1:] < best[:-1]
    return order[keep]


class ParetoSet:
    """Points (x crossbars, t cycles), x ascending and t strictly falling, as `allocate` reads them."""

    x: np.ndarray
    t: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @cached_property
    def hull(self) -> np.ndarray:
        """Indices of the lower convex hull of (x, t): where each more crossbar buys the most time."""
        x, t = self.x.tolist(), self.t.tolist()
        keep: list[int] = []
        for j in range(len(x)):
            while len(keep) >= 2:
                a, b = keep[-2], keep[-1]
                # b is on or above the segment a -> j: drop it
                if (t[b] - t[a]) * (x[j] - x[a]) >= (t[j] - t[a]) * (x[b] - x[a]):
                    keep.pop()
                else:
                    break
            keep.append(j)
        return np.asarray(keep, dtype=np.int64)

    def first_within(self, cap: float) -> int | None:
        """Index of the cheapest point with t <= cap (None if the layer cannot get that fast)."""
        j = int(np.searchsorted(-self.t, -cap, side="left"))
        return j if j < len(self.t) else None


@dataclass
class Frontier(ParetoSet):
    """Pareto points of one layer on crossbars of its own: `x` ascending, `t` strictly descending."""

    layer: Layer
    forms: list[LoweredLayer]
    x: np.ndarray  # crossbars
    t: np.ndarray  # layer time per sample, cycles
    form: np.ndarray  # index into forms
    copies: np.ndarray
    turns: np.ndarray  # turns allowed per crossbar (the recipe's t)
    grids: list[list[Grid]]  # per form, per shape class

    def runs(self, j: int, crossbar0: int, round_: int = 0) -> tuple[list[Run], int, int]:
        """The runs of point j from crossbar `crossbar0`: (runs, crossbars, turns)."""
        low = self.forms[int(self.form[j])]
        return layer_runs(low, int(self.copies[j]), int(self.turns[j]), self.grids[int(self.form[j])],
                          crossbar0, round_)


def layer_runs(low: LoweredLayer, copies: int, turns: int, grids: list[Grid], crossbar0: int,
               round_: int = 0) -> tuple[list[Run], int, int]:
    """Runs that place `copies` copies of `low` with at most `turns` turns per crossbar."""
    runs, x, worst = [], crossbar0, 1
    for cls, grid in zip(low.classes, grids, strict=True):
        n = cls.count * copies
        q = min(grid.slots, grid.together * turns, n)
        k = math.ceil(q / grid.together)
        runs.append(Run(low.name, cls.start, cls.start + cls.count, 0, copies, q,
                        grid.offsets(q, cls.height, cls.width), x, k, round_))
        x += math.ceil(n / q)
        worst = max(worst, k)
    return runs, x - crossbar0, worst


def _points(low: LoweredLayer, grids: list[Grid]) -> tuple[np.ndarray, ...]:
    """(x, t, copies, turns) of every (copies, turns) recipe of one form, unfiltered."""
    counts = np.asarray([c.count for c in low.classes], dtype=np.int64)
    slots = np.asarray([g.slots for g in grids], dtype=np.int64)
    together = np.asarray([g.together for g in grids], dtype=np.int64)
    reach = int(np.max(-(-np.minimum(slots, counts * low.pixels) // together)))
    turns = np.asarray([t for t in TURNS if t <= max(1, reach)], dtype=np.int64)
    copies = copy_counts(low.pixels)
    c = copies[:, None, None]
    n = c * counts[None, None, :]
    q = np.minimum(np.minimum(slots[None, None, :], together[None, None, :] * turns[None, :, None]), n)
    x = (-(-n // q)).sum(axis=2)
    k = (-(-q // together[None, None, :])).max(axis=2)
    tau = (-(-low.pixels // copies) * low.mvms_per_pixel)[:, None]
    t = tau * k
    cc = np.broadcast_to(copies[:, None], x.shape)
    tt = np.broadcast_to(turns[None, :], x.shape)
    return x.ravel(), t.ravel(), cc.ravel(), tt.ravel()


_CACHE: OrderedDict[tuple, Frontier] = OrderedDict()


def signature(layer: Layer) -> tuple:
    """What the compiler's cost of a layer depends on (not its name, not its weights)."""
    return (layer.kind, layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding,
            layer.dilation, layer.groups, tuple(layer.in_shape), tuple(layer.out_shape))


def _hw_key(hw: HardwareSpec) -> tuple:
    return (hw.crossbar.rows, hw.usable_cols, hw.cols_per_weight, hw.fires_blocks_together)


def frontier(layer: Layer, hw: HardwareSpec) -> Frontier:
    """The layer's frontier on `hw` (cached by layer shape and crossbar geometry)."""
    key = (_hw_key(hw), signature(layer))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        if hit.layer is layer:
            return hit
        return _renamed(hit, layer)
    forms = [lower(layer, hw, f) for f in candidate_forms(layer, hw)]
    grids = [[grid_of(c, hw) for c in low.classes] for low in forms]
    parts = [_points(low, g) for low, g in zip(forms, grids, strict=True)]
    x = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    copies = np.concatenate([p[2] for p in parts])
    turns = np.concatenate([p[3] for p in parts])
    form = np.concatenate([np.full(len(p[0]), i, dtype=np.int64) for i, p in enumerate(parts)])
    keep = pareto(x, t, form, copies, turns)  # ties: the simplest recipe
    f = Frontier(layer, forms, x[keep], t[keep], form[keep], copies[keep], turns[keep], grids)
    _CACHE[key] = f
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return f


def _renamed(f: Frontier, layer: Layer) -> Frontier:
    """A cached frontier for another layer of the same shape (forms re-pointed at this layer)."""
    forms = [LoweredLayer(layer, low.form, low.cols_per_weight, low.row_cuts, low.col_cuts, low.mvms_per_pixel,
                          low.pixels, low.group_cols, low.layout) for low in f.forms]
    out = Frontier(layer, forms, f.x, f.t, f.form, f.copies, f.turns, f.grids)
    out.__dict__["hull"] = f.hull
    return out


def clear_cache() -> None:
    _CACHE.clear()

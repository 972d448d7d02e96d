"""A lower bound on the pipeline period any mapping can reach on a crossbar budget.

A mapping with period P (cycles between samples) must give every layer l an option (form f,
copies c) whose block time tau = ceil(pixels / c) x MVMs per pixel is at most P. A crossbar
serves one layer at a time, at most P cycles per sample, and holds rows x cols cells. Blocks
split in two kinds:

* exclusive blocks leave no room on their crossbar for the smallest block of any layer (a full
  128 x 128 tile): such a crossbar works only for that layer, so it counts as a whole crossbar;
* the others share crossbars. They need crossbar time: where a crossbar fires one block per MVM,
  c x blocks x tau cycles; where it fires blocks on disjoint rows and columns together, one MVM
  covers at most all its rows and all its columns, so a block takes max(h / rows, w / cols) of
  an MVM; and at least ceil(cells / (rows x cols)) whole crossbars busy tau cycles each. They
  need cells too.

Summed over layers, exclusive crossbars + shared crossbar time / P must fit the budget, and so
must exclusive crossbars + shared cells / (rows x cols). The bound is the smallest P for which
every layer has options within P that satisfy both sums, each layer taking its cheapest option
for each sum separately (a relaxation, so the bound stays valid). What it leaves out:
fragmentation, the geometry of mixing blocks, and the chain's fill. Achieved / bound is
reported as bound / achieved period (1.0 = optimal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xbarforge.compiler.frontier import copy_counts
from xbarforge.compiler.lower import LoweredLayer
from xbarforge.compiler.mapping import Mapping
from xbarforge.hardware.spec import HardwareSpec


@dataclass
class _Options:
    """Every (form, copies) of one layer: block time, exclusive crossbars, shared time and cells."""

    tau: np.ndarray
    excl: np.ndarray
    work: np.ndarray  # crossbar-cycles per sample of the shared blocks
    cells: np.ndarray  # crossbars' worth of cells of the shared blocks


def _options(forms: Sequence[LoweredLayer], hw: HardwareSpec, hmin: int, wmin: int) -> _Options:
    rows, cols = hw.crossbar.rows, hw.usable_cols
    xbar = rows * cols
    taus, excl, work, cells = [], [], [], []
    for f in forms:
        copies = copy_counts(f.pixels)
        tau = -(-f.pixels // copies) * f.mvms_per_pixel
        alone = [c for c in f.classes if c.height > rows - hmin and c.width > cols - wmin]
        rest = [c for c in f.classes if c not in alone]
        n_alone = sum(c.count for c in alone)
        rest_cells = sum(c.height * c.width * c.count for c in rest)
        # blocks that fire in one MVM sit on disjoint rows and columns, so one MVM of a crossbar
        # covers at most its rows and its columns: a block takes max(h / rows, w / cols) of one
        if hw.fires_blocks_together:
            slots = sum(c.count * max(c.height / rows, c.width / cols) for c in rest)
        else:
            slots = sum(c.count for c in rest)
        c_cells = copies * rest_cells
        taus.append(tau)
        excl.append((copies * n_alone).astype(float))
        work.append(np.maximum(copies * slots * tau, -(-c_cells // xbar) * tau).astype(float))
        cells.append(c_cells / xbar)
    return _Options(np.concatenate(taus), np.concatenate(excl), np.concatenate(work), np.concatenate(cells))


def period_bound(forms: Sequence[Sequence[LoweredLayer]], hw: HardwareSpec, budget: int) -> float:
    """Smallest period (cycles) any mapping of these layers can reach on `budget` crossbars."""
    classes = [c for fs in forms for f in fs for c in f.classes]
    hmin, wmin = min(c.height for c in classes), min(c.width for c in classes)
    options = [_options(fs, hw, hmin, wmin) for fs in forms]
    # every layer's options in flat arrays, one segment per layer, so each test is a few numpy calls
    starts = np.cumsum([0, *(len(o.tau) for o in options[:-1])])
    tau = np.concatenate([o.tau for o in options]).astype(float)
    excl = np.concatenate([o.excl for o in options])
    work = np.concatenate([o.work for o in options])
    cells = excl + np.concatenate([o.cells for o in options])

    def fits(period: float) -> bool:
        ok = tau <= period
        if not np.logical_or.reduceat(ok, starts).all():
            return False  # some layer has no option this fast
        time = np.minimum.reduceat(np.where(ok, excl + work / period, np.inf), starts).sum()
        room = np.minimum.reduceat(np.where(ok, cells, np.inf), starts).sum()
        return bool(time <= budget and room <= budget)

    lo = max(float(np.min(o.tau)) for o in options)
    hi = float(tau.max())
    if not fits(hi):
        hi2 = hi
        while not fits(hi2):  # beyond one copy's time only the time term still falls
            hi2 *= 2
            if hi2 > 1e12:
                return math.inf
        lo, hi = hi, hi2
    if fits(lo):
        return lo
    for _ in range(60):  # feasibility only grows with P: the smallest feasible P lies in (lo, hi]
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        if hi - lo < 1e-4 * lo:
            break
    return lo  # below the smallest feasible period: still a lower bound


def period_lower_bound(mapping: Mapping, hw: HardwareSpec) -> float | None:
    """The bound the compiler stored for this mapping (None without a budget)."""
    return mapping.report.get("period_bound_cycles")

"""Choose each layer's form and number of copies under a crossbar budget.

Objective: J = alpha * sum_l tau_l + beta * max_l tau_l, the analytic latency of k streamed
samples (sum T + (k-1) max T) with alpha and beta set from the sample counts the user asks for
(`objective_weights`). Each layer has a Pareto list of options (form, copies) ordered by cells;
a greedy step takes the move with the best latency gain per extra cell: one layer's next option,
or lowering the ceiling (every layer at the slowest time moves below it at once, which no single
layer move can do when several layers tie). Capacity is not the raw cell count: the packer's
achieved fill (area and, where a crossbar fires one block at a time, MVM time) is fed back by the
caller, so fragmentation is planned for rather than discovered by blind retries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xbarforge.compiler.lower import LoweredLayer


@dataclass(frozen=True)
class Option:
    lowered: LoweredLayer
    copies: int
    tau: int
    cells: int  # rectangle cells of all copies
    time: int  # block-cycles per sample of all copies (sum over blocks of tau)

    @property
    def blocks(self) -> int:
        return self.copies * len(self.lowered.blocks)


def layer_options(forms: list[LoweredLayer], max_blocks: int | None, max_cells: float) -> list[Option]:
    """Pareto-optimal (cells up, tau down) options of one layer over its forms and copy counts."""
    opts: list[Option] = []
    for low in forms:
        nb = len(low.blocks)
        p = max(1, low.pixels)
        c = 1
        while True:
            if max_blocks is not None and c * nb > max_blocks and c > 1:
                break
            cells = c * low.cells
            if cells > max_cells and c > 1:
                break
            tau = low.tau(c)
            opts.append(Option(low, c, tau, cells, c * nb * tau))
            q = math.ceil(p / c)
            if q == 1:
                break
            c = math.ceil(p / (q - 1))  # the fewest copies that lower ceil(p / c)
    opts.sort(key=lambda o: (o.cells, o.tau))
    pareto: list[Option] = []
    for o in opts:
        if not pareto or o.tau < pareto[-1].tau:
            pareto.append(o)
    return pareto


def objective_weights(samples: list[int], base_first: float, base_max: float) -> tuple[float, float]:
    """alpha, beta such that J = alpha sum T + beta max T = sum_k latency(k) / baseline(k)."""
    alpha = beta = 0.0
    for k in samples:
        base = base_first + (k - 1) * base_max
        alpha += 1.0 / base
        beta += (k - 1) / base
    return alpha, beta


def _eff(o: Option, ceiling: int, xbar_cells: int) -> float:
    """Cells an option effectively takes when the pipeline period is `ceiling`.

    A block busy tau of every `ceiling` cycles leaves its crossbar free only 1 - tau/ceiling of
    the time, so it blocks at least that share of the crossbar's cells for other layers.
    """
    per_block = xbar_cells * o.tau / ceiling
    return o.copies * sum(max(b.height * b.width, per_block) for b in o.lowered.blocks)


def min_index(opts: list[Option], ceiling: int) -> int | None:
    """The cheapest option whose tau is at most `ceiling` (None if no option gets there)."""
    for j, o in enumerate(opts):
        if o.tau <= ceiling:
            return j
    return None


def fill_options(
    options: list[list[Option]],
    start: list[int],
    capacity: float,
    xbar_cells: int,
    ceiling: int | None = None,
) -> list[int]:
    """Spend the capacity left after `start` on the moves that cut sum tau most per cell.

    With a `ceiling` (the pipeline period), cost is the effective cells of `_eff`, since a block
    busy tau of every `ceiling` cycles holds its crossbar's time as well as its cells. Each step
    takes, over all layers, the next option with the best tau saved per effective cell.
    """
    n = len(options)
    idx = list(start)

    def cost(o: Option) -> float:
        return _eff(o, ceiling, xbar_cells) if ceiling else float(o.cells)

    used = sum(cost(options[i][idx[i]]) for i in range(n))
    if used > capacity:
        return idx
    while True:
        best_ratio, best = 0.0, None
        for i in range(n):
            cur = options[i][idx[i]]
            c_cur = cost(cur)
            # look a few options ahead: ceil() makes single steps uneven
            for j in range(idx[i] + 1, min(idx[i] + 4, len(options[i]))):
                nxt = options[i][j]
                extra = cost(nxt) - c_cur
                if used + extra > capacity:
                    break
                ratio = (cur.tau - nxt.tau) / max(extra, 1.0)
                if ratio > best_ratio:
                    best_ratio, best = ratio, (i, j, extra)
        if best is None:
            return idx
        i, j, extra = best
        idx[i] = j
        used += extra

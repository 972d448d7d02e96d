"""Choose each layer's form and number of copies under a crossbar budget.

Each layer has a Pareto list of options (form, copies): cost up, MVM cycles per sample (tau)
down (`layer_options`). For a pipeline period P the compiler starts every layer at its cheapest
option with tau <= P (`min_index`), then `fill_options` spends the capacity left on the moves
that cut sum tau most per cell of footprint. Capacity is not the raw cell count: the compiler
feeds back the fill its packings reach, so fragmentation is planned for rather than discovered
by blind retries.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import cached_property

from xbarforge.compiler.lower import LoweredLayer

MAX_BLOCKS = 4096  # duplication stops here: beyond it packing and timing stop being milliseconds


@dataclass(frozen=True)
class Option:
    lowered: LoweredLayer
    copies: int
    tau: int
    cells: int  # rectangle cells of all copies
    time: int  # block-cycles per sample of all copies (sum over blocks of tau)

    @cached_property  # read millions of times by fill_options in a search loop
    def blocks(self) -> int:
        return self.copies * len(self.lowered.blocks)


def layer_options(forms: list[LoweredLayer], max_blocks: int | None, max_cells: float,
                  xbar_cells: int) -> list[Option]:
    """Pareto-optimal options of one layer over its forms and copy counts: cost up, tau down.

    Cost is the cells an option needs on its own; with `max_blocks` (crossbars fire one block at
    a time, so a layer's blocks need distinct crossbars) it is at least one crossbar per block,
    and options with more blocks than the budget's crossbars are left out: otherwise channel
    splitting, which costs no cells, would look free.
    """
    opts: list[Option] = []
    for low in forms:
        nb = len(low.blocks)
        if nb > MAX_BLOCKS and low is not forms[0]:
            continue
        if max_blocks is not None and nb > max_blocks and low is not forms[0]:
            continue
        p = max(1, low.pixels)
        c = 1
        while True:
            if c * nb > min(max_blocks or MAX_BLOCKS, MAX_BLOCKS) and c > 1:
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

    def cost(o: Option) -> int:
        return max(o.cells, o.blocks * xbar_cells) if max_blocks is not None else o.cells

    opts.sort(key=lambda o: (cost(o), o.tau, o.blocks))
    pareto: list[Option] = []
    for o in opts:
        if not pareto or o.tau < pareto[-1].tau:
            pareto.append(o)
    return pareto


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
    spread: bool = False,
    max_blocks: int = MAX_BLOCKS,
) -> list[int]:
    """Spend the capacity left after `start` on the moves that cut sum tau most per cell.

    The chip's footprint, in cells, is the largest of three needs: the cells of the blocks;
    with a pipeline period `ceiling`, the crossbar time (a crossbar gives each period's cycles
    to one block at a time, so block-cycles / ceiling crossbars); and with `spread` (one block
    at a time), one crossbar per block of the widest layer, since a layer's blocks must sit in
    distinct crossbars. A move pays for what it adds to the footprint, so copies that fit in
    crossbars the other needs already force are free. Each step takes, over all layers, the
    next option with the best tau saved per footprint cell.
    """
    n = len(options)
    idx = list(start)
    # (tau, cells, time, blocks) per option: this loop runs thousands of times per search candidate
    opt = [[(o.tau, o.cells, o.time, o.blocks) for o in opts] for opts in options]
    cells = sum(opt[i][idx[i]][1] for i in range(n))
    time = sum(opt[i][idx[i]][2] for i in range(n))
    blocks = [opt[i][idx[i]][3] for i in range(n)]
    widest = max(blocks)
    total_blocks = sum(blocks)
    per_cycle = xbar_cells / ceiling if ceiling else 0.0
    spread_cells = xbar_cells if spread else 0

    def footprint(c: float, t: float, w: int) -> float:
        return max(c, t * per_cycle, w * spread_cells)

    used = footprint(cells, time, widest)
    if used > capacity:
        return idx

    def candidate(i: int) -> tuple[float, int] | None:
        """Best next option of layer i (ratio, index), looking a few options ahead."""
        row = opt[i]
        c_tau, c_cells, c_time, c_blocks = row[idx[i]]
        base_cells, base_time, base_blocks = cells - c_cells, time - c_time, total_blocks - c_blocks
        best_i: tuple[float, int] | None = None
        for j in range(idx[i] + 1, min(idx[i] + 4, len(row))):
            n_tau, n_cells, n_time, n_blocks = row[j]
            new_used = max(base_cells + n_cells, (base_time + n_time) * per_cycle,
                           (widest if widest > n_blocks else n_blocks) * spread_cells)
            if new_used > capacity or base_blocks + n_blocks > max_blocks:
                break
            ratio = (c_tau - n_tau) / max(new_used - used, 1.0)
            if ratio > 0 and (best_i is None or ratio > best_i[0]):
                best_i = (ratio, j)
        return best_i

    # lazy greedy: ratios are re-checked when they reach the top of the heap
    heap: list[tuple[float, int]] = []
    for i in range(n):
        c = candidate(i)
        if c is not None:
            heapq.heappush(heap, (-c[0], i))
    while heap:
        neg, i = heapq.heappop(heap)
        c = candidate(i)
        if c is None:
            continue
        if heap and c[0] < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-c[0], i))
            continue
        j = c[1]
        cur, nxt = opt[i][idx[i]], opt[i][j]
        cells += nxt[1] - cur[1]
        time += nxt[2] - cur[2]
        total_blocks += nxt[3] - cur[3]
        blocks[i] = nxt[3]
        widest = max(blocks)
        idx[i] = j
        used = footprint(cells, time, widest)
        c = candidate(i)
        if c is not None:
            heapq.heappush(heap, (-c[0], i))
    return idx

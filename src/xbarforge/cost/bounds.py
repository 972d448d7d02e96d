"""Upper bound on throughput for a crossbar budget: the LP relaxation of duplication.

Copies may be fractional and packing is perfect, so the bound ignores fragmentation. With
period P, layer l in its cheapest form needs max(1, pixels * mvms_per_pixel / P) copies; the
smallest P whose copies fit the budget's cells is a lower bound on any mapping's period. Where a
crossbar fires one block at a time, it can do at most one block-MVM per cycle, so also
P >= total block-MVMs per sample / budget. Achieved / bound is reported as bound / achieved
period (1.0 = optimal).
"""

from __future__ import annotations

from xbarforge.compiler.lower import LoweredLayer
from xbarforge.compiler.mapping import Mapping
from xbarforge.hardware.spec import HardwareSpec


def period_bound(forms: list[list[LoweredLayer]], hw: HardwareSpec, budget: int) -> float:
    cap = budget * hw.crossbar.rows * hw.crossbar.cols
    p_min = max(min(f.mvms_per_pixel for f in fs) for fs in forms)

    def cells_at(period: float) -> float:
        return sum(min(f.cells * max(1.0, f.pixels * f.mvms_per_pixel / period) for f in fs) for fs in forms)

    if cells_at(p_min) <= cap:
        p_cells = float(p_min)
    else:
        lo, hi = float(p_min), float(max(f.pixels * f.mvms_per_pixel for fs in forms for f in fs))
        if cells_at(hi) > cap:
            return float("inf")
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if cells_at(mid) <= cap else (mid, hi)
        p_cells = hi
    p_time = 0.0
    if not hw.fires_blocks_together:
        p_time = sum(min(len(f.blocks) * f.pixels * f.mvms_per_pixel for f in fs) for fs in forms) / budget
    return max(p_cells, p_time, float(p_min))


def period_lower_bound(mapping: Mapping, hw: HardwareSpec) -> float | None:
    """The bound the compiler stored for this mapping (None without a budget)."""
    return mapping.report.get("period_bound_cycles")

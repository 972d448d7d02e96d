"""What a bit policy costs on the chip, from the compiler's own blocks.

Each layer is lowered by `xbarforge.compiler.lower` at its channels' bits (columns per weight from
`cell_bits` and the encoding, channels filling column blocks in order) and placed as in the
isaac-like mapping, every block on its own crossbar: RaQu's matching mapping keeps a layer's
arrays to itself, which is what makes partly empty arrays a loss worth quantizing away. On a chip
with pools of several crossbar sizes, `xbarforge.compiler.pools` puts each layer on the size that
wastes least within the pools' counts. Per-layer footprints are cached by the layer's bits, so an
agent that changes one group re-lowers one layer.

Utilization here is cells holding weight slices / cells of the crossbars the policy uses (RaQu's
resource utilization); `utilization_budget` divides by the whole budget instead (DESIGN.md's
definition when a budget is given).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xbarforge.compiler.compile import isaac_like
from xbarforge.compiler.mapping import Mapping
from xbarforge.compiler.pools import LayerOnPool, layer_footprint, pool_hardware, solve_assignment
from xbarforge.quant.space import ChannelBits, QuantSpace


@dataclass
class PolicyCost:
    crossbars: int
    weight_cells: int
    cells_used: int
    budget_cells: int | None  # cells of the whole budget (None: no budget)
    fits: bool
    layers: list[dict[str, Any]] = field(default_factory=list)  # name, crossbars, weight_cells, crossbar, utilization
    pool_crossbars: list[int] | None = None  # crossbars taken from each pool (heterogeneous chips)

    @property
    def utilization(self) -> float:
        """Cells holding weights / cells of the crossbars used."""
        return self.weight_cells / self.cells_used if self.cells_used else 0.0

    @property
    def utilization_budget(self) -> float | None:
        """Cells holding weights / cells of the whole budget."""
        return self.weight_cells / self.budget_cells if self.budget_cells else None

    def summary(self) -> dict[str, Any]:
        return {
            "crossbars": self.crossbars,
            "weight_cells": self.weight_cells,
            "utilization": self.utilization,
            "utilization_budget": self.utilization_budget,
            "fits": self.fits,
            "pool_crossbars": self.pool_crossbars,
        }


class PolicyCoster:
    """Cost of ChannelBits on `space.hw` under a crossbar budget (or the chip's pools)."""

    def __init__(self, space: QuantSpace, budget: int | None) -> None:
        self.space = space
        self.hw = space.hw
        self.pools = list(self.hw.chip.pools)
        self.budget = None if self.pools else budget
        self.pool_hws = pool_hardware(self.hw) if self.pools else [self.hw]
        self._cache: dict[tuple[int, bytes], list[LayerOnPool]] = {}

    def layer_options(self, index: int, bits: np.ndarray) -> list[LayerOnPool]:
        """Footprint of layer `index` at `bits` on each pool (one entry on a single-size chip)."""
        key = (index, np.ascontiguousarray(bits, dtype=np.int64).tobytes())
        hit = self._cache.get(key)
        if hit is None:
            layer = self.space.layers[index]
            uniform = bool((bits == bits[0]).all())
            b = int(bits[0]) if uniform else [int(v) for v in bits]
            hit = self._cache[key] = [layer_footprint(layer, phw, b) for phw in self.pool_hws]
        return hit

    def __call__(self, bits: ChannelBits) -> PolicyCost:
        layers = self.space.layers
        options = [self.layer_options(i, bits[layer.name]) for i, layer in enumerate(layers)]
        if self.pools:
            plan = solve_assignment([layer.name for layer in layers], options, self.pools)
            chosen = [plan.footprint[layer.name] for layer in layers]
            sizes = [self.pools[plan.layer_pool[layer.name]] for layer in layers]
            records = [{"name": layer.name, "crossbars": f.crossbars, "weight_cells": f.weight_cells,
                        "crossbar": f"{p.rows}x{p.cols}", "utilization": f.weight_cells / f.cells}
                       for layer, f, p in zip(layers, chosen, sizes, strict=True)]
            return PolicyCost(plan.crossbars_used, plan.weight_cells, plan.cells_used, plan.chip_cells, plan.fits,
                              records, plan.used)
        chosen = [opts[0] for opts in options]
        size = f"{self.hw.crossbar.rows}x{self.hw.crossbar.cols}"
        records = [{"name": layer.name, "crossbars": f.crossbars, "weight_cells": f.weight_cells, "crossbar": size,
                    "utilization": f.weight_cells / f.cells} for layer, f in zip(layers, chosen, strict=True)]
        crossbars = sum(f.crossbars for f in chosen)
        cells = self.hw.crossbar.rows * self.hw.crossbar.cols
        return PolicyCost(
            crossbars=crossbars,
            weight_cells=sum(f.weight_cells for f in chosen),
            cells_used=crossbars * cells,
            budget_cells=self.budget * cells if self.budget else None,
            fits=self.budget is None or crossbars <= self.budget,
            layers=records,
        )

    def mapping(self, bits: ChannelBits) -> Mapping:
        """The isaac-like Mapping of a policy (single-size chips), for the cost model's latency and energy."""
        return isaac_like(self.space.graph, self.hw, weight_bits={k: [int(b) for b in v] for k, v in bits.items()})

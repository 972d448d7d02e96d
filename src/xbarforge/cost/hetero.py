"""Cost of a network whose layers sit on crossbars of different sizes (NAX's heterogeneous mapping).

Every MVM layer is mapped isaac-like (DESIGN.md: every block on its own crossbar, one copy) on
square crossbars of its own size, the hardware rescaled to that size by `hardware.scaling.resized`.
The numbers come from the compiler and cost model: per size, the isaac-like Mapping and its
`mapping_timing` / `mapping_energy`, read per layer. Layers do not interact in an isaac-like
mapping, so each layer's blocks, cycles and dynamic energy are cached by (layer shape, size) and a
search pricing thousands of sub-nets builds a Mapping only for layer shapes it has not seen.
Combining them:
- latency of k samples as a chain (DESIGN.md): sum of layer times + (k - 1) x the largest, with
  each layer's time = its cycles x the MVM time of its size;
- energy: dynamic per layer, plus leakage of each size's crossbars over the steady-state period;
- area: each size group with its own tiles (`chip_area_mm2` per size);
- EDAP: energy x one-sample latency x area, as `cost.model.evaluate` defines it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xbarforge.compiler.compile import isaac_like
from xbarforge.compiler.frontier import signature
from xbarforge.cost.area import chip_area_mm2
from xbarforge.cost.energy import mapping_energy
from xbarforge.cost.latency import mapping_timing, pipeline_cycles
from xbarforge.errors import CompileError
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.scaling import resized
from xbarforge.hardware.spec import HardwareSpec


@dataclass
class HeteroCost:
    latency_ns: dict[str, float]  # per sample count k (str(k)), chain schedule
    energy_pj: float  # per inference
    area_mm2: float
    edap: float
    crossbars: dict[int, int]  # crossbar size (rows) -> crossbars used
    utilization: float  # weight cells / cells of all crossbars used
    layers: list[dict[str, Any]] = field(default_factory=list)


# (hardware json, size, layer signature) -> (blocks, cycles, dynamic energy pJ, weight cells)
_LAYER_CACHE: dict[tuple, tuple[int, int, float, int]] = {}


def _layer_costs(graph: LayerGraph, hw: HardwareSpec, size: int, names: set[str], key: str) -> None:
    """Fill the cache for the layers of `graph` in `names` on `size` crossbars (one isaac-like Mapping)."""
    hw_s = resized(hw, size, size)
    mapping = isaac_like(graph, hw_s)
    cycles = mapping_timing(mapping).layer_cycles
    energy = mapping_energy(mapping, hw_s, 0)
    blocks: dict[str, int] = {}
    for b in mapping.blocks:
        blocks[b.layer] = blocks.get(b.layer, 0) + 1
    for lp in mapping.layers:
        if lp.name in names:
            sig = signature(graph[lp.name])
            weights = sum(b.weights for b in mapping.blocks if b.layer == lp.name)
            _LAYER_CACHE[(key, size, sig)] = (blocks[lp.name], cycles[lp.name], energy.layer_total(lp.name), weights)


def evaluate_sizes(graph: LayerGraph, hw: HardwareSpec, sizes: Mapping[str, int],
                   samples: Sequence[int] = (1,)) -> HeteroCost:
    """Cost of `graph` with layer `name` on `sizes[name]` x `sizes[name]` crossbars (others: hw's size)."""
    layers = graph.mvm_layers
    known = {layer.name for layer in layers}
    unknown = sorted(set(sizes) - known)
    if unknown:
        raise CompileError(f"crossbar sizes given for layers the model does not have: {', '.join(unknown[:3])}")
    key = hw.model_dump_json()
    size_of = {layer.name: int(sizes.get(layer.name, hw.crossbar.rows)) for layer in layers}
    missing: dict[int, set[str]] = {}
    for layer in layers:
        if (key, size_of[layer.name], signature(layer)) not in _LAYER_CACHE:
            missing.setdefault(size_of[layer.name], set()).add(layer.name)
    for size, names in missing.items():
        _layer_costs(graph, hw, size, names, key)
    records = []
    crossbars: dict[int, int] = {}
    dynamic = weight_cells = 0.0
    for layer in layers:
        s = size_of[layer.name]
        nb, cyc, e, w = _LAYER_CACHE[(key, s, signature(layer))]
        t = cyc * resized(hw, s, s).mvm_ns
        records.append({"name": layer.name, "size": s, "crossbars": nb, "cycles": cyc, "time_ns": t, "energy_pj": e})
        crossbars[s] = crossbars.get(s, 0) + nb
        dynamic += e
        weight_cells += w
    times = [r["time_ns"] for r in records]
    period_ns = max(times, default=0.0)
    leak = sum(resized(hw, s, s).energy.leakage_mw_per_crossbar * n * period_ns for s, n in crossbars.items())
    energy = dynamic + leak
    area = sum(chip_area_mm2(resized(hw, s, s), n) for s, n in crossbars.items())
    latency = {str(k): float(pipeline_cycles(times, k)) for k in samples}
    first = float(pipeline_cycles(times, 1))
    cells = sum(n * s * s for s, n in crossbars.items())
    return HeteroCost(latency_ns=latency, energy_pj=energy, area_mm2=area, edap=energy * first * area,
                      crossbars=dict(sorted(crossbars.items())), utilization=weight_cells / cells if cells else 0.0,
                      layers=records)

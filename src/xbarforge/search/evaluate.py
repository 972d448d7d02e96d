"""What one candidate costs: hardware numbers from the compiler and cost model, plus its accuracy.

`HardwareObjectives` is the only place the search asks about hardware, and it asks the compiler
(`compiler.estimate`: the mapping `compile_graph` delivers) and the cost model (`cost.latency`,
`cost.energy`, `cost.area`; `cost.hetero` when the space picks a crossbar size per layer) -- no
private formula. `CandidateEvaluator` joins those numbers
with an accuracy source (predictor, supernet or simulator) into an NSGA-II `Evaluated`; it is a
plain picklable object so process pools and Ray workers can run it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xbarforge.compiler.estimate import EstimateCache, estimate
from xbarforge.cost.area import chip_area_mm2
from xbarforge.cost.energy import mapping_energy
from xbarforge.errors import XbarforgeError
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.search.nsga import Evaluated, Objective
from xbarforge.search.space import Arch, SearchSpace

# objective name -> sense; hardware ones come from `HardwareObjectives`, accuracy from an accuracy source
SENSES: dict[str, str] = {"accuracy": "max", "latency": "min", "throughput": "max", "energy": "min",
                          "edap": "min", "utilization": "max", "crossbars": "min"}


def parse_objectives(text: str | Sequence[str]) -> list[Objective]:
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [n for n in names if n not in SENSES]
    if unknown:
        raise XbarforgeError(f"objectives: unknown '{unknown[0]}' (choose from {', '.join(SENSES)})")
    if len(names) < 2 or len(set(names)) != len(names):
        raise XbarforgeError(f"objectives: give at least two different ones, e.g. accuracy,latency (got {text!r})")
    return [Objective(n, SENSES[n]) for n in names]  # type: ignore[arg-type]


@dataclass
class Constraints:
    """Ceilings a candidate must meet to be feasible (None: no ceiling)."""

    max_latency_ns: float | None = None
    max_energy_pj: float | None = None

    def violation(self, values: dict[str, float]) -> tuple[float, str | None]:
        for key, limit, unit in (("latency_ns", self.max_latency_ns, "ns"), ("energy_pj", self.max_energy_pj, "pJ")):
            if limit is not None and values[key] > limit:
                return values[key] / limit - 1.0, f"{key.removesuffix('_' + unit)} {values[key]:.4g} {unit} above" \
                                                  f" the ceiling {limit:.4g} {unit}"
        return 0.0, None


@dataclass
class HardwareObjectives:
    """Latency of `samples` inferences, throughput, energy, area, EDAP, crossbars and utilization of a
    sub-net on `hw` under a crossbar `budget` (None: the chip's own budget, or unbounded)."""

    space: SearchSpace
    hw: HardwareSpec
    budget: int | None
    samples: int = 8
    with_energy: bool = True  # energy needs the isaac-like mapping: skip it when no objective asks
    _cache: EstimateCache | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = self.hw.chip.budget

    def __getstate__(self) -> dict[str, Any]:  # the cache is rebuilt in each worker
        return {**self.__dict__, "_cache": None}

    def __call__(self, arch: Arch) -> tuple[dict[str, float], str | None]:
        """(values, reason it does not fit or None)."""
        graph = self.space.layer_graph(arch)
        sizes = self.space.crossbar_sizes(arch)
        ks = tuple(sorted({1, self.samples}))
        if sizes is not None:
            return self._heterogeneous(graph, sizes, ks)
        hw = self.hw
        if self.budget is None:
            raise XbarforgeError("search: give a crossbar budget (--crossbars) for a chip without one")
        if self._cache is None or self._cache.hw is not hw:
            self._cache = EstimateCache(hw)
        est = estimate(graph, hw, self.budget, ks, self._cache)
        cells = hw.crossbar.rows * hw.crossbar.cols
        weight_cells = sum(self._cache.weight_cells(layer) for layer in graph.mvm_layers)
        # crossbars one copy needs: packed when the budget forced a packing, else one per block (an
        # upper bound, which is also what fits without packing)
        values = {"crossbars": float(est.fewest if est.fewest is not None else est.blocks),
                  "weight_cells": float(weight_cells), "utilization": weight_cells / (self.budget * cells)}
        if not est.fits:
            return values, f"needs {est.fewest} crossbars for one copy, budget {self.budget}"
        # the compiled mapping's energy (its forms), with the leakage of its crossbars over the period
        energy = mapping_energy(est.mapping, hw, est.period).total_pj if self.with_energy else float("nan")
        area = chip_area_mm2(hw, self.budget)
        values.update(self._common(est.latency_ns(self.samples), est.latency_ns(1), est.period * hw.mvm_ns,
                                   energy, area))
        return values, None

    def _heterogeneous(self, graph: Any, sizes: dict[str, int], ks: tuple[int, ...]
                       ) -> tuple[dict[str, float], str | None]:
        from xbarforge.cost.hetero import evaluate_sizes

        cost = evaluate_sizes(graph, self.hw, sizes, samples=ks)
        used = sum(cost.crossbars.values())
        lat = {int(k): v for k, v in cost.latency_ns.items()}
        period = lat[self.samples] - lat[1] if self.samples > 1 else lat[1]
        period = period / (self.samples - 1) if self.samples > 1 else period
        values = {"crossbars": float(used), "utilization": cost.utilization}
        values.update(self._common(lat[self.samples], lat[1], period, cost.energy_pj, cost.area_mm2))
        if self.budget is not None and used > self.budget:
            return values, f"needs {used} crossbars, budget {self.budget}"
        return values, None

    def _common(self, latency: float, latency_1: float, period_ns: float, energy: float,
                area: float) -> dict[str, float]:
        return {"latency": latency, "latency_ns": latency, "latency_1_ns": latency_1,
                "throughput": 1e9 / period_ns if period_ns else 0.0, "energy": energy, "energy_pj": energy,
                "area_mm2": area, "edap": energy * latency_1 * area}


@dataclass
class CandidateEvaluator:
    """Genome -> `Evaluated`: decode, price on hardware, score accuracy (only if the hardware fits)."""

    space: SearchSpace
    hardware: HardwareObjectives
    objectives: list[Objective]
    accuracy: Callable[[Arch], float] | None = None
    constraints: Constraints = field(default_factory=Constraints)

    def __call__(self, genome: list[int]) -> Evaluated:
        arch = self.space.decode(genome)
        values, reason = self.hardware(arch)
        violation = 0.0
        if reason is None:
            violation, reason = self.constraints.violation(values)
        elif "crossbars" in values and self.hardware.budget:
            violation = max(values["crossbars"] / self.hardware.budget - 1.0, 1e-6)
        if any(o.name == "accuracy" for o in self.objectives):
            values["accuracy"] = self.accuracy(arch) if (self.accuracy is not None and reason is None) else 0.0
        for o in self.objectives:
            values.setdefault(o.name, 0.0)
        # no timings here: the candidate log of a resumed search must equal an uninterrupted one
        info = {"arch": arch, "describe": self.space.describe(arch)}
        return Evaluated(genome=list(genome), values=values, feasible=reason is None, reason=reason,
                         violation=violation if reason is not None else 0.0, info=info)

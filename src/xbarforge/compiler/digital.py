"""The digital stages of a graph: layers without weights that cost time, placed in the pipeline.

`cost.digital` says what each layer costs; this module turns the costed layers into
`DigitalStage`s with their dependencies, so the latency model can schedule them next to the MVM
layers: a stage waits for the MVM layers and stages it reads (through free ops such as reshapes),
and the MVM layers reading it wait for it. The compiler balances the MVM layers only (a stage
needs no crossbars of the budget); the cost model adds the stages (`cost.latency.round_layers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xbarforge.cost.digital import digital_work, stage_cost
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec

_CACHE_KEY = "_digital_stages"

# The latency model counts whole time units. A digital stage can take a small part of an MVM, so a
# mapping with digital stages is timed in ticks of mvm_ns / TICKS_PER_CYCLE (a stage is rounded up
# to a tick, not to an MVM); MVM layers take exactly TICKS_PER_CYCLE ticks per cycle.
TICKS_PER_CYCLE = 64


@dataclass
class DigitalStage:
    """A layer with no weights that costs time on the chip (attention's products, softmax, layer
    norm, GELU, reductions; see `cost.digital`): a pipeline stage on the vector unit, or on
    crossbars written at run time (`unit`). All stages on one unit share it, like layers sharing a
    crossbar. `preds` are the MVM layers and stages it reads from (through free ops), `feeds` the
    MVM layers reading it, `after` the MVM layer it follows in the graph's order (None: first)."""

    name: str
    kind: str
    describe: str
    unit: str  # "vector" or "crossbar"
    ticks: int  # ceil(time_ns / (mvm_ns / TICKS_PER_CYCLE))
    time_ns: float
    energy_pj: dict[str, float]
    preds: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)
    after: str | None = None
    runtime_crossbars: int = 0
    macs: int = 0


def digital_stages(graph: LayerGraph, hw: HardwareSpec) -> list[DigitalStage]:
    """The graph's costed digital layers as pipeline stages on `hw` (cached on the graph per spec)."""
    cache = graph.__dict__.setdefault(_CACHE_KEY, {})
    hit = cache.get(id(hw))
    if hit is not None and hit[0] is hw:
        return list(hit[1])
    stages = _build(graph, hw)
    cache[id(hw)] = (hw, stages)
    return list(stages)


def _build(graph: LayerGraph, hw: HardwareSpec) -> list[DigitalStage]:
    works = {layer.name: w for layer in graph.layers if (w := digital_work(layer)) is not None}
    if not works:
        return []
    # nearest MVM layers or costed stages upstream of every layer, through free ops
    reach: dict[str, set[str]] = {}
    by_name = {layer.name: layer for layer in graph.layers}
    for layer in graph.layers:
        found: set[str] = set()
        for src in layer.inputs:
            if src not in by_name:
                continue
            if by_name[src].is_mvm or src in works:
                found.add(src)
            else:
                found |= reach.get(src, set())
        reach[layer.name] = found
    order = {layer.name: i for i, layer in enumerate(graph.layers)}
    stages: dict[str, DigitalStage] = {}
    last_mvm: str | None = None
    for layer in graph.layers:
        if layer.is_mvm:
            last_mvm = layer.name
            for src in reach[layer.name]:
                if src in stages:
                    stages[src].feeds.append(layer.name)
            continue
        work = works.get(layer.name)
        if work is None:
            continue
        cost = stage_cost(work, hw)
        stages[layer.name] = DigitalStage(
            name=layer.name, kind=layer.kind, describe=layer.describe(), unit=cost.unit,
            ticks=max(1, math.ceil(cost.time_ns * TICKS_PER_CYCLE / hw.mvm_ns - 1e-9)), time_ns=cost.time_ns,
            energy_pj=cost.energy_pj,
            preds=sorted(reach[layer.name], key=order.__getitem__), after=last_mvm,
            runtime_crossbars=cost.runtime_crossbars, macs=work.macs,
        )
    return list(stages.values())

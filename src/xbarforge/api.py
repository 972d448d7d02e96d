"""`xbarforge.compile`: model in, Mapping with its cost report out.

This is the one call the CLI and every optimizer use, so the numbers a user sees are the numbers
a search optimizes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import nn

from xbarforge.compiler.compile import compile_graph, isaac_like
from xbarforge.compiler.mapping import Mapping
from xbarforge.cost.model import report
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware import HardwareSpec, load_hardware


def compile(  # noqa: A001  (the verb users expect; shadows the builtin only inside this module)
    model: nn.Module | str | Path | LayerGraph,
    hardware: HardwareSpec | str | Path | dict[str, Any] = "rnc-paper",
    crossbars: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int = 10,
    samples: list[int] | tuple[int, ...] = (1, 8, 64),
    objective: str = "balanced",
    schedule: str = "chain",
    seed: int = 0,
    min_utilization: float | None = None,
    effort: str = "fast",
) -> Mapping:
    """Capture `model` (module, ONNX path, zoo name or LayerGraph) and map it onto `hardware`.

    Returns the Mapping; `mapping.report` holds the JSON document of `xbarforge compile`
    (latency per k, energy, area, EDAP, the isaac-like baseline, speedups, per-layer records).
    """
    t0 = time.perf_counter()
    hw = hardware if isinstance(hardware, HardwareSpec) else load_hardware(hardware)
    graph = model if isinstance(model, LayerGraph) else capture(model, input_shape, num_classes=num_classes)
    mapping = compile_graph(graph, hw, crossbars=crossbars, samples=samples, objective=objective,
                            schedule=schedule, seed=seed, min_utilization=min_utilization, effort=effort)
    seconds = time.perf_counter() - t0
    baseline = isaac_like(graph, hw, schedule=schedule)
    doc = report(mapping, baseline, hw, samples)
    doc["compile_seconds"] = seconds
    mapping.report.update(doc)
    return mapping

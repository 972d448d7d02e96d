"""Event-by-event replay of the line-buffer pipeline (SimPy), to check `cost.pixel_pipeline`.

The analytic model computes each layer's pixel finish times at once, as cumulative maxima. Here every
copy of every layer is a SimPy process that takes its pixels one by one: it waits for the input pixel
each one needs (the last one of its receptive field, found pixel by pixel; the whole input for an fc
layer), then holds for the pixel's time. Pixel times are the model's own (`PixelPipeline.pixel_ns`);
what is checked is the schedule: who waits for whom, and the order of the wavefront.
"""

from __future__ import annotations

import simpy

from xbarforge.compiler.flow import FlowNode
from xbarforge.cost.pixel_pipeline import PixelPipeline


def _needs(n: FlowNode, i: int, j: int, produced: int) -> int:
    """Row-major index of the input pixel that output pixel (i, j) waits for."""
    hin, win = n.in_hw
    if n.kind == "add":
        pos = i * n.out_hw[1] + j
    elif n.kernel > 1:
        reach = max(n.kernel - n.padding, 1)
        pos = (min(reach + n.stride * i, hin) - 1) * win + min(reach + n.stride * j, win) - 1
    else:
        pos = i * n.stride * win + j * n.stride
    return min(pos, produced - 1)


def replay(nodes: list[FlowNode], model: PixelPipeline) -> dict[str, tuple[float, float]]:
    """(first pixel start, last pixel finish) per flow node, by discrete-event simulation."""
    env = simpy.Environment()
    done: dict[str, list[simpy.Event]] = {n.name: [env.event() for _ in range(n.positions)] for n in nodes}
    span: dict[str, list[float]] = {n.name: [float("inf"), 0.0] for n in nodes}

    def run(n: FlowNode, pixels: list[int]):  # noqa: ANN202 (a SimPy process)
        w = n.out_hw[1]
        for p in pixels:
            if n.kind == "fc":
                waits = [done[i][-1] for i in n.inputs]
            else:
                waits = [done[i][_needs(n, p // w, p % w, len(done[i]))] for i in n.inputs]
            if waits:
                yield env.all_of(waits)
            span[n.name][0] = min(span[n.name][0], env.now)
            yield env.timeout(float(model.pixel_ns[n.name][p]))
            span[n.name][1] = max(span[n.name][1], env.now)
            done[n.name][p].succeed()

    for n in nodes:
        for seg in model.segments[n.name]:
            env.process(run(n, [int(p) for p in seg]))
    env.run()
    return {name: (s[0], s[1]) for name, s in span.items()}

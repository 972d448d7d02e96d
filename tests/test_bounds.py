"""The pipeline period bound (cost/bounds.py): valid, monotone in the budget, and tight where it can be.

`period_bound(forms, hw, budget)` claims no mapping of the layers on `budget` crossbars reaches a
smaller steady-state period. Checked here: the compiler's mappings of small random models never beat
it (their steady-state period is >= the bound, and k samples take at least k x bound cycles); more
budget never raises it; and for a model dominated by one layer whose blocks fill whole crossbars, it
matches a brute force over that layer's forms and copies (which is both achievable and, for such
blocks, optimal).
"""

from __future__ import annotations

import math
import random

import pytest
from model_helpers import random_cnn
from torch import nn

from xbarforge.compiler.compile import compile_graph, min_crossbars
from xbarforge.compiler.lower import candidate_forms, lower
from xbarforge.cost.bounds import period_bound
from xbarforge.cost.latency import mapping_timing
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware import load_hardware
from xbarforge.hardware.spec import HardwareSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def all_forms(graph: LayerGraph, hw: HardwareSpec) -> list[list]:
    return [[lower(layer, hw, f) for f in candidate_forms(layer, hw)] for layer in graph.mvm_layers]


def random_case(seed: int) -> tuple[LayerGraph, HardwareSpec]:
    """Convs (dense or depthwise) on a small feature map, then 0-2 linears, on a random small chip."""
    rng = random.Random(seed)
    hw = load_hardware(rng.choice(["rnc-paper", "edge", "isaac"])).with_crossbar(rng.choice([32, 64]),
                                                                                 rng.choice([32, 64]))
    model, c = random_cnn(rng, channels=16, conv_out=48, linear_out=60, max_linears=2, depthwise=0.3)
    return capture(model, (c, rng.randint(3, 8), rng.randint(3, 8))), hw


@pytest.mark.parametrize("seed", range(24))
def test_bound_is_valid(seed):
    graph, hw = random_case(seed)
    forms = all_forms(graph, hw)
    fewest = min_crossbars(graph, hw)
    for mult in (1.0, 1.5, 3.0):
        budget = max(1, int(fewest * mult))
        bound = period_bound(forms, hw, budget)
        assert 0 < bound < math.inf
        m = compile_graph(graph, hw, crossbars=budget, samples=[1, 64], schedule="dag" if seed % 2 else "chain")
        assert m.rounds == 1
        timing = mapping_timing(m)
        assert timing.period >= bound, (budget, timing.period, bound)
        # k samples keep every crossbar and every layer busy k times a sample's share: latency(k) / k is
        # a period the bound's argument covers. (The interval (latency(64) - latency(1)) / 63 itself may
        # dip a cycle below the steady-state period when crossbars are shared: the batched schedule
        # overlaps what the first sample waited for, and only tends to the period as k grows.)
        for k in (1, 8, 64):
            assert timing.cycles(k) >= k * bound, (budget, k, timing.cycles(k), bound)
        assert m.report["period_bound_cycles"] == pytest.approx(bound, rel=1e-9)


@pytest.mark.parametrize("seed", range(24))
def test_bound_never_rises_with_budget(seed):
    graph, hw = random_case(seed)
    forms = all_forms(graph, hw)
    fewest = min_crossbars(graph, hw)
    last = math.inf
    for budget in range(max(1, fewest - 2), 3 * fewest + 2):
        bound = period_bound(forms, hw, budget)
        assert bound <= last, (budget, bound, last)
        last = bound
    # a crossbar for every block of as many copies as pixels: one MVM per sample is reachable, so the bound is 1
    plenty = sum(max(low.pixels * low.n_blocks for low in fs) for fs in forms)
    assert period_bound(forms, hw, plenty) == 1.0


def brute_dominant(graph: LayerGraph, hw: HardwareSpec, budget: int) -> int:
    """Smallest time of layer 0 over its forms and copies, every copy's blocks on crossbars of their own,
    the other layers' single blocks on one crossbar each (layer 0's blocks fill their crossbars)."""
    first, *rest = graph.mvm_layers
    others = sum(lower(layer, hw).n_blocks for layer in rest)
    best = math.inf
    for form in candidate_forms(first, hw):
        low = lower(first, hw, form)
        for c in range(1, first.output_pixels + 1):
            if c * low.n_blocks + others <= budget:
                best = min(best, math.ceil(first.output_pixels / c) * (1 if form.tiled else form.stack))
    return best


DOMINANT = {
    # one full 128x128 block per copy, 256 pixels; a 128x10 classifier block
    "rnc-1block": (lambda: load_hardware("rnc-paper"), nn.Conv2d(128, 128, 1), 128, nn.Linear(128, 10)),
    # two full blocks per copy
    "rnc-2blocks": (lambda: load_hardware("rnc-paper"), nn.Conv2d(256, 128, 1), 256, nn.Linear(128, 10)),
    # a chip that fires disjoint blocks together: 16 outputs x 8 columns fill a 64x128 crossbar
    "edge-1block": (lambda: load_hardware("edge").with_crossbar(64, 128), nn.Conv2d(64, 16, 1), 64,
                    nn.Linear(16, 10)),
}


@pytest.mark.parametrize("case", sorted(DOMINANT))
def test_bound_tight_for_a_dominant_layer(case):
    make_hw, conv, cin, head = DOMINANT[case]
    hw = make_hw()
    graph = capture(nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head), (cin, 16, 16))
    big = lower(graph.mvm_layers[0], hw)
    assert all(c.height == hw.crossbar.rows and c.width == hw.usable_cols for c in big.classes)
    forms = all_forms(graph, hw)
    fewest = min_crossbars(graph, hw)
    for budget in sorted({fewest, fewest + 1, 5, 9, 17, 40, 100}):
        if budget < fewest:
            continue
        best = brute_dominant(graph, hw, budget)
        bound = period_bound(forms, hw, budget)
        # valid (best is reachable) and tight (within the bound's bisection tolerance)
        assert best * (1 - 1e-3) <= bound <= best, (budget, bound, best)
        m = compile_graph(graph, hw, crossbars=budget, samples=[64], objective="throughput")
        assert bound <= mapping_timing(m).interval(64) <= best, budget

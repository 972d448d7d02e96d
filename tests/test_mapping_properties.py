"""Property tests of the compiler's Mapping on random layers, crossbars, precisions and budgets.

Whatever the compiler decides (forms, copies, packing, reprogramming rounds), a Mapping must place
every weight slice of every copy exactly once, keep blocks inside their crossbar and apart from
each other, respect the budget in every round and survive a JSON round trip. The checks below are
written from the definitions in lower.py and mapping.py, independently of the compiler's code.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from xbarforge import load_hardware
from xbarforge.compiler.compile import compile_graph, isaac_like, min_crossbars
from xbarforge.compiler.execute import execute_mapping, reference_layer
from xbarforge.compiler.lower import Form, LoweredLayer, candidate_forms, lower
from xbarforge.compiler.mapping import LayerPlan, Mapping, PlacedBlock
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec

SIZES = (16, 32, 64, 128, 256)
MAX_BLOCKS = 48  # blocks of one copy of the whole model: keeps packing (and the file) fast
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large],
)


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------


def make_hw(rows: int, cols: int, cell_bits: int, weight_bits: int, encoding: str,
            concurrent: bool) -> HardwareSpec:
    """A preset with another crossbar and precision, no chip budget (the tests pass one)."""
    data = load_hardware("edge").model_dump()
    data["crossbar"].update(rows=rows, cols=cols, cell_bits=cell_bits, encoding=encoding,
                            concurrent_blocks=concurrent)
    data["precision"]["weight_bits"] = weight_bits
    data["chip"].update(crossbars=None, tiles=None)
    return HardwareSpec.model_validate(data)


def cols_per_weight(cell_bits: int, weight_bits: int, encoding: str) -> int:
    return math.ceil(weight_bits / cell_bits) * (2 if encoding == "differential" else 1)


@st.composite
def precisions(draw: st.DrawFn) -> tuple[int, int, str]:
    encoding = draw(st.sampled_from(["differential", "offset", "signed"]))
    cell_bits = draw(st.sampled_from([1, 2, 4, 8]))
    weight_bits = draw(st.sampled_from([2, 4, 6, 8, 12, 16]))
    return cell_bits, weight_bits, encoding


@st.composite
def conv_specs(draw: st.DrawFn, cin: int) -> dict[str, int]:
    """One conv reading `cin` channels: random out channels, kernel and groups (often depthwise)."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "depthwise":
        mult = draw(st.sampled_from([1, 1, 2]))
        cout, groups = (cin * mult if cin * mult <= 300 else cin), cin
    else:
        cout = draw(st.integers(1, 300))
        common = math.gcd(cin, cout)
        divisors = [d for d in range(1, common + 1) if common % d == 0]
        groups = 1 if kind == "dense" else draw(st.sampled_from(divisors))
    return {"cin": cin, "cout": cout, "k": draw(st.integers(1, 5)), "groups": groups}


@st.composite
def models(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """0-2 convs, then (after global pooling) 0-2 linears; at least one MVM layer."""
    n_conv = draw(st.integers(0, 2))
    n_lin = draw(st.integers(0 if n_conv else 1, 2))
    mods: list[nn.Module] = []
    if n_conv:
        c = draw(st.integers(1, 300))
        size = draw(st.integers(3, 5))
        shape: tuple[int, ...] = (c, size, size)
        for _ in range(n_conv):
            spec = draw(conv_specs(c))
            mods.append(nn.Conv2d(c, spec["cout"], spec["k"], padding=spec["k"] // 2, groups=spec["groups"]))
            c = spec["cout"]
        if n_lin:
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    else:
        c = draw(st.integers(1, 600))
        shape = (c,)
    for _ in range(n_lin):
        out = draw(st.integers(1, 600))
        mods.append(nn.Linear(c, out))
        c = out
    return nn.Sequential(*mods), shape


def est_blocks(graph: LayerGraph, hw: HardwareSpec) -> int:
    return sum(len(lower(layer, hw).blocks) for layer in graph.mvm_layers)


@st.composite
def cases(draw: st.DrawFn) -> tuple[LayerGraph, HardwareSpec]:
    """A random model on a random crossbar/precision small enough to keep packing fast."""
    cell_bits, weight_bits, encoding = draw(precisions())
    cpw = cols_per_weight(cell_bits, weight_bits, encoding)
    model, shape = draw(models())
    graph = capture(model, shape)
    rows = draw(st.sampled_from(SIZES))
    fitting = [c for c in SIZES if c - (encoding == "offset") >= cpw]
    cols = draw(st.sampled_from(fitting))
    hw = make_hw(rows, cols, cell_bits, weight_bits, encoding, draw(st.booleans()))
    assume(est_blocks(graph, hw) <= MAX_BLOCKS)
    return graph, hw


# ------------------------------------------------------------------------------------------------
# invariants (written from the definitions, not from the compiler)
# ------------------------------------------------------------------------------------------------


def expected_size(plan: LayerPlan, b: PlacedBlock) -> tuple[int, int, int]:
    """(height, width, weight cells) lower.py's layout gives this block under its layer's form."""
    if plan.form.tiled:
        h, w = b.row1 - b.row0, b.col1 - b.col0
        return h, w, h * w
    n = b.group1 - b.group0
    slots = math.ceil(n / plan.form.stack)
    return slots * plan.rows_per_group, n * plan.cols_per_group, n * plan.rows_per_group * plan.cols_per_group


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Do two half-open rectangles (r0, r1, c0, c1) share a cell?"""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def check_weights_placed_once(m: Mapping, graph: LayerGraph, hw: HardwareSpec) -> None:
    """Every (layer, copy, group, row, physical column) is covered by exactly one block.

    Counted per (layer, copy, group): rectangles inside the group matrix, pairwise disjoint, whose
    areas add up to the matrix (so none is missing and none is placed twice).
    """
    cpw = hw.cols_per_weight
    blocks: dict[str, list[PlacedBlock]] = defaultdict(list)
    for b in m.blocks:
        blocks[b.layer].append(b)
    assert set(blocks) == {layer.name for layer in graph.mvm_layers}
    for layer in graph.mvm_layers:
        plan = m.layer(layer.name)
        rows_g, cols_g = layer.rows_per_group, layer.cols_per_group * cpw
        assert (plan.rows_per_group, plan.cols_per_group, plan.groups) == (rows_g, cols_g, layer.groups)
        assert plan.blocks_per_copy * plan.copies == len(blocks[layer.name])
        cover: dict[tuple[int, int], list[tuple[int, int, int, int]]] = defaultdict(list)
        for b in blocks[layer.name]:
            assert 0 <= b.copy < plan.copies
            assert 0 <= b.group0 < b.group1 <= layer.groups
            assert 0 <= b.row0 < b.row1 <= rows_g and 0 <= b.col0 < b.col1 <= cols_g
            assert b.col0 % cpw == 0 and (b.col1 - b.col0) % cpw == 0, "a weight's slices are split"
            assert (b.height, b.width, b.weights) == expected_size(plan, b), (plan.form, b)
            if plan.form.tiled:
                assert b.group1 == b.group0 + 1
            else:
                assert (b.row0, b.row1, b.col0, b.col1) == (0, rows_g, 0, cols_g)
                assert b.group1 - b.group0 <= plan.form.diag * plan.form.stack
            for g in range(b.group0, b.group1):
                cover[(b.copy, g)].append((b.row0, b.row1, b.col0, b.col1))
        assert set(cover) == {(c, g) for c in range(plan.copies) for g in range(layer.groups)}
        for key, rects in cover.items():
            assert sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in rects) == rows_g * cols_g, (layer.name, key)
            for i, a in enumerate(rects):
                assert not any(overlaps(a, o) for o in rects[i + 1 :]), (layer.name, key, a)


def check_placement(m: Mapping, hw: HardwareSpec, budget: int | None) -> None:
    """Blocks inside their crossbar, no two overlapping per round, the budget kept in each round."""
    rows, usable = hw.crossbar.rows, hw.usable_cols
    assert (m.crossbar_rows, m.crossbar_cols) == (rows, hw.crossbar.cols)
    per_xbar: dict[tuple[int, int], list[tuple[int, int, int, int]]] = defaultdict(list)
    per_round: dict[int, set[int]] = defaultdict(set)
    for b in m.blocks:
        assert 0 <= b.row_offset and b.row_offset + b.height <= rows, b
        assert 0 <= b.col_offset and b.col_offset + b.width <= usable, b
        assert 0 <= b.crossbar < m.crossbars_used, b
        assert 0 <= b.round < m.rounds, b
        rect = (b.row_offset, b.row_offset + b.height, b.col_offset, b.col_offset + b.width)
        assert not any(overlaps(rect, o) for o in per_xbar[(b.round, b.crossbar)]), b
        per_xbar[(b.round, b.crossbar)].append(rect)
        per_round[b.round].add(b.crossbar)
    if budget is not None:
        assert m.crossbars_used <= budget
        assert all(len(ids) <= budget for ids in per_round.values())


def check_json(m: Mapping) -> None:
    assert Mapping.from_dict(json.loads(json.dumps(m.to_dict()))) == m


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------


@SETTINGS
@given(
    case=cases(),
    factor=st.floats(1.0, 3.0),
    samples=st.sampled_from([[1], [1, 8], [8, 64]]),
    objective=st.sampled_from(["balanced", "throughput", "latency"]),
    schedule=st.sampled_from(["chain", "dag"]),
)
def test_compiled_mapping_within_budget(case: tuple[LayerGraph, HardwareSpec], factor: float,
                                        samples: list[int], objective: str, schedule: str) -> None:
    """Budgets from the fewest crossbars to 3x: duplication and forms may change, invariants not."""
    graph, hw = case
    budget = max(1, int(min_crossbars(graph, hw) * factor))
    m = compile_graph(graph, hw, crossbars=budget, samples=samples, objective=objective, schedule=schedule)
    assert m.rounds == 1
    check_weights_placed_once(m, graph, hw)
    check_placement(m, hw, budget)
    check_json(m)


@SETTINGS
@given(case=cases(), fraction=st.floats(0.0, 0.95))
def test_reprogramming_rounds_below_min_budget(case: tuple[LayerGraph, HardwareSpec], fraction: float) -> None:
    """A budget below the fewest crossbars maps the model in rounds of at most `budget` crossbars
    (copies inside a round where they pay for their writes), every copy's weights placed once."""
    graph, hw = case
    fewest = min_crossbars(graph, hw)
    assume(fewest > 1)
    budget = max(1, min(fewest - 1, int(fewest * fraction)))
    m = compile_graph(graph, hw, crossbars=budget, samples=[1, 8])
    assert m.rounds >= 2
    assert len(m.write_cycles) == m.rounds and all(w > 0 for w in m.write_cycles)
    check_weights_placed_once(m, graph, hw)
    check_placement(m, hw, budget)
    check_json(m)


@SETTINGS
@given(case=cases())
def test_unbounded_and_isaac_like(case: tuple[LayerGraph, HardwareSpec]) -> None:
    """No budget (one packed copy) and the isaac-like baseline (one block per crossbar)."""
    graph, hw = case
    packed = compile_graph(graph, hw, crossbars=None, samples=[1])
    check_weights_placed_once(packed, graph, hw)
    check_placement(packed, hw, None)
    check_json(packed)
    base = isaac_like(graph, hw)
    check_weights_placed_once(base, graph, hw)
    check_placement(base, hw, None)
    assert base.crossbars_used == len(base.blocks)
    assert packed.crossbars_used <= base.crossbars_used
    check_json(base)


def test_objective_none_at_min_budget_without_concurrent_blocks() -> None:
    """Found by the properties above: a budget of min_crossbars must be enough for one packed copy."""
    hw = make_hw(16, 16, 1, 2, "differential", concurrent=False)
    graph = capture(nn.Conv2d(3, 6, 1, groups=3), (3, 3, 3))  # two stacked blocks of one layer
    budget = min_crossbars(graph, hw)  # 1: min_crossbars lets the two blocks share a crossbar
    m = compile_graph(graph, hw, crossbars=budget, objective="none")
    check_weights_placed_once(m, graph, hw)
    check_placement(m, hw, budget)


# ---- every form of a grouped layer, placed and executed ----------------------------------------


def hand_mapping(graph: LayerGraph, hw: HardwareSpec, lowered: dict[str, LoweredLayer], copies: int) -> Mapping:
    """A Mapping with every block of every copy on its own crossbar (no packer involved)."""
    plans, blocks = [], []
    for layer in graph.mvm_layers:
        low = lowered[layer.name]
        plans.append(LayerPlan.from_lowered(low, copies))
        for c in range(copies):
            for b in low.blocks:
                # a varying corner offset keeps the check honest about offsets
                r = (len(blocks) * 3) % (hw.crossbar.rows - b.height + 1)
                q = (len(blocks) * 5) % (hw.usable_cols - b.width + 1)
                blocks.append(PlacedBlock(layer.name, c, b.group0, b.group1, b.row0, b.row1, b.col0, b.col1,
                                          len(blocks), r, q, b.height, b.width, b.weights))
    return Mapping(graph.name, graph.input_shape, hw.name, hw.crossbar.rows, hw.crossbar.cols, None,
                   plans, blocks, len(blocks))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channels=st.integers(1, 40),
    mult=st.sampled_from([1, 2]),
    k=st.integers(1, 5),
    prec=precisions(),
    rows=st.sampled_from(SIZES),
    cols=st.sampled_from(SIZES),
    pick=st.randoms(use_true_random=False),
)
def test_grouped_forms_execute(channels: int, mult: int, k: int, prec: tuple[int, int, str], rows: int,
                               cols: int, pick: Any) -> None:
    """Any candidate (diag, stack) form of a depthwise layer places each group once and computes it."""
    cell_bits, weight_bits, encoding = prec
    assume(cols - (encoding == "offset") >= cols_per_weight(cell_bits, weight_bits, encoding))
    hw = make_hw(rows, cols, cell_bits, weight_bits, encoding, True)
    torch.manual_seed(channels)
    model = nn.Conv2d(channels, channels * mult, k, padding=k // 2, groups=channels)
    graph = capture(model, (channels, 4, 4))
    layer: Layer = graph.mvm_layers[0]
    forms = candidate_forms(layer, hw)
    form = pick.choice(forms)
    m = hand_mapping(graph, hw, {layer.name: lower(layer, hw, form)}, copies=2)
    check_weights_placed_once(m, graph, hw)
    check_placement(m, hw, None)
    x = torch.randn(2, channels, 4, 4)
    out = execute_mapping(m, graph, hw, {layer.name: x})[layer.name]
    torch.testing.assert_close(out, reference_layer(layer, x, hw), rtol=1e-4, atol=1e-4)


def test_forms_are_candidates_of_lower() -> None:
    """Sanity of the strategy above: a depthwise layer has several stacked forms to choose from."""
    hw = load_hardware("rnc-paper")
    graph = capture(nn.Conv2d(64, 64, 3, padding=1, groups=64), (64, 4, 4))
    forms = candidate_forms(graph.mvm_layers[0], hw)
    assert Form(diag=1, stack=64, tiled=False) in forms and any(f.diag > 1 for f in forms)

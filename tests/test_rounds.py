"""Reprogramming rounds (compiler/rounds.py) for models whose packed copy does not fit the budget.

Checked from the definitions: every round fits the budget and every weight of every copy is placed
once (the helpers of test_mapping_properties.py); one write per round, costing the write time of
that round's crossbars (cost/reprogram.py's schema: rows written a few at a time, each step a number
of write pulses each followed by a verify read); latency(k) = the sum over rounds of the round's
compute for k samples (a chain of layers on crossbars of their own: sum T + (k - 1) max T, T = tau x
turns) plus the sum of the writes; the "optimal" partition never slower than the "naive" and
"isaac-like" ones at the sample counts asked; and the event simulation agrees with the latency model.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from test_frontier import turns_needed
from test_mapping_properties import check_placement, check_weights_placed_once
from torch import nn

from xbarforge.compiler.compile import compile_graph, min_crossbars
from xbarforge.compiler.mapping import Mapping
from xbarforge.compiler.rounds import isaac_like_rounds, rounds_mapping
from xbarforge.cost.event_sim import simulate
from xbarforge.cost.latency import mapping_timing
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware import load_hardware
from xbarforge.hardware.spec import HardwareSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def conv_model() -> LayerGraph:
    """Convs with 256 output pixels (copies pay) and a classifier."""
    return capture(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 40, 3, padding=1),
                                 nn.Conv2d(40, 8, 1), nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(8, 10)), (3, 16, 16))


def linear_model() -> LayerGraph:
    """Linears larger than a crossbar: a budget of a few crossbars splits a layer over rounds."""
    return capture(nn.Sequential(nn.Linear(100, 80), nn.ReLU(), nn.Linear(80, 70), nn.Linear(70, 10)), (100,))


def chip(preset: str, rows: int, cols: int) -> HardwareSpec:
    return load_hardware(preset).with_crossbar(rows, cols)


# (model, chip, budgets below its fewest crossbars)
CASES = {
    "conv-rnc32": (conv_model, ("rnc-paper", 32, 32), (1, 2, 3, 4)),
    "linear-rnc32": (linear_model, ("rnc-paper", 32, 32), (2, 7, 14)),
    "conv-edge64": (conv_model, ("edge", 64, 64), (2, 5, 7, 8)),
    "linear-edge64": (linear_model, ("edge", 64, 64), (3, 15, 29)),
}
PARTITIONS = ("optimal", "naive", "isaac-like")


def expected_write_cycles(hw: HardwareSpec, crossbars: int) -> int:
    """Write-and-verify time of `crossbars` whole crossbars, from the preset's reprogram section."""
    rp = hw.reprogram
    steps = math.ceil(hw.crossbar.rows / rp.rows_written_together)
    if rp.cols_written_together is not None:
        steps *= math.ceil(hw.crossbar.cols / rp.cols_written_together)
    verify = rp.verify_ns if rp.verify_ns is not None else hw.latency.xbar_read_ns
    one = steps * rp.pulses_per_cell * (rp.write_pulse_ns + verify)
    return math.ceil(math.ceil(crossbars / rp.crossbars_written_together) * one / hw.mvm_ns)


def round_compute(m: Mapping, graph: LayerGraph, hw: HardwareSpec, k: int) -> list[int]:
    """Each round's cycles for k samples, from its blocks: a chain of layers that share no crossbar."""
    by: dict[int, dict[str, dict[int, list[tuple[int, int, int, int]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    owners: dict[tuple[int, int], set[str]] = defaultdict(set)
    for b in m.blocks:
        rect = (b.row_offset, b.row_offset + b.height, b.col_offset, b.col_offset + b.width)
        by[b.round][b.layer][b.crossbar].append(rect)
        owners[(b.round, b.crossbar)].add(b.layer)
    assert all(len(v) == 1 for v in owners.values()), "rounds give every layer crossbars of its own"
    assert sorted(by) == list(range(m.rounds))
    out = []
    for r in range(m.rounds):
        times = []
        for layer in graph.mvm_layers:
            if layer.name not in by[r]:
                continue
            plan = m.layer(layer.name)
            tau = math.ceil(layer.output_pixels / plan.copies) * (1 if plan.form.tiled else plan.form.stack)
            turns = max(turns_needed(rects, hw.fires_blocks_together) for rects in by[r][layer.name].values())
            times.append(tau * turns)
        out.append(sum(times) + (k - 1) * max(times))
    return out


def check_rounds(m: Mapping, graph: LayerGraph, hw: HardwareSpec, budget: int) -> None:
    assert m.rounds >= 2
    check_weights_placed_once(m, graph, hw)
    check_placement(m, hw, budget)
    per_round: dict[int, set[int]] = defaultdict(set)
    for b in m.blocks:
        per_round[b.round].add(b.crossbar)
    assert len(m.write_cycles) == m.rounds
    assert all(w > 0 for w in m.write_cycles)
    for r in range(m.rounds):
        assert 1 <= len(per_round[r]) <= budget
        assert m.write_cycles[r] == expected_write_cycles(hw, len(per_round[r])), r
    timing = mapping_timing(m)
    for k in (1, 8, 64):
        assert timing.cycles(k) == sum(round_compute(m, graph, hw, k)) + sum(m.write_cycles), k
    for k in (1, 8):
        assert simulate(m, k).cycles == timing.cycles(k), k


@pytest.mark.parametrize("case", sorted(CASES))
def test_rounds_mappings_are_valid(case):
    make, spec, budgets = CASES[case]
    graph, hw = make(), chip(*spec)
    fewest = min_crossbars(graph, hw)
    for budget in budgets:
        assert budget < fewest, (budget, fewest)
        for part in PARTITIONS:
            m = rounds_mapping(graph, hw, budget, [1, 8], "chain", 0, fewest, partition=part)
            check_rounds(m, graph, hw, budget)
            assert m.crossbars_budget == budget and m.min_crossbars == fewest


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimal_partition_never_slower(case):
    """At one sample count: never slower at that k. At several: the sum over k of latency relative to
    isaac-like rounds (what the compiler minimizes) is never larger."""
    make, spec, budgets = CASES[case]
    graph, hw = make(), chip(*spec)
    fewest = min_crossbars(graph, hw)
    for budget in budgets:
        for samples in ([1], [8], [64], [1, 8, 64]):
            timings = {part: mapping_timing(rounds_mapping(graph, hw, budget, samples, "chain", 0, fewest,
                                                           partition=part)) for part in PARTITIONS}
            base = [timings["isaac-like"].cycles(k) for k in samples]

            def score(part: str, samples=samples, base=base, timings=timings) -> float:
                return sum(timings[part].cycles(k) / b for k, b in zip(samples, base, strict=True))

            if len(samples) == 1:
                k = samples[0]
                best = timings["optimal"].cycles(k)
                assert best <= timings["naive"].cycles(k) and best <= timings["isaac-like"].cycles(k), (budget, k)
            assert score("optimal") <= min(score("naive"), score("isaac-like")) + 1e-12, (budget, samples)


def test_optimal_partition_beats_naive_somewhere():
    """Copies inside a round pay on the conv model: the optimal partition is strictly faster than the
    naive one for one sample (a check that the partitioning does something)."""
    graph, hw = conv_model(), chip("rnc-paper", 32, 32)
    fewest = min_crossbars(graph, hw)
    opt = rounds_mapping(graph, hw, 3, [1], "chain", 0, fewest)
    naive = rounds_mapping(graph, hw, 3, [1], "chain", 0, fewest, partition="naive")
    assert mapping_timing(opt).cycles(1) < mapping_timing(naive).cycles(1)
    assert any(lp.copies > 1 for lp in opt.layers)
    check_rounds(opt, graph, hw, 3)


def test_isaac_like_rounds_one_block_per_crossbar():
    graph, hw = linear_model(), chip("rnc-paper", 32, 32)
    m = isaac_like_rounds(graph, hw, 5)
    check_rounds(m, graph, hw, 5)
    blocks = m.blocks
    assert len({(b.round, b.crossbar) for b in blocks}) == len(blocks)
    assert m.rounds == math.ceil(len(blocks) / 5)
    assert all(lp.copies == 1 for lp in m.layers)


@pytest.mark.parametrize("case", ["conv-rnc32", "linear-edge64"])
def test_compile_below_min_crossbars_uses_rounds(case):
    make, spec, budgets = CASES[case]
    graph, hw = make(), chip(*spec)
    budget = budgets[1]
    m = compile_graph(graph, hw, crossbars=budget, samples=[1, 8])
    check_rounds(m, graph, hw, budget)


def test_partition_name_checked():
    graph, hw = linear_model(), chip("rnc-paper", 32, 32)
    with pytest.raises(ValueError):
        rounds_mapping(graph, hw, 3, [1], "chain", 0, min_crossbars(graph, hw), partition="best")

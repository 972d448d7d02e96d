"""The compiler's plan without packing (`compiler.estimate`) and the search's hardware objectives."""

from __future__ import annotations

import numpy as np
import pytest

from xbarforge.compiler.compile import compile_graph, isaac_like, min_crossbars
from xbarforge.compiler.estimate import EstimateCache, estimate
from xbarforge.cost.latency import pipeline_cycles, round_timing
from xbarforge.cost.model import evaluate
from xbarforge.hardware import load_hardware
from xbarforge.search.evaluate import CandidateEvaluator, Constraints, HardwareObjectives, parse_objectives
from xbarforge.search.registry import create_space


@pytest.fixture(scope="module")
def hw():
    return load_hardware("rnc-paper")


@pytest.fixture(scope="module")
def space():
    return create_space("mbv3-small", resolution=64)


def test_pipeline_cycles_is_round_timing_without_sharing():
    rng = np.random.default_rng(0)
    for _ in range(20):
        cycles = [int(c) for c in rng.integers(1, 50, size=rng.integers(1, 8))]
        names = [f"l{i}" for i in range(len(cycles))]
        rt = round_timing(names, dict(zip(names, cycles, strict=True)), {}, {n: [i] for i, n in enumerate(names)},
                          "chain")
        for k in (1, 2, 8, 64):
            assert pipeline_cycles(cycles, k) == rt.cycles_for(k)


def test_fits_exactly_when_one_packed_copy_fits(space, hw):
    graph = space.layer_graph(space.decode(space.smallest()))
    fewest = min_crossbars(graph, hw)
    assert not estimate(graph, hw, fewest - 1).fits
    est = estimate(graph, hw, fewest)
    assert est.fits and est.fewest == fewest


def test_estimate_fits_the_fewest_crossbars_and_never_loses_to_isaac_like_on_its_count(space, hw):
    """At the fewest crossbars the mapping fits; on the isaac-like crossbar count the compiler can
    always return the isaac-like mapping, so it is never slower than it."""
    graph = space.layer_graph(space.decode(space.smallest()))
    fewest = min_crossbars(graph, hw)
    est = estimate(graph, hw, fewest, samples=(1,))
    assert est.fits and est.crossbars_used <= fewest
    base_map = isaac_like(graph, hw)
    base = evaluate(base_map, hw, (1, 8))
    est = estimate(graph, hw, base_map.crossbars_used, samples=(1, 8))
    assert est.cycles[1] <= base["cycles"]["1"] and est.cycles[8] <= base["cycles"]["8"]


def test_more_budget_never_slower_and_cache_does_not_change_answers(space, hw):
    graph = space.layer_graph(space.decode(space.largest()))
    fewest = min_crossbars(graph, hw)
    cache = EstimateCache(hw)
    lat = [estimate(graph, hw, b, (8,), cache).cycles[8] for b in (fewest, 2 * fewest, 4 * fewest)]
    assert lat[0] >= lat[1] >= lat[2] and lat[2] < lat[0]
    assert estimate(graph, hw, 2 * fewest, (8,)).cycles == estimate(graph, hw, 2 * fewest, (8,), cache).cycles


def test_estimate_is_what_the_compiler_delivers(space, hw):
    """The search prices networks with the numbers the compiled mapping reports (search.run's
    compiled_costs: throughput objective for k > 1), not with an optimistic plan."""
    rng = np.random.default_rng(1)
    graphs = [space.layer_graph(space.decode(space.sample(rng))) for _ in range(4)]
    graphs.append(space.layer_graph(space.decode(space.smallest())))
    budget = 300
    for g in graphs:
        est = estimate(g, hw, budget, (1, 8))
        real = evaluate(compile_graph(g, hw, crossbars=budget, samples=(1, 8), objective="throughput"), hw, (1, 8))
        assert est.cycles == {1: real["cycles"]["1"], 8: real["cycles"]["8"]}


def test_hardware_objectives_and_infeasible_reason(space, hw):
    arch = space.decode(space.largest())
    ho = HardwareObjectives(space, hw, budget=50, samples=8)
    values, reason = ho(arch)
    assert reason is not None and "budget 50" in reason and values["crossbars"] > 50
    ho = HardwareObjectives(space, hw, budget=400, samples=8)
    values, reason = ho(arch)
    assert reason is None
    assert values["latency"] > values["latency_1_ns"] > 0
    assert values["edap"] == pytest.approx(values["energy"] * values["latency_1_ns"] * values["area_mm2"])
    assert 0 < values["utilization"] < 1


def test_candidate_evaluator_constraints_and_objectives(space, hw):
    objectives = parse_objectives("accuracy,latency")
    ev = CandidateEvaluator(space, HardwareObjectives(space, hw, 400), objectives, accuracy=lambda a: 0.5)
    e = ev(space.smallest())
    assert e.feasible and e.values["accuracy"] == 0.5 and e.info["arch"] == space.decode(space.smallest())
    tight = CandidateEvaluator(space, HardwareObjectives(space, hw, 400), objectives, accuracy=lambda a: 0.5,
                               constraints=Constraints(max_latency_ns=1.0))
    e = tight(space.smallest())
    assert not e.feasible and "above the ceiling" in e.reason and e.violation > 0
    small = CandidateEvaluator(space, HardwareObjectives(space, hw, 10), objectives, accuracy=lambda a: 1 / 0)
    e = small(space.largest())  # accuracy is never asked for a network that does not fit
    assert not e.feasible and e.values["accuracy"] == 0.0


def test_parse_objectives_errors():
    from xbarforge.errors import XbarforgeError

    with pytest.raises(XbarforgeError, match="unknown 'speed'"):
        parse_objectives("accuracy,speed")
    with pytest.raises(XbarforgeError, match="at least two"):
        parse_objectives("accuracy")
    assert [o.sense for o in parse_objectives("accuracy,edap")] == ["max", "min"]

"""The compiler and cost model on the DESIGN.md reference and on the cases users hit."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import xbarforge
from xbarforge.compiler.compile import compile_graph, isaac_like, min_crossbars
from xbarforge.compiler.lower import Form, candidate_forms, lower
from xbarforge.compiler.mapping import Mapping
from xbarforge.cost.latency import mapping_timing
from xbarforge.errors import CompileError
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware


@pytest.fixture(scope="module")
def rnc():
    return load_hardware("rnc-paper")


@pytest.fixture(scope="module")
def squeeze():
    return capture("squeezenet1_1", (3, 64, 64))


def test_reference_check_isaac_like(rnc, squeeze):
    """DESIGN.md: 80 blocks, 55.3% on 80 crossbars, 2722 cycles, 415.8 us (k=1), 1443.6 us (k=8)."""
    base = isaac_like(squeeze, rnc)
    assert len(base.blocks) == 80 and base.crossbars_used == 80
    weights = sum(b.weights for b in base.blocks)
    assert round(weights / (80 * 128 * 128), 3) == 0.553
    t = mapping_timing(base)
    assert t.cycles(1) == 2722
    assert round(t.cycles(1) * rnc.mvm_ns / 1e3, 1) == 415.8
    assert round(t.cycles(8) * rnc.mvm_ns / 1e3, 1) == 1443.6
    assert t.cycles(8) == 2722 + 7 * 961  # sum T + (k - 1) max T without sharing


@pytest.mark.parametrize("budget", [60, 80, 100])
def test_budget_respected_and_faster_than_baseline(rnc, squeeze, budget):
    m = compile_graph(squeeze, rnc, crossbars=budget, samples=[1, 8, 64], min_utilization=0.85)
    assert m.crossbars_used <= budget and m.rounds == 1
    assert max(b.crossbar for b in m.blocks) < m.crossbars_used
    util = sum(b.weights for b in m.blocks) / (m.crossbars_used * 128 * 128)
    assert util >= 0.85
    base = mapping_timing(isaac_like(squeeze, rnc))
    ours = mapping_timing(m)
    for k in (1, 8, 64):
        assert ours.cycles(k) < base.cycles(k)
    # every block inside its crossbar, none overlapping
    cells: dict[int, set[tuple[int, int]]] = {}
    for b in m.blocks:
        assert b.row_offset + b.height <= 128 and b.col_offset + b.width <= 128
        taken = cells.setdefault(b.crossbar, set())
        new = {(r, c) for r in range(b.row_offset, b.row_offset + b.height)
               for c in range(b.col_offset, b.col_offset + b.width)}
        assert not taken & new
        taken |= new


def test_more_crossbars_never_slower_for_one_sample(rnc, squeeze):
    lat = [mapping_timing(compile_graph(squeeze, rnc, crossbars=b, samples=[1])).cycles(1) for b in (50, 80, 120)]
    assert lat[0] >= lat[1] >= lat[2]


def test_model_larger_than_budget_gets_rounds(rnc):
    g = capture("resnet18", (3, 64, 64))
    fewest = min_crossbars(g, rnc)
    m = compile_graph(g, rnc, crossbars=100)
    assert fewest > 100
    assert m.rounds == -(-fewest // 100) or m.rounds >= fewest / 100
    assert m.min_crossbars == fewest
    assert all(b.crossbar < 100 for b in m.blocks)
    report = xbarforge.compile(g, rnc, crossbars=100).report
    assert report["rounds"] == m.rounds and report["min_crossbars"] == fewest
    assert 0 < report["utilization"] <= 1


def test_no_budget_packs_one_copy(rnc, squeeze):
    m = compile_graph(squeeze, rnc, crossbars=None)
    assert all(p.copies == 1 for p in m.layers)
    assert m.crossbars_used == min_crossbars(squeeze, rnc) or m.crossbars_used <= 80


def test_depthwise_forms_trade_area_for_time(rnc):
    g = capture(nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32)), (32, 16, 16))
    layer = g.mvm_layers[0]
    forms = candidate_forms(layer, rnc)
    assert Form(diag=1, stack=32, tiled=False) in forms  # the plain (k*k) x C matrix
    plain = lower(layer, rnc)
    diag = lower(layer, rnc, Form(diag=14, stack=1, tiled=False))
    assert plain.mvms_per_pixel == 32 and diag.mvms_per_pixel == 1
    assert plain.weight_cells == diag.weight_cells == 9 * 32
    assert diag.cells > plain.cells  # block-diagonal leaves cells empty
    m = compile_graph(g, rnc, crossbars=8, samples=[1])
    assert mapping_timing(m).cycles(1) < mapping_timing(isaac_like(g, rnc)).cycles(1) / 10


def test_mapping_json_round_trip(rnc, squeeze, tmp_path):
    m = xbarforge.compile(squeeze, rnc, crossbars=80)
    path = tmp_path / "m.json"
    m.save(path)
    back = Mapping.load(path)
    assert back.blocks == m.blocks and back.layers == m.layers
    assert mapping_timing(back).cycles(8) == mapping_timing(m).cycles(8)
    json.dumps(m.report)  # the report is plain JSON


def test_report_keys_and_units(rnc, squeeze):
    r = xbarforge.compile(squeeze, rnc, crossbars=80, samples=[1, 8, 64]).report
    for key in ("model", "input_shape", "hardware", "crossbars_budget", "crossbars_used", "utilization",
                "compile_seconds", "samples", "latency_ns", "throughput_bound_ratio", "energy_pj", "area_mm2",
                "edap", "baseline", "speedup", "layers", "seed"):
        assert key in r, key
    assert set(r["latency_ns"]) == {"1", "8", "64"} == set(r["speedup"])
    assert r["baseline"]["crossbars_used"] == 80
    assert 0 < r["throughput_bound_ratio"] <= 1
    assert r["energy_pj"] > 0 and r["area_mm2"] > 0
    assert r["edap"] == pytest.approx(r["energy_pj"] * r["latency_ns"]["1"] * r["area_mm2"])
    assert sum(layer["blocks"] for layer in r["layers"]) == len(xbarforge.compile(squeeze, rnc, crossbars=80).blocks)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"objective": "fastest"}, "objective"),
        ({"schedule": "zigzag"}, "schedule"),
        ({"samples": [0]}, "samples"),
        ({"crossbars": 0}, "crossbars"),
        ({"effort": "max"}, "effort"),
    ],
)
def test_bad_requests_name_the_problem(rnc, squeeze, kwargs, message):
    with pytest.raises(CompileError, match=message):
        compile_graph(squeeze, rnc, **kwargs)


def test_model_without_mvm_layers_is_an_error(rnc):
    g = capture(nn.Sequential(nn.ReLU()), (3, 8, 8))
    with pytest.raises(CompileError, match="no conv or linear"):
        compile_graph(g, rnc)


def test_dag_schedule_is_never_slower_than_chain_for_one_sample(rnc, squeeze):
    chain = compile_graph(squeeze, rnc, crossbars=80, samples=[1], schedule="chain")
    dag = compile_graph(squeeze, rnc, crossbars=80, samples=[1], schedule="dag")
    assert mapping_timing(dag).cycles(1) <= mapping_timing(chain).cycles(1)
    base = isaac_like(squeeze, rnc, schedule="dag")
    assert mapping_timing(base).cycles(1) < 2722  # fire expand branches side by side


@pytest.mark.parametrize("preset", ["isaac", "puma", "mnsim-default", "edge", "hetero-example"])
def test_other_presets_compile(preset):
    hw = load_hardware(preset)
    g = capture("resnet20", (3, 32, 32))
    m = compile_graph(g, hw, samples=[1, 8])
    assert m.crossbars_used > 0
    # every weight occupies cols_per_weight cells (bit slices, differential pairs) in copy 0
    assert sum(b.weights for b in m.blocks if b.copy == 0) == g.num_weights * hw.cols_per_weight


def test_onnx_route_gives_the_same_mapping(rnc, tmp_path):
    model = xbarforge.zoo.create_model("resnet20", num_classes=10).eval()
    path = tmp_path / "r20.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, opset_version=17)
    a = xbarforge.compile(model, rnc, crossbars=30, input_shape=(3, 32, 32)).report
    b = xbarforge.compile(path, rnc, crossbars=30).report
    for key in ("crossbars_used", "latency_ns", "energy_pj", "utilization"):
        assert a[key] == b[key], key

"""Crossbar-size scaling of a preset and the cost of per-layer crossbar sizes (NAX)."""

from __future__ import annotations

import pytest

from xbarforge.compiler.compile import isaac_like
from xbarforge.cost.hetero import evaluate_sizes
from xbarforge.cost.model import evaluate
from xbarforge.errors import CompileError, HardwareError
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware
from xbarforge.hardware.scaling import resized
from xbarforge.zoo import create_model


@pytest.fixture(scope="module")
def graph():
    return capture(create_model("resnet20"), (3, 32, 32))


@pytest.mark.parametrize("preset", ["isaac", "rnc-paper"])
def test_resized_identity_and_direction(preset):
    hw = load_hardware(preset)
    assert resized(hw, hw.crossbar.rows, hw.crossbar.cols) is hw
    small = resized(hw, 32, 32)
    assert small.crossbar.rows == 32 and small.precision.adc_bits == hw.precision.adc_bits - 2
    assert small.energy.xbar_read_pj == pytest.approx(hw.energy.xbar_read_pj / 16)
    assert small.area.xbar_um2 == pytest.approx(hw.area.xbar_um2 / 16)
    assert small.energy.adc_pj == pytest.approx(hw.energy.adc_pj / 4)
    assert small.mvm_ns < hw.mvm_ns
    assert resized(hw, 32, 32) is small  # cached


def test_resized_refuses_a_crossbar_too_small_for_a_weight():
    with pytest.raises(HardwareError):
        resized(load_hardware("isaac"), 4, 4)  # 16-bit weights on 2-bit cells need 8 columns


@pytest.mark.parametrize("preset", ["isaac", "rnc-paper"])
@pytest.mark.parametrize("size", [16, 64, 128])
def test_homogeneous_equals_the_cost_model(graph, preset, size):
    hw = load_hardware(preset)
    hs = resized(hw, size, size)
    c = evaluate_sizes(graph, hw, {layer.name: size for layer in graph.mvm_layers}, samples=(1, 8))
    e = evaluate(isaac_like(graph, hs), hs, (1, 8))
    for k in ("1", "8"):
        assert c.latency_ns[k] == pytest.approx(e["latency_ns"][k])
    assert c.energy_pj == pytest.approx(e["energy_pj"])
    assert c.area_mm2 == pytest.approx(e["area_mm2"])
    assert c.edap == pytest.approx(e["edap"])
    assert c.utilization == pytest.approx(e["utilization"])
    assert c.crossbars == {size: e["crossbars_used"]}


def test_a_layers_cost_does_not_depend_on_the_others(graph):
    hw = load_hardware("isaac")
    names = [layer.name for layer in graph.mvm_layers]
    mixed = {n: (16, 32, 64, 128)[i % 4] for i, n in enumerate(names)}
    c = evaluate_sizes(graph, hw, mixed)
    for size in (16, 128):
        homo = {r["name"]: r for r in evaluate_sizes(graph, hw, dict.fromkeys(names, size)).layers}
        for r in c.layers:
            if r["size"] == size:
                assert (r["cycles"], r["energy_pj"], r["crossbars"]) == (homo[r["name"]]["cycles"],
                                                                         homo[r["name"]]["energy_pj"],
                                                                         homo[r["name"]]["crossbars"])
    assert sum(c.crossbars.values()) == sum(r["crossbars"] for r in c.layers)


def test_unknown_layer_is_one_line(graph):
    with pytest.raises(CompileError, match="does not have: nope"):
        evaluate_sizes(graph, load_hardware("isaac"), {"nope": 16})

"""xbarforge maps VGG-8 onto NeuroSim's subarrays exactly as DNN+NeuroSim V1.4 does (its reference run,
benchmarks/neurosim_reference.py, result file committed), on a preset of NeuroSim's subarray constants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xbarforge.compiler.compile import isaac_like
from xbarforge.cost.model import evaluate, layer_occupancy
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware
from xbarforge.zoo import create_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / "neurosim_reference.json").read_text())["networks"]["VGG8"]


def test_subarrays_per_layer_equal_neurosim(reference: dict) -> None:
    hw = load_hardware(str(ROOT / "benchmarks" / "hardware" / "neurosim-default.yaml"))
    mapping = isaac_like(capture(create_model("vgg8"), (3, 32, 32)), hw)
    ours = [layer_occupancy(mapping)[lp.name][0] for lp in mapping.layers]
    assert ours == [layer["subarrays_one_weight_copy"] for layer in reference["layers"]]
    # the preset's per-subarray area is NeuroSim's probe: array and sense amplifiers of its allocated chip agree
    cost = evaluate(mapping, hw)
    allocated = sum(layer["subarrays_allocated"] for layer in reference["layers"])
    per = cost["area_by_part_mm2"]
    theirs = reference["totals"]["area_breakdown_um2"]
    assert per["crossbar"] / mapping.crossbars_used * allocated == pytest.approx(theirs["cim_array"] / 1e6, rel=1e-4)
    assert per["adc"] / mapping.crossbars_used * allocated == pytest.approx(theirs["adc"] / 1e6, rel=1e-4)

"""MNSIM 2.0's layout (`chip.layout: mnsim`) and network-sized buffers reproduce MNSIM's own mapping.

The reference numbers come from MNSIM itself (benchmarks/mnsim_reference.py, result file committed):
crossbars, tiles, buffer sizes and area must equal them on MNSIM's five networks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from xbarforge.compiler.compile import isaac_like
from xbarforge.compiler.lower import lower
from xbarforge.cost.model import evaluate, layer_occupancy
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware
from xbarforge.zoo import create_model

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "mnsim_reference.json"
NETWORKS = ["lenet", "alexnet", "vgg8", "vgg16", "resnet18"]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())["networks"]


@pytest.mark.parametrize("net", NETWORKS)
def test_counts_buffers_and_area_equal_mnsim(net: str, reference: dict) -> None:
    hw = load_hardware("mnsim-default")
    mapping = isaac_like(capture(create_model(f"mnsim_{net}"), (3, 32, 32)), hw)
    cost = evaluate(mapping, hw)
    ref = reference[net]["totals"]
    assert mapping.crossbars_used == ref["crossbars_physical"]
    assert mapping.crossbars_used // hw.chip.crossbars_per_pe == ref["PEs"]
    assert cost["tiles"] == ref["tiles"]
    assert cost["buffer_kb"] == {"pe_input": ref["max_inbuf_size_KB"], "tile_output": ref["max_outbuf_size_KB"]}
    assert cost["area_mm2"] == pytest.approx(ref["area_mm2"], rel=1e-3)


def test_per_layer_crossbars_equal_mnsim(reference: dict) -> None:
    """Layer by layer on ResNet-18 (shortcut convs included): PEs and tiles as MNSIM's TCG counts them."""
    hw = load_hardware("mnsim-default")
    mapping = isaac_like(capture(create_model("mnsim_resnet18"), (3, 32, 32)), hw)
    ours = sorted(n // 2 for n, _ in layer_occupancy(mapping).values())
    theirs = sorted(layer["PEs"] for layer in reference["resnet18"]["layers"] if layer["type"] in ("conv", "fc"))
    assert ours == theirs


def test_whole_channels_and_one_slice_per_crossbar() -> None:
    """A 3x3 conv with 64 inputs: 28 channels (252 rows) per row tile; 16 slice column tiles of its 192 outputs."""
    hw = load_hardware("mnsim-default")
    graph = capture(create_model("mnsim_alexnet"), (3, 32, 32))
    layer = next(layer for layer in graph.mvm_layers if layer.in_channels == 64)
    low = lower(layer, hw)
    assert low.layout == "mnsim"
    assert low.row_cuts == (0, 252, 504, 576)
    cpw = hw.cols_per_weight
    assert len(low.col_cuts) - 1 == cpw * math.ceil(layer.out_channels / 256)
    assert all(low.col_cuts[i] % layer.out_channels == 0 for i in range(len(low.col_cuts)))
    dense = lower(layer, hw.with_layout("dense"))
    assert dense.weight_cells == low.weight_cells  # the same weights, laid out differently


def test_mnsim_layout_is_costed_not_executed() -> None:
    hw = load_hardware("mnsim-default")
    graph = capture(create_model("mnsim_lenet"), (3, 32, 32))
    mapping = isaac_like(graph, hw)
    with pytest.raises(ValueError, match="MNSIM's layout .* compile with chip.layout dense"):
        mapping.execute(graph, None, hw)
    dense = isaac_like(graph, hw.with_layout("dense"))
    assert dense.crossbars_used < mapping.crossbars_used  # xbarforge's layout packs slices densely
    dense.execute(graph, None, hw.with_layout("dense"))

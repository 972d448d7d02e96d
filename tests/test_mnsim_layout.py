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


@pytest.mark.parametrize("net", NETWORKS)
def test_latency_and_energy_equal_mnsim(net: str, reference: dict) -> None:
    """The per-pixel dataflow and line-buffer pipeline give MNSIM's latency and energy, by component."""
    hw = load_hardware("mnsim-default")
    cost = evaluate(isaac_like(capture(create_model(f"mnsim_{net}"), (3, 32, 32)), hw), hw)
    ref = reference[net]["totals"]
    assert cost["schedule_used"]["1"] == "line-buffer"
    assert cost["latency_ns"]["1"] == pytest.approx(ref["latency_pipelined_ns"], rel=1e-9)
    assert cost["energy_pj"] / 1e3 == pytest.approx(ref["energy_nJ"], rel=1e-6)
    parts = cost["energy_by_component_pj"]
    theirs = ref["energy_nJ_components"]
    for ours, mnsim in (("adc", "ADC"), ("dac", "DAC"), ("crossbar", "xbar"), ("buffer", "buf"),
                        ("shift_add", "digital"), ("digital", "pooling")):
        assert parts[ours] / 1e3 == pytest.approx(theirs[mnsim], rel=1e-6), ours


def test_every_layer_starts_and_ends_when_mnsim_says(reference: dict) -> None:
    """Per layer of ResNet-18 (residual adds and shortcut convs included): hops on the tile grid, first
    pixel start and last pixel finish of the pipeline."""
    hw = load_hardware("mnsim-default")
    cost = evaluate(isaac_like(capture(create_model("mnsim_resnet18"), (3, 32, 32)), hw), hw)
    ours = cost["pixel_pipeline"]
    theirs = reference["resnet18"]["layers"]
    assert [lt["kind"] for lt in ours] == [{"pooling": "pool", "element_sum": "add"}.get(t["type"], t["type"])
                                           for t in theirs]
    for lt, ref in zip(ours, theirs, strict=True):
        assert (lt["hops_in"], lt["hops_out"]) == (ref["inLayer_distance"], ref["transLayer_distance"])
        assert lt["begin_ns"] == pytest.approx(ref["latency_pipelined"]["begin_ns"], rel=1e-9)
        assert lt["finish_ns"] == pytest.approx(ref["latency_pipelined"]["finish_ns"], rel=1e-9)


def test_line_buffer_survives_a_saved_mapping(tmp_path: Path) -> None:
    from xbarforge.compiler.mapping import Mapping

    hw = load_hardware("mnsim-default")
    mapping = isaac_like(capture(create_model("mnsim_vgg8"), (3, 32, 32)), hw)
    mapping.save(tmp_path / "m.json")
    again = evaluate(Mapping.load(tmp_path / "m.json"), hw, (1, 4))
    first = evaluate(mapping, hw, (1, 4))
    assert again["latency_ns"] == first["latency_ns"]
    assert first["latency_ns"]["4"] > first["latency_ns"]["1"]  # later samples wait one period each


def test_presets_without_dataflow_keep_the_mvm_cycle_schedule() -> None:
    hw = load_hardware("isaac")
    cost = evaluate(isaac_like(capture(create_model("mnsim_vgg8"), (3, 32, 32)), hw), hw)
    assert cost["schedule_used"]["1"] != "line-buffer" and cost["pixel_pipeline"] is None


@pytest.mark.parametrize(("net", "budget"), [("lenet", None), ("resnet18", None), ("vgg8", 2.0)])
def test_event_replay_reproduces_the_line_buffer_pipeline(net: str, budget: float | None) -> None:
    """SimPy replays every pixel (copies included, on a compiled mapping with duplicated layers) and
    finds each layer's first start and last finish where the cumulative-maximum model puts them."""
    from xbarforge.compiler.compile import compile_graph, min_crossbars
    from xbarforge.cost.model import line_buffer_pipeline
    from xbarforge.cost.pixel_event_sim import replay

    hw = load_hardware("mnsim-default")
    graph = capture(create_model(f"mnsim_{net}"), (3, 32, 32))
    if budget is None:
        mapping = isaac_like(graph, hw)
    else:
        mapping = compile_graph(graph, hw, crossbars=int(budget * min_crossbars(graph, hw)), samples=[1])
        assert max(lp.copies for lp in mapping.layers) > 1
    model = line_buffer_pipeline(mapping, hw, {name: n for name, (n, _) in layer_occupancy(mapping).items()})
    assert model is not None
    events = replay(mapping.flow, model)
    for lt in model.layers:
        start, finish = events[lt.name]
        assert finish == pytest.approx(lt.finish_ns, rel=1e-9), lt.name
        assert start == pytest.approx(lt.begin_ns, rel=1e-9), lt.name
    assert model.latency_ns == pytest.approx(max(f for _, f in events.values()), rel=1e-12)


def test_a_mapping_without_feature_map_layers_is_refused_on_a_dataflow_preset() -> None:
    """A mapping compiled for hardware that does not price data movement keeps no flow nodes; pricing it
    on a preset with a `dataflow` section says so in one line instead of falling back silently."""
    hw = load_hardware("mnsim-default")
    plain = hw.model_copy(update={"dataflow": None}).with_layout("dense")
    mapping = isaac_like(capture(create_model("mnsim_lenet"), (3, 32, 32)), plain)
    assert mapping.flow == []
    with pytest.raises(ValueError, match="compile it for 'mnsim-default'"):
        evaluate(mapping, hw.with_layout("dense"))


def test_one_buffer_power_table_without_the_other_is_one_error_line(tmp_path: Path) -> None:
    import yaml

    from xbarforge.errors import HardwareError

    data = load_hardware("mnsim-default").model_dump()
    data["buffers"]["sram_write_mw_by_kb"] = {}
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HardwareError, match=r"^[^\n]*sram_write_mw_by_kb: give both power tables[^\n]*$"):
        load_hardware(str(path))

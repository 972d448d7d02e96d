"""BasisN hardware cost and its reprogramming baseline (xbarforge.basis.cost), and their spec sections."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from xbarforge.basis.cost import (
    BASIS_COMPONENTS,
    REPROGRAM_COMPONENTS,
    _read_energy,
    basis_cost,
    coeff_mac_pj,
    compare,
    reprogram_cost,
    write_cost,
)
from xbarforge.basis.layout import BasisError, plan_basis
from xbarforge.compiler.compile import compile_graph, isaac_like
from xbarforge.cost.energy import mapping_energy
from xbarforge.cost.model import evaluate
from xbarforge.errors import HardwareError
from xbarforge.graph.capture import capture
from xbarforge.hardware import list_presets, load_hardware, preset_path
from xbarforge.hardware.spec import DigitalSpec, ReprogramSpec

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(nn.Module):
    """conv3x3 16->32 on 8x8 (144 rows: 2 segments of 128) and linear 2048->10 (16 segments)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.fc = nn.Linear(32 * 8 * 8, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


@pytest.fixture(scope="module")
def isaac():
    return load_hardware("isaac")


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return capture(Toy(), (16, 8, 8), name="toy")


@pytest.fixture(scope="module")
def resnet20():
    return capture("resnet20", (3, 32, 32))


# ---- BasisN timing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("group_crossbars", "cycles"), [(1, 70), (2, 74), (4, 146)])
def test_steps_per_pixel_show_up_in_cycles_exactly(isaac, toy, group_crossbars, cycles):
    """4 crossbars, G = 4 / P groups. conv: 64 pixels x ceil(2 / G) steps; fc: 1 pixel x ceil(16 / G);
    each layer adds one MVM of fill (both layers are analog-bound on isaac)."""
    layout = plan_basis(toy, isaac, crossbars=4, group_crossbars=group_crossbars)
    g = 4 // group_crossbars
    assert cycles == (64 * math.ceil(2 / g) + 1) + (1 * math.ceil(16 / g) + 1)
    cost = basis_cost(layout, toy, isaac, coeff_bits=4)
    assert cost.cycles_per_inference == pytest.approx(cycles)
    assert cost.latency_ns == pytest.approx(cycles * isaac.mvm_ns)
    assert [layer.bound for layer in cost.layers] == ["analog", "analog"]
    assert cost.steps == 64 * math.ceil(2 / g) + math.ceil(16 / g)
    assert cost.basis_mvms == 64 * 2 + 16 and cost.crossbar_reads == cost.basis_mvms * group_crossbars
    # every output channel combines P * V read-outs per unit: pixels x out x units x P x V
    v = isaac.usable_cols // isaac.cols_per_weight
    assert cost.digital_macs == 64 * 32 * 2 * group_crossbars * v + 1 * 10 * 16 * group_crossbars * v


def test_digital_bound_layer_time(isaac, toy):
    slow = load_hardware("isaac", **{"digital.coeff_macs_per_ns": 0.01})
    layout = plan_basis(toy, slow, crossbars=4, group_crossbars=2)
    cost = basis_cost(layout, toy, slow, coeff_bits=4)
    for layer in cost.layers:
        assert layer.bound == "digital"
        assert layer.digital_ns == pytest.approx(layer.digital_macs / 0.01)
        assert layer.time_ns == pytest.approx(layer.digital_ns + slow.mvm_ns)
    fast = basis_cost(layout, toy, isaac, coeff_bits=4)
    assert cost.latency_ns > fast.latency_ns


def test_more_groups_never_slower(isaac, resnet20):
    """Smaller P means more groups read at once and fewer coefficients per unit."""
    lat = [basis_cost(plan_basis(resnet20, isaac, 36, p), resnet20, isaac, 4).latency_ns
           for p in (36, 18, 12, 9, 6, 4, 3, 2, 1)]
    assert all(a >= b for a, b in zip(lat, lat[1:], strict=False))
    assert lat[0] > lat[-1]


def test_batch_pipelines_samples_at_the_busiest_groups_reads(isaac, toy):
    """G = 2 groups: conv units on groups 0 and 1 (64 pixels each), the fc's 16 units 8 per group:
    each group reads 64 + 8 = 72 times per sample, so after the first sample (74 cycles) one more
    sample finishes every 72 cycles."""
    layout = plan_basis(toy, isaac, 4, 2)
    one, many = basis_cost(layout, toy, isaac, 4, 1), basis_cost(layout, toy, isaac, 4, 64)
    ns = isaac.mvm_ns
    assert one.batch_latency_ns == pytest.approx(one.latency_ns) == pytest.approx(74 * ns)
    assert many.period_ns == pytest.approx(72 * ns)
    assert many.batch_latency_ns == pytest.approx(74 * ns + 63 * 72 * ns)
    assert many.cycles_per_inference == pytest.approx((74 + 63 * 72) / 64)
    # dynamic energy per sample is the same; only the leakage follows the shorter time per sample
    dyn = {k: v for k, v in many.energy_by_component_pj.items() if k != "leakage"}
    assert dyn == pytest.approx({k: v for k, v in one.energy_by_component_pj.items() if k != "leakage"})
    assert many.energy_by_component_pj["leakage"] < one.energy_by_component_pj["leakage"]


def test_the_busiest_group_sets_the_period(isaac, toy):
    """G = 4: the conv's 2 units load groups 0 and 1 with 64 reads each, the fc adds 4 per group;
    groups 2 and 3 idle most of the time, so the period is 68 reads, not the 36 an even spread gives."""
    cost = basis_cost(plan_basis(toy, isaac, 4, 1), toy, isaac, 4, 64)
    assert cost.period_ns == pytest.approx((64 + 4) * isaac.mvm_ns)


def test_basis_writes_nothing_per_inference(isaac, toy):
    layout = plan_basis(toy, isaac, 4, 2)
    cost = basis_cost(layout, toy, isaac, 4)
    assert cost.writes_per_inference == 0
    ns, pj = write_cost(isaac, 4)
    assert cost.deployment_write_ns == pytest.approx(ns) and cost.deployment_write_pj == pytest.approx(sum(pj.values()))
    assert cost.to_dict()["writes_per_inference"] == 0


# ---- BasisN energy and area ------------------------------------------------------------------


def test_read_energy_mirrors_energy_py(isaac):
    """A one-block linear layer: mapping_energy's terms equal the mirrored formula."""
    torch.manual_seed(0)
    graph = capture(nn.Sequential(nn.Linear(100, 10, bias=False)), (100,), name="lin")
    mapping = isaac_like(graph, isaac)
    (block,) = mapping.blocks
    comps = mapping_energy(mapping, isaac, 1).per_layer[mapping.layers[0].name]
    ours = _read_energy(isaac, block.height, block.width, block.width + 1, isaac.input_cycles, 1,
                        isaac.precision.activation_bits)
    for k, v in ours.items():
        assert v == pytest.approx(comps[k]), k


@pytest.mark.parametrize("hw_name", ["isaac", "edge", "rnc-paper"])
def test_energy_components_non_negative_and_sum(toy, hw_name):
    hw = load_hardware(hw_name)
    cost = basis_cost(plan_basis(toy, hw, 4, 2), toy, hw, 4)
    comps = cost.energy_by_component_pj
    assert set(comps) == set(BASIS_COMPONENTS)
    assert all(v >= 0 for v in comps.values())
    assert sum(comps.values()) == pytest.approx(cost.energy_pj)
    assert sum(layer.energy_pj for layer in cost.layers) + comps["leakage"] == pytest.approx(cost.energy_pj)
    assert cost.edp == pytest.approx(cost.energy_pj * cost.latency_ns)
    assert cost.edap == pytest.approx(cost.edp * cost.area_mm2)
    base = reprogram_cost(toy, hw, 2, batch=8)
    assert set(base.energy_by_component_pj) == set(REPROGRAM_COMPONENTS)
    assert all(v >= 0 for v in base.energy_by_component_pj.values())
    assert sum(base.energy_by_component_pj.values()) == pytest.approx(base.energy_pj)


def test_coefficient_energy_scales_with_bits(isaac, toy):
    d = isaac.digital
    assert coeff_mac_pj(isaac, 8) == pytest.approx(d.coeff_mac_pj)
    assert coeff_mac_pj(isaac, 4) == pytest.approx(d.coeff_add_pj + (d.coeff_mac_pj - d.coeff_add_pj) / 2)
    layout = plan_basis(toy, isaac, 4, 2)
    c4, c8 = basis_cost(layout, toy, isaac, 4), basis_cost(layout, toy, isaac, 8)
    assert c4.energy_by_component_pj["coeff_mac"] == pytest.approx(c4.digital_macs * coeff_mac_pj(isaac, 4))
    assert c8.energy_by_component_pj["coeff_buffer"] == pytest.approx(
        2 * c4.energy_by_component_pj["coeff_buffer"])
    assert c8.energy_pj > c4.energy_pj and c8.latency_ns == c4.latency_ns


def test_area_adds_coefficient_unit(isaac, toy):
    from xbarforge.cost.area import chip_area_mm2

    cost = basis_cost(plan_basis(toy, isaac, 4, 2), toy, isaac, 4)
    assert cost.area_mm2 == pytest.approx(chip_area_mm2(isaac, 4) + isaac.digital.coeff_unit_um2 / 1e6)


# ---- reprogramming baseline ------------------------------------------------------------------


def test_fitting_model_charges_no_writes(isaac, toy):
    cost = reprogram_cost(toy, isaac, crossbars=64, batch=8)
    assert cost.rounds == 1 and not cost.writes_charged
    assert cost.write_ns == 0 and cost.crossbars_written_per_inference == 0 and cost.round_crossbars == ()
    assert cost.energy_by_component_pj["write"] == 0 and cost.energy_by_component_pj["verify"] == 0
    ev = evaluate(compile_graph(toy, isaac, crossbars=64, samples=(8,)), isaac, samples=(8,))
    assert cost.batch_latency_ns == pytest.approx(ev["latency_ns"]["8"])
    assert cost.energy_pj == pytest.approx(ev["energy_pj"])
    assert "once at deployment" in cost.to_dict()["note"]


def test_write_time_formula(isaac):
    rp = isaac.reprogram
    per = math.ceil(isaac.crossbar.rows / rp.rows_written_together) * rp.pulses_per_cell * (
        rp.write_pulse_ns + isaac.latency.xbar_read_ns)
    assert write_cost(isaac, 1)[0] == pytest.approx(per) == pytest.approx(256_000.0)  # 128 x 10 x 200 ns
    assert write_cost(isaac, 5)[0] == pytest.approx(5 * per)
    pulses = rp.pulses_per_cell
    cells = 5 * isaac.crossbar.rows * isaac.crossbar.cols
    assert write_cost(isaac, 5)[1]["write"] == pytest.approx(cells * pulses * rp.write_pj_per_pulse)


def test_write_time_scales_with_pulses_and_parallel_crossbars(isaac, toy):
    base = reprogram_cost(toy, isaac, crossbars=2, batch=1)
    assert base.rounds > 1 and base.writes_charged
    per = base.write_ns_per_crossbar
    assert base.write_ns == pytest.approx(sum(base.round_crossbars) * per)
    double = reprogram_cost(toy, load_hardware("isaac", **{"reprogram.pulses_per_cell": 20}), 2, 1)
    assert double.write_ns == pytest.approx(2 * base.write_ns)
    assert double.energy_by_component_pj["write"] == pytest.approx(2 * base.energy_by_component_pj["write"])
    assert double.energy_by_component_pj["verify"] == pytest.approx(2 * base.energy_by_component_pj["verify"])
    two = reprogram_cost(toy, load_hardware("isaac", **{"reprogram.crossbars_written_together": 2}), 2, 1)
    assert two.write_ns == pytest.approx(sum(math.ceil(n / 2) for n in base.round_crossbars) * per)
    assert two.write_ns < base.write_ns
    assert two.energy_by_component_pj["write"] == pytest.approx(base.energy_by_component_pj["write"])
    rows = reprogram_cost(toy, load_hardware("isaac", **{"reprogram.rows_written_together": 4}), 2, 1)
    assert rows.write_ns == pytest.approx(base.write_ns / 4)


def test_batch_amortizes_writes(isaac, toy):
    one = reprogram_cost(toy, isaac, crossbars=2, batch=1)
    many = reprogram_cost(toy, isaac, crossbars=2, batch=64)
    assert one.rounds > 1
    assert many.cycles_per_inference < one.cycles_per_inference
    assert many.energy_by_component_pj["write"] == pytest.approx(one.energy_by_component_pj["write"] / 64)
    assert many.crossbars_written_per_inference == pytest.approx(one.crossbars_written_per_inference / 64)
    assert many.batch_latency_ns == pytest.approx(many.write_ns + many.compute_ns)
    assert many.latency_ns == pytest.approx(many.batch_latency_ns / 64)
    assert many.cycles_per_inference == pytest.approx(many.latency_ns / isaac.mvm_ns)


def test_leakage_during_writes_is_charged_once(isaac, toy):
    """evaluate()'s one-sample interval includes the writes; write_leakage must not charge them again."""
    from xbarforge.cost.latency import mapping_timing

    for batch in (1, 64):
        cost = reprogram_cost(toy, isaac, 2, batch)
        m = compile_graph(toy, isaac, crossbars=2, samples=(batch,))
        t = mapping_timing(m)
        assert cost.writes_charged and t.ticks_per_cycle == 1
        rate = isaac.energy.leakage_mw_per_crossbar * m.crossbars_used
        timed_writes_ns = sum(m.write_cycles) * isaac.mvm_ns  # whole cycles, as the latency model counts them
        compute_leak = rate * (t.interval(batch) * isaac.mvm_ns - (timed_writes_ns if batch == 1 else 0.0))
        assert cost.compute_by_component_pj["leakage"] == pytest.approx(compute_leak)
        assert cost.energy_by_component_pj["write_leakage"] == pytest.approx(rate * cost.write_ns / batch)
        assert cost.energy_by_component_pj["compute"] == pytest.approx(sum(cost.compute_by_component_pj.values()))
    one = reprogram_cost(toy, isaac, 2, 1)
    period = mapping_timing(compile_graph(toy, isaac, crossbars=2, samples=(1,))).period * isaac.mvm_ns
    leak = one.compute_by_component_pj["leakage"] + one.energy_by_component_pj["write_leakage"]
    assert leak == pytest.approx(isaac.energy.leakage_mw_per_crossbar * one.crossbars_used * (period + one.write_ns))


def test_a_given_mapping_is_priced_and_the_compilers_is_the_strongest(isaac, toy):
    from xbarforge.compiler.rounds import rounds_mapping

    for batch in (1, 64):
        best = reprogram_cost(toy, isaac, 2, batch)
        same = reprogram_cost(toy, isaac, 2, batch, mapping=compile_graph(toy, isaac, crossbars=2, samples=(batch,)))
        assert same.cycles_per_inference == pytest.approx(best.cycles_per_inference)
        assert same.energy_pj == pytest.approx(best.energy_pj)
        for partition in ("naive", "isaac-like"):
            m = rounds_mapping(toy, isaac, 2, [batch], "chain", 0, 2, partition=partition)
            other = reprogram_cost(toy, isaac, 2, batch, mapping=m)
            assert other.rounds == m.rounds and other.cycles_per_inference >= best.cycles_per_inference * (1 - 1e-9)
    with pytest.raises(BasisError, match="mapping: built for"):
        reprogram_cost(toy, isaac, 3, 1, mapping=compile_graph(toy, isaac, crossbars=2, samples=(1,)))


# ---- side by side ----------------------------------------------------------------------------


def test_compare_ratios_are_quotients(isaac, toy):
    layout = plan_basis(toy, isaac, 2, 1)
    doc = compare(layout, toy, isaac, 4, batches=(1, 16))
    assert set(doc["batches"]) == {"1", "16"}
    for key, row in doc["batches"].items():
        b = basis_cost(layout, toy, isaac, 4, int(key))
        r = reprogram_cost(toy, isaac, 2, int(key))
        assert row["ratio"]["cycles"] == pytest.approx(b.cycles_per_inference / r.cycles_per_inference)
        assert row["ratio"]["edp"] == pytest.approx(b.edp / r.edp)
        assert row["ratio"]["edp"] == pytest.approx(row["basis"]["edp"] / row["reprogram"]["edp"])
        assert row["reprogram"]["rounds"] == r.rounds > 1


# ---- wrong inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize(("coeff_bits", "batch"), [(0, 1), (17, 1), (4, 0), (4, -3), (True, 1), (4, 2.0)])
def test_bad_inputs_raise_one_line(isaac, toy, coeff_bits, batch):
    layout = plan_basis(toy, isaac, 4, 2)
    with pytest.raises(BasisError) as err:
        basis_cost(layout, toy, isaac, coeff_bits, batch)
    assert "\n" not in str(err.value)


def test_reprogram_bad_inputs(isaac, toy):
    with pytest.raises(BasisError, match="batch"):
        reprogram_cost(toy, isaac, 2, batch=0)
    with pytest.raises(BasisError, match="crossbars"):
        reprogram_cost(toy, isaac, 0)


def test_layout_for_other_hardware_rejected(isaac, toy):
    layout = plan_basis(toy, isaac, 4, 2)
    with pytest.raises(BasisError, match="vectors"):
        basis_cost(layout, toy, load_hardware("rnc-paper"), 4)


# ---- spec sections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("reprogram.pulses_per_cell", 0, "reprogram.pulses_per_cell"),
        ("reprogram.write_pulse_ns", -5, "reprogram.write_pulse_ns"),
        ("reprogram.crossbars_written_together", 0, "reprogram.crossbars_written_together"),
        ("reprogram.rows_written_together", 1000, "reprogram.rows_written_together"),
        ("reprogram.write_pj_per_pulse", "lots", "reprogram.write_pj_per_pulse"),
        ("digital.coeff_macs_per_ns", 0, "digital.coeff_macs_per_ns"),
        ("digital.coeff_add_pj", 9.0, "digital.coeff_add_pj"),
    ],
)
def test_bad_values_give_one_line_hardware_error(key, value, expect):
    with pytest.raises(HardwareError) as err:
        load_hardware("isaac", **{key: value})
    msg = str(err.value)
    assert "\n" not in msg and expect in msg and msg.startswith("hardware preset 'isaac'")


def test_bad_yaml_file_one_line(tmp_path):
    data = yaml.safe_load(preset_path("edge").read_text())
    data["reprogram"]["verify_ns"] = -1
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HardwareError) as err:
        load_hardware(path)
    assert "\n" not in str(err.value) and "reprogram.verify_ns" in str(err.value)


def test_old_specs_load_with_defaults():
    data = yaml.safe_load(preset_path("isaac").read_text())
    del data["digital"], data["reprogram"]
    hw = load_hardware(data)
    assert hw.digital == DigitalSpec() and hw.reprogram == ReprogramSpec()
    assert hw.verify_ns == hw.latency.xbar_read_ns


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_states_both_sections(name):
    data = yaml.safe_load(preset_path(name).read_text())
    assert set(data["digital"]) == set(DigitalSpec.model_fields)
    assert set(data["reprogram"]) == set(ReprogramSpec.model_fields)


def test_write_energy_derivations():
    """V^2 G t: isaac-style presets (2 V on G_on for the pulse), MNSIM's own model (1.5 V on sqrt(Ron Roff))."""
    for name in ("isaac", "puma", "edge", "hetero-example"):
        hw = load_hardware(name)
        pj = 2.0**2 * hw.crossbar.g_on_us * 1e-6 * hw.reprogram.write_pulse_ns * 1e-9 * 1e12
        assert hw.reprogram.write_pj_per_pulse == pytest.approx(pj), name
    for name in ("mnsim-default", "rnc-paper"):
        hw = load_hardware(name)
        pj = 1.5**2 / math.sqrt(1e6 * 1e4) * hw.reprogram.write_pulse_ns * 1e-9 * 1e12
        assert hw.reprogram.write_pj_per_pulse == pytest.approx(pj), name


def test_cell_by_cell_writing_multiplies_write_time_by_the_columns():
    rows_hw = load_hardware("isaac")
    cells_hw = load_hardware("isaac", **{"reprogram.cols_written_together": 1})
    ns_rows, _ = write_cost(rows_hw, 3)
    ns_cells, _ = write_cost(cells_hw, 3)
    assert ns_cells == pytest.approx(ns_rows * rows_hw.crossbar.cols)

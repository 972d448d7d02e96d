"""HardwareSpec presets, derived quantities, YAML round trip, overrides and one-line errors."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from xbarforge.errors import HardwareError
from xbarforge.hardware import (
    HardwareSpec,
    dump_hardware,
    list_presets,
    load_hardware,
    override,
    parse_overrides,
    preset_path,
    save_hardware,
)

PRESETS = ["edge", "hetero-example", "isaac", "mnsim-default", "puma", "rnc-paper"]

MINIMAL = {
    "name": "mini",
    "energy": {
        "xbar_read_pj": 1.0,
        "dac_pj": 0.1,
        "adc_pj": 1.0,
        "shift_add_pj": 0.01,
        "buffer_pj_per_byte": 1.0,
        "interconnect_pj_per_byte": 1.0,
        "leakage_mw_per_crossbar": 0.0,
    },
    "area": {"xbar_um2": 25.0, "dac_um2": 0.2, "adc_um2": 1200.0, "shift_add_um2": 30.0},
}


def _error(fn, *args, **kwargs) -> str:
    """The message of the HardwareError `fn` raises; it must be exactly one line."""
    with pytest.raises(HardwareError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    return msg


def _write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- presets -----------------------------------------------------------------------------------


def test_list_presets() -> None:
    assert list_presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads(name: str) -> None:
    hw = load_hardware(name)
    assert isinstance(hw, HardwareSpec)
    assert hw.name == name
    assert hw.mvm_ns > 0
    assert 1 <= hw.cols_per_weight <= hw.usable_cols


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    for field in model.model_fields.values():
        ann = field.annotation
        inner = typing.get_args(ann)[0] if typing.get_origin(ann) is list else ann
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            names |= _field_names(inner)
    return names


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_number_cites_a_source(name: str) -> None:
    """Every schema key set to a number carries a comment (its source) on the same line."""
    keys = _field_names(HardwareSpec)
    checked = 0
    for line in preset_path(name).read_text().splitlines():
        match = re.match(r"^\s*(?:-\s+)?(\w+):\s*([^#]*)", line)
        if not match or match.group(1) not in keys:
            continue
        value = yaml.safe_load(match.group(2)) if match.group(2).strip() else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            checked += 1
            assert re.search(r"#\s*\S", line), f"{name}: no source on line {line!r}"
    assert checked >= 25


def test_rnc_paper_derived() -> None:
    hw = load_hardware("rnc-paper")
    assert hw.cols_per_weight == 1
    assert hw.mvm_ns == 152.773
    assert hw.crossbar.concurrent_blocks is False
    assert (hw.crossbar.rows, hw.crossbar.cols) == (128, 128)
    # The components reproduce MNSIM's PE latency that the fixed value rounds.
    derived = override(hw, "latency.mvm_ns", None)
    assert derived.mvm_ns == pytest.approx(152.77319048, abs=1e-6)


def test_isaac_derived() -> None:
    hw = load_hardware("isaac")
    assert hw.cols_per_weight == 8  # 16-bit weights / 2-bit cells, biased: no pairs
    assert hw.usable_cols == 127  # offset encoding reserves a reference column
    assert hw.input_cycles == 16
    assert hw.chip.budget == 168 * 12 * 8
    # 16 cycles of 100 ns, plus the first conversion sweep and the final shift-add stage.
    assert hw.mvm_ns == pytest.approx(1800.0)
    assert abs(hw.mvm_ns - 1600.0) <= 200.0


def test_other_presets_derived() -> None:
    assert load_hardware("puma").mvm_ns == pytest.approx(1800.0)  # puma-simulator: 100 x (16 + 2)
    mnsim = load_hardware("mnsim-default")
    assert mnsim.cols_per_weight == 16  # 8 one-bit slices, G+ and G-
    assert mnsim.mvm_ns == pytest.approx(688.22979024, abs=1e-6)  # MNSIM PE_latency, 256x256, 9 bits
    edge = load_hardware("edge")
    assert edge.cols_per_weight == 8
    assert edge.chip.budget == 1152
    assert edge.mvm_ns == pytest.approx(1000.0)
    hetero = load_hardware("hetero-example")
    assert [(p.rows, p.cols) for p in hetero.chip.pools] == [(64, 64), (128, 128), (256, 256)]
    assert all(p.count for p in hetero.chip.pools)


# ---- sources: dict, spec, file, round trip ------------------------------------------------------


def test_load_from_dict_and_spec() -> None:
    hw = load_hardware(MINIMAL)
    assert hw.name == "mini"
    assert load_hardware(hw) is hw
    assert MINIMAL["energy"]["adc_pj"] == 1.0  # the caller's dict is not modified
    assert load_hardware(hw, **{"crossbar.rows": 64}).crossbar.rows == 64


@pytest.mark.parametrize("name", PRESETS)
def test_yaml_round_trip(name: str, tmp_path: Path) -> None:
    hw = load_hardware(name)
    assert load_hardware(yaml.safe_load(dump_hardware(hw))) == hw
    path = save_hardware(hw, tmp_path / f"{name}.yaml")
    assert load_hardware(path) == hw
    assert load_hardware(str(path)) == hw


# ---- overrides ---------------------------------------------------------------------------------


def test_overrides_revalidate() -> None:
    hw = load_hardware("isaac", **{"crossbar.rows": 64, "latency.mvm_ns": 500.0})
    assert hw.crossbar.rows == 64
    assert hw.mvm_ns == 500.0
    assert load_hardware("isaac", crossbar__cols=256).crossbar.cols == 256
    assert override(hw, "precision.adc_bits", 6).precision.adc_bits == 6
    assert hw.precision.adc_bits == 8  # specs are immutable; override returns a copy
    pools = load_hardware("hetero-example", **{"chip.pools.1.count": 10}).chip.pools
    assert pools[1].count == 10
    msg = _error(override, hw, "crossbar.rows", -3)
    assert "crossbar.rows" in msg and "greater than 0" in msg and "-3" in msg
    msg = _error(override, hw, "crossbar.cols", 4)  # 8 columns per weight cannot fit
    assert "crossbar.cols" in msg


def test_derived_follow_overrides() -> None:
    hw = load_hardware("isaac", **{"precision.activation_bits": 8})
    assert hw.input_cycles == 8
    assert hw.mvm_ns == pytest.approx(1000.0)
    assert load_hardware("isaac", **{"crossbar.encoding": "differential"}).cols_per_weight == 16


def test_with_crossbar_and_budget_revalidate() -> None:
    hw = load_hardware("edge")
    assert hw.with_crossbar(64, 64).crossbar.rows == 64
    assert hw.with_budget(100).chip.budget == 100
    assert "crossbar.cols" in _error(hw.with_crossbar, 64, 4)
    assert "chip.crossbars" in _error(hw.with_budget, 0)


def test_parse_overrides() -> None:
    parsed = parse_overrides(["crossbar.rows=64", "latency.mvm_ns=null", "crossbar.concurrent_blocks=false"])
    assert parsed == {"crossbar.rows": 64, "latency.mvm_ns": None, "crossbar.concurrent_blocks": False}
    assert load_hardware("isaac", **parsed).crossbar.concurrent_blocks is False
    assert "crossbar.rows" in _error(parse_overrides, ["crossbar.rows"])


# ---- one-line errors ---------------------------------------------------------------------------


def test_error_missing_key(tmp_path: Path) -> None:
    data = {k: v for k, v in MINIMAL.items() if k != "energy"}
    msg = _error(load_hardware, _write(tmp_path, yaml.safe_dump(data)))
    assert msg == f"hardware file {tmp_path / 'my.yaml'}: energy: missing required key"


def test_error_negative(tmp_path: Path) -> None:
    data = {**MINIMAL, "crossbar": {"rows": -3}}
    msg = _error(load_hardware, _write(tmp_path, yaml.safe_dump(data)))
    assert msg.endswith("my.yaml: crossbar.rows: must be greater than 0 (got -3)")


def test_error_first_of_many(tmp_path: Path) -> None:
    data = {"name": "x", "crossbar": {"rows": -3}}
    msg = _error(load_hardware, _write(tmp_path, yaml.safe_dump(data)))
    assert "crossbar.rows: must be greater than 0 (got -3) (and 2 more)" in msg


def test_error_wrong_type(tmp_path: Path) -> None:
    data = {**MINIMAL, "crossbar": {"rows": "many"}}
    msg = _error(load_hardware, _write(tmp_path, yaml.safe_dump(data)))
    assert "crossbar.rows: must be a valid integer" in msg and "'many'" in msg
    data = {**MINIMAL, "crossbar": {"encoding": "diff"}}
    msg = _error(load_hardware, _write(tmp_path, yaml.safe_dump(data)))
    assert "crossbar.encoding" in msg and "'diff'" in msg


def test_error_unknown_key(tmp_path: Path) -> None:
    data = {**MINIMAL, "crossbar": {"rowz": 64}}
    msg = _error(load_hardware, _write(tmp_path, yaml.safe_dump(data)))
    assert "unknown key 'crossbar.rowz' (did you mean 'crossbar.rows'?)" in msg
    msg = _error(load_hardware, "isaac", **{"crossbar.rowz": 64})
    assert msg == "hardware preset 'isaac': unknown key 'crossbar.rowz' (did you mean 'crossbar.rows'?)"
    assert "unknown key 'chip.pools.0.rows'" in _error(load_hardware, "isaac", **{"chip.pools.0.rows": 1})


def test_error_unknown_preset() -> None:
    msg = _error(load_hardware, "isac")
    assert msg.startswith("unknown hardware preset 'isac' (did you mean 'isaac'? presets: ")
    assert "rnc-paper" in msg


def test_error_bad_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ncrossbar:\n  rows: 3\n   cols: 4\n")
    msg = _error(load_hardware, path)
    assert "invalid YAML at line 4" in msg and str(path) in msg
    assert "must be a mapping" in _error(load_hardware, _write(tmp_path, "- 1\n- 2\n", "list.yaml"))
    assert "empty" in _error(load_hardware, _write(tmp_path, "", "empty.yaml"))


def test_error_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert _error(load_hardware, missing) == f"hardware file {missing}: file not found"
    assert _error(load_hardware, str(missing)).endswith("file not found")


def test_error_model_checks() -> None:
    assert "precision.dac_bits" in _error(load_hardware, "edge", **{"precision.dac_bits": 16})
    assert "crossbar.g_off_us" in _error(load_hardware, "edge", **{"crossbar.g_off_us": 200.0})
    msg = _error(load_hardware, "isaac", **{"chip.pools": [{"rows": 64, "cols": 4}]})
    assert "chip.pools.0.cols" in msg


def test_error_bad_source() -> None:
    assert "got int" in _error(load_hardware, 42)


@pytest.mark.parametrize("name", list_presets())
def test_presets_show_lists_every_constant_with_its_source(name: str) -> None:
    from xbarforge.hardware.sources import constants

    hw, rows = constants(name)
    keys = [c.key for c in rows]
    assert len(keys) == len(set(keys)) and "energy.adc_pj" in keys and "digital.vector_macs_per_ns" in keys
    by_key = {c.key: c for c in rows}
    assert by_key["energy.adc_pj"].value == hw.energy.adc_pj
    # every number the preset sets comes with the comment that cites it
    for c in rows:
        if isinstance(c.value, int | float) and not isinstance(c.value, bool) and not c.source.startswith("schema"):
            assert c.source, f"{name}: {c.key} has no source"


def test_presets_show_command(tmp_path) -> None:
    from cli_helpers import run_cli

    code, out, _ = run_cli(["presets", "--show", "isaac"])
    assert code == 0 and "energy.adc_pj" in out and "T6" in out
    code, _, err = run_cli(["presets", "--show", "nope"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown hardware preset 'nope'" in err

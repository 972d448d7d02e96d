"""The `xbarforge` command: compile outputs, model sources, one-line errors, demo, listings."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import xbarforge
from xbarforge.cli import layers_plot_path, main, parse_samples, parse_shape
from xbarforge.compiler.mapping import Mapping
from xbarforge.zoo import create_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["squeezenet1_1", "--input", "3x32x32", "--hw", "rnc-paper"]

REPORT_KEYS = [
    "model", "input_shape", "hardware", "crossbar", "mvm_ns", "crossbars_budget", "schedule", "objective",
    "samples", "crossbars_used", "utilization", "utilization_used", "rounds", "min_crossbars", "cycles",
    "latency_ns", "period_cycles", "throughput_per_s", "throughput_bound_per_s", "throughput_bound_ratio",
    "energy_pj", "energy_by_component_pj", "area_mm2", "edap", "baseline", "speedup", "layers", "seed",
    "compile_seconds", "command", "xbarforge_version",
]
BASELINE_KEYS = ["crossbars_used", "utilization", "cycles", "latency_ns", "throughput_per_s", "energy_pj",
                 "area_mm2", "edap"]
LAYER_KEYS = ["name", "op", "form", "blocks", "copies", "crossbars", "utilization", "cycles", "serial",
              "time_ns", "energy_pj", "round"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, out: str, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, (code, out, err)
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xbarforge: error: "), err
    assert "Traceback" not in out + err
    return lines[0]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One compile of a small model with every output file asked for."""
    d = tmp_path_factory.mktemp("compile")
    paths = {"json": d / "report.json", "mapping": d / "mapping.json", "plot": d / "occupancy.png"}
    argv = ["compile", *SMALL, "--crossbars", "40", "--samples", "1,8,64", "--json", str(paths["json"]),
            "--mapping", str(paths["mapping"]), "--plot", str(paths["plot"])]
    code, out, err = run_cli(argv)
    return {"code": code, "out": out, "err": err, "paths": paths}


# ---------------------------------------------------------------------------------------------
# compile and its outputs


def test_compile_prints_table_and_summary(compiled: dict) -> None:
    assert compiled["code"] == 0, compiled["err"]
    out = compiled["out"]
    for column in ("layer", "op", "form", "blocks", "copies", "crossbars", "utilization", "cycles", "time",
                   "energy"):
        assert column in out
    assert "features.0" in out and "classifier.1" in out
    assert "isaac-like" in out
    for k in ("1", "8", "64"):
        assert f"latency, k={k}" in out
    assert "utilization (budget)" in out and "of 40" in out
    assert "schedule: chain" in out
    assert "EDAP" in out


def test_compile_json_has_every_key(compiled: dict) -> None:
    doc = json.loads(compiled["paths"]["json"].read_text())
    for key in REPORT_KEYS:
        assert key in doc, key
    assert doc["model"] == "squeezenet1_1"
    assert doc["input_shape"] == [3, 32, 32]
    assert doc["crossbars_budget"] == 40
    assert doc["samples"] == [1, 8, 64]
    assert set(doc["speedup"]) == {"1", "8", "64"}
    assert set(doc["latency_ns"]) == {"1", "8", "64"}
    for key in BASELINE_KEYS:
        assert key in doc["baseline"], key
    assert set(doc["baseline"]["latency_ns"]) == {"1", "8", "64"}
    for k, s in doc["speedup"].items():
        assert s == pytest.approx(doc["baseline"]["latency_ns"][k] / doc["latency_ns"][k], rel=1e-6)
    assert doc["layers"] and all(all(key in layer for key in LAYER_KEYS) for layer in doc["layers"])
    assert doc["command"].startswith("xbarforge compile squeezenet1_1")
    assert doc["xbarforge_version"] == xbarforge.__version__
    assert str(compiled["paths"]["json"]) in compiled["out"]


def test_compile_plot_writes_two_pngs(compiled: dict) -> None:
    occupancy = compiled["paths"]["plot"]
    layers = layers_plot_path(occupancy)
    assert layers.name == "occupancy_layers.png"
    for path in (occupancy, layers):
        data = path.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC
        assert str(path) in compiled["out"]


def test_compile_mapping_round_trips(compiled: dict) -> None:
    mapping = Mapping.load(compiled["paths"]["mapping"])
    doc = json.loads(compiled["paths"]["json"].read_text())
    assert mapping.model == "squeezenet1_1"
    assert mapping.crossbars_used == doc["crossbars_used"]
    assert mapping.crossbars_budget == 40
    assert len({b.crossbar for b in mapping.blocks}) == mapping.crossbars_used
    again = Mapping.from_dict(mapping.to_dict())
    assert again.blocks == mapping.blocks


def test_onnx_file_matches_zoo_name(tmp_path: Path) -> None:
    model = create_model("squeezenet1_1", num_classes=10, input_size=(3, 32, 32))
    path = tmp_path / "squeeze.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), torch.randn(1, 3, 32, 32), str(path), dynamo=False, opset_version=17)
    docs = []
    for source in ("squeezenet1_1", str(path)):
        out = tmp_path / f"{Path(source).stem}.json"
        code, _, err = run_cli(["compile", source, "--input", "3x32x32", "--hw", "rnc-paper",
                                "--crossbars", "40", "--json", str(out), "--quiet"])
        assert code == 0, err
        docs.append(json.loads(out.read_text()))
    zoo, onnx = docs
    assert onnx["crossbars_used"] == zoo["crossbars_used"]
    assert onnx["latency_ns"] == zoo["latency_ns"]
    assert onnx["baseline"]["latency_ns"] == zoo["baseline"]["latency_ns"]


FACTORY = textwrap.dedent(
    """
    from torch import nn


    def build():
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(16, 10),
        )


    class Net(nn.Module):
        input_shape = (3, 16, 16)

        def __init__(self):
            super().__init__()
            self.body = build()

        def forward(self, x):
            return self.body(x)
    """
)


def test_python_factory_and_class(tmp_path: Path) -> None:
    path = tmp_path / "nets.py"
    path.write_text(FACTORY)
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(["compile", f"{path}:build", "--input", "3x16x16", "--hw", "rnc-paper",
                                 "--json", str(out)])
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["input_shape"] == [3, 16, 16]
    assert len(doc["layers"]) == 2
    assert "isaac-like" in stdout
    # a class works too, and its input_shape attribute stands in for --input
    code, _, err = run_cli(["compile", f"{path}:Net", "--hw", "rnc-paper", "--json", str(out), "-q"])
    assert code == 0, err
    assert json.loads(out.read_text())["input_shape"] == [3, 16, 16]


def test_model_that_does_not_fit_is_not_an_error(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(["compile", *SMALL, "--crossbars", "3", "--json", str(out)])
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["rounds"] > 1 and doc["min_crossbars"] > 3
    text = " ".join(stdout.split())
    assert "reprogramming rounds" in text and "fewest crossbars" in text
    assert f"{doc['rounds']} reprogramming rounds" in text


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    code, out, err = run_cli(["compile", *SMALL, "--crossbars", "40", "--quiet"])
    assert code == 0 and out == "" and err == ""


def test_hardware_overrides_and_yaml_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, _, err = run_cli(["compile", *SMALL, "--set", "crossbar.rows=64", "crossbar.cols=64",
                            "--json", str(out), "-q"])
    assert code == 0, err
    assert json.loads(out.read_text())["crossbar"] == "64x64"
    from xbarforge.hardware import load_hardware, save_hardware

    hw_file = save_hardware(load_hardware("rnc-paper", **{"crossbar.rows": 256}), tmp_path / "chip.yaml")
    code, _, err = run_cli(["compile", "squeezenet1_1", "--input", "3x32x32", "--hw", str(hw_file),
                            "--json", str(out), "-q"])
    assert code == 0, err
    assert json.loads(out.read_text())["crossbar"] == "256x128"


# ---------------------------------------------------------------------------------------------
# errors: one line on stderr, exit code 2, never a traceback

LSTM_FACTORY = textwrap.dedent(
    """
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(16, 32, batch_first=True)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            y, _ = self.lstm(x.flatten(1, 2))
            return self.fc(y[:, -1])


    def build():
        return Net()
    """
)


def _bad_inputs(tmp: Path) -> dict[str, list[str]]:
    (tmp / "bad.yaml").write_text("name: bad\ncrossbar: {rows: 128\n  cols: [1,\n")
    (tmp / "garbage.onnx").write_bytes(bytes(range(256)) * 3)
    (tmp / "lstm.py").write_text(LSTM_FACTORY)
    (tmp / "broken.py").write_text("import nonexistent_module_xyz\n")
    return {
        "unknown model": ["compile", "no_such_net"],
        "unknown preset": ["compile", *SMALL[:3], "--hw", "no_such_chip"],
        "malformed yaml": ["compile", *SMALL[:3], "--hw", str(tmp / "bad.yaml")],
        "missing yaml": ["compile", *SMALL[:3], "--hw", str(tmp / "missing.yaml")],
        "negative rows": ["compile", *SMALL, "--set", "crossbar.rows=-3"],
        "unknown override key": ["compile", *SMALL, "--set", "crossbar.rowz=64"],
        "two-dim input": ["compile", "squeezenet1_1", "--input", "3x64"],
        "zero samples": ["compile", *SMALL, "--samples", "0"],
        "non-numeric samples": ["compile", *SMALL, "--samples", "1,eight"],
        "zero crossbars": ["compile", *SMALL, "--crossbars", "0"],
        "bad objective": ["compile", *SMALL, "--objective", "fastest"],
        "min-util out of range": ["compile", *SMALL, "--min-util", "1.5"],
        "garbage onnx": ["compile", str(tmp / "garbage.onnx")],
        "missing onnx": ["compile", str(tmp / "missing.onnx")],
        "unsupported layer": ["compile", f"{tmp / 'lstm.py'}:build", "--input", "1x8x16"],
        "missing factory": ["compile", f"{tmp / 'lstm.py'}:nope", "--input", "1x8x16"],
        "factory file fails to import": ["compile", f"{tmp / 'broken.py'}:build", "--input", "3x8x8"],
        "missing factory file": ["compile", f"{tmp / 'nope.py'}:build", "--input", "3x8x8"],
        "no output folder": ["compile", *SMALL, "--json", str(tmp / "no" / "such" / "dir.json")],
        "missing model argument": ["compile"],
        "unknown command": ["frobnicate"],
    }


CASE_IDS = [
    "unknown model",
    "unknown preset",
    "malformed yaml",
    "missing yaml",
    "negative rows",
    "unknown override key",
    "two-dim input",
    "zero samples",
    "non-numeric samples",
    "zero crossbars",
    "bad objective",
    "min-util out of range",
    "garbage onnx",
    "missing onnx",
    "unsupported layer",
    "missing factory",
    "factory file fails to import",
    "missing factory file",
    "no output folder",
    "missing model argument",
    "unknown command",
]


def test_case_list_covers_every_bad_input(tmp_path: Path) -> None:
    assert sorted(CASE_IDS) == sorted(_bad_inputs(tmp_path))


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path) -> None:
    argv = _bad_inputs(tmp_path)[case]
    code, out, err = run_cli(argv)
    line = assert_one_line_error(code, out, err)
    assert len(line) > len("xbarforge: error: ") + 5


def test_error_messages_name_the_problem(tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    expect = {
        "unknown model": "no_such_net",
        "unknown preset": "no_such_chip",
        "negative rows": "crossbar.rows",
        "two-dim input": "--input",
        "zero samples": "--samples",
        "zero crossbars": "--crossbars",
        "unsupported layer": "LSTM",
        "malformed yaml": "bad.yaml",
    }
    for case, word in expect.items():
        line = assert_one_line_error(*run_cli(cases[case]))
        assert word in line, (case, line)


def test_unexpected_exception_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something broke\nover two lines")

    monkeypatch.setattr(xbarforge, "compile", boom)
    monkeypatch.delenv("XBARFORGE_DEBUG", raising=False)
    line = assert_one_line_error(*run_cli(["compile", *SMALL]), expected_code=1)
    assert "RuntimeError: something broke over two lines" in line
    monkeypatch.setenv("XBARFORGE_DEBUG", "1")
    code, out, err = run_cli(["compile", *SMALL])
    assert code == 1 and "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("xbarforge: error: internal error: RuntimeError")


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(xbarforge, "compile", interrupted)
    line = assert_one_line_error(*run_cli(["compile", *SMALL]), expected_code=130)
    assert "interrupted" in line


# ---------------------------------------------------------------------------------------------
# other sub-commands and entry points


def test_presets_and_models_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("edge", "rnc-paper", "isaac", "puma"):
        assert name in out
    assert "128x128" in out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "squeezenet1_1" in out and "resnet20" in out and "3x32x32" in out


def test_demo_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "mobilenetv3_small" in out and "edge" in out
    assert "features.0.0" in out and "classifier" in out
    assert "isaac-like" in out


def test_help_version_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "compile" in capsys.readouterr().out
    assert main(["compile", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--crossbars" in help_text and "file.py:factory" in help_text
    assert main(["--version"]) == 0
    assert xbarforge.__version__ in capsys.readouterr().out
    assert main([]) == 2


def test_python_dash_m_runs_the_cli() -> None:
    env = {**os.environ, "XBARFORGE_DEBUG": ""}
    ok = subprocess.run([sys.executable, "-m", "xbarforge", "presets"], capture_output=True, text=True,
                        env=env)
    assert ok.returncode == 0 and "rnc-paper" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "xbarforge", "compile", "no_such_net"], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("xbarforge: error:") and "Traceback" not in bad.stderr


def test_option_parsers() -> None:
    assert parse_shape("3x64x64") == (3, 64, 64)
    assert parse_shape("3,32,32") == (3, 32, 32)
    assert parse_shape("784") == (784,)
    assert parse_samples("1,8,64") == [1, 8, 64]
    assert parse_samples("8, 8, 1") == [8, 1]
    for bad in ("3x64", "3x0x4", "axbxc", ""):
        with pytest.raises(Exception, match="expected CxHxW"):
            parse_shape(bad)


def test_effort_option(tmp_path: Path) -> None:
    """Both efforts compile and fit the budget; an unknown effort is one line."""
    reports = {}
    for effort in ("fast", "thorough"):
        out = tmp_path / f"{effort}.json"
        code, _, _ = run_cli(["compile", "resnet20", "--input", "3x32x32", "--hw", "rnc-paper", "--crossbars", "30",
                              "--samples", "1,8", "--effort", effort, "--json", str(out), "--quiet"])
        assert code == 0
        reports[effort] = json.loads(out.read_text())
    for rep in reports.values():
        assert rep["crossbars_used"] <= 30 and min(rep["speedup"].values()) > 0
    assert_one_line_error(*run_cli(["compile", "resnet20", "--effort", "max"]))

"""`xbarforge simulate`, `sweep` and hardware-aware `train` end to end on digits."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest
from cli_helpers import run_cli

NET = textwrap.dedent('''
    from torch import nn
    def build():
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 10),
        )
''')


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    root = tmp_path_factory.mktemp("simcli")
    (root / "net.py").write_text(NET)
    code, _, err = run_cli(["train", f"{root / 'net.py'}:build", "--data", "digits", "--epochs", "4",
                            "--out", str(root / "run"), "--quiet"])
    assert code == 0, err
    return root / "run" / "model.pt"


def test_simulate_reports_float_quantized_and_chips(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "acc.json"
    code, stdout, err = run_cli(["simulate", str(trained), "--hw", "isaac", "--variation", "0.05", "--adc-bits", "6",
                                 "--chips", "3", "--json", str(out)])
    assert code == 0, err
    assert "chip mean" in stdout
    doc = json.loads(out.read_text())
    (r,) = doc["results"]
    assert r["chips"] == 3 and len(r["chip_accuracies"]) == 3 and r["samples"] == doc["dataset"]["test"]
    assert r["float_accuracy"] > 0.8 and r["quantized_accuracy"] > 0.8
    assert r["nonideal"]["variation"] == 0.05 and doc["hardware"]["precision"]["adc_bits"] == 6
    assert doc["calibration"]["split"] == "val"
    assert len(set(r["chip_accuracies"])) > 1 or r["chip_std"] == 0.0


def test_simulate_is_reproducible_and_exact_mode_runs(trained: Path, tmp_path: Path) -> None:
    docs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        code, _, err = run_cli(["simulate", str(trained), "--hw", "mnsim-default", "--read-noise", "0.02",
                                "--chips", "2", "--limit", "60", "--mode", "exact", "--json", str(out), "-q"])
        assert code == 0, err
        docs.append(json.loads(out.read_text())["results"][0])
    assert docs[0]["chip_accuracies"] == docs[1]["chip_accuracies"] and docs[0]["samples"] == 60


def test_sweep_writes_grid_csv_and_plot(trained: Path, tmp_path: Path) -> None:
    png, table = tmp_path / "s.png", tmp_path / "s.csv"
    code, _, err = run_cli(["sweep", str(trained), "--hw", "mnsim-default", "--vary", "crossbar=32,64",
                            "--vary", "variation=0,0.1", "--chips", "2", "--limit", "100", "--ir-drop",
                            "--plot", str(png), "--csv", str(table), "-q"])
    assert code == 0, err
    rows = list(csv.DictReader(table.open()))
    assert [(r["vary.crossbar"], r["vary.variation"]) for r in rows] == [("32", "0"), ("32", "0.1"), ("64", "0"),
                                                                        ("64", "0.1")]
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["sweep", "{model}", "--vary", "variation"], "expected NAME=V1,V2"),
    (["sweep", "{model}", "--vary", "nonideal.variatoin=0.1"], "unknown key 'nonideal.variatoin'"),
    (["sweep", "{model}", "--vary", "variation=2"], "less than or equal to 1"),
    (["simulate", "{model}", "--variation", "1.5"], "expected a number in [0, 1]"),
    (["simulate", "{missing}"], "not found"),
    (["simulate", "{model}", "--data", "cifar10"], "needs a root folder"),
])
def test_bad_input_is_one_line(trained: Path, tmp_path: Path, argv: list[str], message: str) -> None:
    argv = [a.format(model=trained, missing=tmp_path / "none.pt") for a in argv]
    code, _, err = run_cli(argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_hardware_aware_training_recovers_accuracy_under_variation(trained: Path, tmp_path: Path) -> None:
    """Fine-tuning with the chip's noise in the forward pass helps a noisy chip."""
    hw = ["--hw", "isaac", "--set", "nonideal.variation=0.15"]
    code, _, err = run_cli(["train", str(Path(trained).parent.parent / "net.py") + ":build", "--init", str(trained),
                            "--hardware-aware", *hw, "--epochs", "3", "--lr", "0.02", "--out", str(tmp_path / "hwa"),
                            "-q"])
    assert code == 0, err
    accs = {}
    for name, model in (("plain", trained), ("hwa", tmp_path / "hwa" / "model.pt")):
        out = tmp_path / f"{name}.json"
        code, _, err = run_cli(["simulate", str(model), *hw, "--chips", "4", "--json", str(out), "-q"])
        assert code == 0, err
        accs[name] = json.loads(out.read_text())["results"][0]["chip_mean"]
    assert accs["hwa"] > accs["plain"], accs

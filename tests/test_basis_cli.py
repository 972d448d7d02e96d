"""`xbarforge basis fit | train | simulate | compare` end to end on digits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import DIGITS_NET, ok, run_cli

from xbarforge.basis import fit_basis, load_run, plan_basis
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware
from xbarforge.train import load_model, read_model_file, save_model

pytestmark = pytest.mark.usefixtures("one_thread")

# DIGITS_NET: 9, 72 and 64 rows, so 1, 5 and 4 segments of 16 rows
WEIGHTS = 72 + 1152 + 640
# rnc-paper at 16 rows x 8 columns: one signed cell per weight, so 8 basis vectors of 16 values a crossbar
RNC = ["--hw", "rnc-paper", "--set", "crossbar.rows=16", "crossbar.cols=8"]
DIGITS_TEST = 359  # sklearn digits: 20 % of 1797 images, stratified


def summary(run_dir: Path) -> dict[str, Any]:
    """The run folder's basis.json."""
    return json.loads((run_dir / "basis.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    """A small BN conv net trained on digits by `xbarforge train` (its file names the dataset)."""
    root = tmp_path_factory.mktemp("basiscli")
    (root / "net.py").write_text(DIGITS_NET)
    ok(["train", f"{root / 'net.py'}:build", "--data", "digits", "--epochs", "3", "--out", root / "run", "--quiet"])
    return root / "run" / "model.pt"


@pytest.fixture(scope="module")
def bare(trained: Path) -> Path:
    """The same network in a file that records no dataset."""
    model, meta = load_model(trained, device="cpu")
    path = trained.parent.parent / "bare.pt"
    save_model(path, model, arch=meta["arch"], meta={"input_shape": meta["input_shape"]})
    return path


def test_fit_without_evaluation(bare: Path, tmp_path: Path) -> None:
    """isaac at 32x32 (3 vectors a crossbar) on 6 crossbars; no dataset is needed with --no-eval."""
    out = tmp_path / "b"
    stdout = ok(["basis", "fit", bare, "--hw", "isaac", "--set", "crossbar.rows=32", "crossbar.cols=32",
                 "--crossbars", "6", "--out", out, "--no-eval", "-q"])
    assert stdout == ""
    assert (out / "basis.pt").is_file() and (out / "basis.json").is_file()
    doc = summary(out)
    # default P: the smallest divisor of 6 with P * 3 >= 32 / 2 is 6
    assert (doc["crossbars"], doc["group_crossbars"], doc["groups"], doc["rows"]) == (6, 6, 1, 32)
    assert doc["vectors"] == 18 and doc["vectors_per_group"] == 18 and doc["vectors_per_crossbar"] == 3
    assert doc["model_weights"] == WEIGHTS and doc["basis_weights"] == 18 * 32
    assert doc["basis_fraction"] == pytest.approx(18 * 32 / WEIGHTS, rel=1e-6)
    assert (doc["hardware"], doc["init"], doc["coeff_bits"], doc["refine"]) == ("isaac", "svd", 4, 2)
    (fit,) = doc["history"]
    assert fit["step"] == "fit" and fit["kept"] == "svd" and fit["val_accuracy"] is None
    assert 0 < fit["svd"]["error"] < fit["svd"]["error_quantized"] < 1 and "kmeans" not in fit
    assert set(fit["cost"]["batches"]) == {"1", "64"}
    # the file rebuilds the very network fit_basis makes
    run = load_run(out)
    model, _ = load_model(bare, device="cpu")
    hw = load_hardware("isaac", **{"crossbar.rows": 32, "crossbar.cols": 32})
    net, _ = fit_basis(model, plan_basis(capture(model, (1, 8, 8)), hw, 6, 6), weight_bits=16, coeff_bits=4)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(run.net(x), net.eval()(x), atol=1e-6)
    assert run.source["path"] == str(bare.resolve()) and run.hw == hw


def test_fit_compare_keeps_the_better_init(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    stdout = ok(["basis", "fit", trained, *RNC, "--crossbars", "2", "--group-crossbars", "2", "--init", "compare",
                 "--out", out])
    assert "init svd:" in stdout and "init kmeans:" in stdout and "basis.pt" in stdout
    doc = summary(out)
    (fit,) = doc["history"]
    accs = {init: fit[init]["val_accuracy"] for init in ("svd", "kmeans")}
    assert all(0 <= a <= 1 for a in accs.values())
    assert fit["kept"] == max(accs, key=accs.__getitem__) == doc["init"]
    assert fit["val_accuracy"] == accs[fit["kept"]]
    meta = read_model_file(trained)["meta"]
    assert fit["unconstrained_val_accuracy"] == pytest.approx(meta["val_accuracy"])
    # 2 x 8 vectors span the 16 rows: the fit keeps the trained network's accuracy
    assert fit["svd"]["error"] < 1e-4 and accs["svd"] >= meta["val_accuracy"] - 0.05


def test_train_then_simulate(trained: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "b"
    ok(["basis", "fit", trained, *RNC, "--crossbars", "4", "--group-crossbars", "2", "--coeff-bits", "3",
        "--out", run_dir, "-q"])
    train = ["basis", "train", run_dir, "--epochs", "1", "--coeff-epochs", "1", "-q"]
    assert ok(train) == ""
    doc = summary(run_dir)
    steps = [h["step"] for h in doc["history"]]
    assert steps == ["fit", "joint", "coefficients", "final"]
    final = doc["history"][-1]
    meta = read_model_file(trained)["meta"]
    assert 0.8 < final["test_accuracy"] <= 1 and 0.8 < final["val_accuracy"] <= 1
    assert final["unconstrained_test_accuracy"] == pytest.approx(meta["test_accuracy"])
    assert (run_dir / "step-joint" / "model.pt").is_file() and (run_dir / "step-coefficients" / "model.pt").is_file()
    before = load_run(run_dir).net.state_dict()
    ok(train)  # the same command again: both steps are done
    assert [h["step"] for h in summary(run_dir)["history"]] == steps
    after = load_run(run_dir).net.state_dict()
    assert all(torch.equal(before[k], v) for k, v in after.items())

    result = tmp_path / "sim.json"
    assert ok(["basis", "simulate", run_dir, "--chips", "2", "--set", "nonideal.variation=0.02", "--json", result,
               "-q"]) == ""
    sim = json.loads(result.read_text())
    assert len(sim["chips"]) == 2 and all(0.7 < a <= 1 for a in sim["chips"])
    assert sim["seeds"] == [0, 1] and sim["crossbars"] == 4 and sim["n"] == DIGITS_TEST and sim["split"] == "test"
    assert sim["overrides"] == ["nonideal.variation=0.02"] and sim["mode"] == "fast" and sim["hardware"] == "rnc-paper"
    assert 0.8 < sim["float"] <= 1 and 0.8 < sim["quantized"] <= 1
    assert sim["min"] <= sim["mean"] <= sim["max"] and 0.7 < sim["min"]
    assert sim["float"] == pytest.approx(final["test_accuracy"], abs=1e-9)  # ideal reads are the trained network
    last = summary(run_dir)["history"][-1]
    assert last["step"] == "simulate" and last["mean"] == pytest.approx(sim["mean"])
    # the run's own hardware is not changed by --set
    assert load_run(run_dir).hw.nonideal.variation == 0.0


def test_simulate_refuses_a_crossbar_geometry_the_basis_was_not_fitted_for(trained: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "b"
    ok(["basis", "fit", trained, *RNC, "--crossbars", "2", "--group-crossbars", "2", "--out", run_dir, "--no-eval",
        "-q"])
    code, _, err = run_cli(["basis", "simulate", run_dir, "--chips", "1", "--set", "crossbar.rows=8", "--limit", "20",
                            "-q"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_compare_zoo_name_cost_only(tmp_path: Path) -> None:
    result, png = tmp_path / "c.json", tmp_path / "c.png"
    assert ok(["basis", "compare", "lenet5", "--hw", "isaac", "--crossbars", "2,4", "--json", result, "--plot", png,
               "-q"]) == ""
    doc = json.loads(result.read_text())
    assert doc["model"] == "lenet5" and doc["hardware"] == "isaac" and doc["batches"] == [1, 64]
    assert doc["unconstrained_val_accuracy"] is None
    weights = sum(layer.num_weights for layer in capture("lenet5").mvm_layers)
    assert [r["crossbars"] for r in doc["rows"]] == [2, 4]
    for r in doc["rows"]:
        c, p = r["crossbars"], r["group_crossbars"]
        assert c % p == 0 and "val_accuracy_after_fit" not in r
        assert r["basis_fraction"] == pytest.approx(c * 15 * 128 / weights, rel=1e-6)  # isaac: 15 vectors a crossbar
        assert set(r["batches"]) == {"1", "64"}
        for b in r["batches"].values():
            assert b["ratio"]["cycles"] > 0 and b["ratio"]["edp"] > 0
            assert b["basis"]["crossbars"] == c and b["basis"]["writes_per_inference"] == 0
    assert png.stat().st_size > 10_000


def test_compare_model_file_with_accuracy(trained: Path, tmp_path: Path) -> None:
    result = tmp_path / "c.json"
    ok(["basis", "compare", trained, *RNC, "--crossbars", "2,4", "--group-crossbars", "2", "--batch", "1",
        "--accuracy", "--json", result, "-q"])
    doc = json.loads(result.read_text())
    meta = read_model_file(trained)["meta"]
    assert doc["unconstrained_val_accuracy"] == pytest.approx(meta["val_accuracy"])
    assert [r["crossbars"] for r in doc["rows"]] == [2, 4] and doc["batches"] == [1]
    for r in doc["rows"]:
        # groups of 2 x 8 vectors span the 16 rows: only quantization is lost
        assert r["group_crossbars"] == 2 and set(r["batches"]) == {"1"}
        assert 0 < r["fit_error_quantized"] < 0.5
        assert meta["val_accuracy"] - 0.05 <= r["val_accuracy_after_fit"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["basis", "train", "{missing}"], "no basis run at"),
    (["basis", "simulate", "{missing}"], "no basis run at"),
    (["basis", "train", "{model}"], "not an xbarforge basis file"),
    (["basis", "fit", "{model}", "--crossbars", "4", "--group-crossbars", "3", "--no-eval", "--out", "{out}"],
     "group crossbars: 3 does not divide the 4 crossbars"),
    (["basis", "compare", "lenet5", "--crossbars", "4,6", "--group-crossbars", "4"], "4 does not divide the 6"),
    (["basis", "compare", "lenet5", "--crossbars", "4", "--accuracy"], "--accuracy needs a trained model file"),
    (["basis", "compare", "lenet5", "--crossbars", "4,x"], "expected positive integers separated by commas, got '4,x'"),
    (["basis", "compare", "lenet5", "--crossbars", "0,4"], "expected positive integers"),
    (["basis", "fit", "{model}", "--crossbars", "0", "--out", "{out}"], "must be at least 1"),
    (["basis", "fit", "{model}", "--crossbars", "4", "--init", "pca", "--out", "{out}"], "invalid choice: 'pca'"),
    (["basis", "fit", "{missing}/m.pt", "--crossbars", "4", "--out", "{out}"], "model file not found"),
    (["basis", "fit", "{bare}", "--crossbars", "4", "--out", "{out}"], "names no dataset"),
    (["basis", "simulate", "{missing}", "--json", "{missing}/r.json"], "does not exist"),
])
def test_bad_input_is_one_line(trained: Path, bare: Path, tmp_path: Path, argv: list[str], message: str) -> None:
    out = tmp_path / "out"
    argv = [a.format(model=trained, bare=bare, missing=tmp_path / "none", out=out) for a in argv]
    code, stdout, err = run_cli(argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # nothing written


def test_help_lists_the_sub_commands() -> None:
    code, stdout, _ = run_cli(["basis", "--help"])
    assert code == 0 and all(cmd in stdout for cmd in ("fit", "train", "simulate", "compare"))


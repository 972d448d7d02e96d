"""BasisN against reprogramming (CIFAR-10 JPEG copy): the basis issue's targets.

For ResNet-20 and DenseNet-40 (trained by `xbarforge train`, runs/r20 and runs/d40):

1. Cost, for several crossbar counts: cycles and EDP per inference of BasisN and of reprogramming
   the same crossbars between rounds, batches of 1 and 64 (hardware defaults of the preset), the
   same with cell-by-cell writing, and the write time per crossbar at which BasisN would reach 1 %
   of reprogramming. Target: <= 1 % with crossbars holding at most a quarter of the weights.
2. Validation accuracy right after fitting, for every crossbar count (no training).
   Accuracy at the largest crossbar count holding at most a quarter of the weights: `xbarforge basis
   fit` (SVD and k-means compared on validation), `basis train` (joint, then coefficients alone),
   validation after each step, test at the end, against the unconstrained model's test accuracy.
   Target: within 1.5 points. Fit + train time for ResNet-20: target < 45 minutes.
   Control (section `control`): the unconstrained model trained for the same number of extra epochs.
3. Non-ideal accuracy: the trained basis network and the unconstrained model on the same chip
   (2 % programming variation), chip instances with mean and spread.

Every section is stored as soon as it is done and reused on a rerun (--fresh redoes everything).
Run: .venv/bin/python benchmarks/basis_bench.py [--models resnet20,densenet40] [--epochs 4 --coeff-epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from xbarforge.basis import compare, default_group_crossbars, load_run, plan_basis, simulate_basis_accuracy
from xbarforge.graph import capture
from xbarforge.hardware import load_hardware, override
from xbarforge.report.plots import plot_basis
from xbarforge.sim import simulate_accuracy
from xbarforge.train import load_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "basis_bench.json"
PLOT = ROOT / "benchmarks" / "results" / "basis_bench_{model}.png"
RUNS = ROOT / "runs"
MODELS = {"resnet20": RUNS / "r20" / "model.pt", "densenet40": RUNS / "d40" / "model.pt"}
CROSSBARS = {"resnet20": [8, 16, 32, 64], "densenet40": [16, 32, 64, 128, 256]}
BATCHES = (1, 64)
COEFF_BITS = 4
HW = "isaac"
SIM_VARIATION = 0.02


def xbarforge(*argv: str) -> None:
    cmd = [str(ROOT / ".venv" / "bin" / "xbarforge"), *argv]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def load() -> dict[str, Any]:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def save(doc: dict[str, Any]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2))


def break_even_write_ns(row: dict[str, Any], target: float = 0.01) -> float | None:
    """Write time per crossbar at which BasisN's cycles are `target` of reprogramming's.

    Reprogramming's per-inference time is write_per_crossbar * crossbars_written_per_inference
    + compute / batch; solve basis = target * that for the write time.
    """
    b, r = row["basis"], row["reprogram"]
    if not r["writes_charged"] or not r["crossbars_written_per_inference"]:
        return None
    compute = r["compute_ns"] / r["batch"]
    need = b["latency_ns"] / target - compute
    return max(0.0, need / r["crossbars_written_per_inference"])


def cost_section(model: str, graph: Any, hw: Any) -> dict[str, Any]:
    """Cycles and EDP of BasisN vs reprogramming for each crossbar count (and the cell-by-cell variant)."""
    cell_hw = override(hw, "reprogram.cols_written_together", 1)
    rows = []
    for c in CROSSBARS[model]:
        layout = plan_basis(graph, hw, c, default_group_crossbars(hw, c))
        t = time.perf_counter()
        doc = compare(layout, graph, hw, COEFF_BITS, batches=BATCHES)
        seconds = time.perf_counter() - t
        cell = compare(layout, graph, cell_hw, COEFF_BITS, batches=BATCHES)
        row = {"crossbars": c, "group_crossbars": layout.group_crossbars, "groups": layout.groups,
               "basis_fraction": layout.basis_fraction, "compare_seconds": seconds, "batches": doc["batches"],
               "cell_by_cell": {b: cell["batches"][b]["ratio"] for b in cell["batches"]},
               "break_even_write_ns_per_crossbar": {b: break_even_write_ns(doc["batches"][b]) for b in doc["batches"]},
               "write_ns_per_crossbar": doc["batches"][str(BATCHES[0])]["reprogram"]["write_ns_per_crossbar"]}
        for b in doc["batches"]:  # keep the file small: per-layer records only in the CLI's own output
            for side in ("basis", "reprogram"):
                row["batches"][b][side].pop("layers", None)
        rows.append(row)
        r1 = doc["batches"]["1"]["ratio"]
        r64 = doc["batches"]["64"]["ratio"]
        print(f"{model} C={c} ({100 * layout.basis_fraction:.1f} % of weights):"
              f" cycles ratio B=1 {100 * r1['cycles']:.2f} % B=64 {100 * r64['cycles']:.2f} %,"
              f" EDP ratio B=1 {100 * r1['edp']:.3f} % B=64 {100 * r64['edp']:.3f} %",
              flush=True)
    # the parallelism constraint at the quarter-of-the-weights point: fewer crossbars per group read
    # fewer vectors per segment (less digital work, more groups in parallel) but fit the kernels worse
    quarter = max(r["crossbars"] for r in rows if r["basis_fraction"] <= 0.25)
    groups = []
    for p in [p for p in (1, 2, 4, 8, 16) if quarter % p == 0]:
        layout = plan_basis(graph, hw, quarter, p)
        doc = compare(layout, graph, hw, COEFF_BITS, batches=BATCHES)
        groups.append({"group_crossbars": p, "groups": layout.groups, "vectors_per_group": layout.vectors_per_group,
                       "ratio": {b: doc["batches"][b]["ratio"] for b in doc["batches"]},
                       "basis_cycles": {b: doc["batches"][b]["basis"]["cycles_per_inference"] for b in doc["batches"]}})
    return {"hardware": hw.name, "coeff_bits": COEFF_BITS, "rows": rows, "quarter_crossbars": quarter,
            "group_sweep": groups}


def quarter_crossbars(model: str, graph: Any, hw: Any) -> int:
    """The largest benchmarked crossbar count whose basis holds at most a quarter of the weights."""
    fractions = {c: plan_basis(graph, hw, c, default_group_crossbars(hw, c)).basis_fraction for c in CROSSBARS[model]}
    return max(c for c, f in fractions.items() if f <= 0.25)


def accuracy_section(model: str, model_file: Path, crossbars: int, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = RUNS / f"basis-{model}-c{crossbars}"
    t0 = time.perf_counter()
    if not (run_dir / "basis.pt").exists():
        xbarforge("basis", "fit", str(model_file), "--hw", HW, "--crossbars", str(crossbars), "--coeff-bits",
                  str(COEFF_BITS), "--init", "compare", "--out", str(run_dir), "-q")
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    xbarforge("basis", "train", str(run_dir), "--epochs", str(args.epochs), "--coeff-epochs", str(args.coeff_epochs),
              "-q")
    train_s = time.perf_counter() - t1
    run = load_run(run_dir)
    hist = {h["step"]: h for h in run.history}
    train_steps = [h for h in run.history if h["step"] in ("joint", "coefficients")]
    final = hist["final"]
    return {
        "run": str(run_dir.relative_to(ROOT)), "crossbars": crossbars, **{k: run.settings[k] for k in run.settings},
        "basis_fraction": run.net.layout.basis_fraction,
        "fit": {k: v for k, v in hist["fit"].items() if k != "cost"},
        "steps": train_steps, "val_accuracy_after_fit": hist["fit"]["val_accuracy"],
        "test_accuracy": final["test_accuracy"], "val_accuracy": final["val_accuracy"],
        "unconstrained_test_accuracy": final["unconstrained_test_accuracy"],
        "unconstrained_val_accuracy": run.source["meta"].get("val_accuracy"),
        "gap_points": 100 * (final["unconstrained_test_accuracy"] - final["test_accuracy"]),
        # this invocation's wall time (a rerun that reuses finished steps reports less); the
        # per-step training times are in `steps`
        "fit_seconds": fit_s, "train_seconds_this_run": train_s,
        "train_seconds_recorded": sum(h["time_s"] for h in train_steps),
    }


def fit_section(model: str, model_file: Path, hw: Any, limit: int) -> dict[str, Any]:
    """Validation accuracy and kernel error right after fitting (no training), for every crossbar count."""
    from xbarforge.basis import fit_basis

    net_model, meta = load_model(model_file, device="cpu")
    graph = capture(net_model, tuple(meta["input_shape"]))
    x, y, _ = data_tensors(model_file, limit, split="val")

    def accuracy(m: Any) -> float:
        m.eval()
        with torch.no_grad():
            hits = sum(int((m(x[i : i + 500]).argmax(1) == y[i : i + 500]).sum()) for i in range(0, len(x), 500))
        return hits / len(x)

    reference = accuracy(net_model)
    rows = []
    for c in CROSSBARS[model]:
        layout = plan_basis(graph, hw, c, default_group_crossbars(hw, c))
        t = time.perf_counter()
        net, rep = fit_basis(net_model, layout, weight_bits=hw.precision.weight_bits, coeff_bits=COEFF_BITS)
        fit_s = time.perf_counter() - t
        acc = accuracy(net)
        rows.append({"crossbars": c, "group_crossbars": layout.group_crossbars, "error": rep.error,
                     "error_quantized": rep.error_quantized, "val_accuracy": acc, "fit_seconds": fit_s})
        print(f"{model} C={c}: fit error {100 * rep.error_quantized:.1f} %, val {100 * acc:.2f} %"
              f" (unconstrained {100 * reference:.2f} % on the same images)", flush=True)
    # the validation images are a seeded random subset; the unconstrained model is measured on the same ones
    return {"val_images": len(x), "unconstrained_val_accuracy": reference, "rows": rows}


def control_section(model: str, model_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The unconstrained model trained for as many more epochs as the basis network got (same peak lr),
    so that a basis network beating an under-trained baseline is not mistaken for a gain."""
    out = RUNS / f"{model_file.parent.name}-ft"
    epochs = args.epochs + args.coeff_epochs
    xbarforge("train", model, "--init", str(model_file), "--epochs", str(epochs), "--lr", "0.02", "--out", str(out),
              "--quiet")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"run": str(out.relative_to(ROOT)), "epochs": epochs, "lr": 0.02,
            "val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"]}


def data_tensors(model_file: Path, limit: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from xbarforge.data.from_model import evaluation_tensors, model_dataset

    _, meta = load_model(model_file, device="cpu")
    return evaluation_tensors(model_dataset(meta, None, None, str(model_file)), split, limit, 256)


def sim_section(model: str, model_file: Path, run_dir: Path, chips: int, limit: int) -> dict[str, Any]:
    hw = override(load_hardware(HW), "nonideal.variation", SIM_VARIATION)
    x, y, calib = data_tensors(model_file, limit)
    run = load_run(run_dir)
    basis = simulate_basis_accuracy(run.net, hw, x, y, calibration=calib, chips=chips)
    plain_model, _ = load_model(model_file, device="cpu")
    plain = simulate_accuracy(plain_model, hw, x, y, calibration=calib, chips=chips).to_dict()
    print(f"{model} on {HW} with {100 * SIM_VARIATION:.0f} % variation, {len(x)} test images: basis"
          f" {100 * basis['mean']:.2f} ± {100 * basis['std']:.2f} %, unconstrained {100 * plain['chip_mean']:.2f} ±"
          f" {100 * plain['chip_std']:.2f} %", flush=True)
    return {"hardware": HW, "variation": SIM_VARIATION, "images": len(x), "basis": basis, "unconstrained": plain}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,densenet40")
    ap.add_argument("--epochs", type=int, default=4, help="joint basis + coefficient epochs")
    ap.add_argument("--coeff-epochs", type=int, default=2, help="coefficient-only epochs")
    ap.add_argument("--sections", default="cost,fit,accuracy,control,sim")
    ap.add_argument("--fit-limit", type=int, default=2000, help="validation images for the fit section")
    ap.add_argument("--sim-chips", type=int, default=3)
    ap.add_argument("--sim-limit", type=int, default=1000, help="test images for the simulator section")
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    doc = {} if args.fresh else load()
    doc.setdefault("setup", {})
    doc["setup"].update({"hardware": HW, "coeff_bits": COEFF_BITS, "batches": list(BATCHES),
                         "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                         "python": sys.version.split()[0]})
    sections = set(args.sections.split(","))
    hw = load_hardware(HW)
    for model in args.models.split(","):
        model_file = MODELS[model]
        entry = doc.setdefault(model, {})
        graph = capture(model, None) if not model_file.exists() else capture(load_model(model_file, "cpu")[0],
                                                                              (3, 32, 32))
        if "cost" in sections:
            entry["cost"] = cost_section(model, graph, hw)
            save(doc)
        if not model_file.exists():
            print(f"{model_file} missing: train it first (see the module docstring); accuracy skipped", flush=True)
            continue
        quarter = quarter_crossbars(model, graph, hw)
        if "fit" in sections:
            entry["fit"] = fit_section(model, model_file, hw, args.fit_limit)
            save(doc)
        if "accuracy" in sections:
            entry["accuracy"] = accuracy_section(model, model_file, quarter, args)
            save(doc)
            a = entry["accuracy"]
            print(f"{model} C={quarter}: test {100 * a['test_accuracy']:.2f} % vs unconstrained"
                  f" {100 * a['unconstrained_test_accuracy']:.2f} % (gap {a['gap_points']:.2f} points)", flush=True)
        if "control" in sections:
            entry["control"] = control_section(model, model_file, args)
            save(doc)
            print(f"{model}: unconstrained model after {entry['control']['epochs']} more epochs:"
                  f" test {100 * entry['control']['test_accuracy']:.2f} %", flush=True)
        if "sim" in sections and args.sim_chips > 0:
            run_dir = RUNS / f"basis-{model}-c{quarter}"
            entry["sim"] = sim_section(model, model_file, run_dir, args.sim_chips, args.sim_limit)
            save(doc)
        if "cost" in entry:
            rows = []
            after_fit = {f["crossbars"]: f["val_accuracy"] for f in entry.get("fit", {}).get("rows", [])}
            for r in entry["cost"]["rows"]:
                row = {"crossbars": r["crossbars"], "batches": r["batches"]}
                if r["crossbars"] in after_fit:
                    row["val_accuracy_after_fit"] = after_fit[r["crossbars"]]
                if "accuracy" in entry and entry["accuracy"]["crossbars"] == r["crossbars"]:
                    row["test_accuracy"] = entry["accuracy"]["test_accuracy"]
                rows.append(row)
            plot_basis({"model": model, "hardware": HW, "batches": list(BATCHES), "rows": rows,
                        "unconstrained_test_accuracy": entry.get("accuracy", {}).get("unconstrained_test_accuracy"),
                        "unconstrained_val_accuracy": entry.get("fit", {}).get("unconstrained_val_accuracy")},
                       str(PLOT).format(model=model))
    save(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

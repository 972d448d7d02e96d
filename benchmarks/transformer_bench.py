"""Transformers on crossbar chips: where the time and energy go, and accuracy on non-ideal chips.

1. Cost (no training): ViT-Tiny (DeiT-Tiny, 1000 classes, 3x224x224) and the zoo's hybrid
   conv-attention model on `isaac` and `rnc-paper`: the isaac-like mapping, the compiler's mapping
   on the chip's own budget (16128 crossbars on `isaac`, unbounded on `rnc-paper`) and on 2x the
   fewest crossbars, each with crossbars, latency (k = 1 and 64),
   throughput, energy, area, EDAP, and the split of one sample's latency (chain schedule: every
   layer and stage in turn, so the split is exact) and of the energy between the analog MVM layers
   and the digital stages, by kind (attention's products, softmax, layer norm, GELU, reductions).
   The same with `digital.attention = crossbar` (products on crossbars written at run time), and
   the compile time (median of 5).
2. Accuracy: `vit_cifar` trained here on CIFAR-10 (AdamW, the DeiT recipe's optimizer, a few
   epochs; the recipe was not tuned, so no selection on any split), then simulated on `isaac` and
   `rnc-paper` with 8-bit ADCs at 0 / 2 / 5% programming variation, 5 chip instances each
   (mean and spread), calibrated on 256 validation images, scored on a seeded random 2000-image
   subset of the test split.

Each section is stored as soon as it is done and reused on a rerun (--fresh recomputes).

Run: .venv/bin/python benchmarks/transformer_bench.py [--skip-accuracy] [--epochs 8] [--fresh]
     -> benchmarks/results/transformer_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from xbarforge.compiler.compile import compile_graph, isaac_like, min_crossbars
from xbarforge.cost.model import evaluate
from xbarforge.graph import capture
from xbarforge.hardware import load_hardware

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "transformer_bench.json"
RUN = ROOT / "runs" / "vit_cifar"
PRESETS = ("isaac", "rnc-paper")
MODELS = ("vit_tiny", "hybrid_vit")
SAMPLES = [1, 64]
VARIATIONS = (0.0, 0.02, 0.05)
CHIPS = 5
TEST_IMAGES = 2000
RECIPE = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "batch_size": 128}


def load() -> dict[str, Any]:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def save(doc: dict[str, Any]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


def stage_kind(row: dict[str, Any]) -> str:
    op = row["op"]
    if op.startswith("matmul"):
        return "attention products"
    if op == "act softmax":
        return "softmax"
    if op.startswith("norm"):
        return "layer norm"
    if op.startswith(("reduce", "mean")):
        return "reductions"
    return "GELU and other functions"


def split(ev: dict[str, Any]) -> dict[str, Any]:
    """One sample's layer time and the energy per inference, analog MVM layers vs digital stages by kind."""
    time_by: dict[str, float] = defaultdict(float)
    energy_by: dict[str, float] = defaultdict(float)
    for row in ev["layers"]:
        kind = stage_kind(row) if row.get("digital") else "analog MVM layers"
        time_by[kind] += row["cycles"]
        energy_by[kind] += row["energy_pj"]
    energy_by["leakage"] = ev["energy_by_component_pj"]["leakage"]
    total_t, total_e = sum(time_by.values()), sum(energy_by.values())
    return {"time_share": {k: v / total_t for k, v in sorted(time_by.items())},
            "energy_share": {k: v / total_e for k, v in sorted(energy_by.items())},
            "digital_time_share": 1 - time_by["analog MVM layers"] / total_t,
            "digital_energy_share": 1 - (energy_by["analog MVM layers"] + energy_by["leakage"]) / total_e}


def summary(ev: dict[str, Any]) -> dict[str, Any]:
    return {"crossbars": ev["crossbars_used"], "latency_ns": ev["latency_ns"],
            "throughput_per_s": ev["throughput_per_s"], "energy_pj": ev["energy_pj"], "area_mm2": ev["area_mm2"],
            "edap": ev["edap"],
            "runtime_crossbars": ev["runtime_crossbars"], **split(ev)}


def cost_section(name: str, preset: str, attention: str = "digital") -> dict[str, Any]:
    hw = load_hardware(preset, **{"digital.attention": attention})
    graph = capture(name, num_classes=1000)
    fewest = min_crossbars(graph, hw)
    out: dict[str, Any] = {"model": name, "hardware": preset, "attention": attention, "weights": graph.num_weights,
                           "fewest_crossbars": fewest,
                           "vector_unit": {k: getattr(hw.digital, k) for k in ("vector_macs_per_ns", "vector_mac_pj",
                                                                               "special_ops_per_ns", "special_op_pj",
                                                                               "vector_unit_um2")},
                           "mvm_ns": hw.mvm_ns}
    mappings = {"isaac-like": lambda: isaac_like(graph, hw),
                "compiled, chip budget": lambda: compile_graph(graph, hw, crossbars=None, samples=SAMPLES),
                "compiled, 2x fewest": lambda: compile_graph(graph, hw, crossbars=2 * fewest, samples=SAMPLES)}
    for label, build in mappings.items():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            mapping = build()
            times.append(time.perf_counter() - t)
        out[label] = {**summary(evaluate(mapping, hw, SAMPLES)), "budget": mapping.crossbars_budget,
                      "compile_s_median": statistics.median(times)}
    return out


def train_vit(data_root: str, epochs: int) -> dict[str, Any]:
    cmd = [str(ROOT / ".venv" / "bin" / "xbarforge"), "train", "vit_cifar", "--data", "cifar10", "--data-root",
           data_root, "--optimizer", RECIPE["optimizer"], "--lr", str(RECIPE["lr"]), "--weight-decay",
           str(RECIPE["weight_decay"]), "--batch-size", str(RECIPE["batch_size"]), "--epochs", str(epochs),
           "--out", str(RUN)]
    if not (RUN / "model.pt").exists():
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    metrics = json.loads((RUN / "metrics.json").read_text())
    return {"command": " ".join(cmd[1:]), **{k: metrics.get(k) for k in ("epochs", "val_accuracy", "test_accuracy",
                                                                        "time_s", "device", "recipe", "seed")}}


def accuracy_section(preset: str) -> dict[str, Any]:
    from xbarforge.data.from_model import evaluation_tensors, model_dataset
    from xbarforge.sim import simulate_accuracy
    from xbarforge.train import load_model

    model, meta = load_model(RUN / "model.pt", device="cpu")
    x, y, calib = evaluation_tensors(model_dataset(meta, None, None, str(RUN)), "test", TEST_IMAGES, 256)
    rows = []
    for variation in VARIATIONS:
        hw = load_hardware(preset, **{"precision.adc_bits": 8, "nonideal.variation": variation})
        t = time.perf_counter()
        report = simulate_accuracy(model, hw, x, y, calibration=calib, chips=CHIPS)
        rows.append({"variation": variation, "seconds": time.perf_counter() - t, **report.to_dict()})
        print(f"{preset:10s} variation {variation:.2f}: float {report.float_accuracy:.4f}, quantized"
              f" {report.quantized_accuracy:.4f}, chips {report.mean:.4f} ± {report.std:.4f}", flush=True)
    return {"hardware": preset, "adc_bits": 8, "chips": CHIPS, "test_images": len(y), "results": rows}


BEGIN = "<!-- transformer_bench:begin (generated from benchmarks/results/transformer_bench.json; do not edit) -->"
END = "<!-- transformer_bench:end -->"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def markdown(doc: dict[str, Any]) -> str:
    """The README's transformer figures, from the result file (a test checks they match)."""
    lines = [BEGIN, "", "| model | chip | mapping | crossbars | latency k=1 | digital share of time / energy |",
             "|---|---|---|---|---|---|"]
    for name in MODELS:
        for preset in PRESETS:
            c = doc[f"cost/{name}/{preset}/digital"]
            for label in ("isaac-like", "compiled, 2x fewest"):
                r = c[label]
                ms = r["latency_ns"]["1"] / 1e6
                lines.append(f"| {name} | `{preset}` | {label} | {r['crossbars']:,} | {ms:.2f} ms"
                             f" | {_pct(r['digital_time_share'])} / {_pct(r['digital_energy_share'])} |")
    v = doc["cost/vit_tiny/isaac/digital"]["vector_unit"]
    w = doc["cost/vit_tiny/rnc-paper/digital"]["vector_unit"]
    lines += ["", f"Vector unit as the presets assume it: {v['vector_macs_per_ns']:g} MACs/ns on `isaac`,"
              f" {w['vector_macs_per_ns']:g} on `rnc-paper` (no source models one; `docs/transformers.md`)."]
    xi, xr = doc["cost/vit_tiny/isaac/crossbar"]["isaac-like"], doc["cost/vit_tiny/rnc-paper/crossbar"]["isaac-like"]
    di, dr = doc["cost/vit_tiny/isaac/digital"]["isaac-like"], doc["cost/vit_tiny/rnc-paper/digital"]["isaac-like"]
    lines.append(f"Attention's products on crossbars written at run time instead (ViT-Tiny, isaac-like):"
                 f" {xi['latency_ns']['1'] / 1e6:.1f} ms against {di['latency_ns']['1'] / 1e6:.1f} ms on `isaac`"
                 f" (write-and-verify of 100 ns pulses), {xr['latency_ns']['1'] / 1e6:.2f} ms against"
                 f" {dr['latency_ns']['1'] / 1e6:.2f} ms on `rnc-paper` (10 ns pulses).")
    if "train" in doc:
        t = doc["train"]
        lines += ["", f"Accuracy: `vit_cifar` trained here for {t['epochs']} epochs on CIFAR-10 (AdamW, untuned"
                  f" DeiT-style recipe, {t['time_s'] / 60:.0f} min on {doc['settings']['cpus']} cores):"
                  f" {100 * t['test_accuracy']:.2f}% test. On chips with 8-bit ADCs, {CHIPS} instances each,"
                  f" {TEST_IMAGES} test images (mean ± std, %):",
                  "", "| variation | " + " | ".join(f"`{p}`" for p in PRESETS) + " |", "|---|" + "---|" * len(PRESETS)]
        for i, var in enumerate(VARIATIONS):
            cells = []
            for preset in PRESETS:
                r = doc[f"accuracy/{preset}"]["results"][i]
                cells.append(f"{100 * r['chip_mean']:.1f} ± {100 * r['chip_std']:.1f}")
            lines.append(f"| {100 * var:.0f}% | " + " | ".join(cells) + " |")
        q = [doc[f"accuracy/{p}"]["results"][0]["quantized_accuracy"] for p in PRESETS]
        lines.append("")
        lines.append("(quantized, ideal devices: " + ", ".join(f"`{p}` {100 * a:.1f}%" for p, a in zip(PRESETS, q,
                                                                                                    strict=True)) + ")")
    lines += ["", END]
    return "\n".join(lines)


def write_readme(doc: dict[str, Any]) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:begin] + markdown(doc) + text[end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--skip-accuracy", action="store_true", help="the cost section only (no training)")
    ap.add_argument("--fresh", action="store_true", help="recompute every section")
    ap.add_argument("--readme", action="store_true", help="rewrite the README's transformer figures from the result")
    args = ap.parse_args()
    doc = {} if args.fresh else load()
    doc["settings"] = {"samples": SAMPLES, "variations": list(VARIATIONS), "chips": CHIPS, "test_images": TEST_IMAGES,
                       "calibration": "256 validation images, randperm seed 0", "test_subset": "randperm seed 0",
                       "chip_seeds": "chip k uses seed k", "recipe": RECIPE, "cpus": os.cpu_count()}
    for name in MODELS:
        for preset in PRESETS:
            attentions = ("digital", "crossbar") if name == "vit_tiny" else ("digital",)
            for attention in attentions:
                key = f"cost/{name}/{preset}/{attention}"
                if key not in doc:
                    doc[key] = cost_section(name, preset, attention)
                    save(doc)
                c = doc[key]
                for label in ("isaac-like", "compiled, chip budget", "compiled, 2x fewest"):
                    r = c[label]
                    print(f"{name:10s} {preset:9s} {attention:8s} {label:20s} {r['crossbars']:6d} xbars"
                          f"  k=1 {r['latency_ns']['1'] / 1e6:8.2f} ms  digital: {100 * r['digital_time_share']:5.1f}%"
                          f" of time, {100 * r['digital_energy_share']:5.1f}% of energy"
                          f"  ({r['compile_s_median'] * 1e3:.0f} ms)", flush=True)
    if not args.skip_accuracy:
        if "train" not in doc:
            doc["train"] = train_vit(args.data_root, args.epochs)
            save(doc)
        print("vit_cifar:", {k: doc["train"][k] for k in ("epochs", "val_accuracy", "test_accuracy")}, flush=True)
        for preset in PRESETS:
            key = f"accuracy/{preset}"
            if key not in doc:
                doc[key] = accuracy_section(preset)
                save(doc)
    save(doc)
    print(f"wrote {OUT.relative_to(ROOT)}")
    if args.readme:
        write_readme(doc)
        print("rewrote the README's transformer figures")


if __name__ == "__main__":
    main()

"""Transformers on RRAM crossbar chips: where time and energy go, and accuracy on non-ideal chips.

1. Cost (no training): ViT-Tiny (DeiT-Tiny, 1000 classes, 3x224x224) and the zoo's hybrid
   conv-attention model (`hybrid_vit`, 3x224x224) on `isaac` and `rnc-paper`, for the isaac-like
   mapping and `compile_graph` with no budget (crossbars=None: the preset's own chip budget where
   it has one, unbudgeted otherwise; recorded) and with 2x `min_crossbars`: crossbars, latency for
   k = 1 and 64, throughput, energy per inference, area, EDAP, and the split of one sample's
   latency (chain schedule at k = 1: one sample runs every MVM layer and digital stage in turn, so
   the split is exact; the script checks that the parts add up to the latency) and of the energy
   into analog MVM layers, digital stages by kind (matmul = attention's activation x activation
   products, softmax, norm, act = GELU and other functions, reduce = token means/reductions) and
   chip-wide leakage. ViT-Tiny again with `digital.attention = crossbar` (the products' second
   operand, K^T and V, written into crossbars at run time). Compile time: first call with the
   frontier cache cleared, then the median of 5 (wall and CPU). The vector unit's assumed
   throughput and energy (hw.digital) are stored and printed per preset.
2. Accuracy: `vit_cifar` (32x32, patch 4, dim 128, depth 6, 4 heads) trained here on the CIFAR-10
   JPEG copy with `xbarforge train --optimizer adamw` (one-cycle schedule), out folder runs/vit_cifar
   (checkpointed, resumed); with several --lrs the one with the best final validation accuracy is
   kept (the test split is never used to choose). Then `simulate_accuracy` on `isaac` and `rnc-paper`
   with 8-bit ADCs at 0 / 2 / 5% programming variation, 5 chip instances each (chip k: seed k),
   fast mode, calibrated on 256 validation images (randperm seed 0), scored on the test split
   (all 10,000 images by default; --test-images N takes a seeded subset, recorded).

Each section is stored in benchmarks/results/transformer_bench.json as soon as it is done and
reused on a rerun (--fresh recomputes everything). --limit N is a quick smoke run (N images per
split, 1 epoch, 2 chips, results in runs/transformer_bench_smoke.json, runs/vit_cifar-smoke).

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/transformer_bench.py [--skip-accuracy] [--fresh]
     [--epochs 8] [--lrs 0.001] [--test-images 10000] [--limit N] [--readme (rewrite the README figures)]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from xbarforge.compiler.compile import compile_graph, isaac_like, min_crossbars
from xbarforge.compiler.digital import TICKS_PER_CYCLE
from xbarforge.compiler.frontier import clear_cache
from xbarforge.cost.model import evaluate
from xbarforge.graph import capture
from xbarforge.hardware import load_hardware
from xbarforge.sim import simulate_accuracy

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "transformer_bench.json"
SMOKE_OUT = ROOT / "runs" / "transformer_bench_smoke.json"
RUNS = ROOT / "runs"
PRESETS = ("isaac", "rnc-paper")
MODELS = {"vit_tiny": (3, 224, 224), "hybrid_vit": (3, 224, 224)}
NUM_CLASSES = 1000
SAMPLES = [1, 64]
REPEAT = 5
MAPPINGS = ("isaac-like", "compiled, no budget", "compiled, 2x fewest")
SCHEMA = 2  # result files of another layout are recomputed
KINDS = ("matmul", "softmax", "norm", "act", "reduce", "other")
VARIATIONS = (0.0, 0.02, 0.05)
ADC_BITS = 8
CHIPS = 5
CALIBRATION = 256
RECIPE = {"model": "vit_cifar", "optimizer": "adamw", "weight_decay": 0.05, "batch_size": 128, "seed": 0,
          "schedule": "one-cycle (train's default shape)", "label_smoothing": "train's default (0.1)"}
VECTOR_FIELDS = ("vector_macs_per_ns", "vector_mac_pj", "vector_op_pj", "special_ops_per_ns", "special_op_pj",
                 "vector_unit_um2", "attention")


def log(msg: str) -> None:
    """Progress as plain timestamped lines (a terminal and a log file read the same)."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------- cost


def stage_kind(kind: str, describe: str) -> str:
    """matmul, softmax, norm, act (GELU and other functions), reduce (token means), other."""
    if kind == "matmul":
        return "matmul"
    if kind == "act":
        fn = describe.split()[1] if len(describe.split()) > 1 else ""
        return "softmax" if fn in ("softmax", "log_softmax") else "act"
    if kind == "norm":
        return "norm"
    if kind in ("mean", "reduce"):
        return "reduce"
    return "other"


def vector_unit(hw: Any) -> dict[str, Any]:
    d = hw.digital
    return {**{k: getattr(d, k) for k in VECTOR_FIELDS}, "mvm_ns": hw.mvm_ns,
            "crossbar": f"{hw.crossbar.rows}x{hw.crossbar.cols}", "chip_budget": hw.chip.budget,
            "activation_bits": hw.precision.activation_bits, "weight_bits": hw.precision.weight_bits}


def split(mapping: Any, ev: dict[str, Any], hw: Any) -> dict[str, Any]:
    """One sample's latency (k = 1, chain) and the energy per inference: analog MVM layers, digital
    stages by kind, leakage (chip-wide, not per layer) and whatever no row accounts for."""
    kinds = {st.name: stage_kind(st.kind, st.describe) for st in mapping.digital}
    macs: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    busy: dict[str, float] = defaultdict(float)  # each unit serves one stage at a time
    for st in mapping.digital:
        macs[kinds[st.name]] += st.macs
        count[kinds[st.name]] += 1
        busy[st.unit] += st.ticks * hw.mvm_ns / TICKS_PER_CYCLE
    bound = 1e9 / max(busy.values()) if busy else None
    t: dict[str, float] = defaultdict(float)
    e: dict[str, float] = defaultdict(float)
    for row in ev["layers"]:
        part = kinds.get(row["name"], "other") if row.get("digital") else "analog"
        t[part] += row["cycles"] * hw.mvm_ns  # digital stages: rounded up to the scheduler's tick
        e[part] += row["energy_pj"]
    total_t = ev["latency_ns"]["1"]
    total_e = ev["energy_pj"]
    leakage = ev["energy_by_component_pj"].get("leakage", 0.0)
    rest = total_e - sum(e.values()) - leakage
    digital_t = sum(v for k, v in t.items() if k != "analog")
    digital_e = sum(v for k, v in e.items() if k != "analog")
    dynamic = total_e - leakage
    return {
        "time_split_ns": {"analog": t["analog"], **{k: t[k] for k in KINDS if k in t}},
        "time_share": {"analog": t["analog"] / total_t, **{k: t[k] / total_t for k in KINDS if k in t}},
        "time_parts_over_latency": sum(t.values()) / total_t,  # 1.0: the split is exact
        "energy_split_pj": {"analog": e["analog"], **{k: e[k] for k in KINDS if k in e}, "leakage": leakage,
                      "unattributed": rest},
        "energy_share": {"analog": e["analog"] / total_e, **{k: e[k] / total_e for k in KINDS if k in e},
                         "leakage": leakage / total_e},
        "digital_time_share": digital_t / total_t,
        "digital_energy_share": digital_e / total_e,
        "digital_energy_share_of_dynamic": digital_e / dynamic if dynamic else 0.0,
        "digital_share_from_evaluate": ev.get("digital_share"),
        "stages": dict(count),
        "digital_macs": dict(macs),
        "digital_unit_busy_ns": dict(busy),
        # steady-state samples/s no schedule can beat: the busiest digital unit's time per sample
        "digital_unit_bound_per_s": bound,
        "throughput_over_digital_bound": ev["throughput_per_s"] / bound if bound else None,
    }


def timed(build: Any) -> tuple[Any, dict[str, float]]:
    """The mapping, the first call's time (frontier cache cleared) and the median of REPEAT more."""
    clear_cache()
    t0 = time.perf_counter()
    mapping = build()
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(REPEAT):
        c0, t0 = time.process_time(), time.perf_counter()
        mapping = build()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return mapping, {"compile_first_s": first, "compile_s_median": statistics.median(walls),
                     "compile_cpu_s_median": statistics.median(cpus), "repeats": REPEAT}


def cost_case(name: str, shape: tuple[int, ...], preset: str, attention: str) -> dict[str, Any]:
    hw = load_hardware(preset, **{"digital.attention": attention})
    t0 = time.perf_counter()
    graph = capture(name, shape, num_classes=NUM_CLASSES)
    capture_s = time.perf_counter() - t0
    fewest = min_crossbars(graph, hw)
    out: dict[str, Any] = {
        "model": name, "input_shape": list(shape), "num_classes": NUM_CLASSES, "hardware": preset,
        "attention": attention, "weights": graph.num_weights, "analog_macs": graph.macs,
        "mvm_layers": len(graph.mvm_layers), "min_crossbars": fewest, "capture_s": capture_s,
        "vector_unit": vector_unit(hw),
    }
    builds = {
        "isaac-like": lambda: isaac_like(graph, hw),
        "compiled, no budget": lambda: compile_graph(graph, hw, crossbars=None, samples=SAMPLES),
        "compiled, 2x fewest": lambda: compile_graph(graph, hw, crossbars=2 * fewest, samples=SAMPLES),
    }
    for label, build in builds.items():
        mapping, times = timed(build)
        ev = evaluate(mapping, hw, SAMPLES)
        out[label] = {
            "crossbars_budget": mapping.crossbars_budget, "crossbars": ev["crossbars_used"],
            "runtime_crossbars": ev["runtime_crossbars"], "utilization_used": ev["utilization_used"],
            "latency_ns": ev["latency_ns"], "schedule_used": ev["schedule_used"],
            "throughput_per_s": ev["throughput_per_s"], "energy_pj": ev["energy_pj"],
            "energy_by_component_pj": ev["energy_by_component_pj"], "area_mm2": ev["area_mm2"],
            "edap": ev["edap"], "edap_units": ev["edap_units"], **split(mapping, ev, hw), **times,
        }
    base = out["isaac-like"]["latency_ns"]
    for label in MAPPINGS[1:]:
        out[label]["speedup"] = {k: base[k] / v for k, v in out[label]["latency_ns"].items()}
    return out


def print_cost(doc: dict[str, Any]) -> None:
    print("\nVector unit (hw.digital) per preset: one unit per chip, shared by every digital stage", flush=True)
    for preset, v in doc["vector_unit"].items():
        print(f"  {preset:9s} {v['vector_macs_per_ns']:6.1f} MAC/ns at {v['vector_mac_pj']} pJ/MAC,"
              f" {v['special_ops_per_ns']:4.1f} special ops/ns at {v['special_op_pj']} pJ; MVM {v['mvm_ns']} ns"
              f" on {v['crossbar']} crossbars; chip budget {v['chip_budget']}", flush=True)
    head = (f"\n{'model':10s} {'preset':9s} {'attn':8s} {'mapping':19s} {'xbars':>6s} {'k=1 ms':>8s} {'k=64 ms':>9s}"
            f" {'inf/s':>7s} {'mJ':>7s} {'mm2':>7s} {'EDAP':>9s} {'dig.t%':>6s} {'dig.E%':>6s} {'leak%':>5s}"
            f" {'matmul/softmax/norm/act/reduce t%':>34s} {'ms':>5s}")
    print(head, flush=True)
    for key, c in doc.items():
        if not key.startswith("cost/"):
            continue
        for label in MAPPINGS:
            r = c[label]
            ts = r["time_share"]
            kinds = "/".join(f"{100 * ts.get(k, 0):.1f}" for k in KINDS[:5])
            print(f"{c['model']:10s} {c['hardware']:9s} {c['attention']:8s} {label:19s} {r['crossbars']:6d}"
                  f" {r['latency_ns']['1'] / 1e6:8.2f} {r['latency_ns']['64'] / 1e6:9.1f}"
                  f" {r['throughput_per_s']:7.1f} {r['energy_pj'] / 1e9:7.2f} {r['area_mm2']:7.1f}"
                  f" {r['edap']:9.2e} {100 * r['digital_time_share']:6.1f} {100 * r['digital_energy_share']:6.1f}"
                  f" {100 * r['energy_share']['leakage']:5.1f} {kinds:>34s} {1e3 * r['compile_s_median']:5.0f}",
                  flush=True)


# ------------------------------------------------------------------------------------------ accuracy


def train_one(args: argparse.Namespace, lr: float, out_dir: Path) -> dict[str, Any]:
    """`xbarforge train vit_cifar` into out_dir (resumed from its checkpoint; reused when done)."""
    cmd = [str(ROOT / ".venv" / "bin" / "xbarforge"), "train", RECIPE["model"], "--data", "cifar10", "--data-root",
           args.data_root, "--optimizer", RECIPE["optimizer"], "--lr", str(lr), "--weight-decay",
           str(RECIPE["weight_decay"]), "--batch-size", str(RECIPE["batch_size"]), "--epochs", str(args.epochs),
           "--seed", str(RECIPE["seed"]), "--out", str(out_dir.relative_to(ROOT))]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    ran: dict[str, Any] = {"ran_here": False, "note": "model.pt was already there (trained earlier by this command,"
                                                     " resumable from its checkpoint); time_s is its training time"}
    if not (out_dir / "model.pt").exists():
        log("$ " + " ".join(cmd[1:]))
        c0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ran = {"ran_here": True, "wall_s": time.perf_counter() - t0,
               "cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)}
    m = load(out_dir / "metrics.json")
    return {"lr": lr, "out": str(out_dir.relative_to(ROOT)), "command": " ".join(["xbarforge", *cmd[1:]]), **ran,
            **{k: m.get(k) for k in ("epochs", "val_accuracy", "test_accuracy", "time_s", "time_per_epoch_s",
                                     "device_name", "threads", "seed", "recipe")},
            "val_history": [h.get("val_accuracy") for h in m.get("history", [])]}


def train_section(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for i, lr in enumerate(args.lrs):
        base = "vit_cifar-smoke" if args.limit else "vit_cifar"
        runs.append(train_one(args, lr, RUNS / (base if i == 0 else f"{base}-lr{lr:g}")))
        r = runs[-1]
        log(f"vit_cifar lr {lr:g}: val {r['val_accuracy']:.4f} after {r['epochs']} epochs ({r['time_s']:.0f} s)")
    best = max(runs, key=lambda r: r["val_accuracy"])  # chosen on validation only
    return {"recipe": RECIPE, "epochs": args.epochs, "candidates": runs, "chosen": best["out"],
            "chosen_by": "final validation accuracy", "val_accuracy": best["val_accuracy"],
            "test_accuracy": best["test_accuracy"], "limit": args.limit}


def eval_data(args: argparse.Namespace, model_dir: Path) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    from xbarforge.data.from_model import evaluation_tensors, model_dataset
    from xbarforge.train import load_model

    model, meta = load_model(model_dir / "model.pt", device="cpu")
    data = model_dataset(meta, "cifar10", args.data_root, str(model_dir))
    n = args.limit or args.test_images
    full = len(data.test)
    x, y, calib = evaluation_tensors(data, "test", n if n < full else None, CALIBRATION)
    info = {"test_images": len(y), "test_split_size": full,
            "test_subset": None if len(y) == full else "randperm(seed 0) of the test split, sorted",
            "calibration": f"{len(calib)} validation images, randperm(seed 0)"}
    return model, x, y, calib, info


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
    v, w = doc["vector_unit"]["isaac"], doc["vector_unit"]["rnc-paper"]
    lines += ["", f"Vector unit as the presets assume it: {v['vector_macs_per_ns']:g} MACs/ns on `isaac`,"
              f" {w['vector_macs_per_ns']:g} on `rnc-paper` (no source models one; `docs/transformers.md`)."]
    xi, xr = doc["cost/vit_tiny/isaac/crossbar"]["isaac-like"], doc["cost/vit_tiny/rnc-paper/crossbar"]["isaac-like"]
    di, dr = doc["cost/vit_tiny/isaac/digital"]["isaac-like"], doc["cost/vit_tiny/rnc-paper/digital"]["isaac-like"]
    lines.append(f"Attention's products on crossbars written at run time instead (ViT-Tiny, isaac-like):"
                 f" {xi['latency_ns']['1'] / 1e6:.1f} ms against {di['latency_ns']['1'] / 1e6:.1f} ms on `isaac`"
                 f" (write-and-verify of 100 ns pulses), {xr['latency_ns']['1'] / 1e6:.2f} ms against"
                 f" {dr['latency_ns']['1'] / 1e6:.2f} ms on `rnc-paper` (10 ns pulses).")
    keys = [f"accuracy/{p}/{v:g}" for p in PRESETS for v in VARIATIONS]
    if "train" in doc and all(k in doc for k in keys):
        t, a = doc["train"], doc["accuracy_data"]
        chosen = next(c for c in t["candidates"] if c["out"] == t["chosen"])
        lines += ["", f"Accuracy: `vit_cifar` trained here for {t['epochs']} epochs on CIFAR-10 (AdamW, lr"
                  f" {chosen['lr']:g}, {chosen['time_s'] / 60:.0f} min on {doc['machine']['cpus']} cores):"
                  f" {100 * t['test_accuracy']:.2f}% test. On chips with {ADC_BITS}-bit ADCs,"
                  f" {doc['settings']['chips']} instances each, {a['test_images']:,} test images (mean ± std, %):",
                  "", "| variation | " + " | ".join(f"`{p}`" for p in PRESETS) + " |", "|---|" + "---|" * len(PRESETS)]
        for var in VARIATIONS:
            cells = [f"{100 * doc[f'accuracy/{p}/{var:g}']['chip_mean']:.1f}"
                     f" ± {100 * doc[f'accuracy/{p}/{var:g}']['chip_std']:.1f}" for p in PRESETS]
            lines.append(f"| {100 * var:.0f}% | " + " | ".join(cells) + " |")
        q = ", ".join(f"`{p}` {100 * doc[f'accuracy/{p}/0']['quantized_accuracy']:.1f}%" for p in PRESETS)
        lines += ["", f"(quantized, ideal devices: {q})"]
    lines += ["", END]
    return "\n".join(lines)


def write_readme(doc: dict[str, Any]) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:begin] + markdown(doc) + text[end:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--epochs", type=int, default=8, help="training epochs for vit_cifar (default 8)")
    ap.add_argument("--lrs", type=lambda s: [float(v) for v in s.split(",")], default=[1e-3],
                    help="AdamW peak learning rates to try, comma-separated; the best on validation is kept")
    ap.add_argument("--test-images", type=int, default=10_000, help="test images scored (default: all)")
    ap.add_argument("--limit", type=int, help="smoke run: N images per split, 1 epoch, 2 chips, separate output")
    ap.add_argument("--skip-accuracy", action="store_true", help="the cost section only (no training)")
    ap.add_argument("--fresh", action="store_true", help="recompute every section")
    ap.add_argument("--readme", action="store_true", help="also rewrite the README's transformer figures from the file")
    args = ap.parse_args()
    out = SMOKE_OUT if args.limit else OUT
    if args.limit:
        args.epochs = 1
    chips = 2 if args.limit else CHIPS
    torch.manual_seed(0)
    doc = {} if args.fresh else load(out)
    if doc.get("schema") != SCHEMA:
        doc = {}
    doc.update({
        "benchmark": "transformer_bench", "schema": SCHEMA, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "processor": platform.processor(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "settings": {"samples": SAMPLES, "num_classes": NUM_CLASSES, "compile_repeats": REPEAT,
                     "compile_budgets": {"compiled, no budget": "compile_graph(crossbars=None): the preset's chip"
                                         " budget (hw.chip.budget) when it has one, else unbudgeted",
                                         "compiled, 2x fewest": "2 x min_crossbars(graph, hw)"},
                     "objective": "balanced over k = 1, 64", "schedule": "chain",
                     "time_split": "k = 1 latency (chain: every layer and stage in turn), digital stages rounded"
                                   " up to the latency model's tick (mvm_ns / 64)",
                     "energy_split": "per-inference energy by layer/stage row; leakage is chip-wide over the"
                                     " k = 64 schedule's period",
                     "variations": list(VARIATIONS), "adc_bits": ADC_BITS, "chips": chips, "mode": "fast",
                     "seeds": "torch.manual_seed(0); chip k programmed and read with seed k; calibration and"
                              " test subsets randperm seed 0; training seed 0", "limit": args.limit},
        "seed": 0,
    })
    started, cpu0 = time.perf_counter(), time.process_time()

    # 1. cost
    doc.setdefault("vector_unit", {})
    for preset in PRESETS:
        doc["vector_unit"][preset] = vector_unit(load_hardware(preset))
    for name, shape in MODELS.items():
        for preset in PRESETS:
            for attention in (("digital", "crossbar") if name == "vit_tiny" else ("digital",)):
                key = f"cost/{name}/{preset}/{attention}"
                if key not in doc:
                    log(f"cost {name} on {preset}, attention {attention} ...")
                    t0, c0 = time.perf_counter(), time.process_time()
                    doc[key] = cost_case(name, shape, preset, attention)
                    doc[key].update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
                    save(doc, out)
    print_cost(doc)

    # 2. accuracy
    if not args.skip_accuracy:
        if "train" not in doc:
            doc["train"] = train_section(args)
            save(doc, out)
        tr = doc["train"]
        log(f"vit_cifar ({tr['chosen']}): val {tr['val_accuracy']:.4f}, float test {tr['test_accuracy']:.4f}")
        model, x, y, calib, info = eval_data(args, ROOT / tr["chosen"])
        doc["accuracy_data"] = info
        cache: dict[Any, Any] = {}
        for preset in PRESETS:
            for variation in VARIATIONS:
                key = f"accuracy/{preset}/{variation:g}"
                if key not in doc:
                    log(f"simulate {preset} variation {variation:.0%}, {chips} chips on {len(y)} test images ...")
                    hw = load_hardware(preset, **{"precision.adc_bits": ADC_BITS, "nonideal.variation": variation})
                    t0, c0 = time.perf_counter(), time.process_time()
                    rep = simulate_accuracy(model, hw, x, y, calibration=calib, chips=chips, reference_cache=cache)
                    doc[key] = {"hardware": preset, "variation": variation, "adc_bits": ADC_BITS, **rep.to_dict(),
                                "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
                    save(doc, out)
                r = doc[key]
                log(f"{preset:9s} variation {variation:4.0%}: float {r['float_accuracy']:.4f}  quantized"
                    f" {r['quantized_accuracy']:.4f}  chips {r['chip_mean']:.4f} ± {r['chip_std']:.4f}")
    doc["last_run"] = {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu0}
    save(doc, out)
    log(f"wrote {out.relative_to(ROOT)}")
    if args.readme and not args.limit:
        write_readme(doc)
        log("rewrote the README's transformer figures")
    return 0



if __name__ == "__main__":
    raise SystemExit(main())

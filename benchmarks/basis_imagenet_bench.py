"""BasisN at ImageNet scale against the strongest reprogramming schedule the compiler builds (cost only).

For zoo resnet18, resnet34, resnet50 and densenet121 at 3x224x224 with 1000 classes, on the `isaac`
preset (the BasisN benchmark's chip) and on `rnc-paper`:

* crossbar counts C of 1/64, 1/32, 1/16, 1/8 and 1/4 of the crossbars one copy of the model needs
  (`min_crossbars`), each rounded to the nearest multiple of the group size P that the CLI's default
  rule (`default_group_crossbars`) asks for (the smallest group holding half a crossbar's rows of
  vectors: P = 5 on isaac, 1 on rnc-paper), so that every point has the same P and G = C / P groups;
* BasisN (`basis_cost`, 4-bit coefficients, `plan_basis`'s round-robin units) against
  reprogramming the same C crossbars between rounds (`reprogram_cost`: the compiler's rounds,
  writes inside the latency), at batch 1 and batch 64.

The baseline is the strongest of four reprogramming mappings, priced by `reprogram_cost(...,
mapping=...)`: the compiler's own (`compile_graph`, which for a model larger than the chip is
`rounds_mapping(partition="optimal")`: the best of the dynamic-programming partition, naive rounds
and isaac-like rounds by the latency model, writes included, built for that batch), the same with
the `dag` schedule, and `naive` / `isaac-like` rounds alone. Cycles and EDP ratios are taken
against the candidate best in that figure; every candidate's figures are stored.

Also recorded per point: rounds and crossbars written per batch and per inference, the share of
the baseline's time spent writing, where BasisN's time goes (analog crossbar reads or the digital
coefficient unit: per-layer `bound`, the batch period's bound), and the seconds each pricing took.
A sensitivity section reruns the 1/16 point with every crossbar of a round written at once
(`reprogram.crossbars_written_together` = C), the write setting most favourable to reprogramming.

Every point is stored as soon as it is done and reused on a rerun (--fresh redoes everything);
--docs rewrites the generated block of docs/basis.md ("ImageNet scale") from the result file
(--docs-only: without running anything).
Run: .venv/bin/python benchmarks/basis_imagenet_bench.py [--fresh] [--docs] [--models resnet18,...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from xbarforge.basis import default_group_crossbars, plan_basis
from xbarforge.basis.cost import basis_cost, reprogram_cost
from xbarforge.compiler.compile import compile_graph, min_crossbars
from xbarforge.compiler.rounds import rounds_mapping
from xbarforge.cost.reprogram import crossbar_write_ns
from xbarforge.graph import capture
from xbarforge.hardware import load_hardware, override
from xbarforge.hardware.loader import with_overrides

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "basis_imagenet_bench.json"
PLOT = ROOT / "benchmarks" / "results" / "basis_imagenet_bench.png"
DOCS = ROOT / "docs" / "basis.md"
MODELS = ("resnet18", "resnet34", "resnet50", "densenet121")
HARDWARE = ("isaac", "rnc-paper")
FRACTIONS = (64, 32, 16, 8, 4)  # C = min_crossbars / f
BATCHES = (1, 64)
COEFF_BITS = 4
INPUT = (3, 224, 224)
CLASSES = 1000
SENSITIVITY_FRACTION = 16
SENSITIVITY_TOGETHER = (8,)  # crossbars written at a time in the sensitivity section (and all of a round)
UNIT_SIZED_FOR = 36  # crossbars the presets' coefficient unit was sized for (docs/basis.md, "Constants and sources")
CANDIDATES = ("compiler", "compiler-dag", "naive", "isaac-like")
SETTINGS = {"models": list(MODELS), "hardware": list(HARDWARE), "fractions": [f"1/{f}" for f in FRACTIONS],
            "batches": list(BATCHES), "coeff_bits": COEFF_BITS, "input_shape": list(INPUT), "num_classes": CLASSES,
            "group_rule": "default_group_crossbars (CLI `basis compare` default), C rounded to a multiple of it",
            "baseline_candidates": list(CANDIDATES), "sensitivity_fraction": f"1/{SENSITIVITY_FRACTION}",
            "sensitivity_crossbars_written_together": [*SENSITIVITY_TOGETHER, "all of a round"],
            "scaled_unit": f"digital.coeff_macs_per_ns and coeff_unit_um2 x max(1, C / {UNIT_SIZED_FOR})",
            "seed": 0}


def load() -> dict[str, Any]:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def save(doc: dict[str, Any]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


def group_size(hw: Any) -> int:
    """The P the CLI's default rule aims for: the smallest group holding half a crossbar's rows of vectors."""
    return default_group_crossbars(hw, math.factorial(12))  # divisible by every P from 1 to 12


def crossbar_count(need: int, fraction: int, p: int) -> int:
    """need / fraction rounded to the nearest multiple of P (at least P)."""
    return max(p, int(need / fraction / p + 0.5) * p)


def candidate_mappings(graph: Any, hw: Any, c: int, batch: int, fewest: int) -> dict[str, Any]:
    return {
        "compiler": compile_graph(graph, hw, crossbars=c, samples=(batch,)),
        "compiler-dag": compile_graph(graph, hw, crossbars=c, samples=(batch,), schedule="dag"),
        "naive": rounds_mapping(graph, hw, c, [batch], "chain", 0, fewest, partition="naive"),
        "isaac-like": rounds_mapping(graph, hw, c, [batch], "chain", 0, fewest, partition="isaac-like"),
    }


def _reprogram_summary(r: Any, label: str) -> dict[str, Any]:
    return {"label": label, "rounds": r.rounds, "crossbars_used": r.crossbars_used,
            "crossbars_written_per_batch": sum(r.round_crossbars),
            "crossbars_written_per_inference": r.crossbars_written_per_inference,
            "cycles_per_inference": r.cycles_per_inference, "latency_ns": r.latency_ns, "energy_pj": r.energy_pj,
            "edp": r.edp, "write_ns": r.write_ns, "compute_ns": r.compute_ns,
            "write_share_of_time": r.write_ns / r.batch_latency_ns if r.batch_latency_ns else 0.0,
            "energy_by_component_pj": r.energy_by_component_pj}


def _basis_summary(b: Any) -> dict[str, Any]:
    d = b.to_dict()
    layers = d.pop("layers")
    analog = sum(lr["analog_ns"] for lr in layers)
    digital = sum(lr["digital_ns"] for lr in layers)
    digital_time = sum(lr["time_ns"] for lr in layers if lr["bound"] == "digital")
    group_reads_ns = b.period_ns if b.period_ns > digital else None
    d["time_split"] = {
        "analog_ns_per_sample": analog,  # crossbar steps x mvm_ns, summed over layers
        "digital_ns_per_sample": digital,  # coefficient MACs / MACs per ns, summed over layers
        "layers": len(layers),
        "digital_bound_layers": sum(lr["bound"] == "digital" for lr in layers),
        "first_sample_share_in_digital_bound_layers": digital_time / b.first_latency_ns,
        "period_bound": "analog" if group_reads_ns is not None else "digital",
    }
    # where the per-inference latency goes: B = 1 is the first sample alone, larger batches mostly the period
    d["bound"] = (("digital" if digital_time > b.first_latency_ns / 2 else "analog") if b.batch == 1
                  else d["time_split"]["period_bound"])
    return d


def scaled_unit(hw: Any, c: int) -> Any:
    """`hw` with the coefficient unit grown with the chip: the presets' unit keeps up with ResNet-20 on
    36 crossbars; a chip of C crossbars gets C / 36 times its MAC throughput and area."""
    k = max(1.0, c / UNIT_SIZED_FOR)
    return with_overrides(hw, {"digital.coeff_macs_per_ns": hw.digital.coeff_macs_per_ns * k,
                               "digital.coeff_unit_um2": hw.digital.coeff_unit_um2 * k})


def point(graph: Any, hw: Any, c: int, p: int, fewest: int, fraction: int) -> dict[str, Any]:
    """BasisN and the strongest reprogramming baseline on C crossbars, batches 1 and 64."""
    t = time.perf_counter()
    layout = plan_basis(graph, hw, c, p)
    big = scaled_unit(hw, c)
    plan_s = time.perf_counter() - t
    row: dict[str, Any] = {"crossbars": c, "nominal_fraction": f"1/{fraction}", "fraction_of_one_copy": c / fewest,
                           "group_crossbars": layout.group_crossbars, "groups": layout.groups,
                           "vectors_per_group": layout.vectors_per_group,
                           "basis_fraction_of_weights": layout.basis_fraction, "model_weights": layout.model_weights,
                           "coefficients": layout.total_coefficients,
                           "coefficient_bytes": layout.total_coefficients * COEFF_BITS / 8,  # on-chip, not in the area
                           "plan_seconds": plan_s, "batches": {}}
    for batch in BATCHES:
        t = time.perf_counter()
        b = basis_cost(layout, graph, hw, COEFF_BITS, batch)
        basis_s = time.perf_counter() - t
        t = time.perf_counter()
        own = reprogram_cost(graph, hw, c, batch)  # what `basis compare` prices: the compiler's mapping
        own_s = time.perf_counter() - t
        t = time.perf_counter()
        cands = {}
        for label, m in candidate_mappings(graph, hw, c, batch, fewest).items():
            cands[label] = _reprogram_summary(reprogram_cost(graph, hw, c, batch, mapping=m), label)
        cand_s = time.perf_counter() - t
        same = cands["compiler"]["cycles_per_inference"] / own.cycles_per_inference
        assert abs(same - 1) <= 1e-9, "the compiler's mapping priced twice must agree"
        best_cycles = min(cands.values(), key=lambda r: r["cycles_per_inference"])
        best_edp = min(cands.values(), key=lambda r: r["edp"])
        bs = _basis_summary(b)
        scaled = basis_cost(layout, graph, big, COEFF_BITS, batch)
        row["batches"][str(batch)] = {
            "basis": bs,
            # the compiler's mapping (what `basis compare` prices) is candidates["compiler"]; its area and EDAP:
            "reprogram": {"area_mm2": own.area_mm2, "edap": own.edap},
            "candidates": cands,
            "baseline_for_cycles": best_cycles["label"],
            "baseline_for_edp": best_edp["label"],
            "ratio": {  # basis / strongest reprogramming (below 1: BasisN is better)
                "cycles": b.cycles_per_inference / best_cycles["cycles_per_inference"],
                "edp": b.edp / best_edp["edp"],
                "energy": b.energy_pj / best_edp["energy_pj"],
                "cycles_vs_compiler": b.cycles_per_inference / own.cycles_per_inference,
                "edp_vs_compiler": b.edp / own.edp,
            },
            "scaled_unit": {"coeff_macs_per_ns": big.digital.coeff_macs_per_ns,
                            "bound": _basis_summary(scaled)["bound"],
                            "cycles_per_inference": scaled.cycles_per_inference, "edp": scaled.edp,
                            "ratio": {"cycles": scaled.cycles_per_inference / best_cycles["cycles_per_inference"],
                                      "edp": scaled.edp / best_edp["edp"]}},
            "seconds": {"basis_cost": basis_s, "reprogram_cost": own_s, "candidates": cand_s},
        }
    return row


def sensitivity(graph: Any, hw: Any, c: int, p: int) -> dict[str, Any]:
    """The same point with crossbars written in parallel: SENSITIVITY_TOGETHER crossbars at a time, and
    every crossbar of a round at once (the write setting most favourable to reprogramming: a round's
    write takes one crossbar's time). Against the compiler's schedule for that setting."""
    out: dict[str, Any] = {"crossbars": c, "settings": {}}
    for together in (*SENSITIVITY_TOGETHER, c):
        fast = override(hw, "reprogram.crossbars_written_together", together)
        layout = plan_basis(graph, fast, c, p)
        rows = {}
        for batch in BATCHES:
            b = basis_cost(layout, graph, fast, COEFF_BITS, batch)
            r = reprogram_cost(graph, fast, c, batch)
            rows[str(batch)] = {"rounds": r.rounds, "write_share_of_time": r.write_ns / r.batch_latency_ns,
                                "ratio": {"cycles": b.cycles_per_inference / r.cycles_per_inference,
                                          "edp": b.edp / r.edp}}
        out["settings"]["all" if together == c else str(together)] = {"crossbars_written_together": together,
                                                                       "batches": rows}
    return out


def pct(x: float) -> str:
    v = 100 * x
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def progress(hw_name: str, model: str, row: dict[str, Any]) -> str:
    parts = []
    for b, r in row["batches"].items():
        best = r["candidates"][r["baseline_for_cycles"]]
        parts.append(f"B={b}: cycles {pct(r['ratio']['cycles'])} % EDP {pct(r['ratio']['edp'])} %"
                     f" ({best['rounds']} rounds, {best['crossbars_written_per_inference']:.0f}"
                     f" xbars written/inf, basis {r['basis']['bound']}-bound"
                     f" ({100 * r['basis']['time_split']['first_sample_share_in_digital_bound_layers']:.0f} % of one"
                     f" sample in digital-bound layers),"
                     f" {1e3 * r['seconds']['basis_cost']:.2f} ms basis /"
                     f" {r['seconds']['reprogram_cost']:.2f} s baseline)")
    return (f"{hw_name:9s} {model:11s} C={row['crossbars']:5d} ({row['nominal_fraction']},"
            f" P={row['group_crossbars']}): " + "; ".join(parts))


# ---- docs block ----------------------------------------------------------------------------------

BEGIN = "<!-- basis_imagenet:begin (generated from benchmarks/results/basis_imagenet_bench.json; do not edit) -->"
END = "<!-- basis_imagenet:end -->"


def _range(xs: list[float]) -> str:
    return f"{pct(min(xs))}-{pct(max(xs))} %"


def markdown(doc: dict[str, Any]) -> str:
    """The docs' ImageNet-scale table and statements, generated from the result file (a test checks they match)."""
    out = [BEGIN, ""]
    rows_all: list[tuple[str, str, dict[str, Any]]] = []
    for hw_name in doc["settings"]["hardware"]:
        chip = doc["results"][hw_name]
        out.append(f"`{hw_name}` ({chip['mvm_ns']:g} ns per MVM, {chip['write_ns_per_crossbar'] / 1e3:g} µs to write a "
                   f"crossbar, P = {chip['group_crossbars']} crossbars per group = {chip['vectors_per_group']} vectors"
                   f" per segment, {doc['settings']['coeff_bits']}-bit coefficients). Ratios are BasisN / the strongest"
                   " reprogramming schedule, whose rounds and crossbars written are shown.")
        out.append("")
        out.append("| model | crossbars (of one copy) | rounds B=1 / 64 | crossbars written per inference B=1 / 64 "
                   "| cycles % B=1 / 64 | EDP % B=1 / 64 | BasisN time in digital-bound layers B=1; period bound B=64 "
                   f"| cycles % B=1 / 64, unit x C/{UNIT_SIZED_FOR} | pricing ms, BasisN / baseline |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for model in doc["settings"]["models"]:
            entry = chip["models"].get(model)
            if not entry:
                continue
            for row in entry["rows"]:
                b1, b64 = row["batches"]["1"], row["batches"]["64"]
                s1, s64 = (r["candidates"][r["baseline_for_cycles"]] for r in (b1, b64))
                basis_ms = 1e3 * sum(r["seconds"]["basis_cost"] for r in (b1, b64)) / 2
                base_ms = 1e3 * sum(r["seconds"]["reprogram_cost"] for r in (b1, b64)) / 2
                share = b1["basis"]["time_split"]["first_sample_share_in_digital_bound_layers"]
                out.append(
                    f"| {model} | {row['crossbars']} ({row['nominal_fraction']}) "
                    f"| {s1['rounds']} / {s64['rounds']} "
                    f"| {s1['crossbars_written_per_inference']:.0f} / {s64['crossbars_written_per_inference']:.0f} "
                    f"| {pct(b1['ratio']['cycles'])} / {pct(b64['ratio']['cycles'])} "
                    f"| {pct(b1['ratio']['edp'])} / {pct(b64['ratio']['edp'])} "
                    f"| {100 * share:.0f} %; {b64['basis']['time_split']['period_bound']} "
                    f"| {pct(b1['scaled_unit']['ratio']['cycles'])} / {pct(b64['scaled_unit']['ratio']['cycles'])} "
                    f"| {basis_ms:.1f} / {base_ms:.0f} |")
                rows_all.append((hw_name, model, row))
        out.append("")
    out.append("Summary (all models and crossbar counts):")
    out.append("")
    for hw_name in doc["settings"]["hardware"]:
        rows = [r for h, _, r in rows_all if h == hw_name]
        for b in ("1", "64"):
            cyc = [r["batches"][b]["ratio"]["cycles"] for r in rows]
            edp = [r["batches"][b]["ratio"]["edp"] for r in rows]
            share = [r["batches"][b]["candidates"][r["batches"][b]["baseline_for_cycles"]]["write_share_of_time"]
                     for r in rows]
            under = sum(x < 0.01 for x in cyc)
            under_edp = sum(x < 0.01 for x in edp)
            few = sum(x <= 0.05 for x in cyc)
            big = [r["batches"][b]["scaled_unit"]["ratio"]["cycles"] for r in rows]
            big_edp = [r["batches"][b]["scaled_unit"]["ratio"]["edp"] for r in rows]
            out.append(f"- `{hw_name}`, batch {b}: cycles {_range(cyc)}, EDP {_range(edp)} of reprogramming; "
                       f"below 1 %: cycles at {under} of {len(rows)} points, EDP at {under_edp}; cycles at most 5 %: "
                       f"{few} of {len(rows)}; writing is {_range(share)} of the baseline's time. With the "
                       f"coefficient unit x C/{UNIT_SIZED_FOR}: cycles {_range(big)}, EDP {_range(big_edp)}.")
    where = []
    for hw_name in doc["settings"]["hardware"]:
        for b in ("1", "64"):
            for key, label in (("cycles", "cycles"), ("edp", "EDP")):
                for model in doc["settings"]["models"]:
                    vals = [r["batches"][b]["ratio"][key] for h, m, r in rows_all if h == hw_name and m == model]
                    below = [v for v in vals if v < 0.01]
                    if below:
                        where.append(f"{label} of {model} on `{hw_name}` at batch {b} ({len(below)} of {len(vals)}"
                                     f" crossbar counts, {_range(below)})")
    out.append("- Below 1 % of reprogramming: " + ("; ".join(where) if where else "nowhere") + "; nowhere else.")
    store = []
    for hw_name in doc["settings"]["hardware"]:
        per = [f"{m} {max(r['coefficient_bytes'] for h, mm, r in rows_all if h == hw_name and mm == m) / 2**20:.1f}"
               for m in doc["settings"]["models"] if any(h == hw_name and mm == m for h, mm, _ in rows_all)]
        store.append(f"`{hw_name}` " + ", ".join(per))
    out.append(f"- Coefficient storage BasisN needs on chip ({doc['settings']['coeff_bits']}-bit, MiB; not in its "
               "area or energy beyond one buffer read per MAC): " + "; ".join(store) + ".")
    basis_ms = [1e3 * r["batches"][b]["seconds"]["basis_cost"] for _, _, r in rows_all for b in ("1", "64")]
    base_s = [r["batches"][b]["seconds"]["reprogram_cost"] for _, _, r in rows_all for b in ("1", "64")]
    wins = {}
    for _, _, r in rows_all:
        for b in ("1", "64"):
            wins[r["batches"][b]["baseline_for_cycles"]] = wins.get(r["batches"][b]["baseline_for_cycles"], 0) + 1
    out.append("- Strongest baseline (fewest cycles) by candidate: "
               + ", ".join(f"{k} {v}" for k, v in sorted(wins.items())) + f" of {2 * len(rows_all)} points.")
    out.append(f"- Pricing time per point and batch: BasisN {min(basis_ms):.2f}-{max(basis_ms):.2f} ms; the baseline "
               f"(compiling the rounds and evaluating them) {1e3 * min(base_s):.0f} ms-{max(base_s):.1f} s.")
    labels = [(str(t), f"{t} crossbars written at a time") for t in SENSITIVITY_TOGETHER]
    labels.append(("all", "every crossbar of a round written at once"))
    for key, label in labels:
        sens = []
        for hw_name in doc["settings"]["hardware"]:
            for model in doc["settings"]["models"]:
                s = doc["results"][hw_name]["models"].get(model, {}).get("sensitivity")
                if s:
                    r = s["settings"][key]["batches"]
                    sens.append(f"{model} on `{hw_name}` ({s['crossbars']}): cycles {pct(r['1']['ratio']['cycles'])}"
                                f" / {pct(r['64']['ratio']['cycles'])} %, EDP {pct(r['1']['ratio']['edp'])} / "
                                f"{pct(r['64']['ratio']['edp'])} %")
        if sens:
            out.append(f"- Sensitivity, 1/{SENSITIVITY_FRACTION} point with {label} (B=1 / B=64, against the "
                       "compiler's schedule for that setting): " + "; ".join(sens) + ".")
    out += ["", END]
    return "\n".join(out)


def write_docs(doc: dict[str, Any]) -> None:
    text = DOCS.read_text()
    begin, end = text.index(BEGIN), text.index(END) + len(END)
    DOCS.write_text(text[:begin] + markdown(doc) + text[end:])


def plot(doc: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hws = doc["settings"]["hardware"]
    fig, axes = plt.subplots(len(hws), 2, figsize=(11, 3.6 * len(hws)), squeeze=False)
    for i, hw_name in enumerate(hws):
        for j, key in enumerate(("cycles", "edp")):
            ax = axes[i][j]
            for k, model in enumerate(doc["settings"]["models"]):
                entry = doc["results"][hw_name]["models"].get(model)
                if not entry:
                    continue
                xs = [r["fraction_of_one_copy"] for r in entry["rows"]]
                for b, style in (("1", "-"), ("64", "--")):
                    ax.plot(xs, [100 * r["batches"][b]["ratio"][key] for r in entry["rows"]], style, marker="o",
                            color=plt.get_cmap("tab10")(k), label=f"{model} B={b}")
            ax.axhline(1, color="grey", lw=0.8, ls=":")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("crossbars / one copy of the model")
            ax.set_ylabel(f"BasisN {key} / reprogramming (%)")
            ax.set_title(f"{hw_name}: {key}")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--hardware", default=",".join(HARDWARE))
    ap.add_argument("--fresh", action="store_true", help="redo every point (default: reuse the stored ones)")
    ap.add_argument("--docs", action="store_true", help="also rewrite the docs/basis.md block from the result file")
    ap.add_argument("--docs-only", action="store_true", help="only rewrite the docs block (no run)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    doc = load()
    if args.docs_only:
        write_docs(doc)
        return 0
    if args.fresh or doc.get("settings") != SETTINGS:
        doc = {}
    doc["settings"] = SETTINGS
    doc["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    doc["ratio_meaning"] = "basis / strongest reprogramming candidate (below 1: BasisN is better)"
    results = doc.setdefault("results", {})
    t_all = time.perf_counter()
    for hw_name in args.hardware.split(","):
        hw = load_hardware(hw_name)
        p = group_size(hw)
        chip = results.setdefault(hw_name, {})
        chip.update({"mvm_ns": hw.mvm_ns, "group_crossbars": p,
                     "vectors_per_group": p * (hw.usable_cols // hw.cols_per_weight),
                     "write_ns_per_crossbar": crossbar_write_ns(hw),
                     "reprogram": hw.reprogram.model_dump(), "digital": hw.digital.model_dump()})
        models = chip.setdefault("models", {})
        for model in args.models.split(","):
            graph = capture(model, INPUT, num_classes=CLASSES)
            fewest = min_crossbars(graph, hw)
            entry = models.setdefault(model, {"min_crossbars": fewest, "rows": []})
            done = {r["crossbars"] for r in entry["rows"]}
            for f in FRACTIONS:
                c = crossbar_count(fewest, f, p)
                assert default_group_crossbars(hw, c) == p, (hw_name, model, c, p)
                if c in done:
                    print(progress(hw_name, model, next(r for r in entry["rows"] if r["crossbars"] == c)) + " [stored]",
                          flush=True)
                    continue
                row = point(graph, hw, c, p, fewest, f)
                entry["rows"].append(row)
                entry["rows"].sort(key=lambda r: r["crossbars"])
                done.add(c)
                save(doc)
                print(progress(hw_name, model, row), flush=True)
            if "sensitivity" not in entry:
                entry["sensitivity"] = sensitivity(graph, hw, crossbar_count(fewest, SENSITIVITY_FRACTION, p), p)
                save(doc)
    doc["run_seconds_this_invocation"] = time.perf_counter() - t_all
    doc["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    save(doc)
    if not args.no_plot:
        plot(doc)
    if args.docs:
        write_docs(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

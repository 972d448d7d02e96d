"""Compiler benchmark: reference check, RNC comparison, the zoo x preset x budget grid, the search's
estimate against the compiler, reprogramming rounds, invariants and the event simulation.

Run `python benchmarks/compile_bench.py` (or `make bench`); it writes
benchmarks/results/compile_bench.json and prints a summary. Every figure the README, docs or an
issue note quotes for the compiler comes from that file. Sections (each can be run alone with
--only NAME):

* reference: SqueezeNet 1.1 (10 classes, 3x64x64) on `rnc-paper`, isaac-like mapping, chain
  schedule: 80 blocks, 55.3% utilization, 2722 cycles, 415.8 us for 1 sample, 1443.6 us for 8
  (DESIGN.md).
* rnc: speedups over the isaac-like mapping at 60/80/100 crossbars for k = 1/8/64 against what the
  RNC research code reaches, fast and thorough effort; one mapping per budget (objective
  "balanced" over k = 1, 8, 64) and one mapping per k (objective "latency" for k = 1, else
  "throughput" for that k). Utilization of the crossbars used is reported next to RNC's.
* grid: every zoo model at its natural input (ImageNet models at 3x224x224) on rnc-paper, isaac and
  edge at 1x, 1.5x, 2x and 4x its isaac-like crossbar count, fast effort, capture cached: compile
  time (first call, and the median of repeats once each layer shape's frontier is cached, as in a
  search loop), speedups at k = 1/8/64, achieved / bound throughput (cost.bounds), latency
  monotone in the budget.
* demo: the `make demo` job (mobilenetv3_small 3x64x64 on edge): achieved / bound throughput.
* estimate: 50 random MobileNetV3-small sub-nets (rnc-paper, 3x64x64) at 0.8x/1x/1.2x the largest
  sub-net's isaac-like count: `compiler.estimate` against the compiled mapping's latency (k = 1, 8),
  Spearman, time per estimate.
* rounds: resnet50 (3x224x224) on rnc-paper at 300 crossbars and on isaac at 1/8 of its isaac-like
  count: latency with writes for the partitioned rounds, naive layer-order rounds and isaac-like
  rounds, k = 1 and 64.
* checks: on the grid's models small enough to expand (every block listed), every weight of every
  copy placed once and no two blocks overlapping; `Mapping.execute` equal to torch on small models;
  the event simulation equal to the analytic latency (k = 1, 8, 64) on the grid's small cells.
* onnx: ONNX exports of zoo models compile to the same numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import xbarforge
from xbarforge.compiler.compile import compile_graph, isaac_like, min_crossbars
from xbarforge.compiler.estimate import estimate
from xbarforge.compiler.execute import check_coverage, execute_model, reference_forward
from xbarforge.compiler.frontier import clear_cache
from xbarforge.compiler.rounds import rounds_mapping
from xbarforge.cost.event_sim import simulate
from xbarforge.cost.latency import mapping_timing
from xbarforge.cost.model import evaluate
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware
from xbarforge.search.registry import create_space
from xbarforge.zoo import create_model, default_input_shape, list_models

RESULTS = Path(__file__).parent / "results" / "compile_bench.json"
RNC = {  # speedup over isaac-like for k = 1 / 8 / 64 and utilization of the budget (RNC research code)
    60: {"1": 3.72, "8": 4.65, "64": 4.45, "utilization": 0.865},
    80: {"1": 5.96, "8": 6.70, "64": 6.27, "utilization": 0.794},
    100: {"1": 7.71, "8": 8.37, "64": 9.01, "utilization": 0.749},
}
SAMPLES = [1, 8, 64]
SQ = ("squeezenet1_1", (3, 64, 64))
PRESETS = ("rnc-paper", "isaac", "edge")
FACTORS = (1.0, 1.5, 2.0, 4.0)
RESNET18_WEIGHTS = 11_689_512  # models up to this many weights have the 0.1 s target, larger ones 0.5 s
EXPAND_LIMIT = 30_000  # blocks: cells with more are not expanded for the invariant check


def log(msg: str) -> None:
    """Progress as plain timestamped lines (a terminal and a log file read the same)."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def reference() -> dict:
    hw = load_hardware("rnc-paper")
    g = capture(*SQ)
    base = isaac_like(g, hw)
    t = mapping_timing(base)
    doc = evaluate(base, hw, (1, 8))
    out = {
        "blocks": len(base.blocks),
        "utilization": doc["utilization_used"],
        "cycles_1": t.cycles(1),
        "latency_us_1": t.cycles(1) * hw.mvm_ns / 1e3,
        "latency_us_8": t.cycles(8) * hw.mvm_ns / 1e3,
    }
    out["ok"] = (out["blocks"] == 80 and round(out["utilization"], 3) == 0.553 and out["cycles_1"] == 2722
                 and round(out["latency_us_1"], 1) == 415.8 and round(out["latency_us_8"], 1) == 1443.6)
    return out


def _entry(report: dict) -> dict:
    return {
        "speedup": {k: round(v, 3) for k, v in report["speedup"].items()},
        "crossbars_used": report["crossbars_used"],
        "utilization_used": round(report["utilization_used"], 4),
        "utilization_budget": round(report["utilization"], 4),
        "throughput_bound_ratio": report["throughput_bound_ratio"],
        "plan": report.get("plan"),
        "compile_ms": round(report["compile_seconds"] * 1e3, 2),
    }


def rnc_comparison() -> dict:
    """Per budget and effort: one mapping for k = 1, 8, 64 together, and one mapping per k."""
    hw = load_hardware("rnc-paper")
    g = capture(*SQ)
    out: dict = {}
    for budget, target in RNC.items():
        out[str(budget)] = {"rnc": target}
        for effort in ("fast", "thorough"):
            one = _entry(xbarforge.compile(g, hw, crossbars=budget, samples=SAMPLES, effort=effort).report)
            per_k = {}
            for k in SAMPLES:
                rep = xbarforge.compile(g, hw, crossbars=budget, samples=[k], effort=effort,
                                        objective="latency" if k == 1 else "throughput").report
                per_k[str(k)] = _entry(rep)
            best = {k: per_k[k]["speedup"][k] for k in per_k}
            out[str(budget)][effort] = {
                "one_mapping": {**one, "beats_rnc": {k: one["speedup"][k] > target[k] for k in ("1", "8", "64")}},
                "mapping_per_k": per_k,
                "per_k_beats_rnc": {k: best[k] > target[k] for k in best},
            }
            log(f"rnc {budget} crossbars {effort}: one mapping {one['speedup']}, per k {best} (RNC {target})")
    return out


def _weights(graph: Any) -> int:
    return sum(layer.rows_per_group * layer.cols_per_group * layer.groups for layer in graph.mvm_layers)


def _timed(graph: Any, hw: Any, budget: int, repeat: int) -> tuple[Any, float, float, float]:
    """(mapping, first call s, median warm s, median warm CPU s): frontiers cleared before the first."""
    clear_cache()
    t0 = time.perf_counter()
    m = xbarforge.compile(graph, hw, crossbars=budget, samples=SAMPLES)
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        m = xbarforge.compile(graph, hw, crossbars=budget, samples=SAMPLES)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return m, first, statistics.median(walls), statistics.median(cpus)


def _per_k(graph: Any, hw: Any, budget: int) -> dict:
    """One mapping per k (latency objective for k = 1, throughput for k = 8 and 64): its latency, and
    for k = 64 its throughput against the bound."""
    out: dict = {}
    for k in SAMPLES:
        r = xbarforge.compile(graph, hw, crossbars=budget, samples=[k],
                              objective="latency" if k == 1 else "throughput").report
        out[str(k)] = {"latency_ns": r["latency_ns"][str(k)], "speedup": round(r["speedup"][str(k)], 3)}
        if k == max(SAMPLES):
            out[str(k)]["throughput_bound_ratio"] = r["throughput_bound_ratio"]
    return out


def grid(repeat: int, models: list[str]) -> dict:
    cells: dict[str, dict] = {}
    for name in models:
        shape = default_input_shape(name)
        graph = capture(name, shape)
        weights = _weights(graph)
        for preset in PRESETS:
            hw = load_hardware(preset)
            base = isaac_like(graph, hw).crossbars_used
            previous: dict | None = None
            previous_k: dict | None = None
            for f in FACTORS:
                budget = int(base * f)
                m, first, warm, cpu = _timed(graph, hw, budget, repeat)
                r = m.report
                lat = r["latency_ns"]
                mono = previous is None or all(lat[k] <= previous[k] * (1 + 1e-9) for k in lat)
                previous = lat
                per_k = _per_k(graph, hw, budget)
                mono_k = previous_k is None or all(per_k[k]["latency_ns"] <= previous_k[k]["latency_ns"] * (1 + 1e-9)
                                                   for k in per_k)
                previous_k = per_k
                cells[f"{name}@{preset}@{f}x"] = {
                    "model": name, "preset": preset, "factor": f, "budget": budget, "weights": weights,
                    "isaac_like_crossbars": base, "crossbars_used": r["crossbars_used"],
                    "compile_s_first": round(first, 4), "compile_s_median": round(warm, 4),
                    "compile_cpu_s_median": round(cpu, 4),
                    "speedup": {k: round(v, 3) for k, v in r["speedup"].items()},
                    "period_cycles": r["period_cycles"], "bound_cycles": r["period_bound_cycles"],
                    "throughput_bound_ratio": r["throughput_bound_ratio"],
                    "monotone_vs_smaller_budget": mono, "plan": r.get("plan", {}).get("label"),
                    "mapping_per_k": per_k, "per_k_monotone_vs_smaller_budget": mono_k,
                    "expanded_blocks": len(m.blocks) if sum(run.instances for run in m.runs) < EXPAND_LIMIT else None,
                }
                c = cells[f"{name}@{preset}@{f}x"]
                log(f"grid {name}@{preset} {f}x: {warm * 1e3:.0f} ms (first {first * 1e3:.0f}), speedup "
                    f"{c['speedup']}, bound {c['throughput_bound_ratio']:.2f} (throughput mapping "
                    f"{per_k['64']['throughput_bound_ratio']:.2f}){'' if mono else ', balanced not monotone'}"
                    f"{'' if mono_k else ', per-k NOT MONOTONE'}")
    return {"cells": cells, "summary": _grid_summary(cells)}


def _grid_summary(cells: dict[str, dict]) -> dict:
    small = [c for c in cells.values() if c["weights"] <= RESNET18_WEIGHTS]
    large = [c for c in cells.values() if c["weights"] > RESNET18_WEIGHTS]
    by_model: dict[str, list[float]] = defaultdict(list)
    growth = {}
    for c in cells.values():
        by_model[c["model"]].append(c["compile_s_median"])
    for key in {(c["model"], c["preset"]) for c in cells.values()}:
        t = {c["factor"]: c["compile_s_median"] for c in cells.values() if (c["model"], c["preset"]) == key}
        growth[f"{key[0]}@{key[1]}"] = round(t[4.0] / t[1.0], 2)
    ratios = [c["throughput_bound_ratio"] for c in cells.values()]
    tput = [c["mapping_per_k"]["64"]["throughput_bound_ratio"] for c in cells.values()]
    at15 = [c for c in cells.values() if c["factor"] >= 1.5]
    return {
        "cells": len(cells),
        "median_compile_s_up_to_resnet18": round(statistics.median(c["compile_s_median"] for c in small), 4),
        "median_compile_s_larger": round(statistics.median(c["compile_s_median"] for c in large), 4) if large else None,
        "max_compile_s": max(c["compile_s_median"] for c in cells.values()),
        "cells_above_1s": [k for k, c in cells.items() if c["compile_s_median"] > 1.0],
        "compile_growth_4x_over_1x": {"median": statistics.median(growth.values()), "max": max(growth.values()),
                                       "per_model": growth},
        "speedup_64_min_at_1_5x_or_more": min(c["speedup"]["64"] for c in at15),
        "cells_at_1_5x_or_more_with_speedup_64_le_1_5": [k for k, c in cells.items()
                                                          if c["factor"] >= 1.5 and c["speedup"]["64"] <= 1.5],
        "cells_below_1": [k for k, c in cells.items() if min(c["speedup"].values()) < 1.0 - 1e-9],
        "balanced_not_monotone": [k for k, c in cells.items() if not c["monotone_vs_smaller_budget"]],
        "per_k_not_monotone": [k for k, c in cells.items() if not c["per_k_monotone_vs_smaller_budget"]],
        "bound_ratio_balanced": {"min": min(ratios), "median": statistics.median(ratios)},
        "bound_ratio_throughput_mapping": {"min": min(tput), "median": statistics.median(tput)},
        "cells_below_half_bound_throughput_mapping": [k for k, c in cells.items()
                                                      if c["mapping_per_k"]["64"]["throughput_bound_ratio"] < 0.5],
    }


def demo() -> dict:
    hw = load_hardware("edge")
    m = xbarforge.compile("mobilenetv3_small", hw, input_shape=(3, 64, 64), samples=SAMPLES)
    r = m.report
    return {"budget": r["crossbars_budget"], "crossbars_used": r["crossbars_used"], "period_cycles": r["period_cycles"],
            "bound_cycles": r["period_bound_cycles"], "throughput_bound_ratio": r["throughput_bound_ratio"],
            "speedup": r["speedup"], "compile_s": r["compile_seconds"]}


def estimate_vs_compile(networks: int) -> dict:
    hw = load_hardware("rnc-paper")
    space = create_space("mbv3-small", resolution=64)
    rng = np.random.default_rng(0)
    largest = space.layer_graph(space.decode(space.largest()))
    ref = isaac_like(largest, hw).crossbars_used
    graphs = [space.layer_graph(space.decode(space.sample(rng))) for _ in range(networks)]
    out: dict = {"isaac_like_of_largest": ref, "budgets": {}}
    for f in (0.8, 1.0, 1.2):
        budget = int(ref * f)
        est, real, times = {1: [], 8: []}, {1: [], 8: []}, []
        fits = 0
        for g in graphs:
            t0 = time.perf_counter()
            e = estimate(g, hw, budget, (1, 8))
            times.append(time.perf_counter() - t0)
            if not e.fits:
                continue
            fits += 1
            m = compile_graph(g, hw, crossbars=budget, samples=[1, 8], objective="throughput")
            t = mapping_timing(m)
            for k in (1, 8):
                est[k].append(e.cycles[k])
                real[k].append(t.cycles(k))
        row: dict = {"budget": budget, "networks_that_fit": fits,
                     "ms_per_estimate_median": round(statistics.median(times) * 1e3, 2),
                     "ms_per_estimate_p95": round(float(np.percentile(times, 95)) * 1e3, 2)}
        from scipy.stats import spearmanr

        for k in (1, 8):
            ratio = [a / b for a, b in zip(est[k], real[k], strict=True)]
            row[f"k{k}"] = {"max_relative_error": round(max(abs(r - 1) for r in ratio), 6) if ratio else None,
                            "spearman": float(spearmanr(est[k], real[k])[0]) if len(ratio) > 2 else None}
        out["budgets"][f"{f}x"] = row
        log(f"estimate {f}x ({budget} crossbars): {row}")
    return out


def rounds() -> dict:
    out = {}
    g = capture("resnet50", (3, 224, 224))
    for preset, budget in (("rnc-paper", 300), ("isaac", None)):
        hw = load_hardware(preset)
        base = isaac_like(g, hw).crossbars_used
        budget = budget or base // 8
        fewest = min_crossbars(g, hw)
        row: dict = {"budget": budget, "isaac_like_crossbars": base, "fewest_crossbars": fewest, "k": {}}
        for k in (1, 64):
            per = {}
            for part in ("optimal", "naive", "isaac-like"):
                t0 = time.perf_counter()
                m = rounds_mapping(g, hw, budget, [k], "chain", 0, fewest, partition=part)
                secs = time.perf_counter() - t0
                t = mapping_timing(m)
                per[part] = {"rounds": m.rounds, "latency_ms": t.cycles(k) * hw.mvm_ns / 1e6,
                             "write_ms": sum(t.write_cycles) * hw.mvm_ns / 1e6, "plan": m.report["plan"]["label"],
                             "crossbars_written": sum(m.round_crossbars().values()), "seconds": round(secs, 3)}
            per["speedup_over_naive"] = per["naive"]["latency_ms"] / per["optimal"]["latency_ms"]
            per["speedup_over_isaac_like_rounds"] = per["isaac-like"]["latency_ms"] / per["optimal"]["latency_ms"]
            row["k"][str(k)] = per
            log(f"rounds resnet50@{preset} {budget} crossbars k={k}: optimal {per['optimal']['latency_ms']:.2f} ms "
                f"({per['optimal']['rounds']} rounds) vs naive {per['naive']['latency_ms']:.2f} ms")
        out[preset] = row
    return out


def _overlaps(m: Any, rows: int, cols: int) -> int:
    """Blocks that leave their crossbar or share a cell with another block of the same round."""
    bad = 0
    by: dict[tuple[int, int], list] = defaultdict(list)
    for b in m.blocks:
        if b.row_offset < 0 or b.col_offset < 0 or b.row_offset + b.height > rows or b.col_offset + b.width > cols:
            bad += 1
        by[(b.round, b.crossbar)].append((b.row_offset, b.row_offset + b.height, b.col_offset, b.col_offset + b.width))
    for rects in by.values():
        for i, a in enumerate(rects):
            bad += sum(a[0] < o[1] and o[0] < a[1] and a[2] < o[3] and o[2] < a[3] for o in rects[i + 1:])
    return bad


def checks(grid_cells: dict[str, dict]) -> dict:
    out: dict = {"invariants": {}, "event_sim": {}, "execute": {}}
    for key, c in grid_cells.items():
        if c["expanded_blocks"] is None:
            continue
        hw = load_hardware(c["preset"])
        g = capture(c["model"], default_input_shape(c["model"]))
        m = compile_graph(g, hw, crossbars=c["budget"], samples=SAMPLES)
        ok = True
        try:
            check_coverage(m, g, hw)
        except ValueError as exc:
            ok = str(exc)
        out["invariants"][key] = {"weights_placed_once": ok, "overlaps": _overlaps(m, hw.crossbar.rows, hw.usable_cols),
                                  "within_budget": m.crossbars_used <= c["budget"]}
        if c["model"] in ("squeezenet1_1", "resnet20", "lenet5", "densenet40", "mobilenetv3_small"):
            t = mapping_timing(m)
            out["event_sim"][key] = {str(k): [t.cycles(k), simulate(m, k).cycles] for k in SAMPLES}
    log(f"checks: invariants on {len(out['invariants'])} cells, event simulation on {len(out['event_sim'])}")
    torch.manual_seed(0)
    for name, shape in (("resnet20", (3, 32, 32)), ("lenet5", (1, 32, 32)), ("mobilenetv3_small", (3, 32, 32))):
        model = create_model(name, num_classes=10, input_size=shape).eval()
        g = capture(model, shape)
        for preset in PRESETS:
            hw = load_hardware(preset)
            m = compile_graph(g, hw, crossbars=2 * isaac_like(g, hw).crossbars_used, samples=SAMPLES)
            x = torch.randn(2, *shape)
            got, _ = execute_model(m, model, x, hw, graph=g)
            want, _ = reference_forward(model, x, hw, graph=g)
            err = float((got - want).abs().max() / (want.abs().max() + 1e-12))
            copies = max(lp.copies for lp in m.layers)
            out["execute"][f"{name}@{preset}"] = {"max_relative_error": err, "copies": copies}
    summary = {
        "invariant_cells": len(out["invariants"]),
        "invariants_all_ok": all(v["weights_placed_once"] is True and v["overlaps"] == 0 and v["within_budget"]
                                 for v in out["invariants"].values()),
        "event_sim_all_equal": all(a == b for v in out["event_sim"].values() for a, b in v.values()),
        "execute_max_relative_error": max(v["max_relative_error"] for v in out["execute"].values()),
    }
    return {**out, "summary": summary}


def onnx_equivalence() -> dict:
    hw = load_hardware("rnc-paper")
    out = {}
    for name, shape, budget in (("squeezenet1_1", (3, 64, 64), 80), ("mobilenetv3_small", (3, 64, 64), 210),
                                ("resnet20", (3, 32, 32), 30)):
        model = create_model(name, num_classes=10, input_size=shape).eval()
        buf = io.BytesIO()
        torch.onnx.export(model, torch.zeros(1, *shape), buf, dynamo=False, opset_version=17)
        path = Path("/tmp") / f"xbarforge_bench_{name}.onnx"
        path.write_bytes(buf.getvalue())
        a = xbarforge.compile(model, hw, crossbars=budget, input_shape=shape, samples=SAMPLES).report
        b = xbarforge.compile(path, hw, crossbars=budget, samples=SAMPLES).report
        keys = ("crossbars_used", "latency_ns", "energy_pj", "utilization")
        out[name] = {"same": all(a[k] == b[k] for k in keys), **{k: [a[k], b[k]] for k in keys}}
    return out


SECTIONS = ("reference", "rnc", "grid", "demo", "estimate", "rounds", "checks", "onnx")
README = Path(__file__).parent.parent / "README.md"
BEGIN = "<!-- compile_bench:begin (generated from benchmarks/results/compile_bench.json; do not edit) -->"
END = "<!-- compile_bench:end -->"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(doc: dict) -> str:
    """The README's compiler figures, generated from the result file (a test checks they match)."""
    out = [BEGIN]
    ref = doc["reference"]
    out.append(f"- Reference (`rnc-paper`, SqueezeNet 1.1, 3x64x64, isaac-like): {ref['blocks']} blocks, "
               f"{ref['utilization']:.1%} utilization, {ref['cycles_1']} cycles, {ref['latency_us_1']:.1f} us for one "
               f"sample, {ref['latency_us_8']:.1f} us for 8 ({'matches' if ref['ok'] else '**does not match**'} "
               "DESIGN.md).")
    out.append("- RNC comparison (SqueezeNet 1.1, `rnc-paper`, 3x64x64): speedup over isaac-like for k = 1 / 8 / 64, "
               "one mapping per k (latency objective for k = 1, throughput otherwise), and in brackets one balanced "
               "mapping for all three k; RNC research code last:")
    out.append("")
    out.append("  | crossbars | fast | thorough | RNC |")
    out.append("  |---|---|---|---|")
    for budget, row in doc["rnc"].items():
        cells = []
        for effort in ("fast", "thorough"):
            per_k = row[effort]["mapping_per_k"]
            one = row[effort]["one_mapping"]["speedup"]
            beats = row[effort]["per_k_beats_rnc"]
            val = " / ".join(f"{per_k[k]['speedup'][k]:.2f}" + ("" if beats[k] else "*") for k in ("1", "8", "64"))
            cells.append(f"{val} ({' / '.join(f'{one[k]:.2f}' for k in ('1', '8', '64'))})")
        rnc = row["rnc"]
        out.append(f"  | {budget} | {cells[0]} | {cells[1]} | {rnc['1']} / {rnc['8']} / {rnc['64']} |")
    out.append("")
    out.append(r"  \* below RNC's figure (missed).")
    g = doc["grid"]["summary"]
    out.append(f"- Grid ({g['cells']} cells: every zoo model at its natural input x `rnc-paper`, `isaac`, `edge` x "
               "1, 1.5, 2, 4 times its isaac-like crossbar count, fast effort, capture cached, median of repeats): "
               f"median compile {g['median_compile_s_up_to_resnet18'] * 1e3:.0f} ms for models up to ResNet-18 size "
               f"(target 100 ms: {_mark(g['median_compile_s_up_to_resnet18'] <= 0.1)}), "
               f"{g['median_compile_s_larger'] * 1e3:.0f} ms for larger ones (target 500 ms: "
               f"{_mark(g['median_compile_s_larger'] <= 0.5)}), slowest cell {g['max_compile_s'] * 1e3:.0f} ms "
               f"({len(g['cells_above_1s'])} above 1 s); compile time at 4x over 1x budget: median "
               f"{g['compile_growth_4x_over_1x']['median']:.2f}, at most {g['compile_growth_4x_over_1x']['max']:.2f}.")
    out.append(f"- Speedup at k = 64 on every cell at 1.5x budget or more: at least "
               f"{g['speedup_64_min_at_1_5x_or_more']:.2f} (target > 1.5: "
               f"{_mark(not g['cells_at_1_5x_or_more_with_speedup_64_le_1_5'])}); cells slower than isaac-like at "
               f"some k: {len(g['cells_below_1'])} ({_mark(not g['cells_below_1'])}).")
    out.append(f"- Latency never rising with the budget: one mapping per k, {len(g['per_k_not_monotone'])} cells "
               f"rise ({_mark(not g['per_k_not_monotone'])}); the balanced mapping for k = 1, 8, 64 together trades "
               f"one k against another and rises at some k in {len(g['balanced_not_monotone'])} cells.")
    bt = g["bound_ratio_throughput_mapping"]
    out.append(f"- Throughput against the bound (`docs/latency.md`), throughput-objective mapping: median "
               f"{bt['median']:.0%}, lowest {bt['min']:.0%}; cells below 50%: "
               f"{len(g['cells_below_half_bound_throughput_mapping'])} of {g['cells']} "
               f"({_mark(not g['cells_below_half_bound_throughput_mapping'])}). The balanced mapping reaches "
               f"median {g['bound_ratio_balanced']['median']:.0%}. Demo (MobileNetV3-small 3x64x64 on `edge`): "
               f"{doc['demo']['throughput_bound_ratio']:.0%} (target 25%: "
               f"{_mark(doc['demo']['throughput_bound_ratio'] >= 0.25)}).")
    est = doc["estimate"]["budgets"]
    worst = max(max(v["k1"]["max_relative_error"], v["k8"]["max_relative_error"]) for v in est.values())
    rho = min(min(v["k1"]["spearman"], v["k8"]["spearman"]) for v in est.values())
    ms = max(v["ms_per_estimate_median"] for v in est.values())
    out.append(f"- Search estimate vs compiled mapping ({sum(v['networks_that_fit'] for v in est.values())} "
               f"MobileNetV3-small sub-nets at 0.8x / 1x / 1.2x): largest error {worst:.1%}, Spearman at least "
               f"{rho:.3f} (targets 15% and 0.95: {_mark(worst <= 0.15 and rho >= 0.95)}); median "
               f"{ms:.0f} ms per estimate (target 20 ms: {_mark(ms <= 20)}).")
    for preset, row in doc["rounds"].items():
        parts = []
        for k, per in row["k"].items():
            opt, naive, isaac = per["optimal"], per["naive"], per["isaac-like"]
            parts.append(f"k = {k}: {opt['latency_ms']:.2f} ms in {opt['rounds']} rounds ({opt['write_ms']:.2f} ms "
                         f"writing) vs naive rounds {naive['latency_ms']:.2f} ms and isaac-like rounds "
                         f"{isaac['latency_ms']:.2f} ms")
        out.append(f"- Reprogramming rounds, ResNet-50 on `{preset}` at {row['budget']} crossbars: "
                   + "; ".join(parts) + ".")
    c = doc["checks"]["summary"]
    out.append(f"- Checks: every weight placed once, no overlap, budget kept on {c['invariant_cells']} grid cells "
               f"({'all hold' if c['invariants_all_ok'] else '**some fail**'}); event simulation equal to the analytic "
               f"latency: {'yes' if c['event_sim_all_equal'] else '**no**'}; `Mapping.execute` against torch: "
               f"largest relative error {c['execute_max_relative_error']:.1e}.")
    out.append(END)
    return "\n".join(out)


def write_readme(doc: dict) -> None:
    text = README.read_text()
    a, b = text.index(BEGIN), text.index(END) + len(END)
    README.write_text(text[:a] + markdown(doc) + text[b:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="warm compiles per grid cell (median)")
    ap.add_argument("--networks", type=int, default=50, help="random sub-nets for the estimate section")
    ap.add_argument("--models", default="all", help="comma-separated zoo models for the grid (default: all)")
    ap.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections (merged into the file)")
    ap.add_argument("--readme", action="store_true", help="also rewrite the README's compiler figures from the file")
    ap.add_argument("--readme-only", action="store_true", help="only rewrite the README's figures (no run)")
    args = ap.parse_args()
    torch.manual_seed(0)
    doc: dict = json.loads(RESULTS.read_text()) if ((args.only or args.readme_only) and RESULTS.exists()) else {}
    doc.update({
        "benchmark": "compile_bench",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "seed": 0,
    })
    models = list_models() if args.models == "all" else args.models.split(",")
    todo = [] if args.readme_only else (args.only or list(SECTIONS))
    steps = {
        "reference": reference, "rnc": rnc_comparison, "grid": lambda: grid(args.repeat, models), "demo": demo,
        "estimate": lambda: estimate_vs_compile(args.networks), "rounds": rounds,
        "checks": lambda: checks(doc["grid"]["cells"]), "onnx": onnx_equivalence,
    }
    for name in todo:
        log(f"section {name} ...")
        t0 = time.perf_counter()
        doc[name] = steps[name]()
        doc.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(doc, indent=1, default=_json) + "\n")
    for key in ("reference", "demo"):
        if key in doc:
            print(key, json.dumps(doc[key]))
    if "grid" in doc:
        print("grid", json.dumps(doc["grid"]["summary"], indent=1))
    print(f"wrote {RESULTS}")
    if args.readme or args.readme_only:
        write_readme(doc)
        print(f"updated {README}")
    return 0


def _json(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, float) and math.isinf(o):
        return None
    raise TypeError(type(o))


if __name__ == "__main__":
    raise SystemExit(main())

"""RNC setting: MobileNetV3-small space at 64x64 on `rnc-paper`, NSGA-II for accuracy vs latency.

Inputs (trained by the commands in the README, CIFAR-10 JPEG copy, same recipe and epochs):
  runs/ofa/           `xbarforge supernet train mbv3-small --resolution 64 --epochs 10 --random-subnets 1
                       --out runs/ofa` (10 epochs: what fits the 2-hour CPU budget, see `train`)
  runs/mbv3_base10/   `xbarforge train mobilenetv3_small --resolution 64 --epochs 10 --out runs/mbv3_base10`
                       (the baseline by the same recipe and epochs)
  runs/mbv3_base20/   the same baseline trained 20 epochs (reported as a stronger reference)

Sections (each stored as soon as it is done and reused on a rerun; --fresh redoes everything):
1. `cost`: milliseconds per candidate of the hardware evaluation the search uses (compiler plan +
   cost model) over random sub-nets, at each budget; how the plan compares with the full compiler
   (ratio and rank correlation of latency(8)); seconds per full compile.
2. `search`: for budgets 0.8x, 1x and 1.2x the isaac-like crossbars of the largest sub-net, a
   60-generation x 50-population search with the accuracy predictor (fit once on sub-nets scored on
   the validation split, shared by the three searches), timed. Every front network is re-scored on
   the whole validation split and compiled for real. Targets per front: a network >= 5x faster
   (latency of 8 samples) than the isaac-like baseline MobileNetV3-small with validation accuracy
   within 1 point of the baseline's; the 1.2x front's fastest network >= 20x.
3. `finetune`: for each budget, the fastest network meeting the 5x / 1-point target (else the most
   accurate one at least 5x faster) is exported and fine-tuned; its test accuracy is measured once,
   next to the baseline's. `finetune_more`: the same for the 1.2x front's knee and fastest networks.
4. `train`: supernet and baseline training times and accuracies from their metrics.json.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_bench.py [--sections cost,search,finetune,train]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from xbarforge.compiler.compile import compile_graph, isaac_like
from xbarforge.cost.model import evaluate
from xbarforge.hardware import load_hardware
from xbarforge.report.jsonio import read_json, write_json
from xbarforge.search.evaluate import HardwareObjectives
from xbarforge.search.registry import create_space

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "search_bench.json"
RUNS = ROOT / "runs"
SUPERNET = RUNS / "ofa"
BASELINE = RUNS / "mbv3_base10" / "model.pt"
BASELINE_LONG = RUNS / "mbv3_base20" / "model.pt"
HW = "rnc-paper"
RESOLUTION = 64
FACTORS = (0.8, 1.0, 1.2)
K = 8
SPEEDUP_TARGET, FAST_TARGET, ACC_SLACK = 5.0, 20.0, 0.01


def load() -> dict[str, Any]:
    return read_json(OUT) if OUT.exists() else {}


def save(doc: dict[str, Any]) -> None:
    write_json(OUT, doc)


def budgets() -> dict[str, int]:
    space = create_space("mbv3-small", resolution=RESOLUTION)
    hw = load_hardware(HW)
    largest = isaac_like(space.layer_graph(space.decode(space.largest())), hw).crossbars_used
    return {f"{f:.1f}x": int(round(f * largest)) for f in FACTORS} | {"largest_isaac_like": largest}


def section_cost(n: int = 300, compiled: int = 30) -> dict[str, Any]:
    space = create_space("mbv3-small", resolution=RESOLUTION)
    hw = load_hardware(HW)
    rng = np.random.default_rng(0)
    archs = [space.decode(space.sample(rng)) for _ in range(n)]
    out: dict[str, Any] = {"candidates": n}
    for label, budget in budgets().items():
        if label == "largest_isaac_like":
            continue
        ho = HardwareObjectives(space, hw, budget, K)
        ho(archs[0])  # warm the per-layer cache as a search does after its first candidates
        times, est = [], []
        for a in archs:
            t0 = time.perf_counter()
            values, reason = ho(a)
            times.append(time.perf_counter() - t0)
            est.append(values.get("latency") if reason is None else None)
        real, plan, secs = [], [], []
        for a, e in list(zip(archs, est, strict=True))[:compiled]:
            if e is None:
                continue
            t0 = time.perf_counter()
            m = compile_graph(space.layer_graph(a), hw, crossbars=budget, samples=(1, K), objective="throughput")
            secs.append(time.perf_counter() - t0)
            real.append(evaluate(m, hw, (K,))["latency_ns"][str(K)])
            plan.append(e)
        ratio = np.array(real) / np.array(plan)
        out[label] = {"budget": budget, "ms_per_candidate_mean": 1e3 * float(np.mean(times)),
                      "ms_per_candidate_p95": 1e3 * float(np.percentile(times, 95)),
                      "feasible": sum(e is not None for e in est),
                      "compiled_over_plan_latency": {"min": float(ratio.min()), "mean": float(ratio.mean()),
                                                     "max": float(ratio.max())},
                      "spearman_plan_vs_compiled": float(spearmanr(plan, real)[0]),
                      "compile_seconds_mean": float(np.mean(secs))}
        print(label, json.dumps(out[label]))
    return out


def section_search(doc: dict[str, Any], generations: int, population: int, predictor_samples: int,
                   fresh: bool) -> dict[str, Any]:
    from xbarforge.search.run import SearchConfig, run_search

    results: dict[str, Any] = {}
    shared = RUNS / "search_bench" / "predictor_samples.jsonl"
    for label, budget in budgets().items():
        if label == "largest_isaac_like":
            continue
        out = RUNS / "search_bench" / label
        if fresh and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        if shared.exists() and not (out / "predictor_samples.jsonl").exists():
            shutil.copy(shared, out / "predictor_samples.jsonl")  # one predictor for the three budgets
        cfg = SearchConfig(source=str(SUPERNET), hw=HW, crossbars=budget, objectives=["accuracy", "latency"],
                           generations=generations, population=population, samples=K,
                           predictor_samples=predictor_samples, baseline_model=str(BASELINE))
        resumed = (out / "nsga" / "state.json").exists()
        t0 = time.perf_counter()
        front = run_search(cfg, out, progress=False)
        wall = time.perf_counter() - t0
        if not shared.exists():
            shutil.copy(out / "predictor_samples.jsonl", shared)
        results[label] = summarize(front, wall)
        prev = doc.get("search", {}).get(label)
        if resumed and prev:  # a rerun replays the finished search: keep the first run's timings
            for key in ("wall_seconds", "search_seconds"):
                results[label][key] = prev[key]
        print(label, json.dumps({k: v for k, v in results[label].items() if k != "front"}))
    return results


def summarize(front: dict[str, Any], wall: float) -> dict[str, Any]:
    base_acc = front["baseline"]["val_accuracy"]
    k = str(K)
    pts = [{"index": i, "describe": p["describe"], "val_accuracy": p["val_accuracy"],
            "predicted_accuracy": p["search"]["accuracy"], "latency_ns": p["compiled"]["latency_ns"][k],
            "planned_latency_ns": p["search"]["latency"], "speedup": p["speedup"]["isaac-like"],
            "crossbars_used": p["compiled"]["crossbars_used"], "utilization": p["compiled"]["utilization"]}
           for i, p in enumerate(front["front"])]
    near = [p for p in pts if p["val_accuracy"] >= base_acc - ACC_SLACK]
    fastest_near = max(near, key=lambda p: p["speedup"]) if near else None
    fastest = max(pts, key=lambda p: p["speedup"]) if pts else None
    return {"budget": front["config"]["crossbars"], "baseline_val_accuracy": base_acc,
            "baseline_latency_ns": front["baseline"]["mappings"]["isaac-like"]["latency_ns"][k],
            "front_size": len(pts), "evaluated": front["evaluated"], "wall_seconds": wall,
            "search_seconds": front["search_seconds"], "hardware_ms_per_candidate": front["hardware_ms_per_candidate"],
            "predictor": front["predictor"], "fastest_within_1pt": fastest_near, "fastest": fastest,
            "most_accurate": max(pts, key=lambda p: p["val_accuracy"]) if pts else None,
            "meets_5x_within_1pt": bool(fastest_near and fastest_near["speedup"] >= SPEEDUP_TARGET),
            "front": pts}


def section_finetune(doc: dict[str, Any], epochs: int) -> dict[str, Any]:
    from xbarforge.cli import main as cli_main
    from xbarforge.train.modelio import read_model_file

    out: dict[str, Any] = {"epochs": epochs, "baseline_test_accuracy":
                           read_model_file(BASELINE)["meta"].get("test_accuracy")}
    for label, res in doc["search"].items():
        # the fastest network meeting the target; else the most accurate one at least 5x faster
        fast_enough = [p for p in res["front"] if p["speedup"] >= SPEEDUP_TARGET]
        pick = res.get("fastest_within_1pt") or max(fast_enough, key=lambda p: p["val_accuracy"], default=None)
        if pick is None:
            continue
        d = RUNS / "search_bench" / label
        model = d / "pick.pt"
        t0 = time.perf_counter()
        assert cli_main(["export", str(d), "--pick", f"index={pick['index']}", "--out", str(model)]) == 0
        assert cli_main(["finetune", str(model), "--epochs", str(epochs), "--out", str(d / "finetuned"), "-q"]) == 0
        meta = read_model_file(d / "finetuned" / "model.pt")["meta"]
        out[label] = {"index": pick["index"], "describe": pick["describe"], "speedup": pick["speedup"],
                      "rule": "fastest within 1 point" if res.get("fastest_within_1pt") else
                      "most accurate at >= 5x (no network within 1 point)",
                      "val_accuracy_inherited": pick["val_accuracy"], "val_accuracy_finetuned": meta["val_accuracy"],
                      "test_accuracy_finetuned": meta["test_accuracy"], "seconds": time.perf_counter() - t0}
        print(label, json.dumps(out[label]))
    return out


def section_finetune_more(doc: dict[str, Any], epochs: int, label: str = "1.2x") -> dict[str, Any]:
    """The knee and the fastest network of one front, fine-tuned the same way: how much of the gap to
    the baseline fine-tuning closes for networks far faster than the most accurate one. A pick whose
    fine-tuned model already exists is read back, not trained again."""
    from xbarforge.cli import main as cli_main
    from xbarforge.train.modelio import read_model_file

    d = RUNS / "search_bench" / label
    front = read_json(d / "front.json")
    out: dict[str, Any] = {"front": label, "epochs": epochs}
    for pick in ("knee", "low-latency"):
        index = front["picks"][pick]
        model, ft = d / f"pick-{pick}.pt", d / f"finetuned-{pick}"
        t0 = time.perf_counter()
        if not (ft / "model.pt").exists():
            assert cli_main(["export", str(d), "--pick", pick, "--out", str(model)]) == 0
            assert cli_main(["finetune", str(model), "--epochs", str(epochs), "--out", str(ft), "-q"]) == 0
        meta = read_model_file(ft / "model.pt")["meta"]
        p = front["front"][index]
        out[pick] = {"index": index, "describe": p["describe"], "speedup": p["speedup"]["isaac-like"],
                     "val_accuracy_inherited": p["val_accuracy"], "val_accuracy_finetuned": meta["val_accuracy"],
                     "test_accuracy_finetuned": meta["test_accuracy"], "seconds": time.perf_counter() - t0}
        print(label, pick, json.dumps(out[pick]))
    return out


def section_train() -> dict[str, Any]:
    sup = read_json(SUPERNET / "metrics.json")
    out = {"supernet": {"epochs": sup["recipe"]["epochs"], "minutes": sup["time_s"] / 60, "threads": sup["threads"],
                        "random_subnets": sup["recipe"]["random_subnets"], "history": sup["history"]}}
    for label, path in (("baseline", BASELINE), ("baseline_20_epochs", BASELINE_LONG)):
        if (path.parent / "metrics.json").exists():
            base = read_json(path.parent / "metrics.json")
            out[label] = {"epochs": base["epochs"], "minutes": base["time_s"] / 60,
                          "val_accuracy": base["val_accuracy"], "test_accuracy": base["test_accuracy"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="cost,search,finetune,finetune_more,train")
    ap.add_argument("--generations", type=int, default=60)
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--predictor-samples", type=int, default=100)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    doc = {} if args.fresh else load()
    doc["budgets"] = budgets()
    for section in args.sections.split(","):
        t0 = time.perf_counter()
        if section == "cost":
            doc["cost"] = section_cost()
        elif section == "search":
            doc["search"] = section_search(doc, args.generations, args.population, args.predictor_samples, args.fresh)
        elif section == "finetune":
            doc["finetune"] = section_finetune(doc, args.finetune_epochs)
        elif section == "finetune_more":
            doc["finetune_more"] = section_finetune_more(doc, args.finetune_epochs)
        elif section == "train":
            doc["train"] = section_train()
        else:
            raise SystemExit(f"unknown section {section}")
        doc.setdefault("seconds", {})[section] = time.perf_counter() - t0
        save(doc)


if __name__ == "__main__":
    main()

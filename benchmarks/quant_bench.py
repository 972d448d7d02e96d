"""Array-aware mixed precision (RaQu) against coarse-grained quantization (CIFAR-10 JPEG copy).

For ResNet-20 and MobileNetV2 (CIFAR stem), trained by `xbarforge train` (runs/r20, runs/mv2), on
the isaac preset with weights of 2-8 bits and a crossbar budget of 7/8 of what uniform 8-bit needs
(isaac's 127 usable columns do not hold 32 or 64 channels of 4 columns, so uniform 8-bit spills a
channel into a nearly empty column of arrays and cannot fill its crossbars):

1. `cost`: crossbars and utilization of uniform 2..8 bits; milliseconds per policy cost.
2. `search`: three policies, each fine-tuned for the same epochs (quantization-aware), test accuracy:
   - uniform 8-bit (the accuracy reference; it does not fit the budget),
   - layer-wise mixed precision chosen by the same DDPG agent without groups and without array
     awareness (reward = accuracy only; the budget enforced the same way),
   - RaQu: the DDPG agent per layer, then per array-aware group, rewarded for utilization too.
   Target: utilization >= 1.25x the better baseline, test accuracy >= uniform 8-bit's.
   The whole RaQu DDPG run on ResNet-20 (300 episodes) is timed: target < 30 minutes.
3. `hetero`: ResNet-20 on a chip of 32x32, 64x64 and 128x128 pools sized for it (80 % of what uniform
   8-bit takes of each size at least waste) against single-size chips of the same total cells, a RaQu
   policy searched on each. Target: the pools give the highest utilization. `hetero_fixed_mix`: the
   same with a fixed mix of 64x64, 128x128 and 256x256 pools not sized for the model.

Each section is stored as soon as it is done and reused on a rerun (--fresh redoes everything).
Run: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/quant_bench.py [--models resnet20,mobilenetv2] [--sections ...]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from xbarforge.compiler.pools import assign_pools
from xbarforge.data.from_model import model_dataset
from xbarforge.graph import capture
from xbarforge.hardware import load_hardware
from xbarforge.quant.config import QuantConfig
from xbarforge.quant.cost import PolicyCoster
from xbarforge.quant.env import BudgetTooSmall
from xbarforge.quant.finetune import finetune
from xbarforge.quant.pipeline import quantize
from xbarforge.quant.space import QuantSpace
from xbarforge.train import load_model, read_model_file

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "quant_bench.json"
PLOTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs"
MODELS = {"resnet20": RUNS / "r20" / "model.pt", "mobilenetv2": RUNS / "mv2" / "model.pt"}
HW = "isaac"
BITS = (2, 3, 4, 5, 6, 7, 8)
BUDGET_SHARE = 7 / 8  # of uniform 8-bit's crossbars
HETERO_SIZES = (32, 64, 128)
FIXED_MIX = [{"rows": 64, "cols": 64, "count": 100}, {"rows": 128, "cols": 128, "count": 60},
             {"rows": 256, "cols": 256, "count": 10}]


def load() -> dict[str, Any]:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def save(doc: dict[str, Any]) -> None:
    """Merge this run's sections into the file (runs for different models may go on side by side)."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    current = load()
    for key, value in doc.items():
        if key in ("cost", "search", "search_evolution") and isinstance(current.get(key), dict):
            current[key].update(value)
        else:
            current[key] = value
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=1))
    tmp.replace(OUT)


def _model(name: str) -> tuple[torch.nn.Module, dict[str, Any], tuple[int, int, int]]:
    model, meta = load_model(MODELS[name], device="cpu")
    return model, meta, tuple(meta["input_shape"])


def _space(name: str) -> QuantSpace:
    """The model's quantization space on the benchmark's chip."""
    model, _, shape = _model(name)
    return QuantSpace(capture(model, shape), load_hardware(HW), BITS)


def _budget(space: QuantSpace) -> int:
    return int(PolicyCoster(space, None)(space.uniform(8)).crossbars * BUDGET_SHARE)


def cost_section(name: str) -> dict[str, Any]:
    space = _space(name)
    hw = space.hw
    coster = PolicyCoster(space, None)
    rows = {}
    for b in BITS:
        c = coster(space.uniform(b))
        rows[str(b)] = {"crossbars": c.crossbars, "utilization": c.utilization}
    decisions = space.group_decisions([8] * len(space.layers))
    gen = torch.Generator().manual_seed(0)
    policies = [space.channel_bits(decisions, torch.randint(2, 9, (len(decisions),), generator=gen).tolist())
                for _ in range(50)]
    cold = PolicyCoster(space, None)
    t = time.perf_counter()
    for p in policies:
        cold(p)
    per_cold = (time.perf_counter() - t) / len(policies)
    t = time.perf_counter()
    for p in policies:
        cold(p)
    per_warm = (time.perf_counter() - t) / len(policies)
    t = time.perf_counter()
    for p in policies[:10]:
        coster.mapping(p)
    per_mapping = (time.perf_counter() - t) / 10
    # where uniform 8-bit's empty cells are: rows no bit width can fill (a layer with fewer rows than the
    # crossbar, or the last row tile) against columns (what RaQu's widths can fill)
    mapping = coster.mapping(space.uniform(8))
    cells = hw.crossbar.rows * hw.crossbar.cols
    empty = sum(cells - b.weights for b in mapping.blocks)
    row_empty = sum((hw.crossbar.rows - b.height) * hw.crossbar.cols for b in mapping.blocks)
    return {"uniform": rows, "groups_at_8_bits": len(decisions), "layers": len(space.layers),
            "uniform8_empty_cells": empty, "uniform8_empty_share_in_unfillable_rows": row_empty / empty,
            # 8-bit weights with every column of their row tiles full: what filling columns can reach
            "column_full_utilization_at_8_bits": mapping.weight_cells / (mapping.weight_cells + row_empty),
            "ms_per_policy_cost_cold": 1e3 * per_cold, "ms_per_policy_cost_cached": 1e3 * per_warm,
            "ms_per_isaac_like_mapping": 1e3 * per_mapping}


def _run(name: str, tag: str, config: QuantConfig, args: argparse.Namespace) -> dict[str, Any]:
    model, meta, shape = _model(name)
    data = model_dataset(meta, None, None, str(MODELS[name]))
    out = RUNS / "quant_bench" / name / tag
    if args.fresh and out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    result = quantize(model, data, load_hardware(HW), config, shape, out, source={"path": str(MODELS[name])},
                      progress=not args.quiet, arch=read_model_file(MODELS[name]).get("arch"))
    result["wall_s"] = time.perf_counter() - t
    for stage in ("stage1", "stage2"):
        path = out / stage / "history.jsonl"
        if path.exists():
            hist = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            result.setdefault("learning", {})[stage] = [
                {k: r[k] for k in ("episode", "reward", "accuracy", "utilization", "crossbars") if k in r}
                for r in hist]
    if (out / "policy.png").exists():
        shutil.copy(out / "policy.png", PLOTS / f"quant_bench_{name}_{tag}_policy.png")
    if (out / "learning.png").exists():
        shutil.copy(out / "learning.png", PLOTS / f"quant_bench_{name}_{tag}_learning.png")
    return result


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    fin, ft = result["final"], result.get("finetune") or {}
    return {"crossbars": fin["crossbars"], "fits": fin["fits"], "utilization": fin["utilization"],
            "utilization_budget": fin["utilization_budget"], "mean_bits": fin["mean_bits"],
            "val_accuracy_ptq": fin["val_accuracy"], "val_accuracy_finetuned": ft.get("val_accuracy"),
            "test_accuracy_finetuned": ft.get("test_accuracy"), "wall_s": result.get("wall_s")}


def search_section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    space = _space(name)
    budget = _budget(space)
    common = {"bits": BITS, "crossbars": budget, "agent": args.agent, "episodes": args.episodes,
              "val_images": args.val_images, "finetune_epochs": args.finetune_epochs, "seed": args.seed}
    suffix = "" if args.agent == "ddpg" else f"_{args.agent}"
    layerwise = _run(name, f"layerwise{suffix}", QuantConfig(**common, stages="layer", utilization_weight=0.0), args)
    raqu = _run(name, f"raqu{suffix}", QuantConfig(**common, stages="both", utilization_weight=args.utilization_weight),
                args)
    # uniform 8-bit: the same fine-tuning, no search
    model, meta, _ = _model(name)
    data = model_dataset(meta, None, None, str(MODELS[name]))
    uniform_policy = space.uniform(8)
    out = RUNS / "quant_bench" / name / "uniform8"
    if args.fresh and out.exists():
        shutil.rmtree(out)
    _, ft = finetune(model, data, uniform_policy, activation_bits=load_hardware(HW).precision.activation_bits,
                     epochs=args.finetune_epochs, lr=0.01, out_dir=out, resume=True, progress=not args.quiet,
                     seed=args.seed, arch=read_model_file(MODELS[name]).get("arch"))
    u8 = raqu["baselines"]["uniform"]
    uniform = {"crossbars": u8["crossbars"], "fits": u8["fits"], "utilization": u8["utilization"],
               "utilization_budget": u8["utilization_budget"], "mean_bits": u8["mean_bits"],
               "val_accuracy_ptq": u8["val_accuracy"], "val_accuracy_finetuned": ft.get("val_accuracy"),
               "test_accuracy_finetuned": ft.get("test_accuracy")}
    rows = {"uniform8": uniform, "layerwise": _summary(layerwise), "raqu": _summary(raqu)}
    better = max(rows["uniform8"]["utilization"], rows["layerwise"]["utilization"])
    return {
        "settings": {"agent": args.agent, "episodes": args.episodes, "val_images": args.val_images,
                     "finetune_epochs": args.finetune_epochs, "utilization_weight": args.utilization_weight,
                     "seed": args.seed, "threads": torch.get_num_threads()},
        "budget": budget,
        "float_val_accuracy": raqu["float_val_accuracy"],
        "rows": rows,
        "utilization_ratio_vs_better_baseline": rows["raqu"]["utilization"] / better,
        "test_accuracy_gap_vs_uniform8": (rows["raqu"]["test_accuracy_finetuned"] or 0)
        - (uniform["test_accuracy_finetuned"] or 0),
        "raqu_stages": {k: raqu.get(k) for k in ("stage1", "stage2")},
        "raqu_search_s": raqu.get("wall_s"),
        "learning": {"layerwise": layerwise.get("learning"), "raqu": raqu.get("learning")},
        "policy": raqu["policy"],
    }


def sized_pools(name: str) -> list[dict[str, int]]:
    """Pools of HETERO_SIZES sized for the model: 80 % of the crossbars of each size that uniform 8-bit
    would take with every layer on its least-waste size (at least 4 of each), so the budget binds."""
    model, _, shape = _model(name)
    graph = capture(model, shape)
    hw = load_hardware(HW, **{"chip.pools": [{"rows": r, "cols": r, "count": None} for r in HETERO_SIZES]})
    plan = assign_pools(graph, hw, {layer.name: 8 for layer in graph.mvm_layers})
    return [{"rows": r, "cols": r, "count": max(4, math.ceil(0.8 * n))} for r, n in zip(HETERO_SIZES, plan.used,
                                                                                      strict=True)]


def hetero_section(args: argparse.Namespace, pools: list[dict[str, int]], tag_dir: str) -> dict[str, Any]:
    name = "resnet20"
    model, meta, shape = _model(name)
    data = model_dataset(meta, None, None, str(MODELS[name]))
    total = sum(p["rows"] * p["cols"] * p["count"] for p in pools)
    chips = {"pools": pools}
    for p in pools:
        n = total // (p["rows"] * p["cols"])
        chips[f"{p['rows']}x{p['cols']}"] = [{"rows": p["rows"], "cols": p["cols"], "count": n}]
    rows = {}
    for tag, chip in chips.items():
        hw = load_hardware(HW, **{"chip.pools": chip})
        config = QuantConfig(bits=BITS, agent="ddpg", episodes=args.hetero_episodes, stages="both",
                             utilization_weight=args.utilization_weight, val_images=args.val_images,
                             finetune_epochs=0, seed=args.seed)
        out = RUNS / "quant_bench" / tag_dir / tag
        if args.fresh and out.exists():
            shutil.rmtree(out)
        try:
            res = quantize(model, data, hw, config, shape, out, progress=not args.quiet)
        except BudgetTooSmall as exc:  # the model does not fit this chip at any width: no utilization to compare
            rows[tag] = {"pools": chip, "cells": sum(p["rows"] * p["cols"] * p["count"] for p in chip),
                         "fits": False, "reason": str(exc)}
            continue
        fin = res["final"]
        rows[tag] = {"pools": chip, "cells": sum(p["rows"] * p["cols"] * p["count"] for p in chip),
                     "crossbars": fin["crossbars"], "pool_crossbars": fin.get("pool_crossbars"),
                     "utilization": fin["utilization"], "utilization_budget": fin["utilization_budget"],
                     "mean_bits": fin["mean_bits"], "val_accuracy_ptq": fin["val_accuracy"],
                     "uniform8": {k: res["baselines"]["uniform"][k] for k in ("crossbars", "fits", "utilization")}}
    best_single = max(v["utilization"] for k, v in rows.items() if k != "pools" and "utilization" in v)
    return {"settings": {"agent": "ddpg", "episodes": args.hetero_episodes, "val_images": args.val_images,
                         "utilization_weight": args.utilization_weight, "seed": args.seed,
                         "threads": torch.get_num_threads()},
            "total_cells": total, "rows": rows, "pools_over_best_single": rows["pools"]["utilization"] / best_single}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,mobilenetv2")
    ap.add_argument("--sections", default="cost,search,hetero")
    ap.add_argument("--agent", choices=("ddpg", "evolution"), default="ddpg",
                    help="agent of the search section (evolution results go to search_evolution)")
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--hetero-episodes", type=int, default=120)
    ap.add_argument("--val-images", type=int, default=2000)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--utilization-weight", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    doc = {} if args.fresh else load()
    doc["setup"] = {"hardware": HW, "bits": list(BITS), "budget_share_of_uniform8": BUDGET_SHARE,
                    "search_settings": "in each section's settings"}
    sections = args.sections.split(",")
    for name in args.models.split(","):
        if "cost" in sections:
            doc.setdefault("cost", {})[name] = cost_section(name)
            save(doc)
        key = "search" if args.agent == "ddpg" else f"search_{args.agent}"
        if "search" in sections and name not in doc.get(key, {}):
            doc.setdefault(key, {})[name] = search_section(name, args)
            save(doc)
    if "hetero" in sections and "hetero" not in doc:
        doc["hetero"] = {"sizing": "pools of 32x32, 64x64 and 128x128 holding 80 % of what uniform 8-bit takes of each"
                                   " size at least waste (at least 4 each); single sizes of the same total cells",
                         **hetero_section(args, sized_pools("resnet20"), "hetero")}
        save(doc)
    if "hetero" in sections and "hetero_fixed_mix" not in doc:
        doc["hetero_fixed_mix"] = {"sizing": "a fixed mix of 100 64x64, 60 128x128 and 10 256x256 crossbars",
                                   **hetero_section(args, FIXED_MIX, "hetero_fixed_mix")}
        save(doc)
    print(json.dumps({k: v for k, v in doc.items() if k != "search"}, indent=1)[:4000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

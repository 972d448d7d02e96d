"""`search`: a supernet and a chip in, the Pareto front of sub-nets out (RNC / NAX workflow).

1. Load the supernet (its space, weights and the data it was trained on; the validation split is
   carved from the training set exactly as in training).
2. Accuracy source: a predictor fit on sampled sub-nets scored with inherited weights (default),
   the supernet itself, or with `nonideal` the simulator on each candidate's own crossbars.
3. NSGA-II (pymoo) over the space's genome, objectives from `CandidateEvaluator` (compiler and
   cost model only), on the chosen back-end; checkpointed every generation.
4. The front: every network re-scored on the whole validation split (predictor runs), compiled
   (`compile_graph`, the same numbers the search ranked by through `compiler.estimate`), put next to
   the isaac-like mapping of the space's baseline network; JSON, CSV, a plot and the picks
   (high accuracy, low latency, knee).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from xbarforge.errors import XbarforgeError
from xbarforge.hardware import load_hardware
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.report.jsonio import read_json, to_jsonable, write_json
from xbarforge.rundir import check_same_settings
from xbarforge.search.evaluate import CandidateEvaluator, Constraints, HardwareObjectives, parse_objectives
from xbarforge.search.nsga import Objective, SearchResult, run_nsga2
from xbarforge.search.space import Arch, SearchSpace

CONFIG_FILE = "search.json"
FRONT_FILE = "front.json"
PICKS = ("high-accuracy", "low-latency", "knee")


class SearchConfig(BaseModel):
    """Every setting of a search (recorded in OUT/search.json; a resume must match it)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="supernet folder or file")
    space: str | None = None
    hw: str = "rnc-paper"
    overrides: dict[str, Any] = Field(default_factory=dict)
    crossbars: int | None = Field(None, ge=1)
    objectives: list[str] = Field(default_factory=lambda: ["accuracy", "latency"])
    generations: int = Field(60, ge=1)
    population: int = Field(50, ge=2)
    seed: int = 0
    samples: int = Field(8, ge=1, description="latency objective: k samples streamed through the pipeline")
    accuracy: Literal["predictor", "supernet", "simulator"] = "predictor"
    predictor_samples: int = Field(100, ge=10)
    val_images: int | None = Field(2000, ge=1, description="validation images that score a sub-net")
    chips: int = Field(2, ge=1, description="simulated chip instances per candidate (simulator accuracy)")
    max_latency_ns: float | None = Field(None, gt=0)
    max_energy_pj: float | None = Field(None, gt=0)
    backend: Literal["local", "process", "ray"] = "local"
    workers: int | None = Field(None, ge=1)
    ray_address: str | None = None
    data_root: str | None = None
    baseline_model: str | None = Field(None, description="the baseline network trained by the same recipe"
                                                         " (its validation accuracy is marked on the plot)")

    def nsga_settings(self) -> dict[str, Any]:
        """What must not change between a run and its resume (the back-end may)."""
        return self.model_dump(exclude={"backend", "workers", "ray_address", "generations"})


def load_search_hardware(cfg: SearchConfig) -> HardwareSpec:
    hw = load_hardware(cfg.hw, **cfg.overrides)
    if cfg.accuracy == "simulator" and not _any_nonideal(hw):
        # --nonideal on a chip whose preset models ideal devices: turn IR drop on (it is what makes
        # crossbar size matter for accuracy, the NAX trade-off), keep everything else as given
        hw = load_hardware(cfg.hw, **{**cfg.overrides, "nonideal.ir_drop": True})
    return hw


def _any_nonideal(hw: HardwareSpec) -> bool:
    n = hw.nonideal
    return bool(n.ir_drop or n.variation or n.read_noise or n.stuck_on_rate or n.stuck_off_rate or n.drift_nu)


def _data(meta: dict[str, Any], space: SearchSpace, data_root: str | None) -> Any:
    from xbarforge.data import load_dataset

    name = meta.get("dataset")
    root = data_root or meta.get("data_root")
    if not name:
        raise XbarforgeError("search: the supernet file names no dataset")
    data = load_dataset(name, root, val_fraction=meta.get("val_fraction") or 0.1, seed=meta.get("split_seed") or 0,
                        resolution=tuple(space.input_shape[1:]))
    if meta.get("mean") and meta.get("std"):
        data = data.with_stats(meta["mean"], meta["std"])
    return data


class SearchRun:
    """One search folder: its config, supernet, data and accuracy source, built once."""

    def __init__(self, cfg: SearchConfig, out: Path, console: Console | None = None) -> None:
        from xbarforge.search.supernet import load_supernet

        self.cfg, self.out = cfg, out
        self.console = console or Console(highlight=False)
        self.space, self.net, info = load_supernet(cfg.source)
        if cfg.space is not None and cfg.space != self.space.name:
            raise XbarforgeError(f"--space {cfg.space}: the supernet in {cfg.source} is for '{self.space.name}'")
        self.meta = info["meta"]
        self.hw = load_search_hardware(cfg)
        self.objectives = parse_objectives(cfg.objectives)
        self.data = _data(self.meta, self.space, cfg.data_root)
        self.net.eval()

    def accuracy_source(self) -> tuple[Any, dict[str, Any]]:
        from xbarforge.search.accuracy import (
            PredictedAccuracy,
            SimulatedAccuracy,
            SupernetAccuracy,
            fit_predictor,
            scoring_data,
        )

        cfg = self.cfg
        if not any(o.name == "accuracy" for o in self.objectives):
            return None, {}
        small = scoring_data(self.data, cfg.val_images)
        if cfg.accuracy == "simulator":
            return SimulatedAccuracy(self.net, self.space, self.hw, small, chips=cfg.chips, seed=cfg.seed), {}
        if cfg.accuracy == "supernet":
            return SupernetAccuracy(self.net, self.space, small), {}
        self.console.print(f"fitting the accuracy predictor on {cfg.predictor_samples} sub-nets"
                           f" ({cfg.val_images or 'all'} validation images each)")
        t0 = time.perf_counter()
        predictor, records = fit_predictor(self.net, self.space, small, cfg.predictor_samples, seed=cfg.seed,
                                           cache_file=self.out / "predictor_samples.jsonl", console=self.console)
        report = {**predictor.report, "seconds": time.perf_counter() - t0}
        write_json(self.out / "predictor.json", report)
        self.console.print(f"predictor: {predictor.kind}, rank correlation on held-out sub-nets: Spearman"
                           f" {report['holdout_spearman']:.3f}, Kendall {report['holdout_kendall']:.3f}")
        return PredictedAccuracy(predictor), report

    def evaluator(self, accuracy: Any) -> CandidateEvaluator:
        cfg = self.cfg
        energy = cfg.max_energy_pj is not None or any(o.name in ("energy", "edap") for o in self.objectives)
        hardware = HardwareObjectives(self.space, self.hw, cfg.crossbars, cfg.samples, with_energy=energy)
        return CandidateEvaluator(self.space, hardware, self.objectives, accuracy,
                                  Constraints(cfg.max_latency_ns, cfg.max_energy_pj))


def run_search(cfg: SearchConfig, out_dir: str | Path, *, progress: bool = True,
               console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) the search in `out_dir`; returns the front document (also OUT/front.json)."""
    from xbarforge.search.backends import make_backend

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    saved = out / CONFIG_FILE
    resume = saved.exists()
    if resume:
        old = SearchConfig.model_validate(read_json(saved))
        check_same_settings(out, old.nsga_settings(), cfg.nsga_settings(), "use another --out or --resume it as it was")
    write_json(saved, cfg.model_dump())
    console = console or Console(highlight=False, quiet=not progress)
    run = SearchRun(cfg, out, console)
    t0 = time.perf_counter()
    accuracy, predictor_report = run.accuracy_source()
    evaluator = run.evaluator(accuracy)
    space = run.space
    with make_backend(cfg.backend, cfg.workers, cfg.ray_address) as backend:
        result = run_nsga2(space.cardinalities, evaluator, run.objectives, population=cfg.population,
                           generations=cfg.generations, seed=cfg.seed, out_dir=out / "nsga", resume=resume,
                           backend=backend, initial=space.seeds(), progress=progress,
                           settings=cfg.nsga_settings())
    search_s = time.perf_counter() - t0
    doc = finish_front(run, result, predictor_report, search_s)
    doc["hardware_ms_per_candidate"] = hardware_ms(evaluator, result)
    write_json(out / FRONT_FILE, doc)
    write_front_csv(out / "front.csv", doc)
    plot_front(doc, out / "front.png")
    return doc


def hardware_ms(evaluator: CandidateEvaluator, result: SearchResult, n: int = 200) -> float:
    """Mean milliseconds of the hardware evaluation (compiler plan + cost model) over up to `n` of the
    candidates evaluated, timed again here (timings in the candidate log would make it differ between
    a resumed and an uninterrupted run)."""
    archs = [e.info["arch"] for e in result.evaluated[:n]]
    if not archs:
        return 0.0
    evaluator.hardware(archs[0])  # the per-layer cache is warm during a search
    t0 = time.perf_counter()
    for a in archs:
        evaluator.hardware(a)
    return 1e3 * (time.perf_counter() - t0) / len(archs)


def finish_front(run: SearchRun, result: SearchResult, predictor_report: dict[str, Any],
                 search_s: float) -> dict[str, Any]:
    """Validate, compile and compare every front network; choose the picks."""
    from xbarforge.search.accuracy import SupernetAccuracy

    cfg, space = run.cfg, run.space
    run.console.print(f"front: {len(result.front)} networks; compiling them and scoring them on the validation split")
    baseline = baseline_costs(space, run.hw, cfg.crossbars, cfg.samples)
    if cfg.baseline_model:
        baseline["val_accuracy"] = baseline_accuracy(cfg.baseline_model, run.data)
    full_val = SupernetAccuracy(run.net, space, run.data) if cfg.accuracy == "predictor" else None
    points = []
    for e in result.front:
        arch = e.info["arch"]
        point: dict[str, Any] = {"genome": e.genome, "arch": arch, "describe": e.info.get("describe"),
                                 "search": dict(e.values)}
        if full_val is not None:
            point["val_accuracy"] = full_val(arch)
        elif "accuracy" in e.values:
            point["val_accuracy"] = e.values["accuracy"]
        point["compiled"] = compiled_costs(space, run.hw, arch, cfg.crossbars, cfg.samples)
        k = str(cfg.samples)
        point["speedup"] = {name: b["latency_ns"][k] / point["compiled"]["latency_ns"][k]
                            for name, b in baseline["mappings"].items()}
        points.append(point)
    doc = {"config": cfg.model_dump(), "space": space.to_dict(), "hardware": run.hw.name,
           "objectives": [o.__dict__ for o in run.objectives], "generations": result.generations,
           "evaluated": len(result.evaluated), "search_seconds": search_s, "predictor": predictor_report,
           "baseline": baseline,
           "front": points}
    doc["picks"] = picks(points, run.objectives)
    bad = [e for e in result.evaluated if not e.feasible]
    doc["infeasible"] = {"count": len(bad), "example_reason": bad[0].reason if bad else None,
                         "fewest_crossbars": min((e.values.get("crossbars", 0.0) for e in bad), default=None)}
    return to_jsonable(doc)


def baseline_costs(space: SearchSpace, hw: HardwareSpec, budget: int | None, samples: int) -> dict[str, Any]:
    """The space's baseline network mapped isaac-like (and, for NAX-like spaces, homogeneously on each size)."""
    from xbarforge.compiler.compile import isaac_like
    from xbarforge.cost.model import evaluate

    ks = sorted({1, samples})
    out: dict[str, Any] = {"name": None, "mappings": {}}
    ref = space.baseline() if hasattr(space, "baseline") else None  # type: ignore[attr-defined]
    if ref is None:
        return out
    name, graph, sizes_by_label = ref
    out["name"] = name
    if sizes_by_label:
        from xbarforge.cost.hetero import evaluate_sizes

        for label, sizes in sizes_by_label.items():
            c = evaluate_sizes(graph, hw, sizes, samples=tuple(ks))
            out["mappings"][label] = {"latency_ns": c.latency_ns, "energy_pj": c.energy_pj, "area_mm2": c.area_mm2,
                                      "edap": c.edap, "crossbars": sum(c.crossbars.values())}
        return out
    e = evaluate(isaac_like(graph, hw), hw, ks)
    out["mappings"]["isaac-like"] = {k: e[k] for k in ("latency_ns", "energy_pj", "area_mm2", "edap",
                                                       "crossbars_used", "utilization")}
    return out


def baseline_accuracy(path: str, data: Any) -> float:
    """Validation accuracy of a trained baseline model on the split the search scores on."""
    from xbarforge.train.loop import evaluate
    from xbarforge.train.modelio import load_model

    model, _ = load_model(path)
    return float(evaluate(model, data, "val")["accuracy"])


def compiled_costs(space: SearchSpace, hw: HardwareSpec, arch: Arch, budget: int | None,
                   samples: int) -> dict[str, Any]:
    """The real compiler's numbers for one network (what a user deploying it would get)."""
    from xbarforge.compiler.compile import compile_graph
    from xbarforge.cost.model import evaluate

    graph = space.layer_graph(arch)
    ks = sorted({1, samples})
    sizes = space.crossbar_sizes(arch)
    if sizes is not None:
        from xbarforge.cost.hetero import evaluate_sizes

        c = evaluate_sizes(graph, hw, sizes, samples=tuple(ks))
        return {"latency_ns": c.latency_ns, "energy_pj": c.energy_pj, "area_mm2": c.area_mm2, "edap": c.edap,
                "crossbars_used": sum(c.crossbars.values()), "crossbars_by_size": c.crossbars,
                "utilization": c.utilization}
    m = compile_graph(graph, hw, crossbars=budget, samples=ks, objective="throughput" if samples > 1 else "latency")
    e = evaluate(m, hw, ks)
    return {k: e[k] for k in ("latency_ns", "energy_pj", "area_mm2", "edap", "crossbars_used", "utilization",
                              "rounds", "throughput_per_s")}


def picks(points: list[dict[str, Any]], objectives: list[Objective]) -> dict[str, int]:
    """Indices into `points` by preference. high-accuracy / low-latency: the best on that objective
    (falling back to the first / second objective); knee: the point nearest the ideal corner once
    every objective is scaled to [0, 1] over the front."""
    if not points:
        return {}
    names = [o.name for o in objectives]

    def value(p: dict[str, Any], name: str) -> float:
        if name == "accuracy" and "val_accuracy" in p:
            return float(p["val_accuracy"])
        return float(p["search"][name])

    senses = {o.name: o.sense for o in objectives}
    acc = "accuracy" if "accuracy" in names else names[0]
    fast = "latency" if "latency" in names else names[1]
    best = {}
    for label, name in (("high-accuracy", acc), ("low-latency", fast)):
        key = [value(p, name) for p in points]
        best[label] = int(np.argmax(key) if senses[name] == "max" else np.argmin(key))
    scaled = []
    for name in names:
        v = np.array([value(p, name) for p in points], dtype=np.float64)
        span = np.ptp(v) or 1.0
        s = (v - v.min()) / span
        scaled.append(1.0 - s if senses[name] == "max" else s)
    best["knee"] = int(np.argmin(np.linalg.norm(np.stack(scaled, axis=1), axis=1)))
    return best


def pick_index(doc: dict[str, Any], pick: str) -> int:
    """'high-accuracy', 'low-latency', 'knee' or 'index=N' -> an index into doc['front']."""
    front = doc.get("front") or []
    if not front:
        raise XbarforgeError("export: the search front is empty (no feasible network)")
    if pick.startswith("index="):
        try:
            i = int(pick.split("=", 1)[1])
        except ValueError:
            raise XbarforgeError(f"--pick {pick}: N must be an integer") from None
        if not 0 <= i < len(front):
            raise XbarforgeError(f"--pick {pick}: the front has {len(front)} networks (0..{len(front) - 1})")
        return i
    if pick not in PICKS:
        raise XbarforgeError(f"--pick {pick}: choose high-accuracy, low-latency, knee or index=N")
    return int(doc["picks"][pick])


def write_front_csv(path: Path, doc: dict[str, Any]) -> Path:
    k = str(doc["config"]["samples"])
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "describe", "val_accuracy", *(f"search_{o['name']}" for o in doc["objectives"]),
                    f"latency_{k}_ns", "energy_pj", "edap", "crossbars_used", "speedup"])
        for i, p in enumerate(doc["front"]):
            c = p["compiled"]
            w.writerow([i, p["describe"], p.get("val_accuracy"), *(p["search"][o["name"]] for o in doc["objectives"]),
                        c["latency_ns"][k], c["energy_pj"], c["edap"], c["crossbars_used"],
                        json.dumps(p["speedup"])])
    return path


def plot_front(doc: dict[str, Any], path: Path) -> Path | None:
    """Accuracy against the second objective, front networks and the baseline network marked."""
    from xbarforge.report.plots import plot_search_front

    return plot_search_front(doc, path)

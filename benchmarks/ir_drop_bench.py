"""IR-drop benchmark: the fast static model (`ir_drop_factors`) against the exact nodal solve.

Run `.venv/bin/python benchmarks/ir_drop_bench.py` (about a minute); it writes
benchmarks/results/ir_drop_bench.json and prints the tables docs/ir_drop.md quotes.

* accuracy: crossbars of 16..256 squared, wire 1, 2.5 and 2.82 ohm (2.82: every preset's
  `crossbar.wire_ohm`), the presets' g_on / g_off, half the cells programmed on (levels uniform in
  [g_off, g_on]), binary inputs with activity 0.5 (one bit of a bit-serial input). Per setting:
  the true loss 1 - I_exact / I_ideal, the model's, the model's error relative to the signal and
  to the drop, and the first-order model's error.
* inputs: the same at 128x128, 2.82 ohm, for sparse and dense inputs, 8-bit inputs, all cells on,
  and 2-bit cells.
* layouts: 128x128, 2.82 ohm crossbars only partly used (the rest off), and an adversarial one.
* time per crossbar, one core: the factors; the exact solve of 32 input vectors (one
  factorization, at 2.82 ohm); the exact G_eff (R solves; not at 256, where it takes 20 s or more).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from xbarforge.hardware import load_hardware
from xbarforge.sim.ir_drop import (
    effective_conductance,
    ir_drop_error,
    ir_drop_factors,
    nodal_solve,
    random_conductances,
    random_inputs,
)

RESULTS = Path(__file__).parent / "results" / "ir_drop_bench.json"
SEED = 0
SIZES = {16: 8, 32: 8, 64: 6, 128: 4, 256: 2}  # size -> random crossbars (trials)
WIRES = (1.0, 2.5, 2.82)
N_INPUTS = 32
DENSITY = 0.5
ACTIVITY = 0.5


def preset_constants() -> dict[str, float]:
    """g_on, g_off (S) and wire (ohm) of the bundled presets (all six agree; checked here)."""
    names = ["edge", "hetero-example", "isaac", "mnsim-default", "puma", "rnc-paper"]
    xbars = {(x.g_on_us, x.g_off_us, x.wire_ohm) for x in (load_hardware(n).crossbar for n in names)}
    if len(xbars) != 1:
        raise SystemExit(f"presets disagree on crossbar constants: {xbars}")
    g_on_us, g_off_us, wire = xbars.pop()
    return {"g_on": g_on_us * 1e-6, "g_off": g_off_us * 1e-6, "preset_wire_ohm": wire}


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median of `repeats` timed calls after a warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timings(n: int, r: float, g_on: float, g_off: float, exact: bool) -> dict[str, float | None]:
    """Seconds per crossbar; the exact solves (independent of r in cost) only when `exact`."""
    rng = np.random.default_rng(SEED)
    g = random_conductances(n, n, g_on, g_off, DENSITY, rng)
    gt = torch.from_numpy(g)
    v = random_inputs(n, N_INPUTS, ACTIVITY, rng)
    slow = n >= 256
    out: dict[str, float | None] = {"model_ms": 1e3 * median_time(lambda: ir_drop_factors(gt, r), 3 if slow else 9)}
    out["nodal_s"] = median_time(lambda: nodal_solve(g, v, r), 1 if slow else 3) if exact else None
    # exact G_eff at 256x256 takes 256 solves, 20 s to minutes: left out to keep the run short
    out["g_eff_s"] = median_time(lambda: effective_conductance(g, r), 2) if exact and not slow else None
    return out


def accuracy(constants: dict[str, float]) -> list[dict]:
    rows = []
    for n, trials in SIZES.items():
        for r in WIRES:
            e = ir_drop_error(
                n,
                n,
                r,
                constants["g_on"],
                constants["g_off"],
                density=DENSITY,
                activity=ACTIVITY,
                trials=trials,
                seed=SEED + n,
                n_inputs=N_INPUTS,
            )
            stats = {k: v for k, v in e.as_dict().items() if k not in ("rows", "cols", "model_s", "nodal_s")}
            row = {"size": n, "trials": trials, **stats}
            row.update(timings(n, r, constants["g_on"], constants["g_off"], exact=r == WIRES[-1]))
            rows.append(row)
            t_exact = "" if row["nodal_s"] is None else f"{row['nodal_s']:7.3f}"
            t_exact += "" if row["g_eff_s"] is None else f" {row['g_eff_s']:7.2f}"
            print(
                f"{n:4d} {r:5.2f} {100 * row['loss_exact']:7.2f}% {100 * row['loss_model']:7.2f}%"
                f" {100 * row['err_signal']:7.3f}% {100 * row['err_signal_max']:7.3f}% {100 * row['err_drop']:6.2f}%"
                f" {100 * row['first_order_err_signal']:7.2f}% {row['model_ms']:7.2f} {t_exact}",
                flush=True,
            )
    return rows


INPUT_CASES = {
    "binary a=0.1": {"activity": 0.1},
    "binary a=0.5": {},
    "binary a=0.9": {"activity": 0.9},
    "8-bit a=0.2": {"input_kind": "multilevel", "activity": 0.2},
    "8-bit a=0.5": {"input_kind": "multilevel"},
    "all cells on": {"density": 1.0},
    "2-bit cells": {"levels": 4},
}


def inputs(constants: dict[str, float], n: int = 128, r: float = 2.82) -> list[dict]:
    rows = []
    for name, case in INPUT_CASES.items():
        kw = {"density": DENSITY, "activity": ACTIVITY, **case}
        e = ir_drop_error(
            n, n, r, constants["g_on"], constants["g_off"], trials=4, seed=SEED + 1, n_inputs=N_INPUTS, **kw
        )
        stats = {k: v for k, v in e.as_dict().items() if k not in ("model_s", "nodal_s")}
        row = {"case": name, **kw, **stats}
        rows.append(row)
        print(
            f"{name:14s} {100 * e.loss_exact:7.2f}% {100 * e.loss_model:7.2f}% {100 * e.err_signal:7.3f}%"
            f" {100 * e.err_signal_max:7.3f}% {100 * e.err_drop:6.2f}% {100 * e.bias_signal:+7.3f}%",
            flush=True,
        )
    return rows


def layout_cases(g_on: float, g_off: float, n: int) -> dict[str, np.ndarray]:
    """Partly used crossbars (the rest of the cells off), as a compiler leaves them, and one adversarial case."""
    full = random_conductances(n, n, g_on, g_off, DENSITY, np.random.default_rng(SEED + 2))
    h, q = n // 2, n // 4

    def used(mask: np.ndarray) -> np.ndarray:
        return np.where(mask, full, g_off)

    i, j = np.indices((n, n))
    cross = np.full((n, n), g_off)
    cross[0, :] = cross[:, -1] = g_on
    return {
        "all used": full,
        "top-left quarter": used((i < h) & (j < h)),
        "top 1/4 rows": used(i < q),
        "left 1/4 cols": used(j < q),
        "right 1/4 cols": used(j >= n - q),
        "two diagonal blocks": used((i < h) == (j < h)),
        "adversarial: full top row + right col": cross,
    }


def layouts(constants: dict[str, float], n: int = 128, r: float = 2.82) -> list[dict]:
    """The model on partly used crossbars: errors relative to the mean ideal current of the used columns."""
    rows = []
    rng = np.random.default_rng(SEED + 3)
    for name, g in layout_cases(constants["g_on"], constants["g_off"], n).items():
        v = random_inputs(n, N_INPUTS, ACTIVITY, rng)
        exact = nodal_solve(g, v, r)
        model = (g * ir_drop_factors(torch.from_numpy(g), r).numpy()).T @ v
        ideal = g.T @ v
        live = (g > constants["g_off"]).any(0)
        scale = ideal[live].mean()
        row = {
            "case": name,
            "size": n,
            "r_wire": r,
            "loss_exact": float(np.mean(1 - exact[live] / ideal[live])),
            "loss_model": float(np.mean(1 - model[live] / ideal[live])),
            "err_signal": float(np.abs(model - exact)[live].mean() / scale),
            "err_signal_max": float(np.abs(model - exact)[live].max() / scale),
            "err_drop": float(np.abs(model - exact)[live].mean() / np.abs(ideal - exact)[live].mean()),
        }
        rows.append(row)
        print(
            f"{name:38s} {100 * row['loss_exact']:7.2f}% {100 * row['loss_model']:7.2f}%"
            f" {100 * row['err_signal']:7.3f}% {100 * row['err_signal_max']:7.3f}% {100 * row['err_drop']:6.2f}%",
            flush=True,
        )
    return rows


def main() -> None:
    torch.set_num_threads(1)  # per-crossbar timings on one core; small tensors gain nothing from threads
    load_start = os.getloadavg()[0]  # timings are only comparable on an otherwise idle machine
    constants = preset_constants()
    print(f"g_on {constants['g_on'] * 1e6:g} uS, g_off {constants['g_off'] * 1e6:g} uS, density {DENSITY},")
    print(f"binary inputs, activity {ACTIVITY}, {N_INPUTS} input vectors per crossbar, seed {SEED}\n")
    print("size   r    loss     model   err/sig  max/sig err/drop 1st-ord model_ms nodal_s geff_s")
    acc = accuracy(constants)
    print("\n128x128, 2.82 ohm   loss    model   err/sig  max/sig err/drop   bias")
    inp = inputs(constants)
    print("\n128x128, 2.82 ohm, used columns only     loss    model   err/sig  max/sig err/drop")
    lay = layouts(constants)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()},
        "torch_threads": 1,
        "load_average_1m": {"start": load_start, "end": os.getloadavg()[0]},
        "settings": {
            "seed": SEED,
            "sizes_trials": SIZES,
            "wires_ohm": list(WIRES),
            "density": DENSITY,
            "activity": ACTIVITY,
            "n_inputs": N_INPUTS,
            "input_kind": "binary",
            **constants,
        },
        "definitions": {
            "loss_exact": "mean over columns and inputs of 1 - I_exact / I_ideal",
            "loss_model": "mean of 1 - I_model / I_ideal",
            "err_signal": "mean |I_model - I_exact| / mean I_ideal",
            "err_signal_max": "max |I_model - I_exact| / mean I_ideal (per crossbar, max over crossbars)",
            "err_drop": "mean |I_model - I_exact| / mean |I_ideal - I_exact|",
            "ideal_err_signal": "mean |I_ideal - I_exact| / mean I_ideal (error of ignoring IR drop)",
            "first_order_err_signal": "err_signal of first_order_factors",
            "model_ms": "ir_drop_factors, one crossbar, median",
            "nodal_s": "nodal_solve of n_inputs vectors (factorization included), one crossbar",
            "g_eff_s": "effective_conductance (exact G_eff, R solves), one crossbar",
        },
        "accuracy": acc,
        "inputs": inp,
        "layouts": lay,
    }
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Speed of the crossbar simulator (issue: simulator speed targets).

Run it on an otherwise idle machine: the timings are wall-clock.

Measures, on this machine:
1. ResNet-20, batch 256 of 3x32x32, on `isaac` with every non-ideality on: the plain torch forward
   of the same model, fast mode (target: at most 3x plain), and exact mode against the time its
   own arithmetic (the multiply-accumulates of every bit-serial read and read-noise variance) takes
   at the machine's measured matmul rate (target: within 2x).
2. The comparisons the issue quotes: one 512x1152 matrix-vector product with read noise (CrossSim:
   0.15-0.29 s on this machine) and a VGG8 batch of 8 with noise (aihwkit-lightning: 6.8 s, plain
   torch 0.35 s); target: 10x faster at equal settings.

Run: .venv/bin/python benchmarks/sim_bench.py [--quick]  -> benchmarks/results/sim_bench.json
Timings are the best of several repeats (the minimum is the least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xbarforge.hardware import load_hardware, override
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim import Simulator
from xbarforge.zoo import create_model

OUT = Path(__file__).parent / "results" / "sim_bench.json"

# Every non-ideality on, at values inside the ranges the accuracy benchmark sweeps; the speed does
# not depend on the values, only on which effects are on.
ALL_ON = {
    "nonideal.variation": 0.05,
    "nonideal.read_noise": 0.02,
    "nonideal.stuck_on_rate": 0.001,
    "nonideal.stuck_off_rate": 0.001,
    "nonideal.drift_nu": 0.01,
    "nonideal.drift_nu_std": 0.002,
    "nonideal.drift_time_s": 86400.0,
    "nonideal.ir_drop": True,
    "nonideal.adc_range": "column",
}


def chip(preset: str, extra: dict[str, object] | None = None) -> HardwareSpec:
    hw = load_hardware(preset)
    for k, v in {**ALL_ON, **(extra or {})}.items():
        hw = override(hw, k, v)
    return hw


def best(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN kernels)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_rate(repeats: int = 5) -> dict[str, float]:
    """float32 GEMM rate, GFLOP/s: a large square product, and the shapes exact mode runs
    (many bit-serial reads of a 128-row tile into 128 columns)."""
    out = {}
    shapes = {"large 2048x2048x2048": (2048, 2048, 2048), "reads 65536x128x128": (65536, 128, 128)}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        t = best(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), repeats)
        out[name] = 2 * m * k * n / t / 1e9
    return out


def resnet20_section(quick: bool) -> dict[str, object]:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10).eval()
    x = torch.randn(256, 3, 32, 32)
    hw = chip("isaac")
    sim = Simulator(model, hw, (3, 32, 32), calibration=x[:64]).program(1)
    with torch.no_grad():
        plain = best(lambda: model(x), 5)
    sim.mode = "fast"
    fast = best(lambda: sim(x), 5)
    rates = matmul_rate()
    rate, reads_rate = max(rates.values()), rates["reads 65536x128x128"]
    sim.mode = "exact"
    xe = x[:32] if quick else x
    for a in sim.layers.values():
        a.exact_macs = 0
    t = time.perf_counter()
    sim(xe)
    exact = time.perf_counter() - t
    macs = sum(a.exact_macs for a in sim.layers.values())
    arithmetic = 2 * macs / (rate * 1e9)
    arithmetic_reads = 2 * macs / (reads_rate * 1e9)
    return {
        "model": "resnet20", "batch": 256, "exact_batch": len(xe), "hardware": "isaac", "nonideal": ALL_ON,
        "plain_torch_s": plain, "fast_s": fast, "fast_over_plain": fast / plain,
        "exact_s": exact, "exact_macs": macs, "matmul_gflops": rates,
        "exact_arithmetic_s_at_best_rate": arithmetic, "exact_over_arithmetic": exact / arithmetic,
        "exact_arithmetic_s_at_reads_rate": arithmetic_reads, "exact_over_arithmetic_reads": exact / arithmetic_reads,
        "targets": {"fast_over_plain": 3.0, "exact_over_arithmetic": 2.0},
    }


def crosssim_section() -> dict[str, object]:
    """One 512x1152 matrix-vector product with read noise (a Linear(1152 -> 512) at batch 1)."""
    torch.manual_seed(1)
    layer = nn.Sequential(nn.Linear(1152, 512)).eval()
    x = torch.rand(1, 1152)
    out = {}
    for preset in ("isaac", "mnsim-default"):
        hw = override(override(load_hardware(preset), "nonideal.read_noise", 0.02), "nonideal.variation", 0.05)
        sim = Simulator(layer, hw, (1152,), calibration=torch.rand(64, 1152)).program(0)
        for mode in ("fast", "exact"):
            sim.mode = mode
            out[f"{preset}/{mode}_s"] = best(lambda sim=sim: sim(x), 20)
    out["crosssim_s"] = [0.15, 0.29]
    out["speedup_vs_crosssim_fastest_worst_case"] = 0.15 / max(v for k, v in out.items() if k.endswith("_s")
                                                            and isinstance(v, float))
    return out


def aihwkit_section() -> dict[str, object]:
    """VGG8, batch 8 of 3x32x32, weight (programming) and read noise plus ADC, as aihwkit-lightning runs it."""
    torch.manual_seed(2)
    model = create_model("vgg8", num_classes=10).eval()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        plain = best(lambda: model(x), 5)
    out: dict[str, object] = {"plain_torch_s": plain}
    for preset in ("mnsim-default", "isaac"):
        hw = chip(preset)
        sim = Simulator(model, hw, (3, 32, 32), calibration=x).program(0)
        for mode in ("fast", "exact"):
            sim.mode = mode
            out[f"{preset}/{mode}_s"] = best(lambda sim=sim: sim(x), 3 if mode == "fast" else 1)
    out["aihwkit_lightning_s"] = 6.8
    out["speedup_vs_aihwkit_fast"] = 6.8 / float(out["mnsim-default/fast_s"])  # type: ignore[arg-type]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="exact mode on 32 images instead of 256")
    args = ap.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "platform": platform.platform(), "load_avg_before": os.getloadavg()},
        "resnet20": resnet20_section(args.quick),
        "crosssim_mvm": crosssim_section(),
        "aihwkit_vgg8": aihwkit_section(),
    }
    result["machine"]["load_avg_after"] = os.getloadavg()  # type: ignore[index]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    r = result["resnet20"]
    print(f"ResNet-20 b256: plain {r['plain_torch_s']:.3f}s  fast {r['fast_s']:.3f}s ({r['fast_over_plain']:.2f}x)"
          f"  exact {r['exact_s']:.1f}s vs arithmetic {r['exact_arithmetic_s_at_best_rate']:.1f}s"
          f" ({r['exact_over_arithmetic']:.2f}x; {r['exact_over_arithmetic_reads']:.2f}x at the rate of 128-row reads)")
    print("512x1152 MVM:", {k: v for k, v in result["crosssim_mvm"].items()})
    print("VGG8 b8:", {k: v for k, v in result["aihwkit_vgg8"].items()})
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()

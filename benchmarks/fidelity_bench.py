"""Fast mode against exact mode: how much the cheap noise model departs from the bit-serial one.

A. Zoo models (random weights, non-trivial batch-norm statistics, random inputs): every MVM layer
   is fed the same input in both modes; we compare the RMS of each mode's error against the plain
   quantized layer (ratio fast / exact, 1 = same error magnitude) and the RMS of fast - exact
   relative to the layer's output RMS.
B. The trained ResNet-20 (runs/r20/model.pt, if present): test accuracy in both modes on the same
   chip instances.

Run: .venv/bin/python benchmarks/fidelity_bench.py  -> benchmarks/results/fidelity_bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xbarforge.hardware import load_hardware, override
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim import Simulator, simulate_accuracy
from xbarforge.zoo import create_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "fidelity_bench.json"
MODELS = ["lenet5", "resnet20", "vgg8", "mobilenetv2", "densenet40", "squeezenet1_1"]
SETTINGS: dict[str, dict[str, Any]] = {
    "adc8": {"precision.adc_bits": 8},
    "adc6": {"precision.adc_bits": 6},
    "adc4": {"precision.adc_bits": 4},
    "adc8+read2%": {"precision.adc_bits": 8, "nonideal.read_noise": 0.02},
    "adc6+var5%+read2%": {"precision.adc_bits": 6, "nonideal.variation": 0.05, "nonideal.read_noise": 0.02},
}


def hardware(preset: str, setting: dict[str, Any]) -> HardwareSpec:
    hw = load_hardware(preset)
    for k, v in setting.items():
        hw = override(hw, k, v)
    return hw


def randomize_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.rand(mod.num_features, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) * 0.5 + 0.75)
    return model.eval()


def layer_fidelity(model: nn.Module, hw: HardwareSpec, x: torch.Tensor) -> dict[str, float]:
    sim = Simulator(model, hw, tuple(x.shape[1:]), calibration=x).program(0)
    ratios, gaps = [], []

    def fn(layer: Any, inp: torch.Tensor) -> torch.Tensor:
        a = sim.layers[layer.name]
        want = a.forward_quantized(inp)
        fast = a.forward_fast(inp, torch.Generator().manual_seed(1))
        exact = a.forward_exact(inp, torch.Generator().manual_seed(2))
        e_fast, e_exact = (fast - want).pow(2).mean().sqrt(), (exact - want).pow(2).mean().sqrt()
        if float(e_exact) > 0:
            ratios.append(float(e_fast / e_exact))
        gaps.append(float((fast - exact).pow(2).mean().sqrt() / want.pow(2).mean().sqrt().clamp_min(1e-12)))
        return want

    sim.run_layers(x, fn)
    return {"layers": len(gaps), "error_ratio_fast_over_exact_median": statistics.median(ratios) if ratios else 1.0,
            "error_ratio_min": min(ratios, default=1.0), "error_ratio_max": max(ratios, default=1.0),
            "fast_exact_gap_rel_rms_mean": statistics.fmean(gaps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500, help="test images for part B")
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--zoo-only", action="store_true", help="skip part B (the trained ResNet-20)")
    args = ap.parse_args()
    doc: dict[str, Any] = {"settings": SETTINGS, "zoo": {}, "seed": 0}
    torch.manual_seed(0)
    for name in MODELS:
        c = 1 if name == "lenet5" else 3
        model = randomize_bn(create_model(name, num_classes=10, input_size=(32, 32)))
        x = torch.randn(4, c, 32, 32)
        for preset in ("isaac", "rnc-paper"):
            for sname, setting in SETTINGS.items():
                t = time.perf_counter()
                r = layer_fidelity(model, hardware(preset, setting), x)
                r["seconds"] = time.perf_counter() - t
                doc["zoo"][f"{name}/{preset}/{sname}"] = r
                ratio = r["error_ratio_fast_over_exact_median"]
                print(f"{name:14s} {preset:10s} {sname:18s} fast/exact error {ratio:.2f}"
                      f" [{r['error_ratio_min']:.2f}, {r['error_ratio_max']:.2f}]"
                      f"  gap {r['fast_exact_gap_rel_rms_mean']:.4f}", flush=True)
        OUT.write_text(json.dumps(doc, indent=2))
    model_file = ROOT / "runs" / "r20" / "model.pt"
    if model_file.exists() and not args.zoo_only:
        from accuracy_bench import eval_tensors  # same data handling as the accuracy benchmark

        model, xt, yt, calib = eval_tensors(model_file, args.data_root, args.images)
        doc["resnet20_accuracy"] = {}
        for preset in ("isaac", "rnc-paper"):
            for sname in ("adc4", "adc6", "adc6+var5%+read2%"):
                hw = hardware(preset, SETTINGS[sname])
                accs = {m: simulate_accuracy(model, hw, xt, yt, calibration=calib, chips=2, mode=m).to_dict()
                        for m in ("fast", "exact")}
                doc["resnet20_accuracy"][f"{preset}/{sname}"] = {
                    "images": len(xt), "quantized": accs["fast"]["quantized_accuracy"],
                    "fast": accs["fast"]["chip_accuracies"], "exact": accs["exact"]["chip_accuracies"]}
                print(f"resnet20 {preset} {sname}: {doc['resnet20_accuracy'][f'{preset}/{sname}']}", flush=True)
                OUT.write_text(json.dumps(doc, indent=2))
    OUT.write_text(json.dumps(doc, indent=2))
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()

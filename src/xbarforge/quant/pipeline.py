"""The whole `xbarforge quantize` job: search, baselines, fine-tuning, result files and plots.

OUT/config.json   the settings (a rerun with other settings into the same folder is refused)
OUT/stage1/, stage2/   agent checkpoints and every episode (history.jsonl)
OUT/policy.json   bits per layer as runs of channels, with the policy's cost
OUT/result.json   everything: baselines, stages, final policy, fine-tuned accuracies
OUT/policy.png, learning.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from xbarforge.data.bundle import DataBundle
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.quant.config import QuantConfig
from xbarforge.quant.search import RESULT_FILE, QuantRun, search
from xbarforge.quant.space import ChannelBits, policy_from_record
from xbarforge.rundir import use_settings_file
from xbarforge.train.modelio import atomic_write_text


def _check_config(out: Path, record: dict[str, Any]) -> None:
    use_settings_file(out / "config.json", record)


def baselines(run: QuantRun) -> dict[str, Any]:
    """Uniform precision at the widest allowed width, and the widest uniform width that fits."""
    widest = max(run.space.bits)
    out: dict[str, Any] = {"uniform": {"bits": widest, **run.describe(run.space.uniform(widest))}}
    for b in sorted(run.space.bits, reverse=True):
        if run.coster(run.space.uniform(b)).fits:
            out["uniform_fitting"] = {"bits": b, **run.describe(run.space.uniform(b))}
            break
    return out


def finetune_policy(run: QuantRun, policy: ChannelBits, out: Path, progress: bool,
                    arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Quantization-aware fine-tuning of `policy`; accuracies with the quantization in place."""
    from xbarforge.quant.finetune import finetune

    cfg = run.config
    _, metrics = finetune(run.model, run.data, policy, activation_bits=run.hw.precision.activation_bits,
                          epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, out_dir=out, resume=True,
                          progress=progress, seed=cfg.seed, arch=arch)
    return metrics


def quantize(model: nn.Module, data: DataBundle, hw: HardwareSpec, config: QuantConfig,
             input_shape: tuple[int, int, int], out_dir: str | Path, *, source: dict[str, Any] | None = None,
             progress: bool = True, device: str | None = None, arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) a quantization into `out_dir`; returns result.json's content.

    `arch` (the source model file's record of how to build the network) lets the fine-tuned model file
    rebuild itself."""
    out = Path(out_dir)
    _check_config(out, {"hardware": hw.model_dump(mode="json"), **config.model_dump(mode="json"),
                        "source": (source or {}).get("path")})
    run = QuantRun(model, data, hw, config, input_shape, device=device)
    result: dict[str, Any] = {
        "model": run.space.graph.name,
        "hardware": hw.name,
        "crossbar": [f"{p.rows}x{p.cols}" for p in hw.chip.pools] or f"{hw.crossbar.rows}x{hw.crossbar.cols}",
        "budget": run.coster.budget,
        "pools": [p.model_dump() for p in hw.chip.pools] or None,
        "config": config.model_dump(mode="json"),
        "source": source,
        "utilization_denominator": "cells of the crossbars used (utilization_budget: of the whole budget)",
        "baselines": baselines(run),
    }
    result.update(search(run, out, progress=progress))
    policy = policy_from_record(run.space, result["policy"])
    result["final"] = run.describe(policy)
    if config.finetune_epochs:
        result["finetune"] = finetune_policy(run, policy, out / "finetune", progress, arch)
    atomic_write_text(out / "policy.json", json.dumps({"policy": result["policy"], **{
        k: v for k, v in result["final"].items() if k != "layers"}}, indent=1))
    atomic_write_text(out / RESULT_FILE, json.dumps(result, indent=1))
    _plots(result, out)
    return result


def _plots(result: dict[str, Any], out: Path) -> None:
    from xbarforge.report.plots import plot_learning_curve, plot_quant_policy

    plot_quant_policy(result, out / "policy.png")
    stages = {}
    for stage in ("stage1", "stage2"):
        path = out / stage / "history.jsonl"
        if path.exists():
            stages[stage] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if stages:
        plot_learning_curve(stages, out / "learning.png", title=f"{result['model']} on {result['hardware']}")

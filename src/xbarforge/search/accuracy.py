"""Where a candidate's accuracy comes from: a fitted predictor, the supernet, or the simulator.

All three score on the validation split carved from the training set (never the test split).
`SupernetAccuracy` scores a sub-net with inherited weights and recalibrated batch norms;
`SimulatedAccuracy` then runs it through the accuracy simulator on the chip it would use --
every layer on its own crossbar size when the space chooses sizes (NAX), so IR drop, ADC and
device noise of that size count -- and returns the mean over chip instances.
`fit_predictor` scores sampled sub-nets with `SupernetAccuracy` and fits an `AccuracyPredictor`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from xbarforge.data import DataBundle
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.search.predictor import AccuracyPredictor
from xbarforge.search.space import Arch, SearchSpace
from xbarforge.search.supernet import CALIBRATION_IMAGES, head, recalibrate_bn, sample_for_training, subnet_accuracy


def scoring_data(data: DataBundle, val_images: int | None, calibration_images: int = CALIBRATION_IMAGES
                 ) -> DataBundle:
    """Only what scoring needs (the first training images for batch-norm statistics, the first
    `val_images` of the validation split), so evaluators stay small enough to ship to workers."""
    small = head(data, "train", calibration_images)
    if val_images is not None:
        small = head(small, "val", val_images)
    return dataclasses.replace(small, test=small.val)


@dataclass
class SupernetAccuracy:
    """Validation accuracy of a sub-net with the supernet's weights (batch norms recalibrated)."""

    net: nn.Module
    space: SearchSpace
    data: DataBundle

    def __call__(self, arch: Arch) -> float:
        return float(subnet_accuracy(self.net, self.space, arch, self.data)["accuracy"])


@dataclass
class SimulatedAccuracy:
    """Mean accuracy over `chips` simulated chip instances of the sub-net on its own crossbars."""

    net: nn.Module
    space: SearchSpace
    hw: HardwareSpec
    data: DataBundle
    chips: int = 2
    seed: int = 0
    recalibrate: bool = True  # sub-nets need their own batch-norm statistics; a standalone net has them
    cache: dict[str, float] = field(default_factory=dict, repr=False)

    def report(self, arch: Arch) -> Any:
        from xbarforge.hardware.scaling import resized
        from xbarforge.sim.monte_carlo import simulate_accuracy

        sub = self.net.export(arch)  # type: ignore[operator]
        if self.recalibrate:
            recalibrate_bn(sub, self.data)
        sizes = self.space.crossbar_sizes(arch)
        layer_hw = {name: resized(self.hw, s, s) for name, s in sizes.items()} if sizes else None
        val = self.data.val
        x = _normalized(self.data, val.x)
        calib = _normalized(self.data, self.data.train.x[:256])
        return simulate_accuracy(sub.float().eval(), self.hw, x, val.y, calibration=calib, chips=self.chips,
                                 seed=self.seed, layer_hardware=layer_hw)

    def __call__(self, arch: Arch) -> float:
        key = json.dumps(arch, sort_keys=True)
        if key not in self.cache:
            self.cache[key] = float(np.mean(self.report(arch).chip_accuracies))
        return self.cache[key]


def _normalized(data: DataBundle, x: torch.Tensor) -> torch.Tensor:
    """Images as the network sees them (float, resized, normalized), in one tensor."""
    from xbarforge.data.bundle import Split

    part = dataclasses.replace(data, val=Split(x, torch.zeros(len(x), dtype=torch.long)))
    return torch.cat([xb for xb, _ in part.batches("val", 500)])


def fit_predictor(net: nn.Module, space: SearchSpace, data: DataBundle, samples: int, *, seed: int = 0,
                  cache_file: Path | None = None, console: Console | None = None,
                  score: Callable[[Arch], float] | None = None) -> tuple[AccuracyPredictor, list[dict[str, Any]]]:
    """Score the largest, the smallest and `samples - 2` random sub-nets, fit a predictor on them.

    Scores are appended to `cache_file` (JSON lines) as they come, so an interrupted run resumes.
    """
    score = score or SupernetAccuracy(net, space, data)
    rng = np.random.default_rng([seed, 7])
    archs = [space.decode(space.largest()), space.decode(space.smallest())]
    archs += [sample_for_training(space, rng) for _ in range(max(0, samples - 2))]
    done: dict[str, float] = {}
    if cache_file is not None and cache_file.exists():
        for line in cache_file.read_text().splitlines():
            try:
                rec = json.loads(line)
                done[json.dumps(rec["arch"], sort_keys=True)] = float(rec["accuracy"])
            except (ValueError, KeyError):
                continue  # a torn last line
    console = console or Console(quiet=True)
    records = []
    for i, arch in enumerate(archs):
        key = json.dumps(arch, sort_keys=True)
        if key not in done:
            done[key] = score(arch)
            if cache_file is not None:
                with cache_file.open("a") as f:
                    f.write(json.dumps({"arch": arch, "accuracy": done[key]}) + "\n")
            console.print(f"  predictor sample {i + 1}/{len(archs)}: {done[key]:.2%}  {space.describe(arch)}")
        records.append({"arch": arch, "accuracy": done[key]})
    predictor = AccuracyPredictor(space).fit([r["arch"] for r in records], [r["accuracy"] for r in records],
                                             seed=seed)
    return predictor, records


@dataclass
class PredictedAccuracy:
    """The predictor as an accuracy source (microseconds per candidate)."""

    predictor: AccuracyPredictor

    def __call__(self, arch: Arch) -> float:
        return self.predictor.predict(arch)

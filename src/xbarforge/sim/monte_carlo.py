"""Accuracy over chip instances (Monte Carlo) and over hardware parameters (sweeps).

`simulate_accuracy` reports, on one evaluation set, the float accuracy of the (folded) model,
the plain quantized accuracy (quantized weights and inputs, ideal devices and converters) and the
accuracy of `chips` independently programmed chip instances, with mean, standard deviation, min
and max: what each step from float to chip costs. `sweep` repeats it over the cartesian product
of hardware parameters (`SWEEP_ALIASES` or any dotted schema key).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from xbarforge.compiler.mapping import Mapping
from xbarforge.hardware.loader import override
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim.simulator import LayerHardware, Mode, Simulator, SimulatorCache, programming_key

__all__ = ["SWEEP_ALIASES", "AccuracyReport", "apply_setting", "simulate_accuracy", "sweep"]

# Short names for the parameters users sweep most; anything else is a dotted schema key.
SWEEP_ALIASES: dict[str, tuple[str, ...]] = {
    "crossbar": ("crossbar.rows", "crossbar.cols"),
    "rows": ("crossbar.rows",),
    "cols": ("crossbar.cols",),
    "variation": ("nonideal.variation",),
    "read_noise": ("nonideal.read_noise",),
    "adc_bits": ("precision.adc_bits",),
    "dac_bits": ("precision.dac_bits",),
    "weight_bits": ("precision.weight_bits",),
    "activation_bits": ("precision.activation_bits",),
    "cell_bits": ("crossbar.cell_bits",),
    "stuck_on": ("nonideal.stuck_on_rate",),
    "stuck_off": ("nonideal.stuck_off_rate",),
    "drift_time": ("nonideal.drift_time_s",),
    "wire_ohm": ("crossbar.wire_ohm",),
    "ir_drop": ("nonideal.ir_drop",),
}


def apply_setting(hw: HardwareSpec, name: str, value: Any) -> HardwareSpec:
    """`hw` with sweep parameter `name` (alias or dotted key) set to `value`, re-validated."""
    for key in SWEEP_ALIASES.get(name.replace("-", "_"), (name,)):
        hw = override(hw, key, value)
    return hw


@dataclass
class AccuracyReport:
    hardware: str
    mode: str
    samples: int
    float_accuracy: float
    quantized_accuracy: float
    chip_accuracies: list[float]
    chip_seeds: list[int]
    setting: dict[str, Any] = field(default_factory=dict)
    nonideal: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.chip_accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.chip_accuracies) if len(self.chip_accuracies) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(chip_mean=self.mean, chip_std=self.std, chip_min=min(self.chip_accuracies),
                 chip_max=max(self.chip_accuracies), chips=len(self.chip_accuracies))
        return d


def _accuracy(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((run(x[i : i + batch]).argmax(-1).cpu() == y[i : i + batch]).sum())
    return correct / max(1, len(x))


def simulate_accuracy(model: nn.Module, hw: HardwareSpec, x: torch.Tensor, y: torch.Tensor, *,
                      calibration: torch.Tensor, chips: int = 5, mode: Mode = "fast", seed: int = 0,
                      mapping: Mapping | None = None, batch_size: int = 500, device: str | None = None,
                      setting: dict[str, Any] | None = None,
                      progress: Callable[[int], None] | None = None,
                      reference_cache: dict[tuple[Any, ...], tuple[float, float]] | None = None,
                      layer_hardware: LayerHardware | None = None,
                      cache: SimulatorCache | None = None) -> AccuracyReport:
    """Accuracy of `model` on (x, y): float, quantized, and on `chips` chip instances.

    `calibration` (inputs from the training side, never the evaluation set) fixes the input
    quantizers and ADC ranges. Chip instance k uses seed `seed + k` for programming and for read
    noise, so every number can be reproduced. A chip without device noise is programmed once.
    `layer_hardware` = {layer name: spec} runs those layers on other hardware (see `Simulator`).
    `cache` shares calibrations and programmed chips with other calls on the same model and
    calibration set (as `sweep` does).
    """
    start = time.perf_counter()
    sim = Simulator(model, hw, tuple(x.shape[1:]), mapping=mapping, device=device,
                    layer_hardware=layer_hardware, cache=cache)
    sim.program(seed).calibrate(calibration)  # chip `seed` first: calibrating alone would program chip 0
    # float and quantized accuracy depend only on the bit widths (a sweep over devices reuses them)
    key: tuple[Any, ...] = (hw.precision.weight_bits, hw.precision.activation_bits, hw.nonideal.quantize_inputs)
    if layer_hardware:  # layers on other specs may quantize differently
        key += tuple((a.hw.precision.weight_bits, a.hw.precision.activation_bits, a.hw.nonideal.quantize_inputs)
                     for a in sim.layers.values())
    if reference_cache is not None and key in reference_cache:
        float_acc, quant_acc = reference_cache[key]
    else:
        sim.mode = "float"
        float_acc = _accuracy(sim, x, y, batch_size)
        sim.mode = "quantized"
        quant_acc = _accuracy(sim, x, y, batch_size)
        if reference_cache is not None:
            reference_cache[key] = (float_acc, quant_acc)
    sim.mode = mode
    accs, seeds = [], []
    for k in range(chips):
        s = seed + k
        if k == 0 or sim.device_noise:
            sim.program(s)
        gen = sim.generator(10_007 * s + 1)
        accs.append(_accuracy(lambda xb, g=gen: sim(xb, g), x, y, batch_size))
        seeds.append(s)
        if progress is not None:
            progress(1)
    return AccuracyReport(hardware=hw.name, mode=mode, samples=len(x), float_accuracy=float_acc,
                          quantized_accuracy=quant_acc, chip_accuracies=accs, chip_seeds=seeds,
                          setting=dict(setting or {}), nonideal=hw.nonideal.model_dump(),
                          seconds=time.perf_counter() - start)


def sweep(model: nn.Module, hw: HardwareSpec, x: torch.Tensor, y: torch.Tensor, vary: dict[str, Sequence[Any]], *,
          calibration: torch.Tensor, chips: int = 5, mode: Mode = "fast", seed: int = 0, batch_size: int = 500,
          progress: Callable[[int], None] | None = None,
          layer_hardware: LayerHardware | None = None) -> list[AccuracyReport]:
    """`simulate_accuracy` at every point of the grid `vary` = {parameter: values}.

    A setting describes the whole chip, so it applies to `hw` and to every spec of `layer_hardware`
    alike (sweeping `crossbar` therefore gives every layer that size).
    """
    names = list(vary)
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*(vary[n] for n in names))]
    specs = [_point_specs(hw, layer_hardware, setting) for setting in points]
    reports: list[AccuracyReport | None] = [None] * len(points)
    reference: dict[tuple[Any, ...], tuple[float, float]] = {}
    groups = 1 + (len({id(spec) for spec in layer_hardware.values()}) if layer_hardware else 0)
    shared = SimulatorCache(max_chips=chips * groups)  # one model and calibration set: shared calibrations, chips
    for i in _reuse_order(specs):
        point_hw, point_layers = specs[i]
        reports[i] = simulate_accuracy(model, point_hw, x, y, calibration=calibration, chips=chips, mode=mode,
                                       seed=seed, batch_size=batch_size, setting=points[i], progress=progress,
                                       reference_cache=reference, layer_hardware=point_layers, cache=shared)
    return [r for r in reports if r is not None]


def _point_specs(hw: HardwareSpec, layer_hardware: LayerHardware | None, setting: dict[str, Any]
                 ) -> tuple[HardwareSpec, dict[str, HardwareSpec] | None]:
    """The chip of one grid point: `hw` and every spec of `layer_hardware` with `setting` applied."""
    point_hw = _apply_all(hw, setting)
    if layer_hardware is None:
        return point_hw, None
    done: dict[int, HardwareSpec] = {id(hw): point_hw}  # one re-validation per spec object
    point_layers = {}
    for name, spec in layer_hardware.items():
        if id(spec) not in done:
            done[id(spec)] = _apply_all(spec, setting)
        point_layers[name] = done[id(spec)]
    return point_hw, point_layers


def _reuse_order(specs: list[tuple[HardwareSpec, dict[str, HardwareSpec] | None]]) -> list[int]:
    """Grid points in an order that runs points with the same programmed chips one after another
    (the chip cache keeps only a few chips); otherwise the grid order."""
    def key(i: int) -> str:
        point_hw, layers = specs[i]
        return programming_key(point_hw) + "".join(programming_key(s) for s in (layers or {}).values())

    first: dict[str, int] = {}
    for i in range(len(specs)):
        first.setdefault(key(i), i)
    return sorted(range(len(specs)), key=lambda i: (first[key(i)], i))


def _apply_all(hw: HardwareSpec, setting: dict[str, Any]) -> HardwareSpec:
    for name, value in setting.items():
        hw = apply_setting(hw, name, value)
    return hw


def grid_size(vary: dict[str, Sequence[Any]]) -> int:
    return math.prod(len(v) for v in vary.values())

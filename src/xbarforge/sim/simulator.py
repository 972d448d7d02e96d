"""Simulator: a model, a chip and its Mapping; tells what the chip computes and how accurately.

    sim = Simulator(model, load_hardware("isaac"), input_shape=(3, 32, 32), calibration=x_val)
    sim.program(seed=3)          # one chip instance (variation, faults, drift drawn per cell)
    logits = sim(x)              # every conv/linear computed as the Mapping places it
    sim.mode = "exact"           # bit-serial, per-read ADC; "fast" = decoded weights + noise

Batch norms folded by capture are part of the weights the crossbars hold; every other op (pooling,
activations, additions) runs digitally in float. Without a Mapping the isaac-like one is used
(every block on its own crossbar), which gives the same accuracy as any other placement unless
IR drop is on (then a cell's position in its crossbar matters).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
import torch.fx
from torch import nn

from xbarforge.compiler.compile import isaac_like
from xbarforge.compiler.execute import CrossbarKey, LayerInterpreter, program_crossbars
from xbarforge.compiler.mapping import Mapping
from xbarforge.errors import XbarforgeError
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim.analog import AnalogLayer, NoiseTable
from xbarforge.sim.calibrate import adc_calibration, input_quant
from xbarforge.sim.device import off_level, program_chip
from xbarforge.sim.layout import layer_layouts

__all__ = ["Mode", "Simulator", "SimulationError", "pick_device"]

Mode = Literal["fast", "exact", "quantized", "float"]
_CALIBRATION_PIXELS = 4096  # calibration inputs kept per conv layer for ADC ranges
NOISE_TABLE_SIZE = 1 << 23  # fast mode's normals per chip instance (32 MB)


def pick_device() -> torch.device:
    """CUDA when present (the fast mode is a few convolutions, the exact mode large matmuls), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SimulationError(XbarforgeError):
    """A model, mapping or hardware the simulator cannot run (one line)."""


class Simulator:
    """One model on one chip design; `program(seed)` draws a chip instance, calling it runs it."""

    def __init__(self, model: nn.Module, hw: HardwareSpec, input_shape: tuple[int, ...] | None = None, *,
                 mapping: Mapping | None = None, graph: LayerGraph | None = None,
                 calibration: torch.Tensor | None = None, mode: Mode = "fast",
                 device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = copy.deepcopy(model).cpu().eval()
        self.hw = hw
        self.mode: Mode = mode
        if graph is None:
            if input_shape is None:
                raise SimulationError("simulator: give input_shape (C, H, W) or a captured graph")
            graph = capture(self.model, tuple(input_shape))
        self.graph = graph
        self.mapping = mapping if mapping is not None else isaac_like(graph, hw)
        try:
            self.levels = program_crossbars(self.mapping, graph, hw)
        except ValueError as exc:
            raise SimulationError(f"mapping does not fit this model and hardware: {exc}") from None
        self.layouts = layer_layouts(self.mapping)
        self.gm = torch.fx.symbolic_trace(self.model).to(self.device)
        nominal = self._nominal_crossbars()
        ref_col = hw.crossbar.cols - 1 if hw.crossbar.encoding == "offset" else None
        self.layers: dict[str, AnalogLayer] = {}
        for layer in graph.mvm_layers:
            cells, ref = self.layouts[layer.name].gather(nominal, ref_col)
            self.layers[layer.name] = AnalogLayer(layer, hw, self.layouts[layer.name], cells, ref, self.device)
        self.seed: int | None = None
        self.calibrated = False
        if calibration is not None:
            self.calibrate(calibration)

    # ---- chip instances ----

    def _nominal_crossbars(self) -> dict[CrossbarKey, torch.Tensor]:
        eps = off_level(self.hw)
        return {k: v + eps if eps else v for k, v in self.levels.items()}

    def program(self, seed: int = 0) -> Simulator:
        """Draw chip instance `seed`: every crossbar programmed with its own cell-level noise."""
        gen = torch.Generator().manual_seed(seed)
        programmed = program_chip(self.levels, self.hw, gen)
        ref_col = self.hw.crossbar.cols - 1 if self.hw.crossbar.encoding == "offset" else None
        noise = NoiseTable(NOISE_TABLE_SIZE, 1_000_003 * seed + 7, self.device)
        for name, analog in self.layers.items():
            analog.program(*self.layouts[name].gather(programmed, ref_col))
            analog.noise = noise
        self.seed = seed
        return self

    # ---- calibration ----

    def calibrate(self, x: torch.Tensor) -> Simulator:
        """Fix input quantizers and ADC ranges from calibration inputs `x` (a batch)."""
        seen: dict[str, torch.Tensor] = {}  # a subset of each layer's inputs, for the ADC ranges
        extremes: dict[str, torch.Tensor] = {}  # (max |x|, min x) over every calibration input

        def record(layer: Layer, inp: torch.Tensor) -> torch.Tensor:
            pixels = 1 if layer.kind == "linear" else inp[0].numel() // max(1, inp.shape[1])
            keep = inp if layer.kind == "linear" else inp[: max(1, _CALIBRATION_PIXELS // max(1, pixels))]
            seen[layer.name] = keep
            extremes[layer.name] = torch.stack((inp.abs().max(), -inp.min()))
            return self.layers[layer.name].forward_float(inp)

        self.run_layers(x, record)
        bits = self.hw.precision.activation_bits
        for name, analog in self.layers.items():
            top, neg = (float(v) for v in extremes[name])
            analog.input = input_quant(top, neg > 0, bits)
            if self.hw.nonideal.adc:
                analog.adc_step, analog.adc_error = adc_calibration(analog, seen[name])
            else:
                analog.adc_step = analog.adc_error = None
            analog._fast = analog._scaled = None
        self.calibrated = True
        if self.seed is None:
            self.program(0)
        return self

    # ---- running ----

    def run_layers(self, x: torch.Tensor, layer_fn: Callable[[Layer, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Run the model with `layer_fn(layer, input)` computing every MVM layer (digital ops in float)."""
        interp = LayerInterpreter(self.gm, self.graph, layer_fn)
        with torch.no_grad():
            out = interp.run(x.to(self.device))
        missing = sorted(set(self.layers) - set(interp.outputs))
        if missing:
            raise SimulationError(f"layers not reached as conv/linear modules (functional forms?): {missing}")
        return out

    def generator(self, seed: int) -> torch.Generator:
        """A generator on the simulator's device (read noise is drawn where the reads happen)."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model output for `x` on the programmed chip.

        `mode`: fast or exact (the chip), quantized (quantized weights and inputs, ideal devices
        and converters, in float), float (the folded model, no quantization).
        """
        if self.mode == "float":
            return self.run_layers(x, lambda layer, inp: self.layers[layer.name].forward_float(inp))
        if not self.calibrated:
            self.calibrate(x)
        if self.mode == "quantized":
            return self.run_layers(x, lambda layer, inp: self.layers[layer.name].forward_quantized(inp))
        if self.mode == "exact":
            return self.run_layers(x, lambda layer, inp: self.layers[layer.name].forward_exact(inp, generator))
        return self.run_layers(x, lambda layer, inp: self.layers[layer.name].forward_fast(inp, generator))

    def layer_outputs(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Each MVM layer's output on the chip for model input `x` (for debugging and tests)."""
        outs: dict[str, torch.Tensor] = {}

        def fn(layer: Layer, inp: torch.Tensor) -> torch.Tensor:
            a = self.layers[layer.name]
            run = a.forward_exact if self.mode == "exact" else a.forward_fast
            outs[layer.name] = run(inp, generator)
            return outs[layer.name]

        if not self.calibrated:
            self.calibrate(x)
        self.run_layers(x, fn)
        return outs

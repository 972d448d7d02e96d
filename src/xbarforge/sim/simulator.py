"""Simulator: a model, a chip and its Mapping; tells what the chip computes and how accurately.

    sim = Simulator(model, load_hardware("isaac"), input_shape=(3, 32, 32), calibration=x_val)
    sim.program(seed=3)          # one chip instance (variation, faults, drift drawn per cell)
    logits = sim(x)              # every conv/linear computed as the Mapping places it
    sim.mode = "exact"           # bit-serial, per-read ADC; "fast" = decoded weights + noise

Batch norms folded by capture are part of the weights the crossbars hold; every other op (pooling,
activations, additions) runs digitally in float. Without a Mapping the isaac-like one is used
(every block on its own crossbar), which gives the same accuracy as any other placement unless
IR drop is on (then a cell's position in its crossbar matters).

Heterogeneous chips (NAX: a crossbar size per layer) pass `layer_hardware` = {layer name: spec}:
the layers sharing a spec form a *group* that is mapped isaac-like on its own crossbars, programmed
with its own device model and read with its own converters; layers not named run on `hw`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.fx
from torch import nn

from xbarforge.compiler.compile import isaac_like
from xbarforge.compiler.execute import CrossbarKey, LayerInterpreter, program_crossbars
from xbarforge.compiler.mapping import Mapping
from xbarforge.errors import XbarforgeError
from xbarforge.graph.capture import capture
from xbarforge.graph.fx_capture import TraceFailure, trace_module
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim.analog import AnalogLayer, InputQuant, NoiseTable
from xbarforge.sim.calibrate import ReadBuffer, adc_calibration, input_quant
from xbarforge.sim.device import off_level, program_chip
from xbarforge.sim.layout import LayerLayout, layer_layouts

__all__ = ["LayerHardware", "Mode", "SimulationError", "Simulator", "SimulatorCache", "calibration_key", "pick_device",
           "programming_key", "stream_seed"]

Mode = Literal["fast", "exact", "quantized", "float"]
_CALIBRATION_PIXELS = 4096  # calibration inputs kept per conv layer for ADC ranges
NOISE_TABLE_SIZE = 1 << 23  # fast mode's normals per chip instance (32 MB)
LayerHardware = MappingOf[str, HardwareSpec]  # layer name -> the spec that layer runs on


def pick_device() -> torch.device:
    """CUDA when present (the fast mode is a few convolutions, the exact mode large matmuls), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SimulationError(XbarforgeError):
    """A model, mapping or hardware the simulator cannot run (one line)."""


def stream_seed(seed: int, stream: int) -> int:
    """Programming seed of group `stream` on chip instance `seed`.

    Stream 0 (the layers on the chip's own `hw`) uses `seed` itself, so a homogeneous chip draws
    exactly what it always drew; other groups get a SeedSequence hash of (seed, stream): distinct,
    reproducible and uncorrelated with each other and with stream 0.
    """
    if stream == 0:
        return seed
    state = np.random.SeedSequence([seed % 2**64, stream]).generate_state(1, np.uint64)
    return int(state[0])


@dataclass
class _Group:
    """The layers that run on one HardwareSpec: mapped, programmed and drawn together."""

    hw: HardwareSpec
    stream: int  # which random stream programs it (see stream_seed)
    names: list[str]  # its MVM layers, in graph order
    mapping: Mapping
    levels: dict[CrossbarKey, torch.Tensor]  # cell levels the compiler wrote

    @property
    def ref_col(self) -> int | None:
        return self.hw.crossbar.cols - 1 if self.hw.crossbar.encoding == "offset" else None

    def nominal(self) -> dict[CrossbarKey, torch.Tensor]:
        """Ideal-device cells in level units (the off-state conductance every cell carries added)."""
        eps = off_level(self.hw)
        return {k: v + eps if eps else v for k, v in self.levels.items()}


def _spec_key(hw: HardwareSpec) -> str:
    """What the simulator reads of a spec (and all isaac-like mapping reads): specs that differ only
    in name, cost or budget fields run identically, so they share a group."""
    return hw.model_dump_json(include={"crossbar", "precision", "nonideal"})


@dataclass
class SimulatorCache:
    """What simulators of one model and one calibration set can share (the points of a sweep).

    Calibration depends on the model, the calibration inputs and the converter and crossbar
    settings, not on the devices: a sweep over variation, read noise, faults, drift or IR drop
    calibrates once. A programmed chip depends on the crossbar and device settings and the seed,
    not on the converters: a sweep over ADC or DAC bits programs each chip once. Every entry is
    keyed by exactly the settings it depends on, so sharing changes no result.
    """

    float_pass: dict[int, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = field(default_factory=dict)
    adc: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    chips: dict[tuple[Any, ...], dict[CrossbarKey, torch.Tensor]] = field(default_factory=dict)
    max_chips: int = 8  # programmed chips kept (ResNet-20 on isaac: 15 MB each)

    def keep_chip(self, key: tuple[Any, ...], cells: dict[CrossbarKey, torch.Tensor]) -> None:
        self.chips[key] = cells
        while len(self.chips) > self.max_chips:
            del self.chips[next(iter(self.chips))]


_ADC_KEYS = {"quantize_inputs", "adc", "adc_range", "adc_percentile"}  # nonideal keys calibration reads


def calibration_key(hw: HardwareSpec) -> str:
    """The settings an ADC calibration depends on (crossbar contents and converters, not devices)."""
    return hw.model_dump_json(include={"crossbar": {f for f in type(hw.crossbar).model_fields if f != "wire_ohm"},
                                       "precision": True, "nonideal": _ADC_KEYS})


def programming_key(hw: HardwareSpec) -> str:
    """The settings a programmed chip depends on (cells and devices, not converters)."""
    devices = {f for f in type(hw.nonideal).model_fields if f not in _ADC_KEYS and f != "read_noise"}
    return hw.model_dump_json(include={"crossbar": True, "precision": {"weight_bits"}, "nonideal": devices})


def _group_specs(graph: LayerGraph, hw: HardwareSpec, layer_hardware: LayerHardware | None
                 ) -> list[tuple[HardwareSpec, int, list[str]]]:
    """(spec, stream, layer names) per distinct spec; the group on `hw` is stream 0, the others
    are numbered 1, 2, ... in the order their first layer runs."""
    names = [layer.name for layer in graph.mvm_layers]
    if layer_hardware is None:
        return [(hw, 0, names)]
    if not isinstance(layer_hardware, MappingOf):
        kind = type(layer_hardware).__name__
        raise SimulationError(f"layer_hardware: expected {{layer name: HardwareSpec}}, got {kind}")
    known = set(names)
    for name, spec in layer_hardware.items():
        if name not in known:
            some = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise SimulationError(f"layer_hardware: the model has no conv/linear layer '{name}' (it has {some})")
        if not isinstance(spec, HardwareSpec):
            raise SimulationError(f"layer_hardware['{name}']: expected a HardwareSpec, got {type(spec).__name__}")
    hw_key: str | None = None
    by_key: dict[str, tuple[HardwareSpec, int, list[str]]] = {}
    for name in names:
        spec = layer_hardware.get(name, hw)
        spec = hw if spec is hw else spec.with_layout("dense")
        if spec is hw:
            key = "hw"
        else:
            key = _spec_key(spec)
            if hw_key is None:
                hw_key = _spec_key(hw)
            if key == hw_key:
                key, spec = "hw", hw
        if key not in by_key:
            by_key[key] = (spec, 0 if key == "hw" else 1 + sum(k != "hw" for k in by_key), [])
        by_key[key][2].append(name)
    return list(by_key.values()) or [(hw, 0, names)]


class Simulator:
    """One model on one chip design; `program(seed)` draws a chip instance, calling it runs it."""

    def __init__(self, model: nn.Module, hw: HardwareSpec, input_shape: tuple[int, ...] | None = None, *,
                 mapping: Mapping | None = None, graph: LayerGraph | None = None,
                 calibration: torch.Tensor | None = None, mode: Mode = "fast",
                 device: torch.device | str | None = None, layer_hardware: LayerHardware | None = None,
                 cache: SimulatorCache | None = None) -> None:
        self.cache = cache  # shared with other simulators of the same model and calibration set
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = copy.deepcopy(model).cpu().eval()
        hw = hw.with_layout("dense")  # MNSIM's layout is a cost-model layout (compiler.lower); cells read alike
        self.hw = hw
        self.mode: Mode = mode
        if graph is None:
            if input_shape is None:
                raise SimulationError("simulator: give input_shape (C, H, W) or a captured graph")
            graph = capture(self.model, tuple(input_shape))
        if graph.source == "onnx-fallback":
            raise SimulationError(
                f"simulator: {graph.note}; compile took an ONNX export instead, but the simulator runs the module "
                "itself through torch.fx")
        self.graph = graph
        specs = _group_specs(graph, hw, layer_hardware)
        if mapping is not None and (len(specs) > 1 or specs[0][1] != 0):
            raise SimulationError("simulator: a mapping places one crossbar size; layers on other hardware "
                                  "(layer_hardware) are mapped isaac-like, so give no mapping")
        self.groups: list[_Group] = []
        self.layouts: dict[str, LayerLayout] = {}
        every = len(graph.mvm_layers)
        for spec, stream, names in specs:
            sub = graph if len(names) == every else _subgraph(graph, names)
            group_map = mapping if mapping is not None else isaac_like(sub, spec)
            try:
                levels = program_crossbars(group_map, sub, spec)
            except ValueError as exc:
                raise SimulationError(f"mapping does not fit this model and hardware: {exc}") from None
            self.groups.append(_Group(spec, stream, names, group_map, levels))
            self.layouts.update(layer_layouts(group_map))
        self.mapping: Mapping | None = self.groups[0].mapping if len(self.groups) == 1 else None
        try:
            self.gm = trace_module(self.model).to(self.device)
        except TraceFailure as exc:  # compile falls back to ONNX; the simulator runs the module itself
            raise SimulationError(f"simulator: {exc}; remove control flow on tensor values there") from None
        group_of = {name: g for g in self.groups for name in g.names}
        nominal = {g.stream: g.nominal() for g in self.groups}
        self.layers: dict[str, AnalogLayer] = {}
        for layer in graph.mvm_layers:
            g = group_of[layer.name]
            cells, ref = self.layouts[layer.name].gather(nominal[g.stream], g.ref_col)
            self.layers[layer.name] = AnalogLayer(layer, g.hw, self.layouts[layer.name], cells, ref, self.device)
        self.seed: int | None = None
        self.calibrated = False
        if calibration is not None:
            self.calibrate(calibration)

    @property
    def device_noise(self) -> bool:
        """Does programming draw random numbers on any of the chip's crossbars (chip instances differ)?"""
        return any(g.hw.nonideal.device_noise for g in self.groups)

    # ---- chip instances ----

    def program(self, seed: int = 0) -> Simulator:
        """Draw chip instance `seed`: every crossbar programmed with its own cell-level noise.

        Each group of layers (one per HardwareSpec) draws from its own stream (`stream_seed`).
        Programming is deterministic, so asking again for the instance installed is free.
        """
        if seed == self.seed:
            return self
        noise = NoiseTable(NOISE_TABLE_SIZE, 1_000_003 * seed + 7, self.device)
        for g in self.groups:
            programmed = self._programmed(g, seed)
            for name in g.names:
                analog = self.layers[name]
                analog.program(*self.layouts[name].gather(programmed, g.ref_col))
                analog.noise = noise
        self.seed = seed
        return self

    def _programmed(self, g: _Group, seed: int) -> dict[CrossbarKey, torch.Tensor]:
        """Group `g`'s crossbars on chip instance `seed` (from the shared cache when one holds them)."""
        gen_seed = stream_seed(seed, g.stream)
        if self.cache is None:
            return program_chip(g.levels, g.hw, torch.Generator().manual_seed(gen_seed))
        key = (tuple(g.names), programming_key(g.hw), gen_seed)
        if key not in self.cache.chips:
            self.cache.keep_chip(key, program_chip(g.levels, g.hw, torch.Generator().manual_seed(gen_seed)))
        return self.cache.chips[key]

    # ---- calibration ----

    def calibrate(self, x: torch.Tensor) -> Simulator:
        """Fix input quantizers and ADC ranges from calibration inputs `x` (a batch)."""
        seen, extremes = self._float_pass(x)
        buffer = ReadBuffer()  # one allocation for every layer's calibration reads
        for name, analog in self.layers.items():  # each layer digitizes with its own hardware
            top, neg = (float(v) for v in extremes[name])
            quant = input_quant(top, neg > 0, analog.hw.precision.activation_bits)
            adc = self._adc_calibration(analog, quant, seen[name], buffer) if analog.hw.nonideal.adc else (None, None)
            analog.calibrate(quant, *adc)
        self.calibrated = True
        if self.seed is None:
            self.program(0)
        return self

    def _float_pass(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per layer, a subset of its float inputs (for the ADC ranges) and (max |x|, -min x) over all of them."""
        if self.cache is not None and id(x) in self.cache.float_pass:
            return self.cache.float_pass[id(x)]
        seen: dict[str, torch.Tensor] = {}
        extremes: dict[str, torch.Tensor] = {}

        def record(layer: Layer, inp: torch.Tensor) -> torch.Tensor:
            pixels = 1 if layer.kind == "linear" else inp[0].numel() // max(1, inp.shape[1])
            keep = inp if layer.kind == "linear" else inp[: max(1, _CALIBRATION_PIXELS // max(1, pixels))]
            seen[layer.name] = keep
            extremes[layer.name] = torch.stack((inp.abs().max(), -inp.min()))
            return self.layers[layer.name].forward_float(inp)

        self.run_layers(x, record)
        if self.cache is not None:
            self.cache.float_pass[id(x)] = (seen, extremes)
        return seen, extremes

    def _adc_calibration(self, analog: AnalogLayer, quant: InputQuant, x: torch.Tensor, buffer: ReadBuffer
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """ADC step and error of one layer (from the shared cache when it holds the same calibration)."""
        analog.input = quant
        if self.cache is None:
            return adc_calibration(analog, x, buffer)
        lay = analog.layout
        key = (analog.layer.name, calibration_key(analog.hw), quant, lay.row_cuts, lay.col_cuts, lay.tiles)
        if key not in self.cache.adc:
            self.cache.adc[key] = adc_calibration(analog, x, buffer)
        return self.cache.adc[key]

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


def _subgraph(graph: LayerGraph, names: list[str]) -> LayerGraph:
    """The MVM layers `names` alone, for mapping one group (the compiler sees only their blocks)."""
    return LayerGraph(graph.name, graph.input_shape, [graph[n] for n in names])

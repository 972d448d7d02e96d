"""The basis network on a non-ideal chip: one programmed basis that every layer reads.

The basis (M vectors of R values) is one weight matrix, so it is compiled (`isaac_like`: C crossbars,
one column block of V vectors each) and programmed by the ordinary `Simulator`, which draws the chip
instance's variation, stuck-at cells, drift and IR drop once and applies read noise and the ADC on
every read. Each layer then runs as BasisN runs it: its input is unfolded into R-row segments and
scaled into the DACs' range with the layer's own calibrated scale, every segment is read on the
basis crossbars, and the digital unit combines the read-outs of the unit's group with the layer's
quantized coefficients (batch norm folded into them, a per-channel scale), then adds the bias.

Because every layer shares the same crossbars, a faulty or drifted cell disturbs all layers at once.
The ADC ranges and the one input quantizer of the basis are calibrated on segments of all layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xbarforge.basis.layout import BasisError
from xbarforge.basis.model import BasisNetwork
from xbarforge.compiler.compile import isaac_like
from xbarforge.compiler.execute import LayerInterpreter, unfold_input
from xbarforge.graph import capture
from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim.simulator import Mode, Simulator

__all__ = ["BasisChip", "simulate_basis_accuracy"]

_CALIBRATION_SEGMENTS = 1 << 14  # segment reads per layer kept to calibrate the shared ADC ranges


def _FLOAT(analog: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 - used like a constant
    """Ideal reads: the (programmed-value) basis in float, no device or converter."""
    return x @ analog.float_weight.T


class _GroupBank(nn.Module):
    """The basis as one R x (P*V) linear layer per crossbar group (a layer reads only its unit's group)."""

    def __init__(self, rows: int, per_group: int, groups: int) -> None:
        super().__init__()
        self.groups = nn.ModuleList(nn.Linear(rows, per_group, bias=False) for _ in range(groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([lin(x) for lin in self.groups], dim=1)


class BasisChip:
    """A basis network deployed on one chip design; `program(seed)` draws a chip instance."""

    def __init__(self, net: BasisNetwork, hw: HardwareSpec, input_shape: tuple[int, ...], calibration: torch.Tensor,
                 mode: Mode = "fast", device: torch.device | str | None = None) -> None:
        self.net = net
        self.hw = hw
        self.layout = net.layout
        per_xbar = hw.usable_cols // hw.cols_per_weight
        if hw.crossbar.rows != self.layout.rows or per_xbar != self.layout.vectors_per_crossbar:
            raise BasisError(f"hardware '{hw.name}' has crossbars of {hw.crossbar.rows} rows x {per_xbar} vectors;"
                             f" the basis was fitted for {self.layout.rows} x {self.layout.vectors_per_crossbar}")
        with torch.no_grad():
            self.plain = net.materialize().cpu().eval()
            basis = net.programmed_basis().detach().cpu()
            coeffs = {seg.name: net.layer_coeffs(seg.name).detach().cpu() for seg in self.layout.layers}
            rebuilt = {k.rsplit(".", 1)[0]: v.detach().cpu() for k, v in net.weights().items()}
        self.graph = capture(self.plain, tuple(input_shape))
        basis_model = _GroupBank(self.layout.rows, self.layout.vectors_per_group, self.layout.groups)
        with torch.no_grad():
            for g, lin in enumerate(basis_model.groups):
                lin.weight.copy_(basis[self.layout.group_vectors(g).start : self.layout.group_vectors(g).stop])
        basis_graph = capture(basis_model, (self.layout.rows,))
        # the compiler places the basis: each group's R x P*V matrix on its own P crossbars, C in all
        self.basis_mapping = isaac_like(basis_graph, hw)
        self.sim = Simulator(basis_model, hw, graph=basis_graph, mapping=self.basis_mapping, mode=mode, device=device)
        self.device = self.sim.device
        self.analogs = [self.sim.layers[f"groups.{g}"] for g in range(self.layout.groups)]
        pv = self.layout.vectors_per_group
        # each unit's group, from the network's own index (vectors g*P*V .. (g+1)*P*V - 1)
        self.unit_group = {seg.name: (net.index(seg.name)[:, :, 0].reshape(-1) // pv).tolist()
                           for seg in self.layout.layers}
        self.coeffs: dict[str, torch.Tensor] = {}
        self.bias: dict[str, torch.Tensor | None] = {}
        for layer in self.graph.mvm_layers:
            seg = self.layout.layer(layer.name)
            # batch norm folded by capture scales each output channel: recover that scale from the
            # folded and unfolded weights and move it into the (digital) coefficients
            w = rebuilt[layer.name].reshape(seg.out_channels, -1).double()
            wf = layer.weight.reshape(seg.out_channels, -1).double()  # type: ignore[union-attr]
            s = (wf * w).sum(1) / (w * w).sum(1).clamp_min(1e-30)
            c = coeffs[layer.name].double() * s.view(seg.conv_groups, seg.out_per_group, 1, 1)
            self.coeffs[layer.name] = c.float().to(self.device)
            self.bias[layer.name] = None if layer.bias is None else layer.bias.float().to(self.device)
        self.gm = torch.fx.symbolic_trace(self.plain).to(self.device)
        self.input_scale: dict[str, float] = {}
        self._calibrate(calibration)

    # ---- calibration ----

    def _segments(self, layer: Layer, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Layer input -> (pixels, conv_groups, segments, R) segment inputs and the fold-back function."""
        seg = self.layout.layer(layer.name)
        xg, fold = unfold_input(layer, x)  # (G, pixels, rows)
        pad = seg.segments * self.layout.rows - seg.rows
        xg = torch.nn.functional.pad(xg.permute(1, 0, 2), (0, pad)) if pad else xg.permute(1, 0, 2)
        return xg.reshape(xg.shape[0], seg.conv_groups, seg.segments, self.layout.rows), fold

    def _calibrate(self, x: torch.Tensor) -> None:
        kept: list[torch.Tensor] = []
        gen = torch.Generator().manual_seed(0)

        def record(layer: Layer, inp: torch.Tensor, segs: torch.Tensor) -> torch.Tensor:
            top = float(inp.abs().max())
            self.input_scale[layer.name] = top if top > 0 else 1.0
            scaled = segs / self.input_scale[layer.name]
            flat = scaled.reshape(-1, self.layout.rows)
            pick = torch.randperm(flat.shape[0], generator=gen)[:_CALIBRATION_SEGMENTS]
            kept.append(flat[pick.to(flat.device)])
            return self._digital(layer, self._reads(layer.name, scaled, _FLOAT))

        self._run(x, record)
        self.sim.calibrate(torch.cat(kept))

    # ---- running ----

    def program(self, seed: int = 0) -> BasisChip:
        """Chip instance `seed`: the basis crossbars programmed once with their own cell noise."""
        self.sim.program(seed)
        return self

    def _reads(self, name: str, segs: torch.Tensor, read: Any) -> torch.Tensor:
        """Each unit's segment inputs (pixels, G, S, R), already scaled, read on its own group's crossbars
        with `read(analog_layer, inputs)`: (pixels, G, S, P*V)."""
        pixels, cg, s, r = segs.shape
        units = segs.reshape(pixels, cg * s, r)
        out = units.new_empty(pixels, cg * s, self.layout.vectors_per_group)
        groups = self.unit_group[name]
        for g in sorted(set(groups)):
            mine = [u for u, gg in enumerate(groups) if gg == g]
            idx = torch.tensor(mine, device=units.device)
            x = units.index_select(1, idx).reshape(-1, r)
            out[:, idx] = read(self.analogs[g], x).view(pixels, len(mine), -1)
        return out.view(pixels, cg, s, -1)

    def _digital(self, layer: Layer, picked: torch.Tensor) -> torch.Tensor:
        """Combine each unit's read-outs (pixels, G, S, P*V) with the layer's coefficients; add the bias."""
        pixels = picked.shape[0]
        y = torch.einsum("pcsv,cosv->pco", picked, self.coeffs[layer.name]).reshape(pixels, -1)
        y = y * self.input_scale[layer.name]
        bias = self.bias[layer.name]
        return y if bias is None else y + bias

    def _run(self, x: torch.Tensor, fn: Any) -> torch.Tensor:
        """Run the network with `fn(layer, input, segments)` giving each MVM layer's (pixels, C_out) output."""

        def layer_fn(layer: Layer, inp: torch.Tensor) -> torch.Tensor:
            segs, fold = self._segments(layer, inp)
            return fold(fn(layer, inp, segs))

        interp = LayerInterpreter(self.gm, self.graph, layer_fn)
        with torch.no_grad():
            return interp.run(x.to(self.device))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model output on the programmed chip (mode fast or exact; float: ideal reads; quantized:
        quantized basis and inputs, ideal devices and converters)."""
        mode = self.sim.mode

        reads = {"float": _FLOAT, "quantized": lambda a, x: a.forward_quantized(x),
                 "exact": lambda a, x: a.forward_exact(x, generator)}
        read = reads.get(mode, lambda a, x: a.forward_fast(x, generator))

        def chip(layer: Layer, inp: torch.Tensor, segs: torch.Tensor) -> torch.Tensor:
            return self._digital(layer, self._reads(layer.name, segs / self.input_scale[layer.name], read))

        return self._run(x, chip)


def _accuracy(chip: BasisChip, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              generator: torch.Generator | None = None) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        out = chip(x[i : i + batch_size], generator)
        correct += int((out.argmax(1).cpu() == y[i : i + batch_size]).sum())
    return correct / max(1, len(x))


def simulate_basis_accuracy(net: BasisNetwork, hw: HardwareSpec, x: torch.Tensor, y: torch.Tensor, *,
                            calibration: torch.Tensor, chips: int = 5, mode: Mode = "fast", seed: int = 0,
                            batch_size: int = 250, device: str | None = None,
                            progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Accuracy of the basis network on (x, y): ideal reads, quantized reads, and `chips` chip instances.

    `progress(1)` is called after each of the chips + 2 evaluations.
    """
    start = time.perf_counter()
    done = progress or (lambda n: None)
    chip = BasisChip(net, hw, tuple(x.shape[1:]), calibration, mode=mode, device=device)
    chip.sim.mode = "float"
    float_acc = _accuracy(chip, x, y, batch_size)
    done(1)
    chip.sim.mode = "quantized"
    quant_acc = _accuracy(chip, x, y, batch_size)
    done(1)
    chip.sim.mode = mode
    accs = []
    for k in range(chips):
        if k == 0 or hw.nonideal.device_noise:
            chip.program(seed + k)
        accs.append(_accuracy(chip, x, y, batch_size, chip.sim.generator(seed + k)))
        done(1)
    t = torch.tensor(accs, dtype=torch.float64)
    return {"float": float_acc, "quantized": quant_acc, "chips": accs, "mean": float(t.mean()),
            "std": float(t.std()) if len(accs) > 1 else 0.0, "min": float(t.min()), "max": float(t.max()),
            "seeds": [seed + k for k in range(chips)], "mode": mode, "n": len(x),
            "crossbars": chip.basis_mapping.crossbars_used, "time_s": time.perf_counter() - start}

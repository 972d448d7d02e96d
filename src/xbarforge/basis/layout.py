"""Where BasisN puts things: kernel segments, basis vectors, crossbar groups.

BasisN (Eldebiky et al., "BasisN: Reprogramming-Free RRAM-Based In-Memory-Computing by Basis
Combination for Deep Neural Networks", ICCAD 2024, arXiv:2407.03738) writes a set of global basis
vectors to the crossbars once and builds every layer's kernels from them:

* a layer's weight matrix (k*k*C_in/groups rows per output channel) is cut into *segments* of the
  crossbar's row count R (the last one zero-padded), so one segment of the layer's input drives one
  crossbar read;
* the chip's C crossbars hold M = C * V basis vectors of length R, V = usable columns / columns per
  weight (bit slicing and differential pairs as for any weight);
* the crossbars form G = C / P groups of P crossbars. Each (conv group, segment) unit of a layer draws
  only on the P * V vectors of one group (the parallelism constraint), so G units of one output
  pixel are read at once, one per group; a layer takes ceil(units / G) crossbar steps per pixel;
* a digital unit multiplies the P * V read-outs of a unit by the layer's quantized coefficients and
  accumulates them per output channel.

`plan_basis` turns a LayerGraph and a chip into this layout; fitting, training, the cost model and
the simulator all read it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from xbarforge.errors import XbarforgeError
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec

__all__ = ["BasisError", "BasisLayout", "LayerSegments", "default_group_crossbars", "plan_basis"]


class BasisError(XbarforgeError):
    """A basis request that cannot be satisfied as asked (one line)."""


@dataclass(frozen=True)
class LayerSegments:
    """One MVM layer cut into crossbar-row segments, and the basis group each unit reads."""

    name: str
    kind: str
    rows: int  # weight rows per conv group (k*k*C_in/groups, or in_features)
    out_per_group: int  # output channels per conv group
    conv_groups: int
    segments: int  # ceil(rows / R) segments per conv group
    pixels: int  # output pixels per sample (MVM positions)
    group_of_unit: tuple[int, ...]  # basis group of each (conv group, segment) unit, conv-group major

    @property
    def units(self) -> int:
        """Basis reads one output pixel needs: one per (conv group, segment)."""
        return self.conv_groups * self.segments

    @property
    def out_channels(self) -> int:
        return self.out_per_group * self.conv_groups

    @property
    def num_weights(self) -> int:
        return self.rows * self.out_per_group * self.conv_groups


@dataclass(frozen=True)
class BasisLayout:
    """A chip of `crossbars` crossbars holding a global basis, and every layer cut to use it."""

    model: str
    hardware: str
    crossbars: int  # C
    rows: int  # R: basis vector length = crossbar rows
    vectors_per_crossbar: int  # V
    group_crossbars: int  # P
    layers: tuple[LayerSegments, ...]

    @property
    def groups(self) -> int:
        """G: crossbar groups that read different units at the same time."""
        return self.crossbars // self.group_crossbars

    @property
    def vectors(self) -> int:
        """M: basis vectors on the chip."""
        return self.crossbars * self.vectors_per_crossbar

    @property
    def vectors_per_group(self) -> int:
        return self.group_crossbars * self.vectors_per_crossbar

    def group_vectors(self, group: int) -> range:
        """Indices of the basis vectors held by crossbar group `group` (its P crossbars, in order)."""
        n = self.vectors_per_group
        return range(group * n, (group + 1) * n)

    def steps_per_pixel(self, layer: LayerSegments) -> int:
        """Crossbar steps per output pixel: the busiest group's units (groups read in parallel)."""
        counts = [0] * self.groups
        for g in layer.group_of_unit:
            counts[g] += 1
        return max(counts)

    def capacity(self, layer: LayerSegments) -> int:
        """Most units of one layer a group may take without slowing the layer: ceil(units / G)."""
        return math.ceil(layer.units / self.groups)

    @property
    def basis_weights(self) -> int:
        """Weights written to the chip: M vectors of R values."""
        return self.vectors * self.rows

    @property
    def model_weights(self) -> int:
        return sum(seg.num_weights for seg in self.layers)

    @property
    def basis_fraction(self) -> float:
        """Basis weights / model weights: how much of the network the crossbars could hold directly."""
        return self.basis_weights / self.model_weights

    def coefficients(self, layer: LayerSegments) -> int:
        """Digital coefficients of a layer: each output channel, per unit, one per vector of the unit's group."""
        return layer.out_per_group * layer.units * self.vectors_per_group

    @property
    def total_coefficients(self) -> int:
        return sum(self.coefficients(seg) for seg in self.layers)

    def layer(self, name: str) -> LayerSegments:
        for seg in self.layers:
            if seg.name == name:
                return seg
        raise KeyError(name)

    def with_assignment(self, assignment: dict[str, tuple[int, ...]]) -> BasisLayout:
        """The same layout with other unit-to-group assignments (each within its layer's capacity)."""
        layers = []
        for seg in self.layers:
            groups = tuple(assignment.get(seg.name, seg.group_of_unit))
            if len(groups) != seg.units or any(not 0 <= g < self.groups for g in groups):
                raise BasisError(f"layer '{seg.name}': assignment needs {seg.units} groups in 0..{self.groups - 1}")
            layers.append(dataclasses.replace(seg, group_of_unit=groups))
        out = dataclasses.replace(self, layers=tuple(layers))
        for old, new in zip(self.layers, out.layers, strict=True):
            if out.steps_per_pixel(new) > self.capacity(old):
                raise BasisError(f"layer '{new.name}': assignment puts more than {self.capacity(old)} units on a group")
        return out


def _segments_of(layer: Layer, rows: int, groups: int, start: int) -> LayerSegments:
    segments = math.ceil(layer.rows_per_group / rows)
    units = layer.groups * segments
    # round-robin from a running offset: every layer is as fast as its unit count allows, and
    # consecutive layers load different groups first
    assignment = tuple((start + u) % groups for u in range(units))
    return LayerSegments(layer.name, layer.kind, layer.rows_per_group, layer.cols_per_group, layer.groups,
                         segments, layer.output_pixels, assignment)


def plan_basis(graph: LayerGraph, hw: HardwareSpec, crossbars: int, group_crossbars: int = 1) -> BasisLayout:
    """Cut every MVM layer of `graph` into segments for a basis on `crossbars` crossbars of `hw`.

    `group_crossbars` (P) bounds how many crossbars one unit may draw on: larger P lets a kernel
    segment use more basis vectors (better fit) but fewer units are read at once (G = C / P).
    """
    if crossbars < 1:
        raise BasisError(f"crossbars: at least 1 crossbar is needed to hold a basis (got {crossbars})")
    if group_crossbars < 1 or group_crossbars > crossbars:
        raise BasisError(f"group crossbars: must be between 1 and the {crossbars} crossbars (got {group_crossbars})")
    if crossbars % group_crossbars:
        raise BasisError(f"group crossbars: {group_crossbars} does not divide the {crossbars} crossbars")
    if not graph.mvm_layers:
        raise BasisError(f"model '{graph.name}' has no conv or linear layer to build from a basis")
    rows = hw.crossbar.rows
    per_xbar = hw.usable_cols // hw.cols_per_weight
    groups = crossbars // group_crossbars
    layers: list[LayerSegments] = []
    start = 0
    for layer in graph.mvm_layers:
        seg = _segments_of(layer, rows, groups, start)
        start = (start + seg.units) % groups
        layers.append(seg)
    return BasisLayout(graph.name, hw.name, crossbars, rows, per_xbar, group_crossbars, tuple(layers))


def default_group_crossbars(hw: HardwareSpec, crossbars: int) -> int:
    """The smallest P dividing C whose group holds at least half a crossbar's rows of vectors.

    A unit then draws on P * V >= R / 2 basis directions: enough to keep a trained network's kernels
    (ResNet-20 on isaac: 6 % fit error at P * V = 120 of 128, 30 % at 60), while G = C / P groups
    still read a layer's units in parallel.
    """
    per_xbar = max(1, hw.usable_cols // hw.cols_per_weight)
    want = math.ceil(hw.crossbar.rows / 2 / per_xbar)
    for p in range(max(1, want), crossbars + 1):
        if crossbars % p == 0:
            return p
    return crossbars

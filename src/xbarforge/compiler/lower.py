"""Lower an MVM layer to crossbar blocks.

A layer with G groups has, per group, a weight matrix of `rows_g = k*k*C_in/G` rows and
`cols_g = C_out/G * cols_per_weight` physical columns (bit slices, differential pairs). How the
groups are laid out is the layer's *form*:

* dense (G == 1), or grouped with a group matrix larger than a crossbar: each group's matrix is
  tiled into blocks of at most one crossbar; every block does one MVM per output pixel.
* grouped with small group matrices (depthwise): `diag` slots stacked down the diagonal of a
  block, each slot holding `stack` groups side by side on the same rows. One MVM drives every
  slot with its group's input patch, so a block serves `diag` groups per MVM and does `stack`
  MVMs per output pixel. `diag=1, stack=max` is the plain (k*k) x (C_out*cpw) matrix of
  DESIGN.md (the isaac-like form); smaller `stack` is RNC's channel splitting; larger `diag` is
  block-diagonal placement (one MVM serves many channels at the price of empty cells).

Mixed precision (`xbarforge.quant`): `bits` gives a layer its own weight width, either one number
or one per output channel. Per-channel widths apply to dense tiled layers: output channels fill
column blocks in order, a channel's slices never split over two crossbars, so a block ends where
the next channel would not fit. Grouped layers take the widest channel's width for every channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware.spec import HardwareSpec


@dataclass(frozen=True)
class Form:
    """How a layer's groups are laid out in blocks (see module docstring)."""

    diag: int = 1
    stack: int = 1
    tiled: bool = True  # True: each group matrix tiled on its own (dense layers)

    def label(self) -> str:
        return "tiled" if self.tiled else f"diag{self.diag}xstack{self.stack}"


@dataclass(frozen=True)
class BlockShape:
    """One block of one copy of a layer, before placement.

    `rows`/`cols` index the group matrix (rows_g x cols_g physical columns); for a diag/stack
    block they cover the whole group matrix and `groups` says which groups the block holds.
    """

    group0: int
    group1: int
    row0: int
    row1: int
    col0: int
    col1: int
    height: int  # crossbar rows the block occupies
    width: int  # crossbar columns the block occupies
    weights: int  # cells that hold a weight slice (the rest of the rectangle is empty)


@dataclass
class LoweredLayer:
    """A layer in one form: its blocks per copy and the MVMs each block does per sample."""

    layer: Layer
    form: Form
    cols_per_weight: int  # the widest weight's columns (all weights' under uniform precision)
    blocks: tuple[BlockShape, ...]
    mvms_per_pixel: int  # sequential MVMs per output pixel per block (the stack width)
    pixels: int
    group_cols: int = 0  # physical columns of one group matrix (0: outputs per group x cols_per_weight)

    def __post_init__(self) -> None:
        if not self.group_cols:
            self.group_cols = self.layer.cols_per_group * self.cols_per_weight

    @cached_property
    def cells(self) -> int:
        """Rectangle cells of one copy (what packing must find room for)."""
        return sum(b.height * b.width for b in self.blocks)

    @cached_property
    def weight_cells(self) -> int:
        return sum(b.weights for b in self.blocks)

    def tau(self, copies: int) -> int:
        """MVM cycles a block of this layer is busy per sample with `copies` copies."""
        return math.ceil(self.pixels / copies) * self.mvms_per_pixel

    @property
    def name(self) -> str:
        return self.layer.name


def _tile(extent: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, extent)) for start in range(0, extent, size)]


Bits = int | Sequence[int] | None  # a layer's weight bits: uniform, one per output channel, or the chip's


def group_dims(layer: Layer, hw: HardwareSpec, bits: Bits = None) -> tuple[int, int]:
    """(rows, physical columns) of one group's weight matrix on this hardware."""
    return layer.rows_per_group, layer.cols_per_group * _widest(layer, hw, bits)


def _widest(layer: Layer, hw: HardwareSpec, bits: Bits) -> int:
    """Columns of the layer's widest weight."""
    if bits is None:
        return hw.cols_per_weight
    if isinstance(bits, int):
        return hw.cols_for_bits(bits)
    return hw.cols_for_bits(max(bits))


def _channel_tiles(widths: Sequence[int], cols_x: int) -> list[tuple[int, int]]:
    """Column ranges of the blocks: channels in order, a block closes when the next would not fit."""
    tiles: list[tuple[int, int]] = []
    start = end = 0
    for w in widths:
        if end + w - start > cols_x and end > start:
            tiles.append((start, end))
            start = end
        end += w
    if end > start:
        tiles.append((start, end))
    return tiles


def _check_bits(layer: Layer, bits: Bits) -> None:
    if bits is None or isinstance(bits, int):
        if isinstance(bits, int) and bits < 1:
            raise ValueError(f"{layer.name}: weight bits must be positive, got {bits}")
        return
    outputs = layer.cols_per_group * layer.groups
    if len(bits) != outputs:
        raise ValueError(f"{layer.name}: {len(bits)} channel bit widths for {outputs} output channels")
    if min(bits) < 1:
        raise ValueError(f"{layer.name}: weight bits must be positive, got {min(bits)}")


def lower(layer: Layer, hw: HardwareSpec, form: Form | None = None, bits: Bits = None) -> LoweredLayer:
    """Blocks of one copy of `layer` in `form` (default: the DESIGN.md / isaac-like form).

    `bits`: the layer's weight bits (one, or one per output channel); None: the chip's weight_bits.
    """
    _check_bits(layer, bits)
    form = form or default_form(layer, hw, bits)
    rows_x, cols_x = hw.crossbar.rows, hw.usable_cols
    cpw = _widest(layer, hw, bits)
    rows_g, cols_g = group_dims(layer, hw, bits)
    col_step = max(cpw, (cols_x // cpw) * cpw)  # never split one weight's slices across crossbars
    blocks: list[BlockShape] = []
    if form.tiled:
        if bits is not None and not isinstance(bits, int) and layer.groups == 1:
            widths = [hw.cols_for_bits(b) for b in bits]
            cols_g = sum(widths)
            col_tiles = _channel_tiles(widths, cols_x)
        else:
            col_tiles = _tile(cols_g, col_step)
        for g in range(layer.groups):
            for r0, r1 in _tile(rows_g, rows_x):
                for c0, c1 in col_tiles:
                    h, w = r1 - r0, c1 - c0
                    blocks.append(BlockShape(g, g + 1, r0, r1, c0, c1, h, w, h * w))
        mvms = 1
    else:
        per_block = form.diag * form.stack
        for g0 in range(0, layer.groups, per_block):
            g1 = min(g0 + per_block, layer.groups)
            n = g1 - g0
            slots = math.ceil(n / form.stack)
            last = n - (slots - 1) * form.stack  # groups in the last (possibly partial) slot
            width = ((slots - 1) * form.stack + last) * cols_g
            blocks.append(BlockShape(g0, g1, 0, rows_g, 0, cols_g, slots * rows_g, width, n * rows_g * cols_g))
        mvms = form.stack
    return LoweredLayer(layer, form, cpw, tuple(blocks), mvms, layer.output_pixels, cols_g)


def fits_in_crossbar(layer: Layer, hw: HardwareSpec, bits: Bits = None) -> bool:
    rows_g, cols_g = group_dims(layer, hw, bits)
    return rows_g <= hw.crossbar.rows and cols_g <= hw.usable_cols


def default_form(layer: Layer, hw: HardwareSpec, bits: Bits = None) -> Form:
    """The DESIGN.md form: dense tiling, or for small groups the plain stacked matrix."""
    if layer.groups == 1 or not fits_in_crossbar(layer, hw, bits):
        return Form()
    _, cols_g = group_dims(layer, hw, bits)
    return Form(diag=1, stack=min(layer.groups, hw.usable_cols // cols_g), tiled=False)


def candidate_forms(layer: Layer, hw: HardwareSpec) -> list[Form]:
    """Forms worth trying for a layer: one for dense layers, a ladder for small-group layers.

    Stack widths halve from the default (RNC channel splitting) and diagonal factors double up
    to what a crossbar holds (block-diagonal placement), so the optimizer sees the area/time
    trade-off without enumerating every pair.
    """
    if layer.groups == 1 or not fits_in_crossbar(layer, hw):
        return [Form()]
    rows_g, cols_g = group_dims(layer, hw)
    max_diag = max(1, min(hw.crossbar.rows // rows_g, hw.usable_cols // cols_g, layer.groups))
    forms: set[Form] = set()
    diag = 1
    while True:
        max_stack = max(1, min(layer.groups, hw.usable_cols // (diag * cols_g)))
        stack = max_stack
        while True:
            forms.add(Form(diag=diag, stack=stack, tiled=False))
            if stack == 1:
                break
            stack = max(1, stack // 2)
        if diag == max_diag:
            break
        diag = min(max_diag, diag * 2)
    return sorted(forms, key=lambda f: (f.stack, f.diag))

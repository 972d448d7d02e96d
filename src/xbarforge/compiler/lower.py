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

MNSIM's layout (`chip.layout: mnsim`, MNSIM 2.0's Tile_connection_graph.py): a crossbar takes
floor(rows / k^2) whole input channels (row tiles of whole channels), and each bit slice, and each
polarity of a differential pair, has crossbars of its own holding one column per output channel.
Here that is the same group matrix with its physical columns in slice-major order (all output
channels' slice 0, then slice 1, ...), tiled so that no block mixes two slices. The cost model reads
it like any other; the ideal executor and the simulator need each weight's slices in one block and
use the dense layout.
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


@dataclass(frozen=True)
class BlockClass:
    """Blocks of one copy that share a shape: indices [start, start + count) of the copy's block order."""

    height: int
    width: int
    weights: int  # weight cells of each block
    count: int
    start: int


def _classes(form: Form, groups: int, rows_g: int, cols_g: int, row_cuts: Sequence[int],
             col_cuts: Sequence[int]) -> tuple[BlockClass, ...]:
    """The shape classes of one copy, computed without listing its blocks (a VGG classifier has 50k)."""
    if form.tiled:
        heights = [b - a for a, b in zip(row_cuts, row_cuts[1:], strict=False)]
        widths = [b - a for a, b in zip(col_cuts, col_cuts[1:], strict=False)]
        shapes = sorted({(h, w) for h in set(heights) for w in set(widths)}, reverse=True)
        out, start = [], 0
        for h, w in shapes:
            n = groups * heights.count(h) * widths.count(w)
            out.append(BlockClass(h, w, h * w, n, start))
            start += n
        return tuple(out)
    per_block = form.diag * form.stack
    full, rest = divmod(groups, per_block)
    out = []
    if full:
        out.append(BlockClass(form.diag * rows_g, per_block * cols_g, per_block * rows_g * cols_g, full, 0))
    if rest:
        slots = math.ceil(rest / form.stack)
        out.append(BlockClass(slots * rows_g, rest * cols_g, rest * rows_g * cols_g, 1, full))
    return tuple(out)


def copy_blocks(form: Form, groups: int, rows_g: int, cols_g: int, row_cuts: Sequence[int],
                col_cuts: Sequence[int]) -> tuple[BlockShape, ...]:
    """The blocks of one copy, in class order (largest shape first, then group, row tile, column tile).

    The one definition of a layer's blocks: `lower` and a loaded `Mapping` both read it, so a
    block index means the same block everywhere.
    """
    if not form.tiled:
        per_block = form.diag * form.stack
        blocks = []
        for g0 in range(0, groups, per_block):
            g1 = min(g0 + per_block, groups)
            n = g1 - g0
            slots = math.ceil(n / form.stack)
            blocks.append(BlockShape(g0, g1, 0, rows_g, 0, cols_g, slots * rows_g, n * cols_g, n * rows_g * cols_g))
        return tuple(blocks)
    rows = list(zip(row_cuts, row_cuts[1:], strict=False))
    cols = list(zip(col_cuts, col_cuts[1:], strict=False))
    blocks = []
    for cls in _classes(form, groups, rows_g, cols_g, row_cuts, col_cuts):
        rs = [r for r in rows if r[1] - r[0] == cls.height]
        cs = [c for c in cols if c[1] - c[0] == cls.width]
        for g in range(groups):
            for r0, r1 in rs:
                for c0, c1 in cs:
                    blocks.append(BlockShape(g, g + 1, r0, r1, c0, c1, r1 - r0, c1 - c0, (r1 - r0) * (c1 - c0)))
    return tuple(blocks)


@dataclass
class LoweredLayer:
    """A layer in one form: its blocks per copy and the MVMs each block does per sample.

    Blocks are described by their cuts (tiled forms) or the form (diag/stack forms) and listed only
    when asked (`blocks`); the compiler and the cost model work on `classes`.
    """

    layer: Layer
    form: Form
    cols_per_weight: int  # the widest weight's columns (all weights' under uniform precision)
    row_cuts: tuple[int, ...]  # tiled forms: row tile boundaries of the group matrix; () otherwise
    col_cuts: tuple[int, ...]  # tiled forms: physical column tile boundaries; () otherwise
    mvms_per_pixel: int  # sequential MVMs per output pixel per block (the stack width)
    pixels: int
    group_cols: int = 0  # physical columns of one group matrix (0: outputs per group x cols_per_weight)
    layout: str = "dense"  # "mnsim": slice-major columns, whole-channel row tiles (module docstring)

    def __post_init__(self) -> None:
        if not self.group_cols:
            self.group_cols = self.layer.cols_per_group * self.cols_per_weight

    @cached_property
    def classes(self) -> tuple[BlockClass, ...]:
        return _classes(self.form, self.layer.groups, self.layer.rows_per_group, self.group_cols,
                        self.row_cuts, self.col_cuts)

    @cached_property
    def blocks(self) -> tuple[BlockShape, ...]:
        return copy_blocks(self.form, self.layer.groups, self.layer.rows_per_group, self.group_cols,
                           self.row_cuts, self.col_cuts)

    @cached_property
    def n_blocks(self) -> int:
        return sum(c.count for c in self.classes)

    @cached_property
    def cells(self) -> int:
        """Rectangle cells of one copy (what packing must find room for)."""
        return sum(c.height * c.width * c.count for c in self.classes)

    @cached_property
    def weight_cells(self) -> int:
        return sum(c.weights * c.count for c in self.classes)

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
    """One copy of `layer` in `form` (default: the DESIGN.md / isaac-like form) as crossbar blocks.

    `bits`: the layer's weight bits (one, or one per output channel); None: the chip's weight_bits.
    """
    _check_bits(layer, bits)
    form = form or default_form(layer, hw, bits)
    rows_x, cols_x = hw.crossbar.rows, hw.usable_cols
    cpw = _widest(layer, hw, bits)
    rows_g, cols_g = group_dims(layer, hw, bits)
    if not form.tiled:
        return LoweredLayer(layer, form, cpw, (), (), form.stack, layer.output_pixels, cols_g)
    if hw.chip.layout == "mnsim":
        if bits is not None and not isinstance(bits, int):
            raise ValueError(f"{layer.name}: per-channel weight bits need chip.layout dense (MNSIM's has one width)")
        row_cuts, col_cuts = _mnsim_cuts(layer, rows_x, cols_x, cpw)
        return LoweredLayer(layer, form, cpw, row_cuts, col_cuts, 1, layer.output_pixels, cols_g, "mnsim")
    if bits is not None and not isinstance(bits, int) and layer.groups == 1:
        widths = [hw.cols_for_bits(b) for b in bits]
        cols_g = sum(widths)
        col_tiles = _channel_tiles(widths, cols_x)
    else:
        col_step = max(cpw, (cols_x // cpw) * cpw)  # never split one weight's slices across crossbars
        col_tiles = _tile(cols_g, col_step)
    row_cuts = tuple(r0 for r0, _ in _tile(rows_g, rows_x)) + (rows_g,)
    col_cuts = tuple(c0 for c0, _ in col_tiles) + (cols_g,)
    return LoweredLayer(layer, form, cpw, row_cuts, col_cuts, 1, layer.output_pixels, cols_g)


def _mnsim_cuts(layer: Layer, rows_x: int, cols_x: int, cpw: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Row and column cuts of MNSIM's layout: whole input channels per row tile, one slice per column tile.

    MNSIM takes floor(rows / k^2) channels per crossbar; a kernel larger than a crossbar's rows
    (which MNSIM cannot map) falls back to plain row tiles.
    """
    kk = layer.kernel[0] * layer.kernel[1]
    rows_g = layer.rows_per_group
    step = (rows_x // kk) * kk or rows_x
    row_cuts = tuple(range(0, rows_g, step)) + (rows_g,)
    outputs = layer.cols_per_group
    col_cuts = tuple(s * outputs + c for s in range(cpw) for c in range(0, outputs, cols_x)) + (cpw * outputs,)
    return row_cuts, col_cuts


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

"""Where each piece of a layer's weight matrix sits on the chip, as the simulator needs it.

The Mapping places blocks; the simulator reads, per MVM layer, one *tile* per (group, row range,
column range) of the group's physical matrix (bit slices and polarity columns included) with the
crossbar and the cell offset that hold it. Partial sums are formed per row tile (one crossbar
read covers one row tile) and added digitally, so the row tiles are what the ADC sees. Copy 0
stands for every copy of a layer (copies hold the same weights; on a noisy chip each copy would be
a separate draw, which the simulator does not model: every pixel reads copy 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xbarforge.compiler.execute import CrossbarKey
from xbarforge.compiler.mapping import LayerPlan, Mapping

__all__ = ["LayerLayout", "Tile", "layer_layouts"]


@dataclass(frozen=True)
class Tile:
    group: int
    row0: int  # rows of the group matrix
    row1: int
    col0: int  # physical columns of the group matrix
    col1: int
    crossbar: CrossbarKey
    row_offset: int  # cell of (row0, col0) in that crossbar
    col_offset: int


@dataclass(frozen=True)
class LayerLayout:
    """One layer's tiles and the row tiling shared by all its groups."""

    name: str
    groups: int
    rows_per_group: int
    cols_per_group: int  # physical
    row_cuts: tuple[int, ...]  # row tile boundaries: 0 = c0 < c1 < ... = rows_per_group
    col_cuts: tuple[int, ...]  # column tile boundaries (one crossbar's columns each)
    tiles: tuple[Tile, ...]

    @property
    def row_tiles(self) -> list[tuple[int, int]]:
        return list(zip(self.row_cuts[:-1], self.row_cuts[1:], strict=True))

    def gather(self, crossbars: dict[CrossbarKey, torch.Tensor], ref_col: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(G, rows_g, cols_g) cell values of the layer from programmed crossbars, and with
        `ref_col` the (G, rows_g) reference-column cells on the same crossbar rows."""
        any_xbar = next(iter(crossbars.values()))
        cells = torch.zeros(self.groups, self.rows_per_group, self.cols_per_group, dtype=any_xbar.dtype)
        ref = torch.zeros(self.groups, self.rows_per_group, dtype=any_xbar.dtype) if ref_col is not None else None
        for t in self.tiles:
            xbar = crossbars[t.crossbar]
            h, w = t.row1 - t.row0, t.col1 - t.col0
            cells[t.group, t.row0 : t.row1, t.col0 : t.col1] = xbar[
                t.row_offset : t.row_offset + h, t.col_offset : t.col_offset + w
            ]
            if ref is not None:
                ref[t.group, t.row0 : t.row1] = xbar[t.row_offset : t.row_offset + h, ref_col]
        return cells, ref


def _tiles_of(plan: LayerPlan, mapping: Mapping) -> list[Tile]:
    tiles: list[Tile] = []
    rows_g, cols_g = plan.rows_per_group, plan.cols_per_group
    for b in mapping.blocks_of(plan.name):
        if b.copy != 0:
            continue
        key = (b.round, b.crossbar)
        if plan.form.tiled:
            tiles.append(Tile(b.group0, b.row0, b.row1, b.col0, b.col1, key, b.row_offset, b.col_offset))
            continue
        for i in range(b.group1 - b.group0):  # diag x stack: group g0+i in slot i // stack, columns i*cols_g
            slot = i // plan.form.stack
            tiles.append(Tile(b.group0 + i, 0, rows_g, 0, cols_g, key,
                              b.row_offset + slot * rows_g, b.col_offset + i * cols_g))
    return tiles


def layer_layouts(mapping: Mapping) -> dict[str, LayerLayout]:
    """Per MVM layer, its tiles (copy 0) and row/column tiling."""
    out: dict[str, LayerLayout] = {}
    for plan in mapping.layers:
        tiles = _tiles_of(plan, mapping)
        rcuts = sorted({0, plan.rows_per_group, *(t.row0 for t in tiles), *(t.row1 for t in tiles)})
        ccuts = sorted({0, plan.cols_per_group, *(t.col0 for t in tiles), *(t.col1 for t in tiles)})
        out[plan.name] = LayerLayout(plan.name, plan.groups, plan.rows_per_group, plan.cols_per_group,
                                     tuple(rcuts), tuple(ccuts), tuple(tiles))
    return out

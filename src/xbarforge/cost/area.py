"""Chip area of the crossbars a mapping uses, with their periphery and tile overheads, and of the
digital units its digital stages need (`cost.digital`).

Tiles: the dense layout fills tiles with crossbars in order (`ceil(crossbars / crossbars_per_tile)`);
MNSIM's layout (`chip.layout: mnsim`) gives every MVM layer whole tiles of its own and every pooling
layer one tile, and counts every crossbar of a used tile, as MNSIM 2.0's Model_Area does. The tile
overhead is `area.tile_overhead_um2`, or, with a `buffers` section, SRAM buffers sized for the
network (`buffer_kb`) plus `buffers.tile_fixed_um2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from xbarforge.hardware.spec import HardwareSpec


def crossbar_parts_um2(hw: HardwareSpec) -> dict[str, float]:
    """One crossbar's array, DACs, ADCs and shift-add units."""
    a = hw.area
    adcs = math.ceil(hw.crossbar.cols / hw.precision.cols_per_adc)
    dacs = math.ceil(hw.crossbar.rows / hw.precision.rows_per_dac)
    return {"crossbar": a.xbar_um2, "dac": dacs * a.dac_um2, "adc": adcs * a.adc_um2, "shift_add": a.shift_add_um2}


def crossbar_area_um2(hw: HardwareSpec) -> float:
    """One crossbar with its DACs, ADCs and shift-add units."""
    return sum(crossbar_parts_um2(hw).values())


def chip_area_mm2(hw: HardwareSpec, crossbars: int) -> float:
    """Area of `crossbars` crossbars grouped into tiles of `chip.crossbars_per_tile` (no network at
    hand: the tile overhead is `area.tile_overhead_um2`)."""
    return (crossbars * crossbar_area_um2(hw) + layer_tiles(hw, crossbars) * hw.area.tile_overhead_um2) / 1e6


def _pow2_kb(nbytes: float) -> float:
    """MNSIM's buffer capacity: the next power of two in bytes, in KB."""
    return 2.0 ** math.ceil(math.log2(nbytes)) / 1024 if nbytes > 0 else 0.0


def layer_tiles(hw: HardwareSpec, crossbars: int) -> int:
    """Tiles that `crossbars` crossbars fill."""
    return math.ceil(crossbars / hw.chip.crossbars_per_tile)


def buffer_kb(mapping: Any, hw: HardwareSpec, layer_crossbars: dict[str, int]) -> tuple[float, float]:
    """(PE input buffer, tile output buffer) capacities in KB the network needs, by MNSIM's rule.

    Per MVM layer (Tile_connection_graph.py): the input line buffer (k_h input rows, activation bits
    each) is spread over the layer's PEs, and two output pixels (ping-pong) over its tiles; each is
    rounded up to a power of two bytes, and every PE (tile) gets the largest any layer needs.
    """
    bits = hw.precision.activation_bits
    per_pe = hw.chip.crossbars_per_pe
    inp = out = 0.0
    for lp in mapping.layers:
        n = layer_crossbars.get(lp.name, 0)
        if not n:
            continue
        pes = math.ceil(n / per_pe)
        inp = max(inp, _pow2_kb(lp.in_line_elems * bits / 8 / pes))
        out = max(out, _pow2_kb(2 * lp.out_channels * bits / 8 / layer_tiles(hw, n)))
    return inp, out


def mapping_tiles(mapping: Any, hw: HardwareSpec, layer_crossbars: dict[str, int]) -> int:
    """Tiles a mapping occupies (per round): see the module docstring for the two layouts."""
    if hw.chip.layout == "mnsim":
        return sum(layer_tiles(hw, n) for n in layer_crossbars.values()) + mapping.pool_layers
    return layer_tiles(hw, mapping.crossbars_used)


@dataclass(frozen=True)
class ChipArea:
    """A mapping's chip area by part."""

    tiles: int
    crossbars: int  # crossbars on the chip (MNSIM's layout: every crossbar of the used tiles)
    crossbars_mm2: float  # crossbars with their DACs, ADCs and shift-add units
    overhead_mm2: float  # tile overheads (buffers, pooling, joint module, control)
    input_buffer_kb: float = 0.0  # per PE, when the preset sizes buffers for the network
    output_buffer_kb: float = 0.0  # per tile
    buffers_mm2: float = 0.0  # the sized buffers' part of overhead_mm2

    @property
    def total_mm2(self) -> float:
        return self.crossbars_mm2 + self.overhead_mm2

    def by_part(self, hw: HardwareSpec) -> dict[str, float]:
        """mm^2 by component: crossbar arrays, DACs, ADCs, shift-add, buffers, the rest of the tiles."""
        parts = {k: v * self.crossbars / 1e6 for k, v in crossbar_parts_um2(hw).items()}
        return {**parts, "buffers": self.buffers_mm2, "tile_rest": self.overhead_mm2 - self.buffers_mm2}


def mapping_area(mapping: Any, hw: HardwareSpec, layer_crossbars: dict[str, int]) -> ChipArea:
    """Area of a mapping's chip; `layer_crossbars`: crossbars holding each MVM layer's blocks
    (`cost.model.layer_occupancy`). The tile overhead is `area.tile_overhead_um2`, or with a `buffers`
    section the network's sized buffers plus `buffers.tile_fixed_um2`."""
    tiles = mapping_tiles(mapping, hw, layer_crossbars)
    crossbars = tiles * hw.chip.crossbars_per_tile if hw.chip.layout == "mnsim" else mapping.crossbars_used
    crossbars_mm2 = crossbars * crossbar_area_um2(hw) / 1e6
    if hw.buffers is None:
        return ChipArea(tiles, crossbars, crossbars_mm2, tiles * hw.area.tile_overhead_um2 / 1e6)
    inp, out = buffer_kb(mapping, hw, layer_crossbars)
    buffers_um2 = hw.chip.pes_per_tile * hw.buffers.sram_um2(inp) + hw.buffers.sram_um2(out)
    overhead_um2 = hw.buffers.tile_fixed_um2 + buffers_um2
    return ChipArea(tiles, crossbars, crossbars_mm2, tiles * overhead_um2 / 1e6, inp, out, tiles * buffers_um2 / 1e6)


def digital_area_mm2(hw: HardwareSpec, units: set[str], runtime_crossbars: int = 0) -> float:
    """The vector unit (when a stage runs on it) and the crossbars written at run time (the most any
    stage needs: stages on them take turns)."""
    um2 = hw.digital.vector_unit_um2 if "vector" in units else 0.0
    return (um2 + runtime_crossbars * crossbar_area_um2(hw)) / 1e6

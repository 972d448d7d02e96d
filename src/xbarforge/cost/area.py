"""Chip area of the crossbars a mapping uses, with their periphery and tile overheads, and of the
digital units its digital stages need (`cost.digital`)."""

from __future__ import annotations

import math

from xbarforge.hardware.spec import HardwareSpec


def crossbar_area_um2(hw: HardwareSpec) -> float:
    """One crossbar with a DAC per row, its ADCs and shift-add units."""
    a = hw.area
    adcs = math.ceil(hw.crossbar.cols / hw.precision.cols_per_adc)
    return a.xbar_um2 + hw.crossbar.rows * a.dac_um2 + adcs * a.adc_um2 + a.shift_add_um2


def chip_area_mm2(hw: HardwareSpec, crossbars: int) -> float:
    """Area of `crossbars` crossbars grouped into tiles of `chip.crossbars_per_tile`."""
    tiles = math.ceil(crossbars / hw.chip.crossbars_per_tile)
    return (crossbars * crossbar_area_um2(hw) + tiles * hw.area.tile_overhead_um2) / 1e6


def digital_area_mm2(hw: HardwareSpec, units: set[str], runtime_crossbars: int = 0) -> float:
    """The vector unit (when a stage runs on it) and the crossbars written at run time (the most any
    stage needs: stages on them take turns)."""
    um2 = hw.digital.vector_unit_um2 if "vector" in units else 0.0
    return (um2 + runtime_crossbars * crossbar_area_um2(hw)) / 1e6

"""Time to write crossbars by write-and-verify (the schema's `reprogram` section).

A model that does not fit the chip runs in rounds; before each round its crossbars are written.
Every cell of a reprogrammed crossbar is written (stale cells of the previous round would be read
by blocks that fire together). Rows go `rows_written_together` at a time (their columns
`cols_written_together` at a time, default all), each step `pulses_per_cell` pulses, each pulse
followed by a verify read; `crossbars_written_together` crossbars are written at once.
"""

from __future__ import annotations

import math

from xbarforge.hardware.spec import HardwareSpec


def crossbar_write_ns(hw: HardwareSpec) -> float:
    """Time to write one whole crossbar."""
    rp = hw.reprogram
    row_steps = math.ceil(hw.crossbar.rows / rp.rows_written_together)
    if rp.cols_written_together is not None:  # a row's cells in several pulses (down to cell by cell)
        row_steps *= math.ceil(hw.crossbar.cols / rp.cols_written_together)
    return row_steps * rp.pulses_per_cell * (rp.write_pulse_ns + hw.verify_ns)


def write_ns(hw: HardwareSpec, crossbars: int) -> float:
    """Time to write `crossbars` crossbars, `crossbars_written_together` at a time."""
    if crossbars <= 0:
        return 0.0
    return math.ceil(crossbars / hw.reprogram.crossbars_written_together) * crossbar_write_ns(hw)


def write_cycles(hw: HardwareSpec, crossbars: int) -> int:
    """`write_ns` in MVM cycles, rounded up (the latency model counts whole cycles)."""
    return math.ceil(write_ns(hw, crossbars) / hw.mvm_ns)

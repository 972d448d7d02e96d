"""The same technology at another crossbar size: every size-dependent constant rescaled.

`HardwareSpec.with_crossbar` changes only the size, so a preset's per-crossbar constants (read
energy of a full crossbar, array area, the ADC) would stay those of its own size. Comparing 16x16
with 128x128 crossbars (NAX, DAC 2022) needs them rescaled from the preset's size:

- Array read energy and array area scale with the cells (rows x cols): the energy model already
  charges a block `xbar_read_pj * cells(block) / cells(crossbar)`, which assumes a full read costs
  in proportion to the cells driven (MNSIM 2.0 Crossbar.py computes array power per cell). Where a
  preset's array area includes row drivers (rnc-paper: cells x 1.44 um2 + 128 x 1150 um2 drivers),
  scaling it all by cells under-counts a small array's drivers; stated, not modelled.
- ADC resolution: a column sum of `rows` cells needs about log2(rows) more bits than one cell
  (ISAAC, ISCA 2016, Sec. 5.2: "the ADC resolution ... is a function of the crossbar rows";
  NeuroSim and NAX tie the ADC precision to the crossbar size), so each halving of the rows drops
  one ADC bit from the preset's: bits = max(1, adc_bits - log2(ref_rows / rows)).
- ADC energy and area per converter scale with 2^bits (Walden figure of merit, energy per
  conversion = FOM x 2^ENOB; Murmann's ADC survey; ISAAC notes ADC power grows exponentially with
  its resolution); a SAR conversion takes one step per bit, so the conversion time scales with bits.
- Latency: a preset that derives `mvm_ns` recomputes it from the new ADC time and column count;
  one that fixes it (rnc-paper) has its conversion part replaced by the new one.
- Wire resistance per cell stays: IR drop grows with the size by itself (simulator).
"""

from __future__ import annotations

import math
from functools import lru_cache

from pydantic import ValidationError

from xbarforge.errors import HardwareError
from xbarforge.hardware._errors import format_validation_error
from xbarforge.hardware.spec import HardwareSpec


def adc_bits_for(hw: HardwareSpec, rows: int) -> int:
    """ADC bits at `rows` rows: one bit less per halving of the preset's rows (at least 1)."""
    delta = math.log2(hw.crossbar.rows / rows)
    return max(1, int(round(hw.precision.adc_bits - delta)))


def _conversion_ns(hw: HardwareSpec) -> float:
    adcs = math.ceil(hw.crossbar.cols / hw.precision.cols_per_adc)
    return math.ceil(hw.crossbar.cols / adcs) * hw.latency.adc_ns


def resized(hw: HardwareSpec, rows: int, cols: int) -> HardwareSpec:
    """`hw` with `rows` x `cols` crossbars and every size-dependent constant rescaled (module doc)."""
    if (rows, cols) == (hw.crossbar.rows, hw.crossbar.cols):
        return hw
    return _resized(hw.model_dump_json(), rows, cols)


@lru_cache(maxsize=256)  # a search asks for the same few sizes thousands of times
def _resized(doc: str, rows: int, cols: int) -> HardwareSpec:
    hw = HardwareSpec.model_validate_json(doc)
    cells = rows * cols / (hw.crossbar.rows * hw.crossbar.cols)
    bits = adc_bits_for(hw, rows)
    adc_scale = 2.0 ** (bits - hw.precision.adc_bits)
    data = hw.model_dump()
    data["crossbar"].update(rows=rows, cols=cols)
    data["precision"]["adc_bits"] = bits
    data["energy"]["xbar_read_pj"] = hw.energy.xbar_read_pj * cells
    data["energy"]["adc_pj"] = hw.energy.adc_pj * adc_scale
    data["area"]["xbar_um2"] = hw.area.xbar_um2 * cells
    data["area"]["adc_um2"] = hw.area.adc_um2 * adc_scale
    data["latency"]["adc_ns"] = hw.latency.adc_ns * bits / hw.precision.adc_bits
    if rows < data["reprogram"]["rows_written_together"]:
        data["reprogram"]["rows_written_together"] = rows
    try:
        new = HardwareSpec.model_validate(data)
        if hw.latency.mvm_ns is not None:  # a fixed MVM time: swap its conversion part for the new one
            mvm = hw.latency.mvm_ns + hw.input_cycles * (_conversion_ns(new) - _conversion_ns(hw))
            new = HardwareSpec.model_validate({**new.model_dump(), "latency": {**data["latency"], "mvm_ns": mvm}})
    except ValidationError as exc:
        label = f"hardware '{hw.name}' at {rows}x{cols}"
        raise HardwareError(format_validation_error(exc, HardwareSpec, label)) from None
    return new

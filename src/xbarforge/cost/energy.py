"""Energy per inference by component.

Dynamic energy counts what each block does per sample and does not depend on duplication (more
copies split the same MVMs); leakage is static power of the crossbars in use over the time one
inference occupies the pipeline (the steady-state period). 1 mW x 1 ns = 1 pJ.

Per MVM of an h x w block with `c` input-bit cycles (activation_bits / dac_bits):
  crossbar   xbar_read_pj * (h*w)/(rows*cols) * c      (array read energy scales with cells driven)
  DAC        h * c * dac_pj
  ADC        w_read * c * adc_pj                        (w_read: columns of the groups served, plus
                                                         the reference column with offset encoding)
  shift-add  w_read * c * shift_add_pj
  buffer     (h * a + w_read/cpw * p) / 8 * buffer_pj_per_byte   (a: activation bits, p: partial
             sums at 2a bits when the layer is split over row tiles, else a)
and per layer output: out_elems * a / 8 * interconnect_pj_per_byte.

Digital stages (attention's products, softmax, layer norm, ...: `cost.digital`) add their own
energy: "digital" for the vector unit, "write" for operands written into crossbars at run time,
and the crossbar, converter and buffer components of those run-time crossbars.
"""

from __future__ import annotations

from dataclasses import dataclass

from xbarforge.compiler.mapping import Mapping
from xbarforge.hardware.spec import HardwareSpec

COMPONENTS = ("crossbar", "dac", "adc", "shift_add", "buffer", "interconnect", "digital", "write", "leakage")


@dataclass
class Energy:
    per_layer: dict[str, dict[str, float]]  # dynamic components per layer, pJ
    leakage_pj: float

    @property
    def by_component(self) -> dict[str, float]:
        out = dict.fromkeys(COMPONENTS, 0.0)
        for comps in self.per_layer.values():
            for k, v in comps.items():
                out[k] += v
        out["leakage"] = self.leakage_pj
        return out

    @property
    def total_pj(self) -> float:
        return sum(self.by_component.values())

    def layer_total(self, name: str) -> float:
        return sum(self.per_layer[name].values())


def mapping_energy(mapping: Mapping, hw: HardwareSpec, period_cycles: float) -> Energy:
    """Energy per inference: every block of one copy does the layer's MVMs (copies split them), so
    the dynamic part depends on the layers' forms only, read from their block classes."""
    e = hw.energy
    cyc = hw.input_cycles
    cells = hw.crossbar.rows * hw.crossbar.cols
    a = hw.precision.activation_bits
    mixed = mapping.weight_bits or {}
    ref_cols = 1 if hw.crossbar.encoding == "offset" else 0  # the reference column is read every MVM
    per_layer: dict[str, dict[str, float]] = {}
    for lp in mapping.layers:
        comps = dict.fromkeys(COMPONENTS[:-1], 0.0)
        row_tiles = -(-lp.rows_per_group // hw.crossbar.rows)
        psum_bits = 2 * a if row_tiles > 1 else a
        mvms = lp.pixels * lp.mvms_per_pixel
        bits = mixed.get(lp.name)
        if bits is None:
            cpw = hw.cols_per_weight
        elif isinstance(bits, int):
            cpw = hw.cols_for_bits(bits)
        else:  # the layer's mean columns per weight: w_read / cpw is then its output channels read
            cpw = sum(hw.cols_for_bits(b) for b in bits) / len(bits)
        for c in lp.classes:
            n = mvms * c.count
            w_read = c.width / lp.mvms_per_pixel + ref_cols
            comps["crossbar"] += n * e.xbar_read_pj * (c.height * c.width) / cells * cyc
            comps["dac"] += n * c.height * cyc * e.dac_pj
            comps["adc"] += n * w_read * cyc * e.adc_pj
            comps["shift_add"] += n * w_read * cyc * e.shift_add_pj
            comps["buffer"] += n * (c.height * a + w_read / cpw * psum_bits) / 8 * e.buffer_pj_per_byte
        comps["interconnect"] = lp.out_elems * a / 8 * e.interconnect_pj_per_byte
        per_layer[lp.name] = comps
    for st in mapping.digital:
        comps = dict.fromkeys(COMPONENTS[:-1], 0.0)
        comps.update(st.energy_pj)
        per_layer[st.name] = comps
    leak = e.leakage_mw_per_crossbar * mapping.crossbars_used * period_cycles * hw.mvm_ns
    return Energy(per_layer, leak)

"""RRAM cells: from integer levels to the conductances a programmed chip instance really holds.

Units: the simulator works in *level units*, conductance divided by the step between two adjacent
levels, ``dg = (g_on - g_off) / (2**cell_bits - 1)``. A cell at level ``L`` nominally conducts
``g_off + L * dg``, i.e. ``L + eps`` level units with ``eps = g_off / dg``: the finite on/off ratio
is the ``eps`` every cell carries. The periphery subtracts ``eps * sum(inputs)`` digitally after the
ADC (the input sum is known in the digital domain), so on ideal devices ``eps`` cancels; what
remains is its real cost: the off-state current occupies ADC range, and the off-state part of each
cell varies like the rest of it. Signed encoding is an idealized cell (the RNC code's model), so
it has no off-state term: its level's magnitude varies, its sign is exact.

One chip instance = one draw of, per cell, in this order (each off at its neutral value):
stuck-at-on / stuck-at-off faults, programming variation (gaussian ``G (1 + s N)`` clipped at 0,
or lognormal ``G exp(s N)``), drift ``G (t / t0) ** -nu`` with ``nu ~ N(drift_nu, drift_nu_std)``
clipped at 0, and (`program_chip`, for all crossbars at once) the static IR-drop attenuation of
`ir_drop.ir_drop_factors` for the cell's position in its crossbar. Read noise is not programmed:
it is drawn per read by the simulator.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from xbarforge.hardware.spec import HardwareSpec

__all__ = ["level_unit_us", "off_level", "program_cells", "program_chip"]

K = TypeVar("K")
_IR_BATCH_CELLS = 1 << 19  # cells per IR-drop call: 8 crossbars of 256x256 (see ir_drop_batches)
_ir_pool: ThreadPoolExecutor | None = None


def level_unit_us(hw: HardwareSpec) -> float:
    """Conductance step between adjacent levels, microsiemens."""
    return (hw.crossbar.g_on_us - hw.crossbar.g_off_us) / (2**hw.crossbar.cell_bits - 1)


def off_level(hw: HardwareSpec) -> float:
    """`eps`: the off-state conductance in level units (0 for idealized signed cells)."""
    if hw.crossbar.encoding == "signed":
        return 0.0
    return hw.crossbar.g_off_us / level_unit_us(hw)


def program_cells(levels: torch.Tensor, hw: HardwareSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """Conductances (level units) a crossbar holds after programming `levels` (rows x cols).

    `levels` are the integer cell levels the compiler wrote (negative only for signed encoding).
    Deterministic when the chip has no device noise; otherwise each call is one chip instance.
    """
    ni = hw.nonideal
    eps = off_level(hw)
    top = 2**hw.crossbar.cell_bits - 1
    sign = torch.sign(levels) if hw.crossbar.encoding == "signed" else None
    mag = levels.abs() if sign is not None else levels
    g = mag.to(torch.float32) + eps
    shape = g.shape
    if ni.stuck_on_rate or ni.stuck_off_rate:
        u = torch.rand(shape, generator=generator)
        g = torch.where(u < ni.stuck_on_rate, torch.full_like(g, top + eps), g)
        off = (u >= ni.stuck_on_rate) & (u < ni.stuck_on_rate + ni.stuck_off_rate)
        g = torch.where(off, torch.full_like(g, eps), g)
    if ni.variation:
        n = torch.randn(shape, generator=generator)
        g = g * torch.exp(ni.variation * n) if ni.variation_model == "lognormal" else g * (1 + ni.variation * n)
        g = g.clamp_(min=0)
    if ni.drift_nu or ni.drift_nu_std:
        nu = torch.full(shape, ni.drift_nu)
        if ni.drift_nu_std:
            nu = (nu + ni.drift_nu_std * torch.randn(shape, generator=generator)).clamp_(min=0)
        g = g * (ni.drift_time_s / ni.drift_t0_s) ** (-nu)
    if sign is not None:
        # a signed cell stuck on keeps a sign: that of its weight, or + for an empty cell
        g = g * torch.where(sign == 0, torch.ones_like(g), sign.to(g.dtype))
    return g


def program_chip(levels: dict[K, torch.Tensor], hw: HardwareSpec, generator: torch.Generator | None = None
                 ) -> dict[K, torch.Tensor]:
    """Every crossbar of one chip instance (keys in sorted order draw from `generator` in turn).

    IR drop is applied last, to all crossbars, in small batches (`ir_drop_batches`): it depends on
    the conductances actually programmed (faults and variation included), not on the inputs.
    """
    keys = sorted(levels)
    cells = {k: program_cells(levels[k], hw, generator) for k in keys}
    if hw.nonideal.ir_drop and hw.crossbar.wire_ohm > 0 and keys:
        parts = _chunks(keys, max(1, _IR_BATCH_CELLS // cells[keys[0]].numel()))
        stacks = [torch.stack([cells[k] for k in part]) for part in parts]
        for part, stack in zip(parts, ir_drop_batches(stacks, hw), strict=True):
            cells.update(zip(part, stack.unbind(0), strict=True))
    return cells


def ir_drop_batches(stacks: list[torch.Tensor], hw: HardwareSpec) -> list[torch.Tensor]:
    """Each (B, rows, cols) stack of programmed crossbars (level units) with its IR-drop attenuation.

    The solver's work is a few dozen element-wise passes over float32 copies of the batch: batches
    of half a million cells keep them in cache while the per-call overhead stays small, and a small
    thread pool runs batches side by side (each crossbar's factors are the same whatever batch it
    is in).
    """
    from xbarforge.sim.ir_drop import ir_drop_factors

    def attenuate(stack: torch.Tensor) -> torch.Tensor:
        siemens = stack.abs().to(torch.float32) * (level_unit_us(hw) * 1e-6)
        return stack * ir_drop_factors(siemens, hw.crossbar.wire_ohm).to(stack.dtype)

    global _ir_pool
    if len(stacks) < 2:
        return [attenuate(s) for s in stacks]
    if _ir_pool is None:
        _ir_pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    return list(_ir_pool.map(attenuate, stacks))


def _chunks(keys: list[K], size: int) -> list[list[K]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]

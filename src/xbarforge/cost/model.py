"""One call that turns a Mapping into every number a user asks for.

`evaluate` gives latency for each k, throughput and its bound, energy by component, area,
EDAP and per-layer records; `report` puts a mapping next to its isaac-like baseline with the
speedups. Everything comes from `latency`, `energy`, `area` and `bounds`, so optimizers that
call this see the same numbers the user does.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from xbarforge.compiler.digital import TICKS_PER_CYCLE
from xbarforge.compiler.mapping import Mapping, shared_weights
from xbarforge.cost.area import buffer_kb, digital_area_mm2, mapping_area
from xbarforge.cost.bounds import period_lower_bound
from xbarforge.cost.energy import COMPONENTS, Energy, mapping_energy
from xbarforge.cost.latency import mapping_timing
from xbarforge.cost.pixel_pipeline import PixelPipeline, pixel_pipeline
from xbarforge.hardware.spec import HardwareSpec


def layer_occupancy(mapping: Mapping) -> dict[str, tuple[int, int]]:
    """Per layer: (crossbars holding its blocks, weight cells held on those crossbars by any layer)."""
    plans = {lp.name: lp for lp in mapping.layers}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for run in mapping.runs:
        o = out[run.layer]
        o[0] += run.crossbars
        o[1] += run.copies * plans[run.layer].range_totals(run.block0, run.block1)[0]
    for sr in mapping.shared:
        per = sum(shared_weights(plans[s.layer], s) for s in sr.shares)  # weights on each crossbar
        for name in {s.layer for s in sr.shares}:
            o = out[name]
            o[0] += sr.crossbars
            o[1] += per * sr.crossbars
    held: dict[tuple[int, int], int] = defaultdict(int)
    xbars: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for b in mapping.placed:
        held[(b.round, b.crossbar)] += b.weights
        xbars[b.layer].add((b.round, b.crossbar))
    for name, mine in xbars.items():
        o = out[name]
        o[0] += len(mine)
        o[1] += sum(held[x] for x in mine)
    return {name: (o[0], o[1]) for name, o in out.items()}


def evaluate(mapping: Mapping, hw: HardwareSpec, samples: list[int] | tuple[int, ...] = (1,)) -> dict[str, Any]:
    """Cost of one mapping (no baseline)."""
    timing = mapping_timing(mapping)
    ns = hw.mvm_ns
    top = max(samples)
    interval = timing.interval(top)
    energy = mapping_energy(mapping, hw, interval)
    runtime = max((st.runtime_crossbars for st in mapping.digital), default=0)
    occupancy = layer_occupancy(mapping)
    layer_xbars = {name: n for name, (n, _) in occupancy.items()}
    chip = mapping_area(mapping, hw, layer_xbars)
    pixels = line_buffer_pipeline(mapping, hw, layer_xbars, (chip.input_buffer_kb, chip.output_buffer_kb))
    if pixels is not None and hw.dataflow is not None and hw.dataflow.has_power:  # power x busy time, per pixel
        energy = Energy({name: {**dict.fromkeys(COMPONENTS[:-1], 0.0), **comps}
                         for name, comps in pixels.energy_pj.items()}, 0.0)
    digital_mm2 = digital_area_mm2(hw, {st.unit for st in mapping.digital}, runtime)
    area = chip.total_mm2 + digital_mm2
    cells = hw.crossbar.rows * hw.crossbar.cols
    weight_cells = mapping.weight_cells
    # every round reprograms the same crossbars, so each round counts the chip once
    counted = (mapping.crossbars_budget or mapping.crossbars_used) * mapping.rounds
    lat = {str(k): timing.cycles(k) * ns for k in samples}
    schedules = {str(k): "+".join(r.schedule_for(k) for r in timing.rounds) for k in samples}
    throughput = 1e9 / (interval * ns) if interval else 0.0
    if pixels is not None:  # the preset models data movement per pixel: its pipeline gives the latency
        lat = {str(k): pixels.latency(k) for k in samples}
        schedules = {str(k): "line-buffer" for k in samples}
        throughput = 1e9 / pixels.period_ns if pixels.period_ns else 0.0
    layer_cycles = timing.layer_cycles
    # a layer's time: its MVM cycles, or on a line-buffer pipeline its pixels' time (one copy's share)
    busy = {lt.name: lt.busy_ns for lt in pixels.layers} if pixels is not None else {}
    layers = []
    for lp in mapping.layers:
        n, held = occupancy.get(lp.name, (0, 0))
        layers.append(
            {
                "name": lp.name,
                "op": lp.describe,
                "form": lp.form.label(),
                "blocks": lp.blocks_per_copy * lp.copies,
                "copies": lp.copies,
                "crossbars": n,
                "utilization": held / (n * cells) if n else 0.0,
                "cycles": layer_cycles[lp.name],
                "serial": lp.serial,
                "time_ns": busy.get(lp.name, layer_cycles[lp.name] * ns),
                "energy_pj": energy.layer_total(lp.name),
                "round": lp.round,
            }
        )
    layers = _with_stage_rows(mapping, layers, layer_cycles, energy)
    first_ns = pixels.latency(1) if pixels is not None else timing.cycles(1) * ns
    energy_pj = energy.total_pj
    return {
        "crossbars_used": mapping.crossbars_used,
        "weight_cells": weight_cells,
        "utilization": weight_cells / (counted * cells),
        "utilization_used": weight_cells / (mapping.crossbars_used * mapping.rounds * cells),
        "utilization_denominator": "budget" if mapping.crossbars_budget else "crossbars used",
        "rounds": mapping.rounds,
        "cycles": {str(k): timing.cycles(k) for k in samples},
        # which schedule gives latency(k): sequential, periodic, batched, ordered or pipelined (MVM cycles of
        # the layers), or line-buffer (pixel by pixel with its data movement, where the preset has `dataflow`)
        "schedule_used": schedules,
        "latency_ns": lat,
        "write_ns": timing.as_cycles(sum(timing.write_cycles)) * ns,
        # cycles between samples in the schedule that gives latency(max k); throughput is its inverse
        "period_cycles": interval,
        "throughput_per_s": throughput,
        "throughput_samples": top,
        "energy_pj": energy_pj,
        "energy_by_component_pj": energy.by_component,
        "area_mm2": area,
        "area_by_part_mm2": {**chip.by_part(hw), "digital": digital_mm2},
        "tiles": chip.tiles,
        "buffer_kb": {"pe_input": chip.input_buffer_kb, "tile_output": chip.output_buffer_kb},
        "edap": energy_pj * first_ns * area,
        "edap_units": "pJ * ns * mm^2 (energy per inference x one-sample latency x area)",
        "runtime_crossbars": runtime,
        "digital_share": _digital_share(mapping, layers, energy_pj),
        "layers": layers,
        "pixel_pipeline": None if pixels is None else [lt.__dict__ for lt in pixels.layers],
    }


def line_buffer_pipeline(mapping: Mapping, hw: HardwareSpec, layer_xbars: dict[str, int],
                         sizes: tuple[float, float] | None = None) -> PixelPipeline | None:
    """The per-pixel pipeline where the preset has a `dataflow` section and the mapping is one round of
    conv/fc/pool/add layers (digital stages and reprogramming keep the MVM-cycle model). `sizes`: the PE
    input and tile output buffers in KB (`cost.area.ChipArea` has them; None: sized here)."""
    if hw.dataflow is None or mapping.rounds > 1 or mapping.digital:
        return None
    if not mapping.flow:
        raise ValueError(f"mapping of {mapping.model} holds no feature-map layers to pipeline (compiled for hardware "
                         f"without a dataflow section): compile it for '{hw.name}'")
    shapes = {lp.name: (max(c.height for c in lp.classes), max(c.width for c in lp.classes)) for lp in mapping.layers}
    if sizes is None:
        sizes = buffer_kb(mapping, hw, layer_xbars) if hw.buffers is not None else (0.0, 0.0)
    copies = {lp.name: lp.copies for lp in mapping.layers}
    return pixel_pipeline(mapping.flow, hw, shapes, layer_xbars, sizes, copies)


def _with_stage_rows(mapping: Mapping, layers: list[dict[str, Any]], cycles: dict[str, int],
                     energy: Any) -> list[dict[str, Any]]:
    """The per-layer rows with one row per digital stage, after the MVM layer it follows."""
    if not mapping.digital:
        return layers
    rows_after: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for st in mapping.digital:
        rows_after[st.after].append({
            "name": st.name, "op": st.describe, "form": "vector unit" if st.unit == "vector" else "run-time crossbars",
            "blocks": 0, "copies": 0, "crossbars": st.runtime_crossbars, "utilization": 0.0,
            "cycles": cycles.get(st.name, 0), "serial": 1, "time_ns": st.time_ns,
            "energy_pj": energy.layer_total(st.name), "round": 0, "digital": True,
        })
    out = list(rows_after.get(None, []))
    for row in layers:
        out.append(row)
        out.extend(rows_after.get(row["name"], []))
    return out


def _digital_share(mapping: Mapping, layers: list[dict[str, Any]], energy_pj: float) -> dict[str, float] | None:
    """Share of the per-sample layer time and of the energy spent in digital stages (None without any)."""
    if not mapping.digital:
        return None
    busy = sum(row["cycles"] for row in layers)
    digital = sum(row["cycles"] for row in layers if row.get("digital"))
    e_digital = sum(row["energy_pj"] for row in layers if row.get("digital"))
    return {"time": digital / busy if busy else 0.0, "energy": e_digital / energy_pj if energy_pj else 0.0}


def report(mapping: Mapping, baseline: Mapping, hw: HardwareSpec, samples: list[int] | tuple[int, ...],
           graph_bound_inputs: Any = None) -> dict[str, Any]:
    """The JSON document of `xbarforge compile`: the mapping, its baseline and the speedups."""
    ours = evaluate(mapping, hw, samples)
    base = evaluate(baseline, hw, samples)
    bound = period_lower_bound(mapping, hw) if graph_bound_inputs is None else graph_bound_inputs
    if bound and mapping.digital:  # each digital unit serves one stage at a time: its busy time bounds it too
        busy: dict[str, int] = defaultdict(int)
        for st in mapping.digital:
            busy[st.unit] += st.ticks
        bound = max(bound, max(busy.values()) / TICKS_PER_CYCLE)
    achieved = ours["period_cycles"]
    doc: dict[str, Any] = {
        "model": mapping.model,
        "input_shape": list(mapping.input_shape),
        "hardware": mapping.hardware,
        "crossbar": f"{mapping.crossbar_rows}x{mapping.crossbar_cols}",
        "mvm_ns": hw.mvm_ns,
        "crossbars_budget": mapping.crossbars_budget,
        "schedule": mapping.schedule,
        "objective": mapping.objective,
        "samples": list(samples),
        **{k: v for k, v in ours.items() if k != "layers"},
        "min_crossbars": mapping.min_crossbars,
        "throughput_bound_per_s": 1e9 / (bound * hw.mvm_ns) if bound and ours["pixel_pipeline"] is None else None,
        # the bound counts MVM cycles: it says nothing of a line-buffer pipeline's buffer-bound pixels
        "throughput_bound_ratio": (bound / achieved) if (bound and achieved and mapping.rounds == 1
                                                         and ours["pixel_pipeline"] is None) else None,
        "baseline": {k: v for k, v in base.items() if k != "layers"},
        "speedup": {k: base["latency_ns"][k] / ours["latency_ns"][k] for k in ours["latency_ns"]},
        "layers": ours["layers"],
        "seed": mapping.seed,
    }
    return doc

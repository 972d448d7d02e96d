"""Reference run of MNSIM 2.0's hardware evaluation (issue 18: a cost model that agrees with the
established simulators).

Get the simulator (this script never downloads anything):

    git clone https://github.com/thu-nics/MNSIM-2.0 && git -C MNSIM-2.0 checkout ca39ccb

then run

    python benchmarks/mnsim_reference.py --mnsim MNSIM-2.0

The checkout is copied to a temporary directory (without .git), the patches in `PATCHES` are applied
there by exact string replacement (each old text must be found, else the run stops), and MNSIM's own
files are imported from that copy. Nothing of MNSIM is copied into this repository.

Flow (as MNSIM's main.py, hardware modeling only): TrainTestInterface(network_module=NET,
dataset_module='MNSIM.Interface.cifar10', SimConfig_path, weights_file=None) -> get_structure() ->
TCG(structure, SimConfig) -> Model_latency.calculate_model_latency(mode=1) (pipelined) and, on a
second Model_latency, calculate_model_latency_nopipe(); Model_area; Model_inference_power;
Model_energy (fed with the pipelined latency object, as main.py does; the energy from the no-pipe
latency object is reported too). Networks: lenet, alexnet, vgg8, vgg16, resnet18 (CIFAR-10 shapes,
input 1x3x32x32, MNSIM's own layer lists in MNSIM/Interface/network.py), default SimConfig.ini of
the checkout. No weights file, no dataset: the layers keep torch's random init, and MNSIM's
hardware numbers depend only on the shapes.

Requirements: MNSIM imports torch, numpy and pandas on this path (pandas only as an import); all are
in the project venv (torch 2.13, numpy 2.x, pandas 3.x at the time of writing). torchvision and
tensorboardX are imported only by MNSIM's dataset/training modules, which this flow never imports.
No patch was needed at ca39ccb with Python 3.11 / numpy 2.4 / torch 2.13, so `PATCHES` is empty;
a Python >= 3.12 interpreter only warns (SyntaxWarning) about one regex string in network.py.

Output: benchmarks/results/mnsim_reference.json (per network: per-layer structure, TCG mapping,
latency both modes, area, power, energy and their component breakdowns; totals; timings as the
median of --repeats runs of wall (time.perf_counter) and CPU (time.process_time) seconds; the
MNSIM commit, the patches and the Python/numpy/torch versions). Units are MNSIM's: ns, nJ, W, um^2
(area also in mm^2 in the totals). MNSIM's printed output is swallowed; one line per network is
printed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NETWORKS = ["lenet", "alexnet", "vgg8", "vgg16", "resnet18"]
EXPECTED_COMMIT = "ca39ccb"
OUT_DEFAULT = Path(__file__).resolve().parent / "results" / "mnsim_reference.json"

# (file relative to the checkout, old text, new text, reason). Applied only where MNSIM cannot run on
# the current numpy/torch/python; empty at ca39ccb with Python 3.11, numpy 2.4, torch 2.13.
PATCHES: list[tuple[str, str, str, str]] = []

# Model_latency per-layer component totals (sums over all output positions), by our name.
LATENCY_COMPONENTS = {
    "buffer": "total_buffer_latency",
    "buffer_read": "total_buffer_r_latency",
    "buffer_write": "total_buffer_w_latency",
    "computing": "total_computing_latency",
    "dac": "total_DAC_latency",
    "xbar": "total_xbar_latency",
    "adc": "total_ADC_latency",
    "digital": "total_digital_latency",
    "ireg": "total_iReg_latency",
    "oreg": "total_oReg_latency",
    "input_demux": "total_input_demux_latency",
    "output_mux": "total_output_mux_latency",
    "shiftreg": "total_shiftreg_latency",
    "adder": "total_adder_latency",
    "jointmodule": "total_jointmodule_latency",
    "pooling": "total_pooling_latency",
    "intra_tile": "total_intra_tile_latency",
    "inter_tile": "total_inter_tile_latency",
    "tile_merge": "total_tile_merge_latency",
    "tile_transfer": "total_tile_transfer_latency",
}
# Model_latency per-output-position lists (first and last entry reported).
PER_OUTPUT_LISTS = {
    "buffer": "buffer_latency",
    "buffer_read": "buffer_r_latency",
    "buffer_write": "buffer_w_latency",
    "computing": "computing_latency",
    "dac": "DAC_latency",
    "xbar": "xbar_latency",
    "adc": "ADC_latency",
    "digital": "digital_latency",
    "ireg": "iReg_latency",
    "oreg": "oReg_latency",
    "input_demux": "input_demux_latency",
    "output_mux": "output_mux_latency",
    "shiftreg": "shiftreg_latency",
    "adder": "adder_latency",
    "jointmodule": "jointmodule_latency",
    "pooling": "pooling_latency",
    "intra_tile": "intra_tile_latency",
    "inter_tile": "inter_tile_latency",
    "tile_merge": "tile_merge_latency",
    "tile_transfer": "tile_transfer_latency",
}
AREA_COMPONENTS = ["xbar", "ADC", "DAC", "digital", "adder", "shiftreg", "iReg", "oReg", "input_demux",
                   "output_mux", "jointmodule", "buf", "pooling"]
POWER_COMPONENTS = ["xbar", "ADC", "DAC", "digital", "adder", "shiftreg", "iReg", "oReg", "input_demux",
                    "output_mux", "jointmodule", "buf", "buf_r", "buf_w", "pooling"]
ENERGY_COMPONENTS = POWER_COMPONENTS
# arch_total_* names that exist on the area/power/energy models (energy has no total oReg).
TOTAL_AREA = ["xbar", "ADC", "DAC", "digital", "adder", "shiftreg", "iReg", "oReg", "input_demux",
              "output_mux", "jointmodule", "buf", "pooling"]
TOTAL_POWER = TOTAL_AREA + ["buf_r", "buf_w"]
TOTAL_ENERGY = ["xbar", "ADC", "DAC", "digital", "adder", "shiftreg", "iReg", "input_demux", "output_mux",
                "jointmodule", "buf", "buf_r", "buf_w", "pooling"]


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and nested containers to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def git_commit(src: Path) -> str | None:
    """Full commit hash of the checkout, or None when it is not a git work tree."""
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def prepare_copy(src: Path) -> Path:
    """Copy the checkout (without .git) to a temp dir and apply PATCHES there; return the copy."""
    dst = Path(tempfile.mkdtemp(prefix="mnsim_ref_")) / "MNSIM-2.0"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git"))
    for rel, old, new, reason in PATCHES:
        path = dst / rel
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise RuntimeError(f"patch for {rel} ({reason}): old text not found")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return dst


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run fn with MNSIM's stdout swallowed; return (result, wall s, CPU s)."""
    sink = io.StringIO()
    w0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(sink):
        result = fn()
    return result, time.perf_counter() - w0, time.process_time() - c0


class Mnsim:
    """Handles on the MNSIM modules imported from the patched copy."""

    def __init__(self, root: Path) -> None:
        sys.path.insert(0, str(root))
        self.root = root
        self.config = str(root / "SimConfig.ini")
        with contextlib.redirect_stdout(io.StringIO()):
            self.interface = importlib.import_module("MNSIM.Interface.interface")
            self.tcg = importlib.import_module("MNSIM.Mapping_Model.Tile_connection_graph")
            self.latency = importlib.import_module("MNSIM.Latency_Model.Model_latency")
            self.area = importlib.import_module("MNSIM.Area_Model.Model_Area")
            self.power = importlib.import_module("MNSIM.Power_Model.Model_inference_power")
            self.energy = importlib.import_module("MNSIM.Energy_Model.Model_energy")
            self.buffer = importlib.import_module("MNSIM.Hardware_Model.Buffer")
            self.tile_latency = importlib.import_module("MNSIM.Latency_Model.Tile_latency")


def run_once(m: Mnsim, net: str) -> dict[str, Any]:
    """One full evaluation of `net`: objects and wall/CPU seconds of each stage."""
    def structure() -> Any:
        """MNSIM's layer structure of `net` (random init weights)."""
        iface = m.interface.TrainTestInterface(network_module=net, dataset_module="MNSIM.Interface.cifar10",
                                               SimConfig_path=m.config, weights_file=None)
        return iface.get_structure()

    struct, s_wall, s_cpu = timed(structure)
    sink = io.StringIO()
    w0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(sink):
        graph = m.tcg.TCG(struct, m.config)
    t_wall, t_cpu = time.perf_counter() - w0, time.process_time() - c0
    tcg_stdout = sink.getvalue()

    def hardware() -> tuple[Any, Any, Any, Any]:
        """Pipelined latency (mode=1), area, power and energy, as main.py."""
        lat = m.latency.Model_latency(NetStruct=struct, SimConfig_path=m.config, TCG_mapping=graph)
        lat.calculate_model_latency(mode=1)
        area = m.area.Model_area(NetStruct=struct, SimConfig_path=m.config, TCG_mapping=graph)
        power = m.power.Model_inference_power(NetStruct=struct, SimConfig_path=m.config, TCG_mapping=graph)
        energy = m.energy.Model_energy(NetStruct=struct, SimConfig_path=m.config, TCG_mapping=graph,
                                       model_latency=lat, model_power=power)
        return lat, area, power, energy

    (lat, area, power, energy), h_wall, h_cpu = timed(hardware)

    def nopipe() -> tuple[Any, Any]:
        """No-pipe latency and the energy computed from it."""
        lat_np = m.latency.Model_latency(NetStruct=struct, SimConfig_path=m.config, TCG_mapping=graph)
        lat_np.calculate_model_latency_nopipe()
        en_np = m.energy.Model_energy(NetStruct=struct, SimConfig_path=m.config, TCG_mapping=graph,
                                      model_latency=lat_np, model_power=power)
        return lat_np, en_np

    (lat_np, energy_np), n_wall, n_cpu = timed(nopipe)
    return {
        "struct": struct, "graph": graph, "tcg_stdout": tcg_stdout, "lat": lat, "area": area, "power": power,
        "energy": energy, "lat_np": lat_np, "energy_np": energy_np,
        "times": {
            "structure": (s_wall, s_cpu), "tcg_mapping": (t_wall, t_cpu),
            "hardware_modeling": (h_wall, h_cpu), "latency_nopipe_plus_energy": (n_wall, n_cpu),
        },
    }


def layer_latency(lat: Any, struct: Any, i: int) -> dict[str, Any]:
    """Per-layer latency record of one Model_latency object."""
    begin, finish = lat.begin_time[i], lat.finish_time[i]
    layer_dict = struct[i][0][0]
    if i == 0:
        mnsim_layer = max(finish)
    else:
        src = i + int(layer_dict["Inputindex"][0])
        mnsim_layer = max(finish) - max(lat.finish_time[src])
    last_out = {"begin_ns": begin[-1], "finish_ns": finish[-1], "span_ns": finish[-1] - begin[-1]}
    rec: dict[str, Any] = {
        "begin_ns": min(begin), "finish_ns": max(finish), "outputs": len(finish),
        "mnsim_layer_latency_ns": mnsim_layer,
        "occupancy": lat.occupancy[i] if i < len(lat.occupancy) else None,
        "component_sum_ns": {k: getattr(lat, v)[i] for k, v in LATENCY_COMPONENTS.items()},
        "first_output": {"span_ns": finish[0] - begin[0]},
        "last_output": last_out,
    }
    rec["component_sum_ns"]["mnsim_total"] = (lat.total_buffer_latency[i] + lat.total_computing_latency[i]
                                              + lat.total_digital_latency[i] + lat.total_intra_tile_latency[i]
                                              + lat.total_inter_tile_latency[i])
    for k, v in PER_OUTPUT_LISTS.items():
        values = getattr(lat, v)[i]
        if values:
            rec["first_output"][k] = values[0]
            rec["last_output"][k] = values[-1]
    return rec


def inbuf_outbuf_demand(layer: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The per-layer buffer sizes TCG.__init__ computes before taking the maximum (KB, power of two).

    Recomputed here from TCG's formula (Tile_connection_graph.py:298-343, 468-479) because TCG keeps only
    the maximum over layers (max_inbuf_size, max_outbuf_size), which is the size every PE/tile gets.
    """
    t = layer["type"]
    if t == "conv":
        data_in = layer["Inputsize"][1] * layer["Kernelsize"] * layer["Inputchannel"] * layer["Inputbit"] / 8
        data_out = layer["Outputchannel"] * layer["outputbit"] / 8
    elif t == "fc":
        data_in = layer["Infeature"] * layer["Inputbit"] / 8
        data_out = layer["Outfeature"] * layer["outputbit"] / 8
    else:
        return {"data_inbuf_B": 0, "data_outbuf_B": 0, "inbuf_KB": 0, "outbuf_KB": 0}
    inbuf = 2 ** math.ceil(math.log2(data_in / info["PEnum"])) / 1024
    outbuf = 2 ** math.ceil(math.log2(data_out * 2 / info["tilenum"])) / 1024
    return {"data_inbuf_B": data_in, "data_outbuf_B": data_out, "inbuf_KB": inbuf, "outbuf_KB": outbuf}


def buffer_constants(m: Mnsim, level: int, size_kb: float) -> dict[str, Any]:
    """Area, power, per-access latency/energy of one MNSIM SRAM buffer of `size_kb` KB."""
    buf = m.buffer.buffer(SimConfig_path=m.config, buf_level=level, default_buf_size=size_kb)
    buf.calculate_buf_area()
    buf.calculate_buf_read_power()
    buf.calculate_buf_write_power()
    access_bytes = buf.buf_bitwidth / 8
    buf.calculate_buf_read_energy(rdata=access_bytes)
    buf.calculate_buf_write_energy(wdata=access_bytes)
    return {
        "level": level, "size_KB": buf.buf_Size, "bitwidth_bit": buf.buf_bitwidth, "table_index": buf.index,
        "cycle_ns_per_access": buf.buf_cycle, "area_um2": buf.buf_area, "leakage_mW": buf.leakage_power,
        "read_power_mW": buf.buf_rpower, "write_power_mW": buf.buf_wpower,
        "dynamic_read_power_mW": buf.dynamic_buf_rpower, "dynamic_write_power_mW": buf.dynamic_buf_wpower,
        "read_energy_nJ_per_access": buf.buf_renergy, "write_energy_nJ_per_access": buf.buf_wenergy,
    }


def constants(m: Mnsim, graph: Any) -> dict[str, Any]:
    """Main device/circuit constants as MNSIM computes them on this SimConfig (one network's TCG)."""
    tile = graph.tile
    tile.calculate_xbar_read_latency()
    tile.calculate_DAC_latency()
    tile.calculate_ADC_latency()
    tile.calculate_DAC_power()
    tile.calculate_ADC_power()
    tile.calculate_device_read_power()
    tile.calculate_xbar_area()
    tile.calculate_ADC_area()
    tile.calculate_DAC_area()
    tl = m.tile_latency.tile_latency_analysis(SimConfig_path=m.config, read_row=256, read_column=256, indata=0,
                                              rdata=0, inprecision=9, PE_num=4,
                                              default_inbuf_size=graph.max_inbuf_size,
                                              default_outbuf_size=graph.max_outbuf_size)
    pe = tl.PE
    return {
        "xbar_rows": tile.xbar_row, "xbar_columns": tile.xbar_column, "subarray_size": tile.subarray_size,
        "xbars_per_PE": tile.PE_xbar_num, "group_num": tile.group_num, "PE_per_tile": tile.tile_PE_total_num,
        "PE_group_DAC_num": tile.PE_group_DAC_num, "PE_group_ADC_num": tile.PE_group_ADC_num,
        "input_demux": tile.input_demux, "output_mux": tile.output_mux,
        "device_read_latency_ns": tile.device_read_latency, "xbar_read_latency_ns": tile.xbar_read_latency,
        "device_read_power_W": tile.device_read_power,
        "DAC_precision_bit": tile.DAC_precision, "DAC_latency_ns": tile.DAC_latency, "DAC_power_W": tile.DAC_power,
        "DAC_area_um2": tile.DAC_area,
        "ADC_precision_bit": tile.ADC_precision, "ADC_latency_ns": tile.ADC_latency, "ADC_power_W": tile.ADC_power,
        "ADC_area_um2": tile.ADC_area, "xbar_area_um2": tile.xbar_area,
        "digital_period_ns": tl.digital_period, "decoder_latency_ns": tl.decoderLatency,
        "mux_latency_ns": tl.muxLatency,
        "jointmodule_power_W": tile.tile_jointmodule.jointmodule_power,
        "shiftreg_power_W": tile.PE_shiftreg.shiftreg_power, "reg_power_W": tile.PE_iReg.reg_power,
        "adder_power_W": tile.PE_adder.adder_power,
        "full_xbar_example (256 rows, 256 cols, 9-bit input, 4 PEs)": {
            "PE_latency_ns_without_buffers": tl.computing_latency + tl.PE_digital_latency,
            "computing_ns": tl.computing_latency, "xbar_ns": tl.xbar_latency, "dac_ns": tl.DAC_latency,
            "adc_ns": tl.ADC_latency, "PE_digital_ns": tl.PE_digital_latency, "ireg_ns": tl.iReg_latency,
            "shiftreg_ns": tl.shiftreg_latency, "input_demux_ns": tl.input_demux_latency,
            "output_mux_ns": tl.output_mux_latency, "adder_ns": tl.adder_latency, "oreg_ns": tl.oReg_latency,
            "jointmodule_ns": tl.jointmodule_latency, "intra_tile_transfer_ns": tl.transfer_latency,
            "tile_outbuf_write_ns": tl.tile_buf_wlatency,
        },
        "inter_tile_bandwidth_Gbps": float(_config_value(m, "Tile level", "Inter_Tile_Bandwidth")),
        "intra_tile_bandwidth_Gbps": float(_config_value(m, "Tile level", "Intra_Tile_Bandwidth")),
        "pe_input_buffer": buffer_constants(m, 1, graph.max_inbuf_size),
        "tile_output_buffer": buffer_constants(m, 2, graph.max_outbuf_size),
        "global_buffer": buffer_constants(m, 1, graph.global_buf_size) if graph.global_buf_size else None,
        "ADC_precision_used_by_PE": pe.ADC_precision,
    }


def _config_value(m: Mnsim, section: str, key: str) -> str:
    """One raw value of the SimConfig.ini used."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(m.config, encoding="UTF-8")
    return cfg.get(section, key)


def network_record(m: Mnsim, net: str, repeats: int) -> dict[str, Any]:
    """Evaluate `net` `repeats` times and build its JSON record from the last run."""
    runs = [run_once(m, net) for _ in range(repeats)]
    r = runs[-1]
    struct, graph, lat, lat_np = r["struct"], r["graph"], r["lat"], r["lat_np"]
    area, power, energy, energy_np = r["area"], r["power"], r["energy"], r["energy_np"]
    xbars_per_pe = graph.tile.PE_xbar_num
    layers = []
    for i in range(len(struct)):
        layer_dict = dict(struct[i][0][0])
        info = dict(graph.layer_tileinfo[i])
        is_xbar = info["type"] in ("conv", "fc")
        rec: dict[str, Any] = {
            "index": i, "type": layer_dict["type"],
            "structure": {k: v for k, v in layer_dict.items()},
            "tcg": info,
            "PEs": info["PEnum"] if is_xbar else 0,
            "crossbars_mnsim": info["PEnum"] if is_xbar else 0,
            "crossbars_physical": info["PEnum"] * xbars_per_pe if is_xbar else 0,
            "tiles": info["tilenum"],
            "inLayer_distance": graph.inLayer_distance[0][i],
            "transLayer_distance": graph.transLayer_distance[0][i],
            "aggregate_tile": graph.aggregate_arg[i],
            "buffer_demand": inbuf_outbuf_demand(layer_dict, info),
            "latency_pipelined": layer_latency(lat, struct, i),
            "latency_nopipe": layer_latency(lat_np, struct, i),
            "area_um2": {"total": area.arch_area[i],
                         **{c: getattr(area, f"arch_{c}_area")[i] for c in AREA_COMPONENTS}},
            "power_W": {"total": power.arch_power[i],
                        **{c: getattr(power, f"arch_{c}_power")[i] for c in POWER_COMPONENTS}},
            "energy_nJ": {"total": energy.arch_energy[i],
                          **{c: getattr(energy, f"arch_{c}_energy")[i] for c in ENERGY_COMPONENTS}},
            "energy_nJ_with_nopipe_latency": {"total": energy_np.arch_energy[i],
                                              **{c: getattr(energy_np, f"arch_{c}_energy")[i]
                                                 for c in ENERGY_COMPONENTS}},
        }
        if layer_dict["type"] in ("element_sum", "element_multiply"):
            rec["area_um2"]["global_accumulator_mnsim_print"] = (
                area.global_add.adder_area * graph.global_adder_num + area.global_buf.buf_area)
            rec["power_W"]["global_accumulator_mnsim_print"] = (
                power.global_add.adder_power * graph.global_adder_num
                + (power.global_buf.buf_wpower + power.global_buf.buf_rpower) * 1e-3)
        layers.append(rec)

    xbar_layers = [x for x in layers if x["type"] in ("conv", "fc")]
    timing: dict[str, Any] = {"repeats": repeats}
    for stage in runs[0]["times"]:
        walls = [run["times"][stage][0] for run in runs]
        cpus = [run["times"][stage][1] for run in runs]
        timing[stage] = {"wall_s_median": statistics.median(walls), "cpu_s_median": statistics.median(cpus),
                         "wall_s_all": walls, "cpu_s_all": cpus}
    timing["mapping_total"] = {
        "wall_s_median": statistics.median([sum(run["times"][s][0] for s in ("structure", "tcg_mapping"))
                                            for run in runs]),
        "cpu_s_median": statistics.median([sum(run["times"][s][1] for s in ("structure", "tcg_mapping"))
                                           for run in runs]),
    }
    printed = [ln for ln in r["tcg_stdout"].splitlines() if ln.startswith("Total crossbar number")]
    totals = {
        "crossbars_mnsim": sum(x["crossbars_mnsim"] for x in xbar_layers),
        "crossbars_mnsim_printed": printed[0].split(":", 1)[1].strip() if printed else None,
        "crossbars_physical": sum(x["crossbars_physical"] for x in xbar_layers),
        "PEs": sum(x["PEs"] for x in xbar_layers),
        "tiles": graph.used_tile_num,
        "tiles_xbar_layers": sum(x["tiles"] for x in xbar_layers),
        "tiles_pooling_layers": sum(x["tiles"] for x in layers if x["type"] == "pooling"),
        "latency_pipelined_ns": max(max(f) for f in lat.finish_time),
        "latency_pipelined_mnsim_print_ns": max(max(lat.finish_time)),
        "latency_nopipe_ns": max(max(f) for f in lat_np.finish_time),
        "latency_nopipe_mnsim_print_ns": max(max(lat_np.finish_time)),
        "energy_nJ": energy.arch_total_energy,
        "energy_nJ_components": {c: getattr(energy, f"arch_total_{c}_energy") for c in TOTAL_ENERGY},
        "energy_nJ_noc": energy.arch_Noc_energy,
        "energy_nJ_with_nopipe_latency": energy_np.arch_total_energy,
        "area_um2": area.arch_total_area,
        "area_mm2": area.arch_total_area / 1e6,
        "area_um2_components": {c: getattr(area, f"arch_total_{c}_area") for c in TOTAL_AREA},
        "power_W": power.arch_total_power,
        "power_W_components": {c: getattr(power, f"arch_total_{c}_power") for c in TOTAL_POWER},
        "max_inbuf_size_KB": graph.max_inbuf_size,
        "max_outbuf_size_KB": graph.max_outbuf_size,
        "global_buf_size_KB": graph.global_buf_size,
        "global_data_size_B": graph.global_data_size,
        "global_adder_num": graph.global_adder_num,
        "global_adder_bitwidth": graph.global_adder_bitwidth,
    }
    return {
        "network": net, "layers": layers, "totals": totals, "timing": timing,
        "constants": constants(m, graph),
        "notes": {
            "crossbars_mnsim": "TCG PEnum = mx*my (Tile_connection_graph.py:265-267,461); MNSIM prints this sum "
                               "as 'Total crossbar number'. One PE holds group_num*polarity crossbars.",
            "crossbars_physical": "PEnum * PE_xbar_num (group_num * Xbar_Polarity, PE.py:46)",
            "latency_mnsim_print": "MNSIM prints max(max(finish_time)) (Model_latency.py:823), i.e. the max of the "
                                   "lexicographically largest layer list; latency_*_ns is the max over all layers",
            "energy": "Model_energy fed with the pipelined (mode=1) latency object, as MNSIM's main.py; "
                      "arch_total_energy excludes the global accumulator's adder/buffer energy that the "
                      "component totals 'digital', 'adder', 'buf' include",
        },
    }


def main() -> None:
    """Parse arguments, run every network, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mnsim", type=Path, required=True, help="MNSIM-2.0 checkout (commit ca39ccb)")
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--networks", nargs="*", default=NETWORKS)
    args = parser.parse_args()
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before MNSIM (and so torch) is imported

    src = args.mnsim.resolve()
    commit = git_commit(src)
    if commit is not None and not commit.startswith(EXPECTED_COMMIT):
        print(f"warning: checkout is at {commit}, the reference is {EXPECTED_COMMIT}", file=sys.stderr)
    copy = prepare_copy(src)
    old_cwd = os.getcwd()
    os.chdir(copy)
    try:
        m = Mnsim(copy)
        import numpy
        import torch

        torch.manual_seed(0)
        results = {}
        for net in args.networks:
            rec = network_record(m, net, args.repeats)
            results[net] = rec
            t = rec["totals"]
            hw = rec["timing"]["hardware_modeling"]["wall_s_median"]
            print(f"{net}: {t['crossbars_mnsim']} MNSIM crossbars (PEs), {t['tiles']} tiles, "
                  f"pipelined {t['latency_pipelined_ns']:.0f} ns, no-pipe {t['latency_nopipe_ns']:.0f} ns, "
                  f"{t['energy_nJ']:.0f} nJ, {t['area_mm2']:.2f} mm2, hardware modeling {hw:.2f} s", flush=True)
        out = {
            "mnsim": {"commit": commit, "expected_commit": EXPECTED_COMMIT,
                      "upstream": "https://github.com/thu-nics/MNSIM-2.0", "config": "SimConfig.ini (default)",
                      "dataset_module": "MNSIM.Interface.cifar10", "input_shape": [1, 3, 32, 32],
                      "weights_file": None, "latency_mode_pipelined": 1},
            "patches": [{"file": f, "old": o, "new": n, "reason": why} for f, o, n, why in PATCHES],
            "environment": {"python": platform.python_version(), "numpy": numpy.__version__,
                            "torch": torch.__version__, "platform": platform.platform(),
                            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                            "torch_threads": torch.get_num_threads()},
            "networks": results,
        }
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(copy.parent, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(jsonable(out), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Reference run of DNN+NeuroSim V1.4's hardware estimator (issue 18, item 5: a cost model checked
against a second established simulator).

Get the simulator (this script never downloads anything):

    git clone https://github.com/neurosim/DNN_NeuroSim_V1.4
    git -C DNN_NeuroSim_V1.4 checkout ac828e6723bf077c9b1423c5c72ff6e4981e90f4

(the large Inference_pytorch/log/VGG8.pth is not needed), then run

    python benchmarks/neurosim_reference.py --neurosim DNN_NeuroSim_V1.4

The C++ estimator folder (Inference_pytorch/NeuroSIM) is copied to a temporary directory, the
patches in `PATCHES` are applied there by exact string replacement (each old text must occur the
stated number of times, else the run stops), it is built with its own makefile (g++), and run as
NeuroSim's Python wrapper would run it (trace_command.sh): `main NetWork_<net>.csv 8 8 128 128
w1.csv x1.csv w2.csv x2.csv ...` with NeuroSim's default Param.cpp (SRAM, 22 nm, 128x128 subarray,
8-bit weights and inputs, 5-bit MLSA "ADC", 8 columns per ADC, pipelined, synchronous).
Nothing of NeuroSim is copied into this repository.

The per-layer CSVs are generated here instead of by NeuroSim's PyTorch wrapper (no dataset, no
trained weights): weights are torch's default init of the matching nn.Conv2d / nn.Linear (seeded),
quantized as NeuroSim's wage_quantizer.Q (round(w * 2^(b-1)) / 2^(b-1)) and written as the wrapper
writes them (rows = Cin*kh*kw, cols = Cout, '%10.5f'); inputs are random non-negative activations
(ReLU of a normal times ACT_SCALE, i.e. half zeros) quantized to 8 bits and written bit-serially as
the wrapper's dec2bin does (rows = Cin*kh*kw, cols = positions*8, MSB/sign bit first, '0'/'1').
Only energies depend on these files (activity factors and column currents); area, mapping and
latency do not.

The patches only add print statements (prefixed XBF_) that expose values NeuroSim computes but does
not print: the per-layer mapping (novel/conventional mapping, tile rows/cols, duplication) and a
probe of the subarray and its components for the first 8 subarray operations of each layer (the 8
input bits, MSB first, of the first input vector on the first subarray). They do
not change any number NeuroSim computes. No patch was needed to build or run on gcc 12.

Output: benchmarks/results/neurosim_reference.json. Units are NeuroSim's printed ones (um^2, ns,
pJ, uW) unless a key says otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

EXPECTED_COMMIT = "ac828e6723bf077c9b1423c5c72ff6e4981e90f4"
OUT_DEFAULT = Path(__file__).resolve().parent / "results" / "neurosim_reference.json"
NETWORKS = ["VGG8"]
WEIGHT_BITS = 8
INPUT_BITS = 8
SUBARRAY = 128
PARALLEL_READ = 128
ACT_SCALE = 0.25

_MAP_PRINT = (
    '    for (int i=0; i<netStructure.size(); i++) {\n'
    '        cout << "XBF_MAP layer=" << i+1 << " markNM=" << markNM[i] << " tileRow=" << numTileEachLayer[0][i]\n'
    '             << " tileCol=" << numTileEachLayer[1][i] << " dupRow=" << speedUpEachLayer[0][i]\n'
    '             << " dupCol=" << speedUpEachLayer[1][i] << " utilization=" << utilizationEachLayer[i][0]\n'
    '             << " pipelineSpeedUp=" << (param->pipeline ? pipelineSpeedUp[i] : 1) << endl;\n'
    '    }\n'
    '    cout << "XBF_CHIP numPENM=" << numPENM << " desiredPESizeNM=" << desiredPESizeNM\n'
    '         << " desiredNumTileNM=" << desiredNumTileNM << " desiredTileSizeCM=" << desiredTileSizeCM\n'
    '         << " desiredPESizeCM=" << desiredPESizeCM << " desiredNumTileCM=" << desiredNumTileCM\n'
    '         << " numTileRow=" << numTileRow << " numTileCol=" << numTileCol\n'
    '         << " speedUpDegree=" << param->speedUpDegree << " numColPerSynapse=" << param->numColPerSynapse\n'
    '         << " numColMuxed=" << param->numColMuxed << endl;\n'
)

_PROBE_PRINT = (
    "*readDynamicEnergy += subArray->readDynamicEnergy;\n"
    "if (xbfProbeLeft > 0) { xbfProbeLeft--; cout << \"XBF_PROBE\""
    " << \" activityRowRead=\" << subArray->activityRowRead"
    " << \" numRow=\" << subArray->numRow << \" numCol=\" << subArray->numCol"
    " << \" clkFreq=\" << param->clkFreq"
    " << \" ADClatency_s=\" << param->ADClatency << \" rowdelay_s=\" << param->rowdelay"
    " << \" muxdelay_s=\" << param->muxdelay"
    " << \" readLatency_cyc=\" << subArray->readLatency << \" readLatencyADC_cyc=\" << subArray->readLatencyADC"
    " << \" readLatencyAccum_cyc=\" << subArray->readLatencyAccum"
    " << \" readLatencyOther_cyc=\" << subArray->readLatencyOther"
    " << \" E_J=\" << subArray->readDynamicEnergy << \" E_ADC_J=\" << subArray->readDynamicEnergyADC"
    " << \" E_Accum_J=\" << subArray->readDynamicEnergyAccum << \" E_Other_J=\" << subArray->readDynamicEnergyOther"
    " << \" E_Array_J=\" << subArray->readDynamicEnergyArray"
    " << \" E_mlsa_J=\" << subArray->multilevelSenseAmp.readDynamicEnergy"
    " << \" E_mlsaenc_J=\" << subArray->multilevelSAEncoder.readDynamicEnergy"
    " << \" E_sarADC_J=\" << subArray->sarADC.readDynamicEnergy"
    " << \" E_precharger_J=\" << subArray->precharger.readDynamicEnergy"
    " << \" E_wlSwitchMatrix_J=\" << subArray->wlSwitchMatrix.readDynamicEnergy"
    " << \" E_mux_J=\" << subArray->mux.readDynamicEnergy"
    " << \" E_muxDecoder_J=\" << subArray->muxDecoder.readDynamicEnergy"
    " << \" E_adder_J=\" << subArray->adder.readDynamicEnergy << \" E_dff_J=\" << subArray->dff.readDynamicEnergy"
    " << \" E_shiftAddWeight_J=\" << subArray->shiftAddWeight.readDynamicEnergy"
    " << \" E_shiftAddInput_J=\" << subArray->shiftAddInput.readDynamicEnergy"
    " << \" T_adder_s=\" << subArray->adder.readLatency"
    " << \" T_shiftAddWeight_s=\" << subArray->shiftAddWeight.readLatency"
    " << \" T_shiftAddInput_s=\" << subArray->shiftAddInput.readLatency"
    " << \" leakage_W=\" << subArray->leakage << \" leakageSRAMInUse_W=\" << subArray->leakageSRAMInUse"
    " << \" area_m2=\" << subArray->usedArea << \" areaArray_m2=\" << subArray->areaArray"
    " << \" areaADC_m2=\" << subArray->areaADC << \" areaAccum_m2=\" << subArray->areaAccum"
    " << \" areaOther_m2=\" << subArray->areaOther"
    " << \" A_mlsa_m2=\" << subArray->multilevelSenseAmp.area"
    " << \" A_mlsaenc_m2=\" << subArray->multilevelSAEncoder.area"
    " << \" A_precharger_m2=\" << subArray->precharger.area"
    " << \" A_wlSwitchMatrix_m2=\" << subArray->wlSwitchMatrix.area << \" A_mux_m2=\" << subArray->mux.area"
    " << \" A_muxDecoder_m2=\" << subArray->muxDecoder.area << \" A_adder_m2=\" << subArray->adder.area"
    " << \" A_dff_m2=\" << subArray->dff.area << \" A_shiftAddWeight_m2=\" << subArray->shiftAddWeight.area"
    " << \" A_shiftAddInput_m2=\" << subArray->shiftAddInput.area << endl; }\n"
)

_FLOORPLAN_DONE = '    cout << "---------------------------- FloorPlan Done ------------------------------" <<  endl;\n'

# (file in NeuroSIM/, old text, new text, reason, expected number of occurrences; all are replaced).
PATCHES: list[tuple[str, str, str, str, int]] = [
    (
        "main.cpp",
        _FLOORPLAN_DONE,
        _MAP_PRINT + _FLOORPLAN_DONE,
        "report only: print per-layer mapping (novel/conventional mapping, tile rows/cols, PE and subarray "
        "duplication, utilization) and the chip floorplan (desired tile/PE sizes and counts), which NeuroSim "
        "computes in ChipFloorPlan but does not print",
        1,
    ),
    (
        "Chip.cpp",
        "int numBufferCore = 0;",
        "int numBufferCore = 0;\nint xbfProbeLeft = 0;",
        "report only: counter for the per-layer subarray probe (first 8 subarray operations = the 8 input bits "
        "of the first input vector)",
        1,
    ),
    (
        "Chip.cpp",
        "\tint l = layerNumber;\n",
        "\tint l = layerNumber;\n"
        "\tif (!CalculateclkFreq) { cout << \"XBF_LAYER \" << l+1 << endl; xbfProbeLeft = 8; }\n",
        "report only: mark the start of each layer's performance pass so the probe can be attributed",
        1,
    ),
    (
        "ProcessingUnit.cpp",
        "extern Param *param;",
        "extern Param *param;\nextern int xbfProbeLeft;",
        "report only: declare the probe counter",
        1,
    ),
    (
        "ProcessingUnit.cpp",
        "*readDynamicEnergy += subArray->readDynamicEnergy;\n",
        _PROBE_PRINT,
        "report only: print the subarray's per-operation latency (cycles), energy, leakage and area and its "
        "components for the first 8 subarray operations of each layer",
        3,
    ),
]

NUM = r"([-+0-9.eE]+|nan|-?inf)"


def apply_patches(root: Path) -> None:
    """Apply PATCHES in root (the copied NeuroSIM folder); stop if a text is not found as expected."""
    for fname, old, new, _reason, count in PATCHES:
        path = root / fname
        text = path.read_text()
        found = text.count(old)
        if found != count:
            raise SystemExit(f"patch for {fname} expected {count} occurrence(s) of {old[:60]!r}, found {found}")
        path.write_text(text.replace(old, new))


def git_commit(checkout: Path) -> str:
    """Commit of the checkout, or 'unknown'."""
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def read_net(csv: Path) -> list[list[int]]:
    """NeuroSim's NetWork_*.csv: IFM H, W, Cin, kh, kw, Cout, followed-by-pool, stride."""
    return [[int(float(v)) for v in line.split(",")] for line in csv.read_text().split() if line.strip()]


def write_layer_csvs(net: list[list[int]], out: Path, seed: int) -> list[str]:
    """Write weight/input CSVs in the format NeuroSim's hook.py writes; return main's file arguments."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = 2 ** (WEIGHT_BITS - 1)
    args: list[str] = []
    for i, (h, w, cin, kh, kw, cout, _pool, _stride) in enumerate(net):
        conv = not (h == 1 and w == 1 and kh == 1 and kw == 1)
        mod: torch.nn.Module = torch.nn.Conv2d(cin, cout, (kh, kw)) if conv else torch.nn.Linear(cin, cout)
        weight = mod.weight.detach().numpy().reshape(cout, -1).T
        wq = np.round(weight * scale) / scale
        wfile, xfile = out / f"weight{i + 1}.csv", out / f"input{i + 1}.csv"
        np.savetxt(wfile, wq, delimiter=",", fmt="%10.5f")
        rows, positions = cin * kh * kw, (h * w if conv else 1)
        act = np.maximum(rng.standard_normal((rows, positions)), 0.0) * ACT_SCALE
        q = np.clip(np.floor(act * 2 ** (INPUT_BITS - 1)), 0, 2 ** (INPUT_BITS - 1) - 1).astype(np.int64)
        bits = np.empty((rows, positions * INPUT_BITS), dtype="U1")
        for b in range(INPUT_BITS):
            bits[:, b::INPUT_BITS] = ((q >> (INPUT_BITS - 1 - b)) & 1).astype(str)
        np.savetxt(xfile, bits, delimiter=",", fmt="%s")
        args += [str(wfile), str(xfile)]
    return args


def run_main(build: Path, net_csv: Path, files: list[str]) -> tuple[str, float, float]:
    """Run NeuroSim's main once; return stdout, wall and CPU seconds."""
    cmd = [str(build / "main"), str(net_csv), str(WEIGHT_BITS), str(INPUT_BITS), str(SUBARRAY), str(PARALLEL_READ)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + files, cwd=build, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"NeuroSim exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.stdout, wall, cpu


def _kv(line: str) -> dict[str, float]:
    """key=value pairs of an XBF_ line as floats."""
    return {k: float(v) for k, v in re.findall(r"(\w+)=" + NUM, line)}


def _val(pattern: str, text: str) -> float | None:
    m = re.search(pattern + r"\s*" + NUM, text)
    return float(m.group(1)) if m else None


BREAKDOWN = {
    "adc": r"ADC \(or S/As and precharger for SRAM\) ",
    "accumulation": r"Accumulation Circuits \(subarray level: adders, shiftAdds; PE/Tile/Global level: accumulation "
    r"units\) ",
    "other": r"Other Peripheries \(e\.g\. decoders, mux, switchmatrix, buffers, IC, pooling and activation units\) ",
}


def _breakdown(block: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, pat in BREAKDOWN.items():
        out[f"{name}_latency_ns"] = _val(r"-{11} " + pat + r"readLatency is :", block)
        out[f"{name}_dynamic_energy_pJ"] = _val(r"-{11} " + pat + r"readDynamicEnergy is :", block)
    return out


def parse_output(text: str, net: list[list[int]]) -> dict[str, Any]:
    """Parse NeuroSim's printed floorplan, per-layer estimates, summary and the XBF_ lines."""
    chip_map = _kv(next(line for line in text.splitlines() if line.startswith("XBF_CHIP")))
    maps = {int(d["layer"]): d for d in (_kv(s) for s in text.splitlines() if s.startswith("XBF_MAP"))}
    probes: dict[int, list[dict[str, float]]] = {}
    layer = 0
    for line in text.splitlines():
        if line.startswith("XBF_LAYER"):
            layer = int(line.split()[1])
        elif line.startswith("XBF_PROBE"):
            probes.setdefault(layer, []).append(_kv(line))
    tiles_printed = {int(a): float(b) for a, b in re.findall(r"^layer(\d+): " + NUM + "$",
                                                              text.split("# of tile used")[1].split("Speed-up")[0],
                                                              re.M)}
    speedup_printed = {int(a): float(b) for a, b in re.findall(r"^layer(\d+): " + NUM + "$",
                                                               text.split("Speed-up of each layer")[1]
                                                               .split("Utilization")[0], re.M)}
    perf = text.split("Hardware Performance ---")[1]
    blocks = re.split(r"-{20} Estimation of Layer (\d+) -{22}", perf.split("------------------------------ Summary")[0])
    summary = perf.split("------------------------------ Summary")[1]
    pe_cm = chip_map["desiredPESizeCM"]
    tile_cm = chip_map["desiredTileSizeCM"]
    pe_nm = chip_map["desiredPESizeNM"]
    layers = []
    for idx in range(1, len(blocks), 2):
        n, block = int(blocks[idx]), blocks[idx + 1]
        h, w, cin, kh, kw, cout, pool, stride = net[n - 1]
        m = maps[n]
        nm = int(m["markNM"]) == 1
        col_per_syn = chip_map["numColPerSynapse"]
        mat_rows, mat_cols = cin * kh * kw, cout * col_per_syn
        if nm:  # novel mapping: one PE per kernel position, each holding a Cin x Cout*cols slice
            pes_per_tile = chip_map["numPENM"]
            sub_per_pe = (pe_nm / SUBARRAY) ** 2
            subarrays_one_copy = kh * kw * math.ceil(cin / SUBARRAY) * math.ceil(cout * col_per_syn / SUBARRAY)
        else:
            pes_per_tile = (tile_cm / pe_cm) ** 2
            sub_per_pe = (pe_cm / SUBARRAY) ** 2
            subarrays_one_copy = math.ceil(mat_rows / SUBARRAY) * math.ceil(mat_cols / SUBARRAY)
        tiles = m["tileRow"] * m["tileCol"]
        layers.append({
            "layer": n,
            "shape": {"ifm_h": h, "ifm_w": w, "cin": cin, "kh": kh, "kw": kw, "cout": cout,
                      "followed_by_pool": pool, "stride": stride,
                      "num_input_vectors": int((h - kh + 1) / stride * (w - kw + 1) / stride)},
            "weight_matrix_rows": mat_rows,
            "weight_matrix_cols_cells": int(mat_cols),
            "mapping": "novel" if nm else "conventional",
            "tiles": tiles, "tiles_printed": tiles_printed.get(n), "tile_rows": m["tileRow"],
            "tile_cols": m["tileCol"],
            "pes_per_tile": pes_per_tile, "subarrays_per_pe": sub_per_pe,
            "pes_allocated": tiles * pes_per_tile, "subarrays_allocated": tiles * pes_per_tile * sub_per_pe,
            "subarrays_one_weight_copy": subarrays_one_copy,
            "duplication_row": m["dupRow"], "duplication_col": m["dupCol"],
            "speed_up_printed": speedup_printed.get(n), "pipeline_speed_up_target": m["pipelineSpeedUp"],
            "utilization": m["utilization"],
            "read_latency_ns": _val(rf"layer{n}'s readLatency is:", block),
            "read_dynamic_energy_pJ": _val(rf"layer{n}'s readDynamicEnergy is:", block),
            "leakage_power_uW": _val(rf"layer{n}'s leakagePower is:", block),
            "leakage_energy_pJ": _val(rf"layer{n}'s leakageEnergy is:", block),
            "buffer_latency_ns": _val(rf"layer{n}'s buffer latency is:", block),
            "buffer_dynamic_energy_pJ": _val(rf"layer{n}'s buffer readDynamicEnergy is:", block),
            "interconnect_latency_ns": _val(rf"layer{n}'s ic latency is:", block),
            "interconnect_dynamic_energy_pJ": _val(rf"layer{n}'s ic readDynamicEnergy is:", block),
            "breakdown": _breakdown(block),
            "subarray_probe_first_ops_msb_to_lsb": probes.get(n),
        })
    pipelined = "pipeline-system" in summary
    tag = "Pipelined Process" if pipelined else "Layer-by-Layer Process"
    area_um2 = _val(r"ChipArea :", summary)
    totals: dict[str, Any] = {
        "mode": "pipelined" if pipelined else "layer_by_layer",
        "area_um2": area_um2,
        "area_mm2": area_um2 / 1e6 if area_um2 is not None else None,
        "area_breakdown_um2": {
            "cim_array": _val(r"Chip total CIM array :", summary),
            "interconnect": _val(r"Total IC Area on chip \(Global and Tile/PE local\):", summary),
            "adc": _val(r"Total ADC \(or S/As and precharger for SRAM\) Area on chip :", summary),
            "accumulation": _val(r"Total Accumulation Circuits \(subarray level: adders, shiftAdds; PE/Tile/Global "
                                 r"level: accumulation units\) on chip :", summary),
            "other": _val(r"Other Peripheries \(e\.g\. decoders, mux, switchmatrix, buffers, pooling and activation "
                          r"units\) :", summary),
        },
        "clock_period_ns": _val(r"Chip clock period is:", summary),
        "latency_per_image_ns": _val(r"Chip (?:pipeline-system-clock-cycle|layer-by-layer readLatency) \(per image\) "
                                     r"is:", summary),
        "dynamic_energy_per_image_pJ": _val(r"Chip (?:pipeline-system readDynamicEnergy \(per image\)|total "
                                            r"readDynamicEnergy) is:", summary),
        "leakage_energy_per_image_pJ": _val(r"Chip (?:pipeline-system leakage Energy \(per image\)|total leakage "
                                            r"Energy) is:", summary),
        "leakage_power_uW": _val(r"Chip (?:pipeline-system leakage Power \(per image\)|total leakage Power) is:",
                                 summary),
        "buffer_latency_ns": _val(r"Chip (?:pipeline-system )?buffer readLatency(?: \(per image\))? is:", summary),
        "buffer_dynamic_energy_pJ": _val(r"Chip (?:pipeline-system )?buffer readDynamicEnergy(?: \(per image\))? is:",
                                         summary),
        "interconnect_latency_ns": _val(r"Chip (?:pipeline-system )?ic readLatency(?: \(per image\))? is:", summary),
        "interconnect_dynamic_energy_pJ": _val(r"Chip (?:pipeline-system )?ic readDynamicEnergy(?: \(per image\))? "
                                               r"is:", summary),
        "breakdown": _breakdown(summary),
        "tops_per_w": _val(rf"Energy Efficiency TOPS/W \({tag}\):", summary),
        "throughput_tops": _val(rf"Throughput TOPS \({tag}\):", summary),
        "throughput_fps": _val(rf"Throughput FPS \({tag}\):", summary),
        "tops_per_mm2": _val(rf"Compute efficiency TOPS/mm\^2 \({tag}\):", summary),
    }
    dyn, leak = totals["dynamic_energy_per_image_pJ"], totals["leakage_energy_per_image_pJ"]
    totals["energy_per_image_pJ"] = dyn + leak if dyn is not None and leak is not None else None
    totals["sum_of_layer_latencies_ns"] = sum(L["read_latency_ns"] or 0.0 for L in layers)
    totals["macs"] = sum(r[0] * r[1] * r[2] * r[3] * r[4] * r[5] for r in net)
    totals["ops_as_neurosim_counts"] = 2 * totals["macs"]
    floorplan = {
        "desired_conventional_tile_size": tile_cm, "desired_conventional_pe_size": pe_cm,
        "desired_novel_pe_size": pe_nm, "novel_pes_per_tile": chip_map["numPENM"],
        "desired_num_tiles_conventional": chip_map["desiredNumTileCM"],
        "desired_num_tiles_novel": chip_map["desiredNumTileNM"],
        "tile_grid": [chip_map["numTileRow"], chip_map["numTileCol"]],
        "speed_up_degree_used": chip_map["speedUpDegree"], "num_col_per_synapse": chip_map["numColPerSynapse"],
        "num_col_muxed": chip_map["numColMuxed"],
        "memory_utilization_pct": _val(r"Memory Utilization of Whole Chip:", text),
    }
    return {"floorplan": floorplan, "layers": layers, "totals": totals}


PARAM_KEYS = [
    "operationmode", "memcelltype", "accesstype", "transistortype", "deviceroadmap", "globalBusType",
    "globalBufferType", "globalBufferCoreSizeRow", "globalBufferCoreSizeCol", "tileBufferType",
    "tileBufferCoreSizeRow", "tileBufferCoreSizeCol", "peBufferType", "chipActivation", "reLu", "novelMapping",
    "SARADC", "currentMode", "pipeline", "speedUpDegree", "validated", "synchronous", "clkFreq", "temp",
    "technode", "inputtoggle", "outputtoggle", "numRowSubArray", "numColSubArray", "numColMuxed", "levelOutput",
    "cellBit", "heightInFeatureSizeSRAM", "widthInFeatureSizeSRAM", "minSenseVoltage", "resistanceOn",
    "resistanceOff", "readPulseWidth", "accessVoltage", "writeVoltage", "maxGlobalBusWidth",
    "globalBusDelayTolerance", "localBusDelayTolerance", "treeFoldedRatio", "alpha", "beta", "gamma", "delta",
    "epsilon", "zeta", "algoWeightMax", "algoWeightMin",
]


def param_settings(param_cpp: Path) -> dict[str, str]:
    """First top-level assignment of each key in Param.cpp (the default-config value, as written)."""
    text = param_cpp.read_text()
    out: dict[str, str] = {}
    for key in PARAM_KEYS:
        m = re.search(rf"^\s*{key}\s*=\s*([^;]+);", text, re.M)
        if m:
            out[key] = m.group(1).strip()
    m = re.search(r"technode == 22\) \{readVoltage=([0-9.]+);\}", text)
    out["readVoltage(technode=22)"] = m.group(1) if m else "?"
    return out


def main() -> None:
    """Copy, patch, build and run NeuroSim; write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurosim", type=Path, required=True, help="DNN_NeuroSim_V1.4 checkout")
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src = args.neurosim / "Inference_pytorch" / "NeuroSIM"
    if not (src / "main.cpp").exists():
        raise SystemExit(f"{src} has no main.cpp; pass a DNN_NeuroSim_V1.4 checkout")
    commit = git_commit(args.neurosim)
    if commit != EXPECTED_COMMIT:
        print(f"warning: checkout at {commit}, script written for {EXPECTED_COMMIT}")
    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    result: dict[str, Any] = {
        "simulator": "DNN+NeuroSim V1.4 (Inference_pytorch/NeuroSIM)",
        "commit": commit,
        "patches": [{"file": f"Inference_pytorch/NeuroSIM/{f}", "old": o, "new": n, "reason": r, "occurrences": c}
                    for f, o, n, r, c in PATCHES],
        "compiler": gxx, "compiler_flags": "makefile defaults: -fopenmp -O3 -std=c++0x -w",
        "python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__,
        "platform": platform.platform(),
        "run_arguments": {"weight_bits": WEIGHT_BITS, "input_bits": INPUT_BITS, "subarray": SUBARRAY,
                          "parallel_read_rows": PARALLEL_READ},
        "input_files": {
            "source": "generated by this script (not NeuroSim's PyTorch wrapper)",
            "weights": "torch default init of nn.Conv2d/nn.Linear (seeded), quantized round(w*128)/128, "
                       "'%10.5f', rows=Cin*kh*kw, cols=Cout",
            "inputs": f"max(0, N(0,1))*{ACT_SCALE} quantized floor(x*128) to 0..127, 8-bit two's complement "
                      "bit-serial MSB first ('0'/'1'), rows=Cin*kh*kw, cols=H*W*8 (main reads the first "
                      "(H-k+1)*(W-k+1)*8)",
            "seed": args.seed,
        },
        "units": "um^2, ns, pJ, uW unless the key says otherwise; XBF_PROBE values in SI units (s, J, W, m^2) "
                 "or clock cycles (_cyc)",
        "networks": {},
    }
    with tempfile.TemporaryDirectory(prefix="neurosim_") as tmp:
        build = Path(tmp) / "NeuroSIM"
        print(f"copy {src} -> {build}")
        shutil.copytree(src, build, ignore=shutil.ignore_patterns("*.o", "main"))
        result["param_cpp_settings"] = param_settings(build / "Param.cpp")
        print(f"apply {len(PATCHES)} patches")
        apply_patches(build)
        print("build (make)")
        t0 = time.perf_counter()
        mk = subprocess.run(["make", "-j4"], cwd=build, capture_output=True, text=True)
        if mk.returncode != 0:
            raise SystemExit(f"make failed: {mk.stderr[-3000:]}")
        result["build_seconds"] = time.perf_counter() - t0
        for net_name in NETWORKS:
            net_csv = build / f"NetWork_{net_name}.csv"
            net = read_net(net_csv)
            data = Path(tmp) / f"layer_record_{net_name}"
            data.mkdir()
            print(f"{net_name}: write layer CSVs (seed {args.seed})")
            files = write_layer_csvs(net, data, args.seed)
            walls, cpus, outputs = [], [], []
            for r in range(args.repeats):
                print(f"{net_name}: run NeuroSim {r + 1}/{args.repeats}")
                out, wall, cpu = run_main(build, net_csv, files)
                walls.append(wall)
                cpus.append(cpu)
                outputs.append(out)
            strip = re.compile(r"Total Run-time of NeuroSim: .*")
            identical = len({strip.sub("", o) for o in outputs}) == 1
            print(f"{net_name}: parse output")
            parsed = parse_output(outputs[0], net)
            parsed["network_csv"] = [list(r) for r in net]
            parsed["timing"] = {"wall_seconds_median": statistics.median(walls),
                                "cpu_seconds_median": statistics.median(cpus),
                                "wall_seconds": walls, "cpu_seconds": cpus, "repeats": args.repeats,
                                "outputs_identical_across_repeats": identical}
            parsed["raw_output"] = outputs[0]
            result["networks"][net_name] = parsed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

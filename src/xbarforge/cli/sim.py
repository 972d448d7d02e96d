"""`xbarforge simulate` and `xbarforge sweep`: accuracy of a trained model on non-ideal chips.

    xbarforge simulate runs/r20/model.pt --hw isaac --variation 0.05 --adc-bits 6 --chips 10 --json acc.json
    xbarforge sweep runs/r20/model.pt --hw isaac --vary crossbar=32,64,128,256 --vary variation=0,0.05 --plot s.png

The evaluation set is the model's dataset (from its model file, or --data/--data-root), test split
by default; calibration inputs come from the validation split, carved from the training data.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xbarforge.cli.common import (
    DEFAULT_HW,
    UsageError,
    check_output,
    closed_fraction,
    make_console,
    positive_float,
    positive_int,
)
from xbarforge.errors import XbarforgeError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["add_simulate_command", "add_sweep_command", "evaluation_data"]

# option -> schema key, for the settings users change most
_SHORTCUTS = {
    "variation": "nonideal.variation",
    "read_noise": "nonideal.read_noise",
    "stuck_on": "nonideal.stuck_on_rate",
    "stuck_off": "nonideal.stuck_off_rate",
    "drift_time": "nonideal.drift_time_s",
    "adc_bits": "precision.adc_bits",
    "dac_bits": "precision.dac_bits",
    "adc_range": "nonideal.adc_range",
}


def _common(p: argparse.ArgumentParser) -> None:

    p.add_argument("model", metavar="MODEL.pt", help="a model file written by `xbarforge train`")
    p.add_argument("--hw", default=DEFAULT_HW, metavar="PRESET_OR_YAML", help=f"hardware (default: {DEFAULT_HW})")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override hardware keys, e.g. nonideal.variation=0.05 crossbar.rows=64")
    p.add_argument("--variation", type=closed_fraction, help="programming variation, relative sigma per cell")
    p.add_argument("--read-noise", type=closed_fraction, help="read noise, relative sigma per cell and read")
    p.add_argument("--stuck-on", type=closed_fraction, help="fraction of cells stuck at g_on")
    p.add_argument("--stuck-off", type=closed_fraction, help="fraction of cells stuck at g_off")
    p.add_argument("--drift-time", type=positive_float, metavar="SECONDS", help="time since programming (drift)")
    p.add_argument("--adc-bits", type=positive_int, help="ADC resolution")
    p.add_argument("--dac-bits", type=positive_int, help="input bits per crossbar read")
    p.add_argument("--adc-range", choices=("column", "crossbar", "full_scale"), help="ADC range calibration")
    p.add_argument("--ir-drop", action="store_true", help="model IR drop of the crossbar wires")
    p.add_argument("--crossbars", type=positive_int, metavar="N",
                   help="place the model as the compiler maps it on N crossbars (default: isaac-like placement)")
    p.add_argument("--mode", choices=("fast", "exact"), default="fast",
                   help="fast: decoded weights + noise model; exact: bit-serial, every read through the ADC")
    p.add_argument("--chips", type=positive_int, default=5, help="chip instances to program (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of chip instance 0 (instance k uses seed + k)")
    p.add_argument("--data", metavar="NAME", help="dataset (default: the model's own)")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (default: the model's own)")
    p.add_argument("--split", choices=("test", "val"), default="test", help="evaluation split (default: test)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="evaluate on N images drawn at random (seed 0) from the split")
    p.add_argument("--calibration", type=positive_int, default=256, metavar="N",
                   help="validation images (drawn at random, seed 0) that fix input and ADC ranges (default: 256)")
    p.add_argument("--batch-size", type=positive_int, default=500)
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--csv", metavar="FILE", help="write one row per setting as CSV")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or table")


def add_simulate_command(sub: Any) -> None:
    """Register `xbarforge simulate`."""
    p = sub.add_parser("simulate", help="accuracy of a trained model on non-ideal crossbars, over chip instances",
                       description="Accuracy of a trained model on a non-ideal chip: float, quantized, and the"
                                   " mean and spread over independently programmed chip instances.")
    _common(p)
    p.set_defaults(handler=cmd_simulate)


def add_sweep_command(sub: Any) -> None:
    """Register `xbarforge sweep`."""
    p = sub.add_parser("sweep", help="accuracy against hardware parameters (grid of --vary values)",
                       description="Accuracy over a grid of hardware parameters. NAME is an alias ("
                                   "crossbar, variation, read_noise, adc_bits, dac_bits, weight_bits, activation_bits,"
                                   " cell_bits, stuck_on, stuck_off, drift_time, wire_ohm, ir_drop) or a dotted key.")
    _common(p)
    p.add_argument("--vary", action="append", default=[], metavar="NAME=V1,V2,...", required=True,
                   help="a parameter and its values (repeat for a grid)")
    p.add_argument("--plot", metavar="PNG", help="draw accuracy against the first --vary parameter")
    p.set_defaults(handler=cmd_sweep)


def _value(text: str) -> Any:
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def parse_vary(items: list[str]) -> dict[str, list[Any]]:
    """['crossbar=32,64', 'variation=0,0.05'] -> {'crossbar': [32, 64], 'variation': [0, 0.05]}."""

    out: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        vals = [_value(v) for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not vals:
            raise UsageError(f"--vary '{item}': expected NAME=V1,V2,... such as variation=0,0.05")
        if name.strip() in out:
            raise UsageError(f"--vary {name.strip()}: given twice")
        out[name.strip()] = vals
    return out


def _hardware(args: argparse.Namespace) -> Any:
    from xbarforge.hardware import load_hardware, override, parse_overrides

    hw = load_hardware(args.hw, **parse_overrides(args.overrides))
    for opt, key in _SHORTCUTS.items():
        value = getattr(args, opt)
        if value is not None:
            hw = override(hw, key, value)
    if args.ir_drop:
        hw = override(hw, "nonideal.ir_drop", True)
    return hw


def evaluation_data(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[Any, Tensor, Tensor, Tensor]:
    """(bundle, x, y, calibration) normalized as the model was trained, from --data/--split/--limit/--calibration."""
    from xbarforge.data.from_model import evaluation_tensors, model_dataset

    data = model_dataset(meta, args.data, args.data_root, args.model)
    return (data, *evaluation_tensors(data, args.split, args.limit, args.calibration))


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any, Any, Tensor, Tensor, Tensor]:
    from xbarforge.train import load_model

    hw = _hardware(args)
    model, meta = load_model(args.model, device="cpu")
    data, x, y, calib = evaluation_data(args, meta)
    return model, meta, hw, data, x, y, calib


def _mapping(args: argparse.Namespace, model: Any, hw: Any, shape: tuple[int, ...]) -> Any:
    if args.crossbars is None:
        return None
    from xbarforge.compiler.compile import compile_graph
    from xbarforge.graph.capture import capture

    return compile_graph(capture(model, shape), hw, crossbars=args.crossbars, samples=[1])


def _progress(label: str, total: int, quiet: bool) -> Any:
    from xbarforge.report.progress import Tracker

    return Tracker(label, total, enabled=not quiet, transient=True)


def _row(r: Any) -> dict[str, Any]:
    d = r.to_dict()
    row = {**{f"vary.{k}": v for k, v in r.setting.items()}}
    row.update({k: d[k] for k in ("hardware", "mode", "samples", "float_accuracy", "quantized_accuracy",
                                  "chip_mean", "chip_std", "chip_min", "chip_max", "chips", "seconds")})
    return row


def _write(args: argparse.Namespace, reports: list[Any], extra: dict[str, Any]) -> None:
    if args.json:
        doc = {**extra, "results": [r.to_dict() for r in reports]}
        Path(args.json).expanduser().write_text(json.dumps(doc, indent=2))
    if args.csv:
        rows = [_row(r) for r in reports]
        with Path(args.csv).expanduser().open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _check_outputs(args: argparse.Namespace) -> None:

    for opt in ("json", "csv", "plot"):
        check_output(getattr(args, opt, None), f"--{opt}")


def _table(reports: list[Any], console: Any, names: list[str]) -> None:
    from rich.table import Table

    t = Table(title=f"accuracy on {reports[0].hardware} ({reports[0].mode} mode, {reports[0].samples} images)")
    for n in names:
        t.add_column(n)
    for col in ("float", "quantized", "chip mean ± std", "min", "max", "chips"):
        t.add_column(col, justify="right")
    for r in reports:
        t.add_row(*(str(r.setting[n]) for n in names), f"{100 * r.float_accuracy:.2f}",
                  f"{100 * r.quantized_accuracy:.2f}", f"{100 * r.mean:.2f} ± {100 * r.std:.2f}",
                  f"{100 * min(r.chip_accuracies):.2f}", f"{100 * max(r.chip_accuracies):.2f}",
                  str(len(r.chip_accuracies)))
    console.print(t)


def _extra(args: argparse.Namespace, meta: dict[str, Any], data: Any, hw: Any, calib: Tensor) -> dict[str, Any]:
    return {"model": str(Path(args.model).expanduser()), "dataset": data.summary(), "split": args.split,
            "calibration": {"split": "val" if len(data.val) else "train", "images": len(calib)},
            "hardware": hw.model_dump(), "seed": args.seed, "mode": args.mode,
            "model_meta": {k: meta.get(k) for k in ("test_accuracy", "val_accuracy", "arch")}}


def cmd_simulate(args: argparse.Namespace) -> int:
    """`xbarforge simulate`."""
    from xbarforge.sim.monte_carlo import simulate_accuracy

    _check_outputs(args)
    console = make_console(args.quiet)
    model, meta, hw, data, x, y, calib = _load(args)
    mapping = _mapping(args, model, hw, tuple(x.shape[1:]))
    with _progress("simulate: chips", args.chips, args.quiet) as bar:
        report = simulate_accuracy(model, hw, x, y, calibration=calib, chips=args.chips, mode=args.mode,
                                   seed=args.seed, mapping=mapping, batch_size=args.batch_size,
                                   progress=lambda n: bar.update(advance=n))
    _write(args, [report], _extra(args, meta, data, hw, calib))
    if not args.quiet:
        _table([report], console, [])
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """`xbarforge sweep`."""
    from xbarforge.sim.monte_carlo import apply_setting, grid_size, sweep

    _check_outputs(args)
    vary = parse_vary(args.vary)
    console = make_console(args.quiet)
    model, meta, hw, data, x, y, calib = _load(args)
    for name, values in vary.items():  # a bad name or value fails before any simulation
        for v in values:
            apply_setting(hw, name, v)
    if args.crossbars is not None:
        raise XbarforgeError("--crossbars is not supported by sweep (each point is placed isaac-like)")
    start = time.perf_counter()
    points = grid_size(vary)
    with _progress(f"sweep: {points} points x {args.chips} chips", points * args.chips, args.quiet) as bar:
        reports = sweep(model, hw, x, y, vary, calibration=calib, chips=args.chips, mode=args.mode, seed=args.seed,
                        batch_size=args.batch_size, progress=lambda n: bar.update(advance=n))
    extra = _extra(args, meta, data, hw, calib)
    extra.update(vary=vary, seconds=time.perf_counter() - start)
    _write(args, reports, extra)
    if args.plot:
        from xbarforge.report.plots import plot_sweep

        plot_sweep(reports, list(vary), Path(args.plot).expanduser())
    if not args.quiet:
        _table(reports, console, list(vary))
    return 0

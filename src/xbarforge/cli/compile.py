"""`xbarforge compile` and `xbarforge demo`: map a network onto a chip and report it."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from typing import Any

from rich.console import Console

from xbarforge.cli.common import (
    DEFAULT_HW,
    DEFAULT_SAMPLES,
    DEMO,
    EFFORTS,
    EXIT_OK,
    OBJECTIVES,
    PROG,
    SCHEDULES,
    check_output,
    collect_warnings,
    fraction,
    layers_plot_path,
    make_console,
    nonneg_int,
    parse_samples,
    parse_shape,
    positive_int,
    show_warnings,
)
from xbarforge.model_spec import resolve_model


def _add_compile_options(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    if with_model:
        p.add_argument("model", metavar="MODEL",
                       help="zoo name (see `xbarforge models`), path to an .onnx file,"
                            " or path/to/file.py:factory (a function or class called with no arguments)")
        p.add_argument("--input", type=parse_shape, metavar="CxHxW",
                       help="input shape per sample, e.g. 3x64x64 (default: the zoo model's own,"
                            " the ONNX file's, or the module's input_shape attribute)")
        p.add_argument("--classes", type=positive_int, default=10, metavar="N",
                       help="classifier outputs for zoo models (default: 10)")
        p.add_argument("--hw", default=DEFAULT_HW, metavar="PRESET_OR_YAML",
                       help=f"hardware preset name or YAML file (default: {DEFAULT_HW};"
                            " see `xbarforge presets`)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a hardware field, e.g. --set crossbar.rows=64 precision.adc_bits=6")
    p.add_argument("--crossbars", type=positive_int, metavar="N",
                   help="crossbar budget (default: the chip's own budget; none = as many as needed)")
    p.add_argument("--samples", type=parse_samples, default=list(DEFAULT_SAMPLES), metavar="K,K,...",
                   help="sample counts k to report latency for (default: 1,8,64)")
    p.add_argument("--objective", choices=OBJECTIVES, default="balanced",
                   help="what duplication optimizes: balanced (all k), throughput (largest k),"
                        " latency (k=1), none (one packed copy per layer); default: balanced")
    p.add_argument("--schedule", choices=SCHEDULES, default="chain",
                   help="layers as a chain (as RNC) or as a DAG (branches overlap); default: chain")
    p.add_argument("--min-util", dest="min_util", type=fraction, metavar="U",
                   help="fill the crossbars used at least this much (weights / cells), e.g. 0.85")
    p.add_argument("--effort", choices=EFFORTS, default="fast",
                   help="period search: fast (milliseconds, for search loops) or thorough (seconds,"
                        " packs many more pipeline periods); default: fast")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (recorded in the report)")
    p.add_argument("--json", metavar="OUT.json", help="write the report (JSON) to this file")
    p.add_argument("--mapping", metavar="MAPPING.json",
                   help="write the mapping (every placed block) to this file")
    p.add_argument("--plot", metavar="OUT.png",
                   help="write the crossbar occupancy map to OUT.png and the per-layer chart"
                        " to OUT_layers.png")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors and warnings")


def add_compile_command(sub: Any) -> None:
    p = sub.add_parser(
        "compile",
        help="map a network onto a crossbar chip and report its cost",
        description="Map a network onto an RRAM crossbar chip (partition, duplicate, pack) and report"
                    " crossbars, utilization, latency, throughput, energy, area and EDAP against the"
                    " isaac-like baseline.",
    )
    _add_compile_options(p)
    p.set_defaults(handler=cmd_compile, demo=False)


def add_demo_command(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="compile the built-in example (mobilenetv3_small, 3x64x64, edge chip)",
        description="The default job of `make demo`: compile the zoo's mobilenetv3_small at 3x64x64 with"
                    " 10 classes onto the `edge` preset (its own budget). No data, no download.",
    )
    _add_compile_options(p, with_model=False)
    p.set_defaults(handler=cmd_compile, demo=True, model=DEMO["model"], input=DEMO["input"],
                   classes=DEMO["classes"], hw=DEMO["hw"])


def cmd_compile(args: argparse.Namespace) -> int:
    """`xbarforge compile` (and `xbarforge demo`)."""
    import xbarforge
    from xbarforge.hardware import load_hardware, parse_overrides
    from xbarforge.report.jsonio import write_json
    from xbarforge.report.table import auto_layer_table, summary_panel

    json_out = check_output(args.json, "--json")
    mapping_out = check_output(args.mapping, "--mapping")
    plot_out = check_output(args.plot, "--plot")
    out = make_console(args.quiet)
    if args.demo:
        shape = "x".join(map(str, args.input))
        budget = "its own crossbar budget" if args.crossbars is None else f"a budget of {args.crossbars} crossbars"
        out.print(f"[bold]xbarforge demo[/bold]: {args.model} at {shape}, {args.classes} classes,"
                  f" on the '{args.hw}' preset ({budget})", markup=True)

    with collect_warnings() as caught:
        hw = load_hardware(args.hw, **parse_overrides(args.overrides))
        model, shape = resolve_model(args.model, args.input)
        status = (Console(stderr=True).status(f"compiling {args.model} onto {hw.name} ...")
                  if sys.stderr.isatty() and not args.quiet else contextlib.nullcontext())
        with status:
            mapping = xbarforge.compile(
                model, hw, crossbars=args.crossbars, input_shape=shape, num_classes=args.classes,
                samples=args.samples, objective=args.objective, schedule=args.schedule, seed=args.seed,
                min_utilization=args.min_util, effort=args.effort,
            )
    show_warnings(caught)
    report = mapping.report

    out.print(auto_layer_table(report, out))
    out.print(summary_panel(report))

    if json_out is not None:
        command = shlex.join([PROG, *args.argv])
        doc = {**report, "command": command, "xbarforge_version": xbarforge.__version__}
        write_json(json_out, doc)
        out.print(f"wrote report: {json_out}")
    if mapping_out is not None:
        mapping.save(mapping_out)
        out.print(f"wrote mapping: {mapping_out}")
    if plot_out is not None:
        from xbarforge.report.plots import plot_layers, plot_occupancy

        layers_out = layers_plot_path(plot_out)
        plot_occupancy(mapping, plot_out)
        plot_layers(report, layers_out)
        out.print(f"wrote crossbar occupancy map: {plot_out}")
        out.print(f"wrote per-layer utilization/latency chart: {layers_out}")
    return EXIT_OK

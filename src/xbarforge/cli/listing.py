"""`xbarforge presets` and `xbarforge models`: what hardware and models there are."""

from __future__ import annotations

import argparse
from typing import Any

from xbarforge.cli.common import EXIT_OK, make_console, one_line
from xbarforge.errors import XbarforgeError


def add_presets_command(sub: Any) -> None:
    p = sub.add_parser("presets", help="list the bundled hardware presets",
                       description="List the bundled hardware presets (use the name with --hw); --show NAME"
                                   " prints every constant of one preset (or YAML file) with its source.")
    p.add_argument("--show", metavar="PRESET_OR_YAML", default=None,
                   help="every constant of this preset or YAML file, with the source its comment gives")
    p.set_defaults(handler=cmd_presets)


def add_models_command(sub: Any) -> None:
    p = sub.add_parser("models", help="list the zoo models",
                       description="List the zoo models and their default input shapes.")
    p.set_defaults(handler=cmd_models)


def _short_description(text: str) -> str:
    """The first clause of a preset description ('Demo edge chip: 576 ...' -> 'Demo edge chip')."""
    text = " ".join(text.split())
    for sep in (": ", ". "):
        if sep in text:
            return text.split(sep, 1)[0]
    return text


def cmd_presets(args: argparse.Namespace) -> int:
    """`xbarforge presets`: name, crossbar, bits, budget, MVM latency, description; `--show NAME`:
    every constant of one chip with its source."""
    from xbarforge.hardware import list_presets, load_hardware
    from xbarforge.report.table import list_table

    if getattr(args, "show", None):
        from xbarforge.hardware.sources import constants

        hw, rows = constants(args.show)
        make_console().print(list_table(
            f"{hw.name}: every constant and its source ({hw.mvm_ns:.3f} ns per MVM)",
            ["key", "value", "source"],
            [(c.key, str(c.value), c.source or "(no comment in the file)") for c in rows],
        ))
        return EXIT_OK

    rows = []
    for name in list_presets():
        try:
            hw = load_hardware(name)
        except XbarforgeError as exc:
            rows.append((name, "-", "-", "-", "-", f"(invalid: {one_line(exc)})"))
            continue
        pools = hw.chip.pools
        size = f"{hw.crossbar.rows}x{hw.crossbar.cols}"
        if pools:
            size = ", ".join(f"{p.rows}x{p.cols}" for p in pools)
        budget = hw.chip.budget
        if budget is None and pools and all(p.count for p in pools):
            budget = sum(p.count for p in pools)
        bits = f"{hw.precision.weight_bits}b weights / {hw.crossbar.cell_bits}b cells, {hw.crossbar.encoding}"
        rows.append((name, size, bits, "unbounded" if budget is None else f"{budget:,}",
                     f"{hw.mvm_ns:.1f} ns", _short_description(hw.description)))
    make_console().print(list_table(
        "hardware presets (--hw NAME)",
        ["preset", "crossbar", "weights / cells", "crossbars", "MVM", "description"],
        rows,
    ))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    """`xbarforge models`: zoo names and default input shapes."""
    from xbarforge.catalog import zoo_models
    from xbarforge.report.table import list_table

    rows = [(name, "x".join(map(str, shape))) for name, shape in zoo_models().items()]
    make_console().print(list_table("zoo models (MODEL argument of compile)", ["model", "default input"], rows))
    return EXIT_OK

"""`xbarforge report`: one self-contained HTML page from the files other commands write.

    xbarforge report out.json mapping.json --html page.html
    xbarforge report runs/s294 runs/q sweep.json --html page.html

Each input is a result file (recognised by its keys, see `xbarforge.report.html.detect_kind`) or a
run folder (every result file in it). The page loads nothing from the network.
"""

from __future__ import annotations

import argparse
from typing import Any

from xbarforge.cli.common import EXIT_OK, check_output

__all__ = ["add_report_command"]


def add_report_command(sub: Any) -> None:
    """Register `xbarforge report`."""
    p = sub.add_parser(
        "report", help="one self-contained HTML page from compile, sweep, search, quantize and basis results",
        description="Write one HTML page (no network access: styles, script, charts and data inline) that shows"
                    " compile reports (summary against the isaac-like baseline, per-layer table, a zoomable occupancy"
                    " map of every crossbar when the --mapping file is given too), accuracy sweeps, search fronts,"
                    " quantization policies and basis comparisons. Inputs are recognised by their content.")
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_JSON",
                   help="a result file (compile --json/--mapping, sweep/simulate --json/--csv, search's front.json,"
                        " quantize's result.json, basis compare --json) or a run folder holding them")
    p.add_argument("--html", required=True, metavar="OUT.html", help="the page to write")
    p.add_argument("--title", help="page title (default: xbarforge report)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """`xbarforge report`."""
    from xbarforge.report.html import KIND_NAMES, write_report

    out = check_output(args.html, "--html")
    assert out is not None
    path, sources = write_report(args.inputs, out, title=args.title)
    if not args.quiet:
        kinds = ", ".join(f"{KIND_NAMES[s.kind]} {s.path}" for s in sources)
        print(f"wrote HTML report: {path} ({path.stat().st_size / 1024:.0f} KiB) from {kinds}")
    return EXIT_OK

"""Rich renderables for a compile report: the per-layer table and the summary against the baseline.

Every function takes the report dict of `xbarforge.compile` (`mapping.report`, the same document
`xbarforge compile --json` writes) and returns a rich renderable, so the CLI, notebooks and later
reports show the same numbers. Rich falls back to plain text (no colour) when the output is not a
terminal.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = [
    "auto_layer_table",
    "fit_note",
    "fmt_count",
    "fmt_energy",
    "fmt_pct",
    "fmt_ratio",
    "fmt_time",
    "layer_table",
    "list_table",
    "render_report",
    "summary_panel",
    "utilization_note",
]


NOTE_WIDTH = 88  # notes in the summary panel are wrapped to this width

# ---------------------------------------------------------------------------------------------
# number formatting


def _scaled(value: float, units: Sequence[tuple[float, str]]) -> str:
    """`value` in the largest unit of `units` (factor, name; ascending) that keeps it >= 1."""
    factor, name = units[0]
    for f, n in units:
        if abs(value) >= f:
            factor, name = f, n
    scaled = value / factor
    digits = 0 if abs(scaled) >= 100 else 1 if abs(scaled) >= 10 else 2
    return f"{scaled:.{digits}f} {name}"


def fmt_time(ns: float | None) -> str:
    """A duration given in nanoseconds, e.g. '415.8 us', '1.44 ms'."""
    if ns is None:
        return "-"
    return _scaled(ns, [(1.0, "ns"), (1e3, "us"), (1e6, "ms"), (1e9, "s")])


def fmt_energy(pj: float | None) -> str:
    """An energy given in picojoules, e.g. '52.3 uJ'."""
    if pj is None:
        return "-"
    return _scaled(pj, [(1.0, "pJ"), (1e3, "nJ"), (1e6, "uJ"), (1e9, "mJ"), (1e12, "J")])


def fmt_pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal."""
    return "-" if x is None else f"{100 * x:.1f}%"


def fmt_ratio(x: float | None) -> str:
    """A speedup or ratio, e.g. '6.94x'."""
    return "-" if x is None else f"{x:.2f}x"


def fmt_count(x: float | None) -> str:
    """A count or rate with thousands separators (no decimals above 100)."""
    if x is None:
        return "-"
    if isinstance(x, int) or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}"


# ---------------------------------------------------------------------------------------------
# tables


def short_names(names: Sequence[str]) -> dict[str, str]:
    """Readable names for ONNX node names in tables: `/features/features.0/Conv` -> `features.0`.

    The path's parts are joined with dots, a part that only prefixes the next one is dropped, and
    the trailing op type goes when the rest still names one layer; other names stay as they are.
    """
    def dotted(name: str) -> list[str]:
        parts = [p for p in name.strip("/").split("/") if p]
        return [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]

    out = {n: ".".join(dotted(n)) if n.startswith("/") else n for n in names}
    stems: dict[str, list[str]] = {}
    for n in names:
        parts = dotted(n) if n.startswith("/") else []
        if len(parts) > 1:
            stems.setdefault(".".join(parts[:-1]), []).append(n)
    taken = set(out.values())
    for stem, owners in stems.items():
        if len(owners) == 1 and stem not in taken:
            out[owners[0]] = stem
    return out


_COMPACT = {"blocks": "blk", "copies": "cp", "crossbars": "xbars", "utilization": "util", "cycles": "cyc",
            "serial": "ser", "round": "rnd"}


def layer_table(report: dict[str, Any], title: str | None = None, compact: bool = False) -> Table:
    """One row per MVM layer (and per digital stage: attention's products, softmax, layer norm):
    layer, op, form, blocks, copies, crossbars, utilization, cycles, time and energy per inference
    (plus serial and round columns when they matter).

    `compact` (for narrow terminals, see `auto_layer_table`) leaves out the op and form columns and abbreviates
    the numeric headers.
    """
    layers = report.get("layers", [])
    show_serial = any(layer.get("serial", 1) > 1 for layer in layers)
    show_round = (report.get("rounds") or 1) > 1
    where = f"{report.get('model', 'model')} on {report.get('hardware', 'hardware')}"
    table = Table(
        title=title or f"{where}: per-layer mapping",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        title_style="bold",
        pad_edge=False,
        collapse_padding=compact,
    )
    shown = short_names([str(layer["name"]) for layer in layers])
    longest = max((len(shown[str(layer["name"])]) for layer in layers), default=5)
    table.add_column("layer", overflow="fold", min_width=min(longest, 12 if compact else 32))
    if not compact:
        table.add_column("op", overflow="fold", min_width=10)
        table.add_column("form", no_wrap=True)
    numbers = ["blocks", "copies", "crossbars", "utilization", "cycles"]
    numbers += ["serial"] if show_serial else []
    numbers += ["round"] if show_round else []
    for name in [*numbers, "time", "energy"]:
        header = _COMPACT.get(name, name) if compact else name
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for layer in layers:
        row = [shown[str(layer["name"])]]
        if not compact:
            row += [str(layer.get("op", "")), str(layer.get("form", ""))]
        if layer.get("digital"):  # a digital stage (attention, softmax, norm): no weights, no copies
            runtime = layer.get("crossbars") or 0
            row += ["-", "-", fmt_count(runtime) if runtime else "-", "-", fmt_count(layer.get("cycles"))]
        else:
            row += [
                fmt_count(layer.get("blocks")),
                fmt_count(layer.get("copies")),
                fmt_count(layer.get("crossbars")),
                fmt_pct(layer.get("utilization")),
                fmt_count(layer.get("cycles")),
            ]
        if show_serial:
            row.append(fmt_count(layer.get("serial", 1)))
        if show_round:
            row.append(str(layer.get("round", 0) + 1))
        row += [fmt_time(layer.get("time_ns")), fmt_energy(layer.get("energy_pj"))]
        table.add_row(*row)
    return table


def _fits(table: Table, width: int) -> bool:
    """Whether `table` renders in `width` columns with every column whole (none squeezed)."""
    probe = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    probe.print(table)
    lines = probe.file.getvalue().splitlines()
    last = table.columns[-1].header
    return any(line.rstrip().endswith(str(last)) for line in lines)


def auto_layer_table(report: dict[str, Any], console: Console) -> Table:
    """The full layer table when it fits the console's width, else the compact one."""
    table = layer_table(report)
    return table if _fits(table, console.width) else layer_table(report, compact=True)


def utilization_note(report: dict[str, Any]) -> str:
    """Utilization with its denominator spelled out, e.g. '80.9% of the 80-crossbar budget'."""
    util = report.get("utilization")
    budget = report.get("crossbars_budget")
    used = report.get("crossbars_used")
    rounds = report.get("rounds") or 1
    times = f" x {rounds} rounds" if rounds > 1 else ""
    if budget:
        text = f"{fmt_pct(util)} of the {budget}-crossbar budget{times}"
        if used is not None and used != budget:
            text += f" ({fmt_pct(report.get('utilization_used'))} of the {used} used)"
        return text
    return f"{fmt_pct(util)} of the {used} crossbars used{times}"


def fit_note(report: dict[str, Any]) -> str | None:
    """A sentence when the model does not fit the budget in one copy (reprogramming rounds)."""
    rounds = report.get("rounds") or 1
    if rounds <= 1:
        return None
    fewest = report.get("min_crossbars")
    budget = report.get("crossbars_budget")
    write = report.get("write_ns") or 0.0
    return (
        f"The model does not fit: one copy needs at least {fewest} crossbars (fewest crossbars) but the"
        f" budget is {budget}, so it runs in {rounds} reprogramming rounds; every batch rewrites each"
        f" round's crossbars, {fmt_time(write)} of writes included in every latency above."
    )


def summary_panel(report: dict[str, Any]) -> Panel:
    """The mapping against its isaac-like baseline: crossbars, utilization, latency and speedup per
    k, throughput and its bound, energy, area, EDAP, plus schedule, rounds and compile time."""
    base = report.get("baseline", {})
    speedup = report.get("speedup", {})
    table = Table(box=box.SIMPLE, header_style="bold", show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("xbarforge", justify="right", no_wrap=True)
    table.add_column("isaac-like", justify="right", no_wrap=True)
    table.add_column("better by", justify="right", no_wrap=True)

    budget = report.get("crossbars_budget")
    used = report.get("crossbars_used")
    table.add_row(
        "crossbars",
        f"{used} used" + (f" / {budget} budget" if budget else " (no budget)"),
        f"{base.get('crossbars_used', '-')} used",
        "",
    )
    rounds = report.get("rounds") or 1
    times = f" x {rounds} rounds" if rounds > 1 else ""
    if budget:
        table.add_row("utilization (budget)", f"{fmt_pct(report.get('utilization'))} of {budget}{times}",
                      "-", "")
    table.add_row(
        "utilization (used)",
        f"{fmt_pct(report.get('utilization_used'))} of {used}{times}",
        f"{fmt_pct(base.get('utilization_used'))} of {base.get('crossbars_used', '-')}",
        "",
    )
    for k, ns in report.get("latency_ns", {}).items():
        label = f"latency, k={k}"
        base_ns = base.get("latency_ns", {}).get(k)
        table.add_row(label, fmt_time(ns), fmt_time(base_ns), fmt_ratio(speedup.get(k)))
    tput, btput = report.get("throughput_per_s"), base.get("throughput_per_s")
    table.add_row(
        "throughput",
        f"{fmt_count(tput)} /s",
        f"{fmt_count(btput)} /s",
        fmt_ratio(tput / btput) if tput and btput else "-",
    )
    bound, ratio = report.get("throughput_bound_per_s"), report.get("throughput_bound_ratio")
    if bound:
        achieved = f"{fmt_pct(ratio)} achieved" if ratio else ""
        table.add_row("throughput bound", f"{fmt_count(bound)} /s", "", achieved)
    samples = report.get("throughput_samples")
    energy, benergy = report.get("energy_pj"), base.get("energy_pj")
    table.add_row(
        "energy per inference",
        fmt_energy(energy),
        fmt_energy(benergy),
        fmt_ratio(benergy / energy) if energy and benergy else "-",
    )
    area, barea = report.get("area_mm2"), base.get("area_mm2")
    table.add_row(
        "area",
        f"{area:.2f} mm2" if area is not None else "-",
        f"{barea:.2f} mm2" if barea is not None else "-",
        fmt_ratio(barea / area) if area and barea else "-",
    )
    edap, bedap = report.get("edap"), base.get("edap")
    table.add_row(
        "EDAP (pJ*ns*mm2)",
        f"{edap:.3g}" if edap is not None else "-",
        f"{bedap:.3g}" if bedap is not None else "-",
        fmt_ratio(bedap / edap) if edap and bedap else "-",
    )

    lines = [
        f"schedule: {report.get('schedule')}   objective: {report.get('objective')}"
        f"   crossbar: {report.get('crossbar')}   MVM: {report.get('mvm_ns', 0):.3f} ns"
        f"   seed: {report.get('seed')}",
    ]
    if report.get("schedule_used"):
        used = ", ".join(f"k={k} {name}" for k, name in report["schedule_used"].items())
        lines.append(f"static schedule giving each latency: {used}"
                     + (f"; throughput from k={samples}" if samples else ""))
    lines.append(
        f"reprogramming rounds: {rounds}   fewest crossbars for one copy: {report.get('min_crossbars')}"
    )
    share = report.get("digital_share")
    if share:
        runtime = report.get("runtime_crossbars") or 0
        where = f"{runtime} crossbars written at run time" if runtime else "the vector unit"
        lines.append(f"digital stages (attention, softmax, norms) on {where}: {100 * share['time']:.1f}% of one "
                     f"sample's layer time, {100 * share['energy']:.1f}% of the energy")
    if report.get("compile_seconds") is not None:
        lines.append(f"compile time: {report['compile_seconds']:.2f} s")
    parts: list[RenderableType] = [table, Text("\n".join(lines))]
    note = fit_note(report)
    if note:
        parts.append(Text(textwrap.fill(note, NOTE_WIDTH), style="bold yellow"))
    if budget is not None and (base.get("crossbars_used") or 0) > budget:
        text = "The isaac-like baseline puts every block on its own crossbar and ignores the budget."
        parts.append(Text(textwrap.fill(text, NOTE_WIDTH), style="dim"))
    shape = "x".join(str(s) for s in report.get("input_shape", []))
    title = f"{report.get('model')} {shape} on {report.get('hardware')} vs isaac-like baseline"
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


def render_report(report: dict[str, Any], compact: bool = False) -> list[RenderableType]:
    """The layer table and the summary panel, in print order."""
    return [layer_table(report, compact=compact), summary_panel(report)]


def list_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A plain table for listings (presets, models)."""
    table = Table(title=title, box=box.SIMPLE_HEAVY, header_style="bold", title_style="bold")
    for i, name in enumerate(columns):
        table.add_column(name, overflow="fold", no_wrap=i == 0)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table

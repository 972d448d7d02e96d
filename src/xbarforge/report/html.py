"""One self-contained HTML page from the result files of xbarforge's commands (`xbarforge report`).

    xbarforge report out.json mapping.json runs/s294 runs/q sweep.json --html page.html

Why a page and not more PNGs: a 4000-crossbar occupancy map is unreadable as one picture, but a
zoomable canvas with a tooltip per crossbar answers "what sits on crossbar 2817, and how full is it".
The page must open anywhere, offline and years later, so it loads nothing: CSS, JavaScript, charts
(inline SVG) and data are all inside the file, and a Content-Security-Policy forbids any fetch.

Inputs are recognised by their keys, never by their names (`detect_kind`):

* compile report (`xbarforge compile --json`): summary against the isaac-like baseline, per-layer
  table, and an occupancy map. The map is exact from a Mapping file (`--mapping`; the report inside
  it is used when no report is given) and computed from its runs, shared runs and placed blocks as
  counts, so 100k blocks are never listed; from a report alone it is a rough map of per-layer counts;
* sweep or simulate results (`xbarforge sweep/simulate --json` or `--csv`);
* search fronts (`xbarforge search`: OUT/front.json);
* quantization results (`xbarforge quantize`: OUT/result.json);
* basis comparisons (`xbarforge basis compare --json`).

A folder stands for the files these commands write into it (every recognised *.json in it).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from xbarforge.errors import XbarforgeError
from xbarforge.report.occupancy import Occupancy, mapping_occupancy, report_occupancy
from xbarforge.report.svg import SERIES_COLORS, Series, bars_svg, esc, svg_chart
from xbarforge.report.table import (
    fit_note,
    fmt_count,
    fmt_energy,
    fmt_pct,
    fmt_ratio,
    fmt_time,
    short_names,
    utilization_note,
)

__all__ = ["KIND_NAMES", "ReportInputError", "Source", "build_page", "detect_kind", "load_inputs", "write_report"]

KIND_NAMES = {
    "compile": "compile report",
    "mapping": "mapping",
    "sweep": "accuracy sweep",
    "search": "search front",
    "quant": "quantization policy",
    "basis": "basis comparison",
}
SID = "@@section@@"  # a section's anchor until the page numbers it (#s1, #s1-map, ...)
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _asset(name: str) -> str:
    """The page's stylesheet or script (report/assets), inlined: the page loads nothing."""
    return resources.files("xbarforge.report").joinpath("assets", name).read_text(encoding="utf-8")


class ReportInputError(XbarforgeError):
    """An input of `xbarforge report` that is missing, unreadable or of no known kind."""


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass
class Source:
    """One recognised input: where it came from, what kind it is, and its parsed document."""

    path: Path
    kind: str
    doc: Any


def detect_kind(doc: Any) -> str | None:
    """The kind of a parsed JSON document from its keys (None when it is none of ours).

    Keys, not file names: users rename files, and a run folder holds files of other kinds too."""
    if isinstance(doc, list) and doc and all(isinstance(r, dict) and "chip_mean" in r for r in doc):
        return "sweep"  # rows read from a sweep CSV
    if not isinstance(doc, dict):
        return None
    keys = set(doc)
    if {"crossbar_rows", "crossbar_cols", "layers", "crossbars_used"} <= keys and ({"placed", "blocks"} & keys):
        return "mapping"
    if {"speedup", "baseline", "layers", "latency_ns", "crossbars_used"} <= keys:
        return "compile"
    results = doc.get("results")
    if isinstance(results, list) and results and all(
            isinstance(r, dict) and "chip_accuracies" in r for r in results):
        return "sweep"
    if {"front", "objectives", "config"} <= keys:
        return "search"
    if {"baselines", "final", "policy"} <= keys:
        return "quant"
    rows = doc.get("rows")
    if {"rows", "batches", "coeff_bits"} <= keys and isinstance(rows, list) and all(
            isinstance(r, dict) and "basis_fraction" in r for r in rows):
        return "basis"
    return None


def _read_csv_rows(path: Path) -> list[dict[str, Any]]:
    """A sweep CSV as rows of numbers where the text is one (the CSV has no types)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: _number(v) for k, v in row.items() if k is not None} for row in rows]


def _number(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _parse_file(path: Path) -> Any:
    """JSON (or CSV) of `path`; one-line errors for files that are not."""
    try:
        if path.suffix.lower() == ".csv":
            return _read_csv_rows(path)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportInputError(f"{path}: not a text file (expected a JSON result of an xbarforge command)") from None
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _unknown(path: Path) -> ReportInputError:
    kinds = ", ".join(KIND_NAMES.values())
    return ReportInputError(f"{path}: not a result file xbarforge report knows (expected one of: {kinds})")


def _read_source(path: Path) -> Source:
    doc = _parse_file(path)
    kind = detect_kind(doc)
    if kind is None:
        raise _unknown(path)
    return Source(path, kind, doc)


def _scan_folder(folder: Path) -> list[Source]:
    """The recognised result files in a run folder (top level; a sweep CSV only without its JSON)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        if not path.is_file():
            continue
        try:
            doc = _parse_file(path)
        except ReportInputError:
            continue  # a folder may hold other files; only files named on the command line must parse
        kind = detect_kind(doc)
        if kind is not None:
            found.append(Source(path, kind, doc))
    if not any(s.kind == "sweep" for s in found):
        for path in sorted(folder.glob("*.csv")):
            try:
                rows = _parse_file(path)
            except (ReportInputError, csv.Error):
                continue
            if detect_kind(rows) == "sweep":
                found.append(Source(path, "sweep", rows))
    if not found:
        raise ReportInputError(f"{folder}: no xbarforge result files in this folder (looked for the JSON that"
                               " compile, sweep, search, quantize and basis compare write)")
    return found


def load_inputs(paths: list[str | Path]) -> list[Source]:
    """Every input as recognised sources, in command-line order (a folder gives each file it holds)."""
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            sources.extend(_scan_folder(path))
        elif path.exists():
            try:
                sources.append(_read_source(path))
            except csv.Error as exc:
                raise ReportInputError(f"{path}: not a readable CSV ({exc})") from None
        else:
            raise ReportInputError(f"{path}: no such file or folder")
    return sources


# ---------------------------------------------------------------------------------------------
# small HTML helpers

def _json_script(data: Any, cls: str) -> str:
    """Data for the page's script in a non-executed script tag; '<' escaped so no text can end it."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return f'<script type="application/json" class="{cls}">{text}</script>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None, row_classes: list[str] |
           None = None, caption: str | None = None, scroll: bool = False) -> str:
    """A table of already-escaped cell HTML; `numeric` columns align right."""
    numeric = numeric or set()
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{h}</th>' for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = "".join(f'<td{" class=n" if i in numeric else ""}>{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    table = f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>' if scroll else table


def _bar(fraction: float | None, color: str = "#2458a6") -> str:
    """A percentage with a small inline bar (CSS only)."""
    if fraction is None:
        return "-"
    width = max(0.0, min(1.0, fraction)) * 100
    return (f'<span class="track"><span class="bar" style="width:{width:.1f}%;background:{color}"></span></span>'
            f"{fmt_pct(fraction)}")


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.2f}%"


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) >= 1e6 else f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"
    return esc(x)


def _objective(name: str, value: Any) -> str:
    """A search objective's value in its unit (the search records accuracy as a fraction, latency in ns,
    energy in pJ)."""
    if value is None:
        return "-"
    if name in ("accuracy", "utilization"):
        return _pct(value)
    if name == "latency":
        return fmt_time(float(value))
    if name == "energy":
        return fmt_energy(float(value))
    return _num(value)


def _count(x: Any) -> str:
    """`fmt_count`, with whole floats (cycles read back from JSON) shown without decimals."""
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return fmt_count(x)


def _note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{text}</p>'


# ---------------------------------------------------------------------------------------------
# compile reports and mappings


def _summary_table(report: dict[str, Any]) -> str:
    """The mapping against the isaac-like baseline (the CLI's summary panel, as a table)."""
    base = report.get("baseline", {})
    speedup = report.get("speedup", {})
    budget, used = report.get("crossbars_budget"), report.get("crossbars_used")
    rounds = report.get("rounds") or 1
    times = f" x {rounds} rounds" if rounds > 1 else ""
    rows = [["crossbars", f"{_num(used)} used" + (f" / {_num(budget)} budget" if budget else " (no budget)"),
             f"{_num(base.get('crossbars_used'))} used", ""]]
    if budget:
        rows.append(["utilization (of the budget)", f"{fmt_pct(report.get('utilization'))} of {_num(budget)}{times}",
                     "-", ""])
    rows.append(["utilization (of the crossbars used)",
                 f"{fmt_pct(report.get('utilization_used'))} of {_num(used)}{times}",
                 f"{fmt_pct(base.get('utilization_used'))} of {_num(base.get('crossbars_used'))}", ""])
    for k, ns in report.get("latency_ns", {}).items():
        rows.append([f"latency, k = {esc(k)}", fmt_time(ns), fmt_time(base.get("latency_ns", {}).get(k)),
                     fmt_ratio(speedup.get(k))])
    tput, btput = report.get("throughput_per_s"), base.get("throughput_per_s")
    rows.append(["throughput", f"{fmt_count(tput)} /s", f"{fmt_count(btput)} /s",
                 fmt_ratio(tput / btput) if tput and btput else "-"])
    bound, ratio = report.get("throughput_bound_per_s"), report.get("throughput_bound_ratio")
    if bound:
        rows.append(["throughput bound", f"{fmt_count(bound)} /s", "", f"{fmt_pct(ratio)} achieved" if ratio else ""])
    for label, key, fmt in (("energy per inference", "energy_pj", fmt_energy),
                            ("area", "area_mm2", lambda v: "-" if v is None else f"{v:.2f} mm²"),
                            ("EDAP (pJ·ns·mm²)", "edap", lambda v: "-" if v is None else f"{v:.3g}")):
        ours, theirs = report.get(key), base.get(key)
        rows.append([label, fmt(ours), fmt(theirs), fmt_ratio(theirs / ours) if ours and theirs else "-"])
    rows = [[esc(c) for c in row] for row in rows]
    return _table(["", "xbarforge", "isaac-like", "better by"], rows, numeric={1, 2, 3})


def _summary_notes(report: dict[str, Any]) -> str:
    """Schedule, rounds, digital share, compile time and the fit notes under the summary."""
    lines = [f"Utilization: {esc(utilization_note(report))} (utilization = cells holding weights / cells of the"
             f" {esc(report.get('utilization_denominator') or 'crossbars counted')})."]
    lines.append(f"Schedule {esc(report.get('schedule'))}, objective {esc(report.get('objective'))}, crossbar"
                 f" {esc(report.get('crossbar'))}, MVM {float(report.get('mvm_ns') or 0):.3f} ns,"
                 f" seed {esc(report.get('seed'))}.")
    if report.get("schedule_used"):
        used = ", ".join(f"k = {k}: {v}" for k, v in report["schedule_used"].items())
        lines.append(f"Static schedule giving each latency: {esc(used)}; throughput from k ="
                     f" {esc(report.get('throughput_samples'))}.")
    lines.append(f"Reprogramming rounds: {esc(report.get('rounds') or 1)}; fewest crossbars for one copy:"
                 f" {esc(report.get('min_crossbars'))}.")
    share = report.get("digital_share")
    if share:
        runtime = report.get("runtime_crossbars") or 0
        where = f"{runtime} crossbars written at run time" if runtime else "the vector unit"
        lines.append(f"Digital stages (attention, softmax, norms) on {esc(where)}: {100 * share['time']:.1f}% of one"
                     f" sample's layer time, {100 * share['energy']:.1f}% of the energy.")
    if report.get("compile_seconds") is not None:
        lines.append(f"Compile time {float(report['compile_seconds']):.2f} s.")
    if report.get("command"):
        lines.append(f"Command: <code>{esc(report['command'])}</code>")
    out = "".join(f'<li>{line}</li>' for line in lines)
    html_out = f'<ul class="notes">{out}</ul>'
    note = fit_note(report)
    if note:
        html_out += _note(esc(note))
    budget = report.get("crossbars_budget")
    if budget is not None and (report.get("baseline", {}).get("crossbars_used") or 0) > budget:
        html_out += _note("The isaac-like baseline puts every block on its own crossbar and ignores the budget.",
                          "muted small")
    return html_out


def _energy_bars(report: dict[str, Any]) -> str:
    """Energy per inference by component, as CSS bars."""
    parts = {k: float(v) for k, v in (report.get("energy_by_component_pj") or {}).items() if v}
    total = sum(parts.values())
    if not total:
        return ""
    rows = [[esc(k), fmt_energy(v), _bar(v / total, "#7b5aa6")]
            for k, v in sorted(parts.items(), key=lambda kv: -kv[1])]
    return "<h4>Energy per inference by component</h4>" + _table(["component", "energy", "share"], rows, {1})


def _layer_table(report: dict[str, Any]) -> str:
    """One row per MVM layer and per digital stage (digital stages: '-' for blocks, copies, utilization)."""
    layers = report.get("layers", [])
    show_serial = any((row.get("serial") or 1) > 1 for row in layers)
    show_round = (report.get("rounds") or 1) > 1
    shown = short_names([str(row["name"]) for row in layers])
    headers = ["layer", "op", "form", "blocks", "copies", "crossbars", "utilization", "cycles"]
    headers += ["serial"] if show_serial else []
    headers += ["round"] if show_round else []
    headers += ["time", "energy"]
    rows, classes = [], []
    for row in layers:
        cells = [esc(shown[str(row["name"])]), esc(row.get("op", "")), esc(row.get("form", ""))]
        if row.get("digital"):
            runtime = row.get("crossbars") or 0
            cells += ["-", "-", _count(runtime) if runtime else "-", "-", _count(row.get("cycles"))]
            classes.append("digital")
        else:
            cells += [_count(row.get("blocks")), _count(row.get("copies")), _count(row.get("crossbars")),
                      _bar(row.get("utilization")), _count(row.get("cycles"))]
            classes.append("")
        if show_serial:
            cells.append(_count(row.get("serial") or 1))
        if show_round:
            cells.append(str(int(row.get("round") or 0) + 1))
        cells += [fmt_time(row.get("time_ns")), fmt_energy(row.get("energy_pj"))]
        rows.append(cells)
    numeric = set(range(3, len(headers)))
    digital = sum(1 for row in layers if row.get("digital"))
    caption = (f"{len(layers) - digital} MVM layers" + (f" and {digital} digital stages (in italics: no weights,"
               " so no blocks, copies or utilization)" if digital else ""))
    return _table(headers, rows, numeric, classes, caption=esc(caption), scroll=len(layers) > 25)


def _occupancy_widget(occ: Occupancy) -> str:
    """The occupancy map: a canvas the page's script draws (zoom slider, drag to pan, ctrl+wheel to
    zoom, a tooltip per crossbar, click a layer to highlight its crossbars), its legend, and the data."""
    stats = occ.layer_stats()
    items = []
    for li, (name, color) in enumerate(zip(occ.layers, occ.colors, strict=True)):
        n, w = stats[li]
        if not n:
            continue
        items.append(f'<li data-layer="{li}" title="click: highlight the crossbars holding {esc(name)}">'
                     f'<span class="sw" style="background:{color}"></span><span class="ln">{esc(name)}</span>'
                     f'<span class="muted">{n:,} xb</span></li>')
    used = sum(1 for _, _, comp in occ.rounds for c in comp if c)
    empty = occ.crossbars - used
    multi = len(occ.rounds) > 1
    select = ""
    if multi:
        options = "".join(f'<option value="{i}">round {r + 1} ({len(comp):,} crossbars)</option>'
                          for i, (r, _, comp) in enumerate(occ.rounds))
        select = f'<label>round <select class="occ-round">{options}</select></label>'
    kind = "exact, from the mapping" if occ.exact else "rough, from the report alone"
    summary = (f"{occ.crossbars:,} crossbars of {occ.rows}x{occ.cols} ({kind}): {used:,} hold weights"
               + (f", {empty:,} unused of the budget" if empty else "")
               + (f", over {len(occ.rounds)} reprogramming rounds" if multi else "") + ".")
    notes = "".join(_note(esc(n), "muted small") for n in occ.notes)
    return (
        f'<div class="occ" data-cells="{occ.crossbars}">'
        f'<p class="small"><b>{esc(summary)}</b> One cell per crossbar, in the colour of the layer holding most of'
        " its cells, paler the emptier it is (zoomed in: every layer's share as a stacked bar). Drag to pan,"
        f" ctrl+wheel or the slider to zoom, hover for details, click a layer to highlight it.</p>{notes}"
        '<div class="occ-controls">'
        '<label>zoom <input type="range" class="occ-zoom" min="1" max="48" step="1" value="4"></label>'
        '<button type="button" class="occ-fit">fit</button>'
        f'{select}<span class="occ-info muted small"></span></div>'
        '<div class="occ-body"><div class="occ-view"><canvas></canvas><div class="occ-tip"></div></div>'
        f'<ul class="occ-legend">{"".join(items)}</ul></div>'
        '<noscript><p class="note">The occupancy map needs JavaScript; every other part of this page works'
        " without it.</p></noscript>"
        f"{_json_script(occ.to_json(), 'occ-data')}</div>"
    )


def _compile_title(report: dict[str, Any]) -> str:
    shape = "x".join(str(s) for s in report.get("input_shape", []))
    return f"{report.get('model')} {shape} on {report.get('hardware')}: {_num(report.get('crossbars_used'))} crossbars"


def _mapping_occupancy(mapping_doc: dict[str, Any], path: Path) -> Occupancy:
    from xbarforge.compiler.mapping import Mapping

    try:
        return mapping_occupancy(Mapping.from_dict(mapping_doc))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportInputError(f"{path}: a mapping file that cannot be read ({type(exc).__name__}: {exc})") from None


def render_compile(report: dict[str, Any] | None, mapping_doc: dict[str, Any] | None, files: list[Path]) -> str:
    """A compile section: the summary against the baseline, the occupancy map (exact with a mapping,
    rough from a report alone) and the per-layer table, longest last."""
    if report is None and mapping_doc is not None:
        report = mapping_doc.get("report") or None
    occ = _mapping_occupancy(mapping_doc, files[-1]) if mapping_doc is not None else None
    if occ is None and report:
        occ = report_occupancy(report)
    parts = []
    if report:
        parts += [f'<h3 id="{SID}-summary">Against the isaac-like baseline</h3><div class="grid2"><div>',
                  _summary_table(report), '</div><div class="side">', _energy_bars(report), _summary_notes(report),
                  "</div></div>"]
    else:
        parts.append(_note("This mapping file carries no report; give the compile report JSON"
                           " (<code>xbarforge compile --json</code>) for the summary and the per-layer table."))
    if occ is not None:
        parts += [f'<h3 id="{SID}-map">Crossbar occupancy</h3>', _occupancy_widget(occ)]
    if report:
        parts += [f'<h3 id="{SID}-layers">Per layer</h3>', _layer_table(report)]
        title = _compile_title(report)
    else:
        assert mapping_doc is not None
        title = (f"{mapping_doc.get('model')} on {mapping_doc.get('hardware')}:"
                 f" {_num(mapping_doc.get('crossbars_used'))} crossbars")
    return _section(title, "compile", files, "".join(parts))


# ---------------------------------------------------------------------------------------------
# sweeps, search fronts, quantization policies, basis comparisons


def _sweep_rows(doc: Any) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """(swept names, normalized rows, context) from a sweep/simulate JSON or a sweep CSV."""
    if isinstance(doc, list):  # CSV rows: vary.NAME columns, then the numbers
        names = [k.removeprefix("vary.") for k in doc[0] if k.startswith("vary.")]
        rows = [{"setting": {n: r.get(f"vary.{n}") for n in names}, "float": r.get("float_accuracy"),
                 "quantized": r.get("quantized_accuracy"), "mean": r.get("chip_mean"), "std": r.get("chip_std") or 0.0,
                 "min": r.get("chip_min"), "max": r.get("chip_max"), "chips": r.get("chips"),
                 "hardware": r.get("hardware"), "mode": r.get("mode"), "samples": r.get("samples")} for r in doc]
        return names, rows, {}
    names = list(doc.get("vary") or {})
    rows = []
    for r in doc["results"]:
        accs = r.get("chip_accuracies") or []
        mean = r.get("chip_mean", sum(accs) / len(accs) if accs else None)
        rows.append({"setting": r.get("setting") or {}, "float": r.get("float_accuracy"),
                     "quantized": r.get("quantized_accuracy"), "mean": mean, "std": r.get("chip_std") or 0.0,
                     "min": r.get("chip_min", min(accs) if accs else None),
                     "max": r.get("chip_max", max(accs) if accs else None), "chips": r.get("chips", len(accs)),
                     "hardware": r.get("hardware"), "mode": r.get("mode"), "samples": r.get("samples")})
    if not names:
        names = sorted({k for r in rows for k in r["setting"]})
    return names, rows, doc


def render_sweep(doc: Any, files: list[Path]) -> str:
    """Accuracy over the swept hardware settings: a chart against the first parameter (one line per
    combination of the others, +-1 std bars) and the table of every point."""
    names, rows, ctx = _sweep_rows(doc)
    first = rows[0]
    what = "sweep" if names else "simulation"
    context = [f"hardware {first.get('hardware')}", f"{first.get('mode')} mode", f"{_num(first.get('samples'))} images"]
    if ctx.get("model"):
        context.insert(0, f"model {ctx['model']}")
    if ctx.get("split"):
        context.append(f"{ctx['split']} split")
    if ctx.get("seed") is not None:
        context.append(f"seed {ctx['seed']}")
    parts = [f'<p class="muted">{esc(", ".join(context))}.</p>']
    if names:
        x_name, rest = names[0], names[1:]
        numeric = all(isinstance(r["setting"].get(x_name), int | float) and not isinstance(r["setting"].get(x_name),
                      bool) for r in rows)
        cats = [] if numeric else list(dict.fromkeys(str(r["setting"].get(x_name)) for r in rows))

        def xv(r: dict[str, Any]) -> float:
            return float(r["setting"][x_name]) if numeric else float(cats.index(str(r["setting"].get(x_name))))

        lines: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            lines[tuple(r["setting"].get(n) for n in rest)].append(r)
        series = []
        for i, (key, rs) in enumerate(lines.items()):
            rs = sorted(rs, key=xv)
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            label = ", ".join(f"{n}={v}" for n, v in zip(rest, key, strict=True)) or "chip mean ± std"
            tips = [f"{x_name}={r['setting'].get(x_name)}: {100 * r['mean']:.2f} ± {100 * r['std']:.2f}%"
                    for r in rs]
            series.append(Series(label, [(xv(r), 100 * r["mean"]) for r in rs], [100 * r["std"] for r in rs],
                                 color, tips=tips))
            if any(r["quantized"] is not None for r in rs):
                series.append(Series(f"quantized, ideal devices ({label})" if rest else "quantized, ideal devices",
                                     [(xv(r), 100 * r["quantized"]) for r in rs if r["quantized"] is not None],
                                     color=color, dashed=True, marker="square"))
        hl = [(100 * first["float"], "float model", "#888888")] if first.get("float") is not None else []
        x_ticks = [(float(i), c) for i, c in enumerate(cats)] if cats else None
        values = sorted({xv(r) for r in rows})
        if numeric and len(values) <= 12:  # a few swept values: tick exactly those
            x_ticks = [(v, f"{v:g}") for v in values]
        parts.append(svg_chart(series, x_name, "accuracy (%)", x_ticks=x_ticks, hlines=hl,
                               title=f"accuracy against {x_name}"))
    headers = [esc(n) for n in names] + ["float", "quantized", "chip mean ± std", "min", "max", "chips"]
    table_rows = [[esc(r["setting"].get(n)) for n in names]
                  + [_pct(r["float"]), _pct(r["quantized"]),
                     "-" if r["mean"] is None else f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}%",
                     _pct(r["min"]), _pct(r["max"]), _num(r["chips"])] for r in rows]
    parts.append(_table(headers, table_rows, set(range(len(names), len(headers))), scroll=len(rows) > 25))
    return _section(f"Accuracy {what} on {first.get('hardware')}", "sweep", files, "".join(parts))


def render_search(doc: dict[str, Any], files: list[Path]) -> str:
    """A search front: accuracy against the hardware objective with the picks and the baseline, and
    every network of the front compiled for real."""
    cfg = doc.get("config") or {}
    k = str(cfg.get("samples", 1))
    objectives = [o["name"] for o in doc.get("objectives", [])]
    front = doc.get("front") or []
    picks = doc.get("picks") or {}
    space = (doc.get("space") or {}).get("name", "?")
    parts = [f'<p class="muted">space {esc(space)}, hardware {esc(doc.get("hardware"))}, budget'
             f' {esc(cfg.get("crossbars") or "the chip")} crossbars, objectives {esc(", ".join(objectives))};'
             f' {_num(doc.get("evaluated"))} candidates evaluated in {_num(doc.get("generations"))} generations'
             f' ({float(doc.get("search_seconds") or 0):.0f} s).</p>']
    if not front:
        bad = doc.get("infeasible") or {}
        parts.append(_note(esc(f"No candidate fits: {bad.get('count')} infeasible, e.g. {bad.get('example_reason')};"
                               f" the smallest needs {bad.get('fewest_crossbars')} crossbars.")))
        return _section(f"Search front: {space} on {doc.get('hardware')}", "search", files, "".join(parts))
    y_name = "accuracy" if "accuracy" in objectives else objectives[0]
    x_name = next((n for n in objectives if n != y_name), y_name)

    def x_of(p: dict[str, Any]) -> float:
        if x_name == "latency":
            return float(p["compiled"]["latency_ns"][k]) / 1e3
        return float(p["compiled"].get(x_name, p["search"].get(x_name, 0.0)))

    def y_of(p: dict[str, Any]) -> float:
        if y_name == "accuracy" and p.get("val_accuracy") is not None:
            return 100 * float(p["val_accuracy"])
        return float(p["search"][y_name]) * (100 if y_name == "accuracy" else 1)

    label_of: dict[int, list[str]] = defaultdict(list)
    for label, i in picks.items():
        label_of[int(i)].append(label)
    order = sorted(range(len(front)), key=lambda i: x_of(front[i]))
    tips = [f"#{i} {front[i].get('describe')}" for i in order]
    series = [Series("front (compiled)", [(x_of(front[i]), y_of(front[i])) for i in order], tips=tips)]
    if y_name == "accuracy" and any("accuracy" in p["search"] for p in front):
        series.append(Series("accuracy the search used", [(x_of(front[i]), 100 * front[i]["search"]["accuracy"])
                                                          for i in order], color="#9ecae1", line=False))
    vlines = []
    base = doc.get("baseline") or {}
    for j, (label, m) in enumerate((base.get("mappings") or {}).items()):
        bx = m["latency_ns"].get(k) if x_name == "latency" else m.get(x_name)
        if bx is not None:
            bx = float(bx) / 1e3 if x_name == "latency" else float(bx)
            vlines.append((bx, f"{base.get('name')} {label}", SERIES_COLORS[(j + 1) % len(SERIES_COLORS)]))
    labels = [(x_of(front[i]), y_of(front[i]), ", ".join(ls)) for i, ls in label_of.items()]
    x_label = f"latency of {k} samples (us)" if x_name == "latency" else x_name
    y_label = "validation accuracy (%)" if y_name == "accuracy" else y_name
    positive = all(x_of(p) > 0 for p in front) and all(v[0] > 0 for v in vlines)
    parts.append(svg_chart(series, x_label, y_label, x_log=positive, vlines=vlines, labels=labels,
                           title=f"{len(front)} networks on the front"))
    speed_names = list(front[0].get("speedup") or {})
    headers = ["#", "pick", "network", "val accuracy", *[f"search {esc(o)}" for o in objectives],
               f"latency (k = {esc(k)})", "energy", "EDAP", "crossbars", *[f"speedup vs {esc(n)}" for n in speed_names]]
    rows, classes = [], []
    for i in order:
        p, c = front[i], front[i]["compiled"]
        rows.append([str(i), esc(", ".join(label_of.get(i, []))), esc(p.get("describe")), _pct(p.get("val_accuracy")),
                     *[_objective(o, p["search"].get(o)) for o in objectives], fmt_time(c["latency_ns"].get(k)),
                     fmt_energy(c.get("energy_pj")), _num(c.get("edap")), _num(c.get("crossbars_used")),
                     *[fmt_ratio((p.get("speedup") or {}).get(n)) for n in speed_names]])
        classes.append("pick" if i in label_of else "")
    numeric = {0, *range(3, len(headers))}
    parts.append(_table(headers, rows, numeric, classes, scroll=len(rows) > 25))
    return _section(f"Search front: {space} on {doc.get('hardware')}", "search", files, "".join(parts))


def render_quant(doc: dict[str, Any], files: list[Path]) -> str:
    """A mixed-precision policy against uniform precision: the summary rows, the bits per layer
    (bars with the group range) and the per-layer crossbars and fill."""
    rows = [(f"uniform {b['bits']}-bit" + (" (widest that fits)" if key == "uniform_fitting" else ""), b)
            for key, b in (doc.get("baselines") or {}).items()]
    rows.append(("searched policy", doc["final"]))
    table_rows = [[esc(name), f"{float(r.get('mean_bits') or 0):.2f}", _num(r.get("crossbars")),
                   "yes" if r.get("fits") else "no", _bar(r.get("utilization")), fmt_pct(r.get("utilization_budget")),
                   _pct(r.get("val_accuracy"))] for name, r in rows]
    budget = doc.get("budget")
    parts = [f'<p class="muted">model {esc(doc.get("model"))}, hardware {esc(doc.get("hardware"))}, crossbar'
             f' {esc(doc.get("crossbar"))}, budget {esc(budget or "the pools")}; utilization ='
             f' {esc(doc.get("utilization_denominator") or "cells of the crossbars used")}.</p>',
             _table(["policy", "mean bits", "crossbars", "fits", "utilization", "of the budget", "val accuracy"],
                    table_rows, {1, 2, 4, 5, 6}, ["" if i < len(rows) - 1 else "pick" for i in range(len(rows))])]
    extra = []
    if doc.get("float_val_accuracy") is not None:
        extra.append(f"float model: val {_pct(doc['float_val_accuracy'])}")
    ft = doc.get("finetune")
    if ft:
        extra.append(f"after {(doc.get('config') or {}).get('finetune_epochs', '?')} fine-tuning epoch(s): val"
                     f" {_pct(ft.get('val_accuracy'))}, test {_pct(ft.get('test_accuracy'))}")
    if extra:
        parts.append(f"<p>{esc('; '.join(extra))}.</p>")
    layers = doc["final"].get("layers") or []
    if layers:
        names = [str(rec["name"]) for rec in layers]
        parts.append("<h3>Weight bits per layer</h3>")
        parts.append(bars_svg(names, [float(rec["mean_bits"]) for rec in layers],
                               [float(rec["min_bits"]) for rec in layers], [float(rec["max_bits"]) for rec in layers],
                               "weight bits"))
        uniform = {rec["name"]: rec for rec in (doc.get("baselines", {}).get("uniform", {}).get("layers") or [])}
        lrows = [[esc(rec["name"]), f"{float(rec['mean_bits']):.2f}", f"{rec['min_bits']}-{rec['max_bits']}",
                  esc(rec.get("crossbar", "")), _num(rec.get("crossbars")), _bar(rec.get("utilization")),
                  fmt_pct(uniform.get(rec["name"], {}).get("utilization"))] for rec in layers]
        parts.append(_table(["layer", "mean bits", "range", "crossbar", "crossbars", "utilization",
                             "uniform utilization"], lrows, {1, 2, 4, 5, 6}, scroll=len(lrows) > 25))
    return _section(f"Quantization policy: {doc.get('model')} on {doc.get('hardware')}", "quant", files,
                    "".join(parts))


def render_basis(doc: dict[str, Any], files: list[Path]) -> str:
    """BasisN against reprogramming per crossbar count: cycles per inference for each batch (chart)
    and the ratios (table)."""
    rows = sorted(doc["rows"], key=lambda r: r["crossbars"])
    batches = [str(b) for b in doc.get("batches", [])]
    series = []
    for i, b in enumerate(batches):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        series.append(Series(f"BasisN, B={b}", [(r["crossbars"], r["batches"][b]["basis"]["cycles_per_inference"])
                                                for r in rows], color=color))
        series.append(Series(f"reprogramming, B={b}", [(r["crossbars"],
                                                        r["batches"][b]["reprogram"]["cycles_per_inference"])
                                                       for r in rows], color=color, dashed=True, marker="square"))
    x_ticks = [(float(r["crossbars"]), str(r["crossbars"])) for r in rows]
    parts = [f'<p class="muted">model {esc(doc.get("model"))}, hardware {esc(doc.get("hardware"))}, coefficient bits'
             f' {esc(doc.get("coeff_bits"))}; ratio = BasisN / reprogramming (below 100%: BasisN is better).</p>',
             svg_chart(series, "crossbars available", "cycles per inference", x_log=True, y_log=True, x_ticks=x_ticks,
                       title="cycles per inference")]
    has_acc = any("val_accuracy_after_fit" in r for r in rows)
    headers = ["crossbars", "group crossbars", "basis / weights"]
    for b in batches:
        headers += [f"cycles B={esc(b)}", f"cycles ratio B={esc(b)}", f"EDP ratio B={esc(b)}"]
    headers += ["val accuracy after fit"] if has_acc else []
    trs = []
    for r in rows:
        cells = [_num(r["crossbars"]), _num(r.get("group_crossbars")), fmt_pct(r.get("basis_fraction"))]
        for b in batches:
            d = r["batches"][b]
            cells += [_num(d["basis"].get("cycles_per_inference")), f"{100 * d['ratio']['cycles']:.3f}%",
                      f"{100 * d['ratio']['edp']:.4f}%"]
        if has_acc:
            cells.append(_pct(r.get("val_accuracy_after_fit")))
        trs.append(cells)
    parts.append(_table(headers, trs, set(range(len(headers)))))
    if doc.get("unconstrained_val_accuracy") is not None:
        parts.append(f"<p>Unconstrained model: val {_pct(doc['unconstrained_val_accuracy'])}.</p>")
    return _section(f"BasisN vs reprogramming: {doc.get('model')} on {doc.get('hardware')}", "basis", files,
                    "".join(parts))


# ---------------------------------------------------------------------------------------------
# the page



def _section(title: str, kind: str, files: list[Path], body: str) -> str:
    """A titled section naming the files it shows; `build_page` numbers the anchors (SID) in page order."""
    names = ", ".join(f"<code>{esc(f)}</code>" for f in files)
    return (f'<section class="input" id="{SID}" data-kind="{kind}"><h2>{esc(title)}</h2>'
            f'<p class="src muted small">{esc(KIND_NAMES[kind])} from {names}</p>{body}</section>')


def _pair_compile(sources: list[Source]) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None, list[Path]]]:
    """Compile reports matched with the mapping files of the same compile (model, hardware,
    crossbars used and input shape agree); unmatched ones stand alone."""
    def key(doc: dict[str, Any]) -> tuple[Any, ...]:
        return (doc.get("model"), doc.get("hardware"), doc.get("crossbars_used"), tuple(doc.get("input_shape") or ()))

    mappings = [s for s in sources if s.kind == "mapping"]
    taken: set[int] = set()
    out: list[tuple[dict[str, Any] | None, dict[str, Any] | None, list[Path]]] = []
    for s in sources:
        if s.kind != "compile":
            continue
        match = next((i for i, m in enumerate(mappings) if i not in taken and key(m.doc) == key(s.doc)), None)
        if match is None:
            out.append((s.doc, None, [s.path]))
        else:
            taken.add(match)
            out.append((s.doc, mappings[match].doc, [s.path, mappings[match].path]))
    out += [(None, m.doc, [m.path]) for i, m in enumerate(mappings) if i not in taken]
    return out


def build_page(sources: list[Source], title: str | None = None) -> str:
    """The whole page for the recognised sources: compile sections first (each report with its
    mapping), then sweeps, search fronts, quantization policies and basis comparisons."""
    from xbarforge import __version__

    sections = [render_compile(report, mapping, files) for report, mapping, files in _pair_compile(sources)]
    renderers = {"sweep": render_sweep, "search": render_search, "quant": render_quant, "basis": render_basis}
    for kind, render in renderers.items():
        sections += [render(s.doc, [s.path]) for s in sources if s.kind == kind]
    sections = [s.replace(SID, f"s{i + 1}") for i, s in enumerate(sections)]
    toc = "".join(f'<li><a href="#s{i + 1}">{_heading(s)}</a></li>' for i, s in enumerate(sections))
    nav = f"<nav><ul>{toc}</ul></nav>" if len(sections) > 1 else ""
    title = title or "xbarforge report"
    inputs = ", ".join(f"<code>{esc(s.path)}</code> ({esc(KIND_NAMES[s.kind])})" for s in sources)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p class=\"muted small\">Inputs: {inputs}.</p>"
        f'{nav}</header><main>{"".join(sections)}</main>'
        f'<footer class="muted small">Written by xbarforge {esc(__version__)} (<code>xbarforge report</code>);'
        " self-contained: no network access.</footer>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def _heading(section: str) -> str:
    start = section.index("<h2>") + 4
    return section[start:section.index("</h2>", start)]


def write_report(inputs: list[str | Path], out: str | Path, title: str | None = None) -> tuple[Path, list[Source]]:
    """Read `inputs` (files or run folders), write the page to `out`; returns (path, sources)."""
    sources = load_inputs(inputs)
    page = build_page(sources, title)
    path = Path(out).expanduser()
    path.write_text(page, encoding="utf-8")  # created with the user's umask (0644 under the usual 022)
    return path, sources

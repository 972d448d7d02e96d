"""Charts as inline SVG for the HTML report: a line/scatter chart and a bar chart.

Why not matplotlib PNGs: SVG stays sharp at any zoom, weighs a few kilobytes, carries a tooltip per
point (`<title>`), and keeps the page free of base64 blobs. Only what the report pages need: linear
or log axes with readable ticks, error bars, dashed reference lines, point labels and a legend.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

__all__ = ["SERIES_COLORS", "Series", "bars_svg", "svg_chart"]

SERIES_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#7f7f7f", "#bcbd22"]


def esc(value: object) -> str:
    """Text for SVG/HTML (quotes included, so it also fits attributes)."""
    return html.escape(str(value), quote=True)


@dataclass
class Series:
    """One line (or set of points) of a chart; `tips` are per-point tooltips."""

    name: str
    points: list[tuple[float, float]]
    err: list[float] | None = None
    color: str = "#1f77b4"
    dashed: bool = False
    line: bool = True
    marker: str = "circle"
    tips: list[str] | None = None


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    ticks = [t for t in ticks if lo <= t <= hi]
    if len(ticks) < 3:
        extra = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in (2, 5)]
        ticks = sorted(set(ticks) | {t for t in extra if lo <= t <= hi})
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:,.6g}"


def svg_chart(series: list[Series], x_label: str, y_label: str, *, x_log: bool = False, y_log: bool = False,
              x_ticks: list[tuple[float, str]] | None = None, hlines: list[tuple[float, str, str]] | None = None,
              vlines: list[tuple[float, str, str]] | None = None, labels: list[tuple[float, float, str]] | None = None,
              width: int = 640, height: int = 320, title: str = "") -> str:
    """A line/scatter chart as inline SVG (axes, ticks, error bars, reference lines, legend, a
    tooltip per point): light, crisp at any zoom, and no plotting library in the page."""
    hlines, vlines, labels = hlines or [], vlines or [], labels or []
    xs = [x for s in series for x, _ in s.points] + [v for v, _, _ in vlines]
    ys = [y for s in series for _, y in s.points] + [v for v, _, _ in hlines]
    ys += [y + e for s in series if s.err for (_, y), e in zip(s.points, s.err, strict=True)]
    ys += [y - e for s in series if s.err for (_, y), e in zip(s.points, s.err, strict=True)]
    if x_log:
        xs = [x for x in xs if x > 0]
    if y_log:
        ys = [y for y in ys if y > 0]
    if not xs or not ys:
        return ""
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    legend_rows = len(series) + len(hlines) + len(vlines)
    left, right, top, bottom = 64, 16, 26 if title else 12, 44 + 16 * legend_rows
    height += 16 * legend_rows
    pw, ph = width - left - right, height - top - bottom

    def span(lo: float, hi: float, log: bool) -> tuple[float, float]:
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        pad = (hi - lo) * 0.06 or (abs(lo) * 0.1 or 0.5)
        return lo - pad, hi + pad

    sx0, sx1 = span(x0, x1, x_log)
    sy0, sy1 = span(y0, y1, y_log)

    def px(x: float) -> float:
        v = math.log10(x) if x_log else x
        return left + (v - sx0) / (sx1 - sx0) * pw

    def py(y: float) -> float:
        v = math.log10(max(y, 1e-300)) if y_log else y
        return top + ph - (v - sy0) / (sy1 - sy0) * ph

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
           f' aria-label="{esc(title or y_label)}">']
    if title:
        out.append(f'<text x="{left}" y="16" class="ct">{esc(title)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#bbb"/>')
    lo_x, hi_x = (10 ** sx0, 10 ** sx1) if x_log else (sx0, sx1)
    lo_y, hi_y = (10 ** sy0, 10 ** sy1) if y_log else (sy0, sy1)
    yt = _log_ticks(lo_y, hi_y) if y_log else _nice_ticks(lo_y, hi_y)
    xt = x_ticks if x_ticks is not None else [(t, _tick_label(t)) for t in
                                              (_log_ticks(lo_x, hi_x) if x_log else _nice_ticks(lo_x, hi_x))]
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(_tick_label(t))}</text>')
    for t, label in xt:
        x = px(t)
        if left - 1 <= x <= left + pw + 1:
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
                       f'<text x="{x:.1f}" y="{top + ph + 15}" text-anchor="middle">{esc(label)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph + 32}" text-anchor="middle">{esc(x_label)}</text>')
    out.append(f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f'{esc(y_label)}</text>')
    legend: list[tuple[str, str, bool]] = []
    for value, label, color in hlines:
        y = py(value)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}"'
                   f' stroke-dasharray="6 4"><title>{esc(label)}</title></line>')
        legend.append((label, color, True))
    for value, label, color in vlines:
        x = px(value)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="{color}"'
                   f' stroke-dasharray="6 4"><title>{esc(label)}</title></line>')
        legend.append((label, color, True))
    for s in series:
        pts = [(x, y) for x, y in s.points if (not x_log or x > 0) and (not y_log or y > 0)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        if s.line and len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="1.6"{dash}/>')
        for k, (x, y) in enumerate(s.points):
            if (x_log and x <= 0) or (y_log and y <= 0):
                continue
            cx, cy = px(x), py(y)
            if s.err and s.err[k]:
                e = s.err[k]
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{py(y - e):.1f}" y2="{py(y + e):.1f}"'
                           f' stroke="{s.color}"/>')
            tip = f"<title>{esc(s.tips[k])}</title>" if s.tips else ""
            if s.marker == "square":
                out.append(f'<rect x="{cx - 3.5:.1f}" y="{cy - 3.5:.1f}" width="7" height="7" fill="{s.color}">'
                           f"{tip}</rect>")
            else:
                out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{s.color}">{tip}</circle>')
        legend.append((s.name, s.color, s.dashed))
    for x, y, text in labels:
        out.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 6:.1f}" class="lbl">{esc(text)}</text>')
    ly = top + ph + 44
    for name, color, dashed in legend:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(f'<line x1="{left}" x2="{left + 24}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}"'
                   f' stroke-width="2"{dash}/><text x="{left + 30}" y="{ly}">{esc(name)}</text>')
        ly += 16
    out.append("</svg>")
    return "".join(out)


def bars_svg(names: list[str], values: list[float], lows: list[float] | None = None,
              highs: list[float] | None = None, y_label: str = "", color: str = "#2458a6",
              height: int = 220) -> str:
    """Vertical bars per layer (with optional min-max whiskers) as inline SVG."""
    n = len(values)
    if not n:
        return ""
    top_v = max(highs or values) or 1.0
    left, bottom, top = 48, 90, 10
    bw = max(6, min(24, 900 // n))
    width = left + n * bw + 20
    ph = height - top - bottom
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
           f' aria-label="{esc(y_label)}">']
    for t in _nice_ticks(0, top_v, 4):
        y = top + ph - t / top_v * ph
        if y >= top - 1:
            out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                       f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(_tick_label(t))}</text>')
    out.append(f'<text transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f"{esc(y_label)}</text>")
    for i, (name, v) in enumerate(zip(names, values, strict=True)):
        x = left + i * bw
        h = v / top_v * ph
        extra = f" ({lows[i]:g}-{highs[i]:g})" if lows and highs else ""
        out.append(f'<rect x="{x + 1}" y="{top + ph - h:.1f}" width="{bw - 2}" height="{h:.1f}" fill="{color}">'
                   f"<title>{esc(name)}: {v:.3g}{esc(extra)}</title></rect>")
        if lows and highs and highs[i] > lows[i]:
            cx = x + bw / 2
            out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{top + ph - lows[i] / top_v * ph:.1f}"'
                       f' y2="{top + ph - highs[i] / top_v * ph:.1f}" stroke="#000"/>')
        if bw >= 9:
            out.append(f'<text transform="translate({x + bw / 2 + 3:.1f} {top + ph + 6}) rotate(90)"'
                       f' class="tiny">{esc(name[:18])}</text>')
    out.append("</svg>")
    return "".join(out)

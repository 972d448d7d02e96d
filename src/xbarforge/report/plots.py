"""PNG pictures of a mapping (matplotlib, Agg backend: no display needed).

* `plot_occupancy(mapping, path)`: one square per crossbar, every placed block drawn at its row
  and column offsets and coloured by layer (legend: the layers holding the most cells). Models
  mapped in reprogramming rounds get one panel per round. Beyond `MAX_CROSSBARS` crossbars the
  blocks would be too small to see, so every crossbar becomes one pixel instead: the colour of the
  layer holding most of its cells, paler the emptier it is; all crossbars are drawn either way.
* `plot_layers(report, path)`: per-layer utilization as bars and per-layer time (log scale) on a
  second axis, from the report dict of `xbarforge.compile`.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from xbarforge.report.table import fmt_time  # noqa: E402

__all__ = [
    "MAX_CROSSBARS", "MAX_LEGEND", "MAX_ROUND_PANELS", "layer_colors", "plot_basis", "plot_layers", "plot_occupancy",
]

MAX_CROSSBARS = 256  # crossbars drawn in the occupancy map (over all panels)
MAX_ROUND_PANELS = 4  # reprogramming rounds drawn side by side
MAX_LEGEND = 12  # layers named in the legend


def layer_colors(names: list[str]) -> dict[str, Any]:
    """A colour per layer name, in network order, from 60 qualitative colours (then repeating)."""
    palette = []
    for cmap_name in ("tab20", "tab20b", "tab20c"):
        cmap = plt.get_cmap(cmap_name)
        # the dark and light shades of one hue alternate in tab20: take the dark ones first
        palette += [cmap(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _layer_names(mapping: Any) -> list[str]:
    names = [lp.name for lp in getattr(mapping, "layers", [])]
    for b in mapping.blocks:
        if b.layer not in names:
            names.append(b.layer)
    return names


def plot_occupancy(mapping: Any, path: str | Path, max_crossbars: int = MAX_CROSSBARS) -> Path:
    """Draw the crossbar occupancy map of `mapping` (a `Mapping`) to the PNG file `path`."""
    rows, cols = mapping.crossbar_rows, mapping.crossbar_cols
    names = _layer_names(mapping)
    colors = layer_colors(names)
    by_round: dict[int, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for b in mapping.blocks:
        by_round[b.round][b.crossbar].append(b)
    rounds_all = sorted(by_round) or [0]
    total_xbars = sum(len(x) for x in by_round.values())
    rounds = rounds_all[:MAX_ROUND_PANELS]
    if total_xbars > max_crossbars:
        return _plot_occupancy_pixels(mapping, path, by_round, rounds_all, names, colors)
    per_panel = max(1, max_crossbars // len(rounds))
    panels = []
    for r in rounds:
        ids = sorted(by_round[r])
        panels.append((r, ids[:per_panel], len(ids)))
    shown = sum(len(ids) for _, ids, _ in panels)

    n_max = max((len(ids) for _, ids, _ in panels), default=1) or 1
    grid_cols = max(1, math.ceil(math.sqrt(n_max * 1.6)))
    grid_rows = max(1, math.ceil(n_max / grid_cols))
    cell = min(0.7, max(0.22, 7.0 / grid_cols))  # inches per crossbar
    panel_w, panel_h = grid_cols * cell * 1.12, grid_rows * cell * 1.12
    two_line_title = shown < total_xbars
    show_panel_titles = len(rounds_all) > 1 or any(len(ids) < n for _, ids, n in panels)
    legend_w = 2.8
    title_h = 0.35 + (0.2 if two_line_title else 0.0) + (0.3 if show_panel_titles else 0.0)
    fig_w = max(6.0, panel_w * len(panels) + 0.3 * (len(panels) - 1) + legend_w + 0.4)
    fig_h = max(3.0, panel_h + title_h + 0.5)
    fig, axes = plt.subplots(1, len(panels), figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(left=0.2 / fig_w, right=1 - (legend_w + 0.2) / fig_w, bottom=0.2 / fig_h,
                        top=1 - title_h / fig_h, wspace=0.3 / max(panel_w, 0.1))
    cells_by_layer: dict[str, int] = defaultdict(int)
    for b in mapping.blocks:
        cells_by_layer[b.layer] += b.weights

    gap = 0.12
    for ax, (r, ids, n_in_round) in zip(axes[0], panels, strict=True):
        frames, patches, facecolors = [], [], []
        for i, xb in enumerate(ids):
            gx, gy = i % grid_cols, i // grid_cols
            x0, y0 = gx * (1 + gap), gy * (1 + gap)
            frames.append(Rectangle((x0, y0), 1, 1))
            for b in by_round[r][xb]:
                # row offset grows downwards (the y axis is inverted below)
                patches.append(Rectangle((x0 + b.col_offset / cols, y0 + b.row_offset / rows),
                                         b.width / cols, b.height / rows))
                facecolors.append(colors[b.layer])
        ax.add_collection(PatchCollection(frames, facecolor="#f2f2f2", edgecolor="#555555", linewidth=0.6))
        if patches:
            lw = 0.3 if len(patches) < 2000 else 0.0
            ax.add_collection(PatchCollection(patches, facecolor=facecolors, edgecolor="white", linewidth=lw))
        ax.set_xlim(-gap, grid_cols * (1 + gap))
        ax.set_ylim(grid_rows * (1 + gap), -gap)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        if len(rounds_all) > 1 or len(ids) < n_in_round:
            more = f", first {len(ids)} shown" if len(ids) < n_in_round else ""
            ax.set_title(f"round {r + 1}: {n_in_round} crossbars{more}", fontsize=9)

    used = getattr(mapping, "crossbars_used", total_xbars)
    title = f"{mapping.model}: crossbar occupancy, {used} crossbars of {rows}x{cols}"
    if len(rounds_all) > 1:
        title += f", {len(rounds_all)} reprogramming rounds"
        if len(rounds) < len(rounds_all):
            title += f" (first {len(rounds)} shown)"
    if shown < total_xbars:
        title += f"\nshowing the first {shown} of {total_xbars} crossbars"
    fig.suptitle(title, fontsize=10)

    _layer_legend(fig, cells_by_layer, names, colors, 1 - legend_w / fig_w, empty_cells=True)
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _layer_legend(fig: Any, cells_by_layer: dict[str, int], names: list[str], colors: dict[str, Any], left: float,
                  empty_cells: bool) -> None:
    """The legend of an occupancy map: the layers holding the most cells, in network order."""
    largest = sorted(cells_by_layer, key=lambda n: -cells_by_layer[n])[:MAX_LEGEND]
    handles = [Patch(facecolor=colors[n], label=n) for n in sorted(largest, key=names.index)]
    if len(cells_by_layer) > len(largest):
        handles.append(Patch(facecolor="none", edgecolor="none",
                             label=f"(+{len(cells_by_layer) - len(largest)} smaller layers)"))
    if empty_cells:
        handles.append(Patch(facecolor="#f2f2f2", edgecolor="#555555", label="empty cells"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(left, 0.5), fontsize=7,
               title="largest layers (cells)", title_fontsize=8, frameon=False)


def _plot_occupancy_pixels(mapping: Any, path: str | Path, by_round: dict[int, dict[int, list[Any]]],
                           rounds_all: list[int], names: list[str], colors: dict[str, Any]) -> Path:
    """Every crossbar as one pixel: the colour of the layer with most cells on it, paler when emptier."""
    import numpy as np
    from matplotlib.colors import to_rgb

    cells = mapping.crossbar_rows * mapping.crossbar_cols
    rounds = rounds_all[:MAX_ROUND_PANELS]
    n_max = max(len(by_round[r]) for r in rounds)
    grid_cols = max(1, math.ceil(math.sqrt(n_max * 1.6)))
    grid_rows = max(1, math.ceil(n_max / grid_cols))
    cells_by_layer: dict[str, int] = defaultdict(int)
    legend_w = 2.8
    panel_w = min(9.0, max(3.0, grid_cols / 40))
    fig_w = panel_w * len(rounds) + legend_w + 0.6
    fig_h = max(3.5, panel_w * grid_rows / grid_cols + 1.0)
    fig, axes = plt.subplots(1, len(rounds), figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(left=0.2 / fig_w, right=1 - (legend_w + 0.2) / fig_w, bottom=0.25 / fig_h,
                        top=1 - 0.8 / fig_h)
    for ax, r in zip(axes[0], rounds, strict=True):
        image = np.full((grid_rows * grid_cols, 3), 0.95)
        for i, xb in enumerate(sorted(by_round[r])):
            held: dict[str, int] = defaultdict(int)
            for b in by_round[r][xb]:
                held[b.layer] += b.weights
                cells_by_layer[b.layer] += b.weights
            top = max(held, key=held.__getitem__)
            fill = min(1.0, sum(held.values()) / cells)
            image[i] = fill * np.array(to_rgb(colors[top])) + (1 - fill) * 0.95  # blend towards white
        ax.imshow(image.reshape(grid_rows, grid_cols, 3), interpolation="nearest", aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if len(rounds_all) > 1:
            ax.set_title(f"round {r + 1}: {len(by_round[r])} crossbars", fontsize=9)
    used = getattr(mapping, "crossbars_used", sum(len(x) for x in by_round.values()))
    title = (f"{mapping.model}: crossbar occupancy, all {used} crossbars of {mapping.crossbar_rows}x"
             f"{mapping.crossbar_cols}, one pixel each\n(colour: the layer holding most of its cells; paler: emptier)")
    if len(rounds) < len(rounds_all):
        title += f"; first {len(rounds)} of {len(rounds_all)} reprogramming rounds"
    fig.suptitle(title, fontsize=10)
    _layer_legend(fig, cells_by_layer, names, colors, 1 - legend_w / fig_w, empty_cells=False)
    out = Path(path)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def plot_layers(report: dict[str, Any], path: str | Path) -> Path:
    """Per-layer utilization (bars, left axis) and time per layer (dots, log right axis) to `path`."""
    layers = report.get("layers", [])
    n = len(layers)
    names = [str(layer["name"]) for layer in layers]
    util = [100.0 * float(layer.get("utilization") or 0.0) for layer in layers]
    time_us = [float(layer.get("time_ns") or 0.0) / 1e3 for layer in layers]
    colors = layer_colors(names)

    width = max(6.0, min(24.0, 0.22 * n + 2.5))
    fig, ax = plt.subplots(figsize=(width, 4.6))
    xs = list(range(n))
    ax.bar(xs, util, color=[colors[nm] for nm in names], edgecolor="#333333", linewidth=0.3,
           label="utilization of the layer's crossbars (%)")
    overall = report.get("utilization")
    if overall is not None:
        denom = "budget" if report.get("crossbars_budget") else "crossbars used"
        ax.axhline(100 * overall, color="#444444", linestyle="--", linewidth=0.8,
                   label=f"chip utilization {100 * overall:.1f}% (of the {denom})")
    rounds_of = [int(layer.get("round", 0)) for layer in layers]
    for i in range(1, n):
        if rounds_of[i] != rounds_of[i - 1]:
            ax.axvline(i - 0.5, color="#888888", linestyle=":", linewidth=1.0)
            ax.text(i - 0.4, 103, f"round {rounds_of[i] + 1}", fontsize=7, color="#555555", va="bottom")
    ax.set_ylim(0, 125)  # headroom for the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("utilization (%)")
    ax.set_xlim(-0.7, n - 0.3)
    step = max(1, math.ceil(n / 80))
    ax.set_xticks(xs[::step])
    ax.set_xticklabels(names[::step], rotation=90, fontsize=6 if n > 30 else 7)

    ax2 = ax.twinx()
    ax2.plot(xs, time_us, color="#c0392b", marker="o", markersize=3, linewidth=0.8,
             label="layer time")
    positive = [t for t in time_us if t > 0]
    if positive and max(positive) / min(positive) > 20:
        ax2.set_yscale("log")
        ax2.set_ylim(min(positive) / 2, max(positive) * 6)  # headroom for the legend
    else:
        ax2.set_ylim(0, (max(time_us) if time_us else 1.0) * 1.3 or 1.0)
    log = ax2.get_yscale() == "log"
    ax2.set_ylabel("time per layer (us" + (", log scale)" if log else ")"), color="#c0392b")
    ax2.tick_params(axis="y", colors="#c0392b")

    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", ncol=3, fontsize=7, frameon=False)
    shape = "x".join(str(s) for s in report.get("input_shape", []))
    title = f"{report.get('model')} {shape} on {report.get('hardware')}"
    title += f": {report.get('crossbars_used')} crossbars"
    rounds = report.get("rounds") or 1
    if rounds > 1:
        title += f", {rounds} reprogramming rounds"
    one = report.get("latency_ns", {}).get("1")
    if one is not None:
        title += f", one-sample latency {fmt_time(float(one))}"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_sweep(reports: list[Any], names: list[str], path: Path) -> Path:
    """Accuracy (chip mean with a +-1 std band, and the quantized reference) against the first swept
    parameter; one line per combination of the others."""
    first, rest = names[0], names[1:]
    lines: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for r in reports:
        lines[tuple(r.setting[n] for n in rest)].append(r)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    numeric = all(isinstance(r.setting[first], int | float) and not isinstance(r.setting[first], bool) for r in reports)
    for key, rs in lines.items():
        xs = [r.setting[first] for r in rs] if numeric else list(range(len(rs)))
        mean = [100 * r.mean for r in rs]
        std = [100 * r.std for r in rs]
        label = ", ".join(f"{n}={v}" for n, v in zip(rest, key, strict=True)) or "chips"
        line = ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=label)
        ax.plot(xs, [100 * r.quantized_accuracy for r in rs], ls=":", color=line[0].get_color(), alpha=0.6)
        if not numeric:
            ax.set_xticks(xs, [str(r.setting[first]) for r in rs])
    ax.axhline(100 * reports[0].float_accuracy, color="grey", ls="--", lw=1, label="float model")
    ax.set_xlabel(first)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{reports[0].hardware}: mean ± std over {len(reports[0].chip_accuracies)} chips"
                 " (dotted: quantized, ideal devices)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_basis(result: dict[str, Any], path: str | Path) -> Path:
    """BasisN against reprogramming over the crossbar count: cycles and EDP per inference (log scale,
    one line per batch size) and accuracy (after fitting, and after training where the rows have it)."""
    rows = sorted(result["rows"], key=lambda r: r["crossbars"])
    xs = [r["crossbars"] for r in rows]
    batches = [str(b) for b in result["batches"]]
    has_acc = any(k in r for r in rows for k in ("val_accuracy_after_fit", "test_accuracy"))
    fig, axes = plt.subplots(1, 3 if has_acc else 2, figsize=(13 if has_acc else 9, 3.8))
    for ax, key, label in ((axes[0], "cycles_per_inference", "cycles per inference"),
                           (axes[1], "edp", "EDP per inference (pJ x ns)")):
        for i, b in enumerate(batches):
            color = plt.get_cmap("tab10")(i)
            ax.plot(xs, [r["batches"][b]["basis"][key] for r in rows], marker="o", color=color,
                    label=f"BasisN, B={b}")
            ax.plot(xs, [r["batches"][b]["reprogram"][key] for r in rows], marker="s", ls="--", color=color,
                    label=f"reprogramming, B={b}")
        ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("crossbars available")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if has_acc:
        ax = axes[2]
        for key, label, marker in (("val_accuracy_after_fit", "after fitting (val)", "o"),
                                   ("test_accuracy", "after training (test)", "s")):
            pts = [(r["crossbars"], 100 * r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=marker, label=label)
        for key, style in (("unconstrained_test_accuracy", "--"), ("unconstrained_val_accuracy", ":")):
            if result.get(key) is not None:
                ax.axhline(100 * result[key], color="grey", ls=style, lw=1,
                           label=f"unconstrained model ({key.split('_')[1]})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("crossbars available")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"BasisN vs reprogramming: {result['model']} on {result['hardware']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_quant_policy(result: dict[str, Any], path: str | Path) -> Path:
    """A mixed-precision policy per layer: weight bits (mean, with the group range) and how full each
    layer's crossbars are, next to the uniform-precision baseline's fill."""
    layers = result["final"]["layers"]
    names = [rec["name"] for rec in layers]
    xs = list(range(len(names)))
    fig, (ax_b, ax_u) = plt.subplots(2, 1, figsize=(max(8, 0.28 * len(names) + 3), 6), sharex=True)
    mean = [rec["mean_bits"] for rec in layers]
    lo = [rec["mean_bits"] - rec["min_bits"] for rec in layers]
    hi = [rec["max_bits"] - rec["mean_bits"] for rec in layers]
    ax_b.bar(xs, mean, color="tab:blue", yerr=[lo, hi], capsize=2, ecolor="black", label="mean bits (group range)")
    ax_b.set_ylabel("weight bits")
    ax_b.grid(alpha=0.3, axis="y")
    ax_b.legend(fontsize=7)
    ax_u.plot(xs, [100 * rec["utilization"] for rec in layers], marker="o", label="policy")
    base = result.get("baselines", {}).get("uniform", {}).get("layers")
    if base:
        ax_u.plot(xs, [100 * rec["utilization"] for rec in base], marker="s", ls="--", color="grey",
                  label=f"uniform {result['baselines']['uniform']['bits']}-bit")
    ax_u.set_ylabel("crossbar utilization (%)")
    ax_u.set_xticks(xs, names, rotation=90, fontsize=6)
    ax_u.grid(alpha=0.3)
    ax_u.legend(fontsize=7)
    fin = result["final"]
    fig.suptitle(f"{result['model']} on {result['hardware']}: {fin['crossbars']} crossbars,"
                 f" {100 * fin['utilization']:.1f} % utilization, {fin['mean_bits']:.2f} mean bits", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_learning_curve(stages: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "") -> Path:
    """Reward, accuracy and utilization of every episode of each stage, with the best-so-far reward."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    offset = 0
    for i, (stage, history) in enumerate(stages.items()):
        if not history:
            continue
        color = plt.get_cmap("tab10")(i)
        eps = [offset + rec["episode"] + 1 for rec in history]
        rewards = [rec["reward"] for rec in history]
        best = list(itertools.accumulate(rewards, max))
        axes[0].plot(eps, rewards, ".", color=color, alpha=0.5, label=f"{stage}")
        axes[0].plot(eps, best, "-", color=color, label=f"{stage}, best so far")
        for ax, key in ((axes[1], "accuracy"), (axes[2], "utilization")):
            ax.plot(eps, [100 * rec[key] for rec in history if key in rec], ".", color=color, alpha=0.5, label=stage)
        offset = eps[-1]
    for ax, label in zip(axes, ("reward", "validation accuracy (%)", "utilization (%)"), strict=True):
        ax.set_xlabel("episode")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_search_front(doc: dict[str, Any], path: str | Path) -> Path:
    """An architecture search's Pareto front: validation accuracy (or the first objective) against
    the second objective, the picks labelled and the baseline network marked (its mappings as
    vertical lines when its accuracy is unknown, as stars when `doc['baseline']['val_accuracy']` is set)."""
    objectives = [o["name"] for o in doc["objectives"]]
    front = doc["front"]
    y_name = "accuracy" if "accuracy" in objectives else objectives[0]
    x_name = next(n for n in objectives if n != y_name)
    k = str(doc["config"]["samples"])

    def x_of(p: dict[str, Any]) -> float:
        if x_name == "latency":
            return p["compiled"]["latency_ns"][k] / 1e3
        return p["compiled"].get(x_name, p["search"][x_name])

    def y_of(p: dict[str, Any]) -> float:
        return 100 * p["val_accuracy"] if y_name == "accuracy" and "val_accuracy" in p else p["search"][y_name]

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = sorted(front, key=x_of)
    ax.plot([x_of(p) for p in pts], [y_of(p) for p in pts], "o-", color="tab:blue", ms=4, label="front (compiled)")
    if y_name == "accuracy" and any("accuracy" in p["search"] for p in front):
        ax.plot([x_of(p) for p in pts], [100 * p["search"]["accuracy"] for p in pts], ".", color="tab:blue",
                alpha=0.35, label="accuracy the search used")
    for label, i in doc.get("picks", {}).items():
        ax.annotate(label, (x_of(front[i]), y_of(front[i])), textcoords="offset points", xytext=(4, 4), fontsize=7)
    base = doc.get("baseline") or {}
    for j, (label, m) in enumerate((base.get("mappings") or {}).items()):
        bx = m["latency_ns"][k] / 1e3 if x_name == "latency" else m.get(x_name)
        if bx is None:
            continue
        color = plt.get_cmap("Set1")(j)
        acc = (base.get("val_accuracy") or {}).get(label) if isinstance(base.get("val_accuracy"), dict) \
            else base.get("val_accuracy")
        if acc is not None and y_name == "accuracy":
            ax.plot([bx], [100 * acc], "*", ms=12, color=color, label=f"{base.get('name')} {label}")
        else:
            ax.axvline(bx, ls="--", color=color, label=f"{base.get('name')} {label}")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency of {k} samples (us)" if x_name == "latency" else x_name)
    ax.set_ylabel("validation accuracy (%)" if y_name == "accuracy" else y_name)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    cfg = doc["config"]
    ax.set_title(f"{doc['space']['name']} on {doc['hardware']}, {cfg.get('crossbars') or 'chip'} crossbars:"
                 f" {len(front)} networks", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

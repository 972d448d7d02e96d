"""What every crossbar of a mapping holds, for the HTML report's occupancy map.

`mapping_occupancy` works from a Mapping's counts (runs of identical crossbars, shared runs, placed
blocks), never from its expanded block list: a 16k-crossbar chip with 100k blocks takes
milliseconds, and crossbars filled alike share one entry of the content table, so the page spends a
few bytes per crossbar. `report_occupancy` is the rough fallback when only a compile report is at
hand (per-layer crossbar counts at the layer's mean fill).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Contents", "Occupancy", "hex_colors", "mapping_occupancy", "prefix_weights", "report_occupancy",
           "run_crossbar_weights"]


@dataclass
class Occupancy:
    """What every crossbar holds, compactly: a table of distinct contents (`comps`: (layer index,
    weight cells) pairs, largest first; comps[0] is empty) and, per reprogramming round, one content
    index per crossbar. Runs of identical crossbars share one entry, so 16k crossbars cost a few
    bytes each in the page."""

    rows: int
    cols: int
    layers: list[str]
    colors: list[str]
    comps: list[tuple[tuple[int, int], ...]]
    rounds: list[tuple[int, list[int], list[int]]]  # (round, crossbar ids, content index per crossbar)
    exact: bool
    budget: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def crossbars(self) -> int:
        """Cells in the map (over all rounds)."""
        return sum(len(comp) for _, _, comp in self.rounds)

    def layer_stats(self) -> list[tuple[int, int]]:
        """Per layer: (crossbars holding it, weight cells), over all rounds."""
        stats = [[0, 0] for _ in self.layers]
        for _, _, comp in self.rounds:
            counts: dict[int, int] = defaultdict(int)
            for c in comp:
                counts[c] += 1
            for c, n in counts.items():
                for li, w in self.comps[c]:
                    stats[li][0] += n
                    stats[li][1] += n * w
        return [(a, b) for a, b in stats]

    def to_json(self) -> dict[str, Any]:
        """The data the page's script draws from; crossbar ids as [start, count] ranges."""
        out_rounds = []
        for r, ids, comp in self.rounds:
            ranges: list[list[int]] = []
            for x in ids:
                if ranges and ranges[-1][0] + ranges[-1][1] == x:
                    ranges[-1][1] += 1
                else:
                    ranges.append([x, 1])
            out_rounds.append({"round": r, "ids": ranges, "comp": comp})
        return {"rows": self.rows, "cols": self.cols, "layers": self.layers, "colors": self.colors,
                "comps": [[list(p) for p in c] for c in self.comps], "rounds": out_rounds, "exact": self.exact,
                "budget": self.budget}


def hex_colors(names: list[str]) -> list[str]:
    """The PNG map's colour for each layer (`plots.layer_colors`), as #rrggbb."""
    from matplotlib.colors import to_hex

    from xbarforge.report.plots import layer_colors

    colors = layer_colors(names)
    return [to_hex(colors[n]) for n in names]


class Contents:
    """Interns crossbar contents: equal contents get one index."""

    def __init__(self) -> None:
        self.comps: list[tuple[tuple[int, int], ...]] = [()]
        self.index: dict[tuple[tuple[int, int], ...], int] = {(): 0}

    def add(self, held: dict[int, int]) -> int:
        key = tuple(sorted(((li, w) for li, w in held.items() if w > 0), key=lambda p: (-p[1], p[0])))
        if key not in self.index:
            self.index[key] = len(self.comps)
            self.comps.append(key)
        return self.index[key]


def prefix_weights(classes: Any, b0: int, m: Any) -> Any:
    """Weight cells of the blocks [b0, b0 + m) of one copy, for an array `m`, from the shape classes
    (a VGG classifier's copy has 50k blocks: never list them)."""
    import numpy as np

    out = np.zeros_like(m, dtype=np.int64)
    for c in classes:
        lo, hi = max(b0, c.start), c.start + c.count
        out += np.clip(np.minimum(b0 + m, hi) - lo, 0, None) * c.weights
    return out


def run_crossbar_weights(plan: Any, run: Any) -> Any:
    """Weight cells on each crossbar of a run, in counts: instance i is block block0 + i % n, and
    crossbar j holds instances [j * per_crossbar, (j + 1) * per_crossbar)."""
    import numpy as np

    n = run.block1 - run.block0
    total = plan.range_totals(run.block0, run.block1)[0]
    j = np.arange(run.crossbars, dtype=np.int64)
    a = j * run.per_crossbar
    b = np.minimum(a + run.per_crossbar, run.instances)

    def upto(i: Any) -> Any:  # weight cells of instances [0, i)
        return (i // n) * total + prefix_weights(plan.classes, run.block0, i % n)

    return upto(b) - upto(a)


def mapping_occupancy(mapping: Any) -> Occupancy:
    """Per-crossbar contents of a `Mapping`, from its runs, shared runs and placed blocks (counts,
    not expanded blocks). Unused crossbars of the budget are listed empty, so the map shows what the
    utilization's denominator counts."""
    from xbarforge.compiler.mapping import shared_weights

    names = [lp.name for lp in mapping.layers]
    for b in mapping.placed:
        if b.layer not in names:
            names.append(b.layer)
    index = {n: i for i, n in enumerate(names)}
    plans = {lp.name: lp for lp in mapping.layers}
    held: dict[tuple[int, int], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for run in mapping.runs:
        li = index[run.layer]
        for j, w in enumerate(run_crossbar_weights(plans[run.layer], run).tolist()):
            held[(run.round, run.crossbar0 + j)][li] += w
    for sr in mapping.shared:
        per: dict[int, int] = defaultdict(int)
        for s in sr.shares:
            per[index[s.layer]] += shared_weights(plans[s.layer], s)
        for x in range(sr.crossbars):
            cell = held[(sr.round, sr.crossbar0 + x)]
            for li, w in per.items():
                cell[li] += w
    for b in mapping.placed:
        held[(b.round, b.crossbar)][index[b.layer]] += b.weights
    contents = Contents()
    by_round: dict[int, dict[int, int]] = defaultdict(dict)
    for (r, x), cell in held.items():
        by_round[r][x] = contents.add(cell)
    budget = mapping.crossbars_budget
    rounds = []
    for r in sorted(by_round) or [0]:
        ids = by_round[r]
        if budget:
            for x in range(budget):
                ids.setdefault(x, 0)
        order = sorted(ids)
        rounds.append((r, order, [ids[x] for x in order]))
    return Occupancy(mapping.crossbar_rows, mapping.crossbar_cols, names, hex_colors(names), contents.comps,
                     rounds, exact=True, budget=budget)


def report_occupancy(report: dict[str, Any]) -> Occupancy | None:
    """A rough map from a compile report alone: each layer's crossbar count at the layer's mean fill.
    Crossbars shared by several layers appear once per layer; the Mapping file gives the exact map."""
    try:
        rows, cols = (int(v) for v in str(report.get("crossbar", "")).split("x"))
    except ValueError:
        return None
    layers = [row for row in report.get("layers", []) if not row.get("digital") and (row.get("crossbars") or 0) > 0]
    if not layers:
        return None
    names = [str(row["name"]) for row in layers]
    contents = Contents()
    by_round: dict[int, list[int]] = defaultdict(list)
    for li, row in enumerate(layers):
        c = contents.add({li: round(float(row.get("utilization") or 0.0) * rows * cols)})
        by_round[int(row.get("round") or 0)].extend([c] * int(row["crossbars"]))
    rounds = [(r, list(range(len(comp))), comp) for r, comp in sorted(by_round.items())]
    note = ("Rough map from the report alone: each layer's crossbars at the layer's mean fill, in network order;"
            " a crossbar shared by several layers appears once for each. Give the mapping file"
            " (xbarforge compile --mapping) for the exact map.")
    return Occupancy(rows, cols, names, hex_colors(names), contents.comps, rounds, exact=False,
                     budget=report.get("crossbars_budget"), notes=[note])

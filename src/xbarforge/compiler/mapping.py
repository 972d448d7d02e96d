"""Mapping: where every block of every copy of every layer lives on the chip.

The Mapping is the compiler's output and the contract with the cost model and the simulator: the
per-layer choices (form, copies) and where their blocks sit. Placement comes in two shapes:

* `runs`: consecutive crossbars that hold blocks of one layer only, all filled alike. A layer with
  64 copies of 1200 blocks is one run per block shape, not 76,800 placed blocks, so the compiler
  and the cost model work in counts and a 25M-weight model compiles as fast as a small one;
* `placed`: explicit blocks (crossbars shared by several layers, reprogramming rounds, hand-built
  mappings).

`blocks` lists every block of both (built on first use, for the simulator, the ideal executor and
plots); the cost model reads runs and placed blocks directly. It serializes to JSON and loads back
without the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from xbarforge.compiler.digital import DigitalStage, digital_stages
from xbarforge.compiler.flow import FlowNode, flow_nodes
from xbarforge.compiler.lower import BlockClass, BlockShape, Form, LoweredLayer, _classes, copy_blocks


@dataclass(frozen=True)
class PlacedBlock:
    layer: str
    copy: int
    group0: int
    group1: int
    row0: int  # weight-matrix rows of the group matrix
    row1: int
    col0: int  # physical columns of the group matrix (bit slices included)
    col1: int
    crossbar: int
    row_offset: int
    col_offset: int
    height: int
    width: int
    weights: int  # cells holding weight slices
    round: int = 0  # reprogramming round when the model does not fit the budget


@dataclass(frozen=True)
class Run:
    """`crossbars` consecutive crossbars that hold blocks of one layer only, all filled alike.

    The run places `copies` copies (from `copy0`) of the blocks [block0, block1) of one copy. Its
    instance i is block `block0 + i % n` of copy `copy0 + i // n` (n = block1 - block0) and sits on
    crossbar `crossbar0 + i // per_crossbar`, at the offset `slots[i % per_crossbar]`. `turns`: how
    many of the layer's blocks take turns on its fullest crossbar (the rest fire together).
    """

    layer: str
    block0: int
    block1: int
    copy0: int
    copies: int
    per_crossbar: int
    slots: tuple[tuple[int, int], ...]
    crossbar0: int
    turns: int = 1
    round: int = 0

    @property
    def instances(self) -> int:
        return self.copies * (self.block1 - self.block0)

    @property
    def crossbars(self) -> int:
        return math.ceil(self.instances / self.per_crossbar)


@dataclass(frozen=True)
class Share:
    """One layer's block on every crossbar of a `SharedRun`: on the run's j-th crossbar, at (row, col),
    sits instance `instance0 + j` of the blocks [block0, block1) of the layer's copies (instance i is
    block `block0 + i % n` of copy `i // n`, n = block1 - block0)."""

    layer: str
    block0: int
    block1: int
    instance0: int
    row: int
    col: int


@dataclass(frozen=True)
class SharedRun:
    """`crossbars` consecutive crossbars filled alike with blocks of several layers (`shares`)."""

    crossbar0: int
    crossbars: int
    shares: tuple[Share, ...]
    round: int = 0


@dataclass
class LayerPlan:
    """What the compiler decided for one MVM layer."""

    name: str
    kind: str
    describe: str
    form: Form
    copies: int
    blocks_per_copy: int
    mvms_per_pixel: int
    pixels: int
    rows_per_group: int
    cols_per_group: int  # physical columns
    groups: int
    tau: int  # MVM cycles per sample of each block (ceil(pixels / copies) * mvms_per_pixel)
    serial: int = 1  # blocks of this layer that take turns in one crossbar
    round: int = 0
    preds: list[str] = field(default_factory=list)  # MVM layers it reads from (DAG schedule)
    out_elems: int = 0  # output activations per sample (for buffer and interconnect energy)
    row_cuts: tuple[int, ...] = ()  # tiled forms: row tile boundaries of the group matrix
    col_cuts: tuple[int, ...] = ()  # tiled forms: physical column tile boundaries
    layout: str = "dense"  # "mnsim": slice-major columns (compiler.lower); the executor needs "dense"
    in_line_elems: int = 0  # activations in k input rows (W_in x k_h x C_in): a line buffer's content

    @property
    def out_channels(self) -> int:
        """Activations of one output pixel."""
        return self.out_elems // self.pixels

    @property
    def cycles(self) -> int:
        """Layer time in MVM cycles: tau times the blocks that take turns."""
        return self.tau * self.serial

    @cached_property
    def classes(self) -> tuple[BlockClass, ...]:
        """Shape classes of one copy's blocks (lower.py's order)."""
        return _classes(self.form, self.groups, self.rows_per_group, self.cols_per_group, self.row_cuts,
                        self.col_cuts)

    @cached_property
    def copy_blocks(self) -> tuple[BlockShape, ...]:
        """Every block of one copy, as `lower` lists them (block index -> shape)."""
        return copy_blocks(self.form, self.groups, self.rows_per_group, self.cols_per_group, self.row_cuts,
                           self.col_cuts)

    def range_totals(self, b0: int, b1: int) -> tuple[int, int]:
        """(weight cells, rectangle cells) of the blocks [b0, b1) of one copy, from the classes."""
        weights = cells = 0
        for c in self.classes:
            n = max(0, min(b1, c.start + c.count) - max(b0, c.start))
            weights += n * c.weights
            cells += n * c.height * c.width
        return weights, cells

    @classmethod
    def from_lowered(cls, low: LoweredLayer, copies: int, preds: list[str] | None = None) -> LayerPlan:
        """The plan for `copies` copies of a lowered layer (serial and round set after placement)."""
        layer = low.layer
        return cls(
            name=layer.name, kind=layer.kind, describe=layer.describe(), form=low.form, copies=copies,
            blocks_per_copy=low.n_blocks, mvms_per_pixel=low.mvms_per_pixel, pixels=low.pixels,
            rows_per_group=layer.rows_per_group, cols_per_group=low.group_cols,
            groups=layer.groups, tau=low.tau(copies), preds=list(preds or []),
            out_elems=math.prod(layer.out_shape), row_cuts=low.row_cuts, col_cuts=low.col_cuts,
            layout=low.layout, in_line_elems=_line_elems(layer),
        )


def _line_elems(layer: Any) -> int:
    """Activations a line buffer holds for this layer: k_h rows of its input (one input vector for a linear layer)."""
    if len(layer.in_shape) == 3:
        c, _, w = layer.in_shape
        return w * layer.kernel[0] * c
    return layer.rows_per_group * layer.groups


@dataclass
class Mapping:
    model: str
    input_shape: tuple[int, ...]
    hardware: str
    crossbar_rows: int
    crossbar_cols: int
    crossbars_budget: int | None
    layers: list[LayerPlan]
    placed: list[PlacedBlock]  # explicit blocks (shared crossbars, rounds); runs hold the rest
    crossbars_used: int
    rounds: int = 1
    min_crossbars: int | None = None
    schedule: str = "chain"
    objective: str = "throughput"
    seed: int = 0
    period_hint: int | None = None  # pipeline period the packing planned windows for (cycles)
    # mixed precision (xbarforge.quant): weight bits per layer, one number or one per output channel;
    # None = every weight has the chip's precision.weight_bits
    weight_bits: dict[str, int | list[int]] | None = None
    runs: list[Run] = field(default_factory=list)
    shared: list[SharedRun] = field(default_factory=list)
    # does the chip fire blocks of one layer on disjoint rows and columns in one MVM
    # (HardwareSpec.fires_blocks_together)? Decides how many turns shared placements take.
    fires_together: bool = False
    write_cycles: list[int] = field(default_factory=list)  # per reprogramming round (rounds > 1)
    report: dict[str, Any] = field(default_factory=dict)
    digital: list[DigitalStage] = field(default_factory=list)  # costed layers without weights
    # feature-map producers (conv, fc, pool, add), kept where the hardware prices them: a `dataflow` section
    # (line-buffer pipeline) or MNSIM's layout (a tile per pooling layer)
    flow: list[FlowNode] = field(default_factory=list)

    @property
    def pool_layers(self) -> int:
        """Pooling layers of the network (MNSIM's layout gives each a tile of its own)."""
        return sum(1 for node in self.flow if node.kind == "pool")

    def layer(self, name: str) -> LayerPlan:
        for plan in self.layers:
            if plan.name == name:
                return plan
        raise KeyError(name)

    # ---- every block, expanded from the runs on first use ----

    @property
    def blocks(self) -> list[PlacedBlock]:
        """Every placed block (the explicit ones, then the runs' and shared runs' instances)."""
        if not self.runs and not self.shared:
            return self.placed
        if "_expanded" not in self.__dict__:
            self.__dict__["_expanded"] = [*self.placed, *self.iter_run_blocks()]
        return self.__dict__["_expanded"]

    def iter_run_blocks(self) -> Iterator[PlacedBlock]:
        plans = {p.name: p for p in self.layers}

        def block(name: str, copy: int, index: int, crossbar: int, row: int, col: int, round_: int) -> PlacedBlock:
            b = plans[name].copy_blocks[index]
            return PlacedBlock(name, copy, b.group0, b.group1, b.row0, b.row1, b.col0, b.col1, crossbar, row, col,
                               b.height, b.width, b.weights, round_)

        for run in self.runs:
            n = run.block1 - run.block0
            for i in range(run.instances):
                c, j = divmod(i, n)
                row, col = run.slots[i % run.per_crossbar]
                yield block(run.layer, run.copy0 + c, run.block0 + j, run.crossbar0 + i // run.per_crossbar, row, col,
                            run.round)
        for sr in self.shared:
            for x in range(sr.crossbars):
                for s in sr.shares:
                    c, j = divmod(s.instance0 + x, s.block1 - s.block0)
                    yield block(s.layer, c, s.block0 + j, sr.crossbar0 + x, s.row, s.col, sr.round)

    def blocks_of(self, name: str) -> list[PlacedBlock]:
        if "_by_layer" not in self.__dict__:
            by: dict[str, list[PlacedBlock]] = {}
            for b in self.blocks:
                by.setdefault(b.layer, []).append(b)
            self.__dict__["_by_layer"] = by
        return self.__dict__["_by_layer"].get(name, [])

    def expanded(self) -> Mapping:
        """The same mapping with every block explicit (no runs): for tools that edit blocks."""
        return replace(self, placed=list(self.blocks), runs=[], shared=[], report=dict(self.report))

    def round_crossbars(self) -> dict[int, int]:
        """Crossbars each reprogramming round uses (written before it runs), from the runs and blocks."""
        used: dict[int, set[int]] = {}
        for run in self.runs:
            used.setdefault(run.round, set()).update(range(run.crossbar0, run.crossbar0 + run.crossbars))
        for sr in self.shared:
            used.setdefault(sr.round, set()).update(range(sr.crossbar0, sr.crossbar0 + sr.crossbars))
        for b in self.placed:
            used.setdefault(b.round, set()).add(b.crossbar)
        return {r: len(xs) for r, xs in sorted(used.items())}

    @property
    def weight_cells(self) -> int:
        plans = {p.name: p for p in self.layers}
        runs = sum(r.copies * plans[r.layer].range_totals(r.block0, r.block1)[0] for r in self.runs)
        shared = sum(sr.crossbars * shared_weights(plans[s.layer], s) for sr in self.shared for s in sr.shares)
        return runs + shared + sum(b.weights for b in self.placed)

    # ---- JSON ----

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mapping:
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        d["layers"] = [
            LayerPlan(**{**lp, "form": Form(**lp["form"]), "row_cuts": tuple(lp.get("row_cuts", ())),
                         "col_cuts": tuple(lp.get("col_cuts", ()))})
            for lp in d["layers"]
        ]
        if "blocks" in d:  # files written before runs existed
            d["placed"] = d.pop("blocks")
        d["placed"] = [PlacedBlock(**b) for b in d["placed"]]
        d["runs"] = [Run(**{**r, "slots": tuple(tuple(s) for s in r["slots"])}) for r in d.get("runs", [])]
        d["shared"] = [SharedRun(**{**sr, "shares": tuple(Share(**s) for s in sr["shares"])})
                       for sr in d.get("shared", [])]
        d["digital"] = [DigitalStage(**st) for st in d.get("digital", [])]
        d["flow"] = [FlowNode(**{**f, "inputs": tuple(f["inputs"]), "in_hw": tuple(f["in_hw"]),
                                 "out_hw": tuple(f["out_hw"]), "consumers": tuple(f["consumers"])})
                     for f in d.get("flow", [])]
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Mapping:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def execute(self, graph: Any, x: Any, hw: Any) -> dict[str, Any]:
        """Run the network with every MVM computed from the crossbars as placed (ideal devices).

        Returns the output of every layer by name; see `xbarforge.compiler.execute`.
        """
        from xbarforge.compiler.execute import execute_mapping

        return execute_mapping(self, graph, hw, x)


def new_mapping(graph: Any, hw: Any, plans: list[LayerPlan], placed: list[PlacedBlock], runs: list[Run],
                crossbars: int, budget: int | None, schedule: str, objective: str, seed: int, rounds: int = 1,
                fewest: int | None = None) -> Mapping:
    """A Mapping of `graph` (a LayerGraph) on `hw` (a HardwareSpec): the fields every compiler path fills alike."""
    return Mapping(
        model=graph.name, input_shape=tuple(graph.input_shape), hardware=hw.name,
        crossbar_rows=hw.crossbar.rows, crossbar_cols=hw.crossbar.cols, crossbars_budget=budget,
        layers=plans, placed=placed, crossbars_used=crossbars, rounds=rounds, min_crossbars=fewest,
        schedule=schedule, objective=objective, seed=seed, runs=runs, fires_together=hw.fires_blocks_together,
        digital=digital_stages(graph, hw),
        flow=flow_nodes(graph) if hw.dataflow is not None or hw.chip.layout == "mnsim" else [],
    )


def shared_weights(plan: LayerPlan, share: Share) -> int:
    """Weight cells of one instance of a share (its blocks all have one shape)."""
    return plan.range_totals(share.block0, share.block0 + 1)[0]

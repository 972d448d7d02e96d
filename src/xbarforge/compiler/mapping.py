"""Mapping: where every block of every copy of every layer lives on the chip.

The Mapping is the compiler's output and the contract with the cost model and the simulator: a
list of placed blocks (layer, copy, weight rows/columns, groups, crossbar id, row/column offset)
plus the per-layer choices (form, copies) and the report the cost model computed. It serializes
to JSON and loads back without the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xbarforge.compiler.lower import Form, LoweredLayer


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

    @property
    def cycles(self) -> int:
        """Layer time in MVM cycles: tau times the blocks that take turns."""
        return self.tau * self.serial

    @classmethod
    def from_lowered(cls, low: LoweredLayer, copies: int, preds: list[str] | None = None) -> LayerPlan:
        """The plan for `copies` copies of a lowered layer (serial and round set after placement)."""
        layer = low.layer
        return cls(
            name=layer.name, kind=layer.kind, describe=layer.describe(), form=low.form, copies=copies,
            blocks_per_copy=len(low.blocks), mvms_per_pixel=low.mvms_per_pixel, pixels=low.pixels,
            rows_per_group=layer.rows_per_group, cols_per_group=low.group_cols,
            groups=layer.groups, tau=low.tau(copies), preds=list(preds or []),
            out_elems=math.prod(layer.out_shape),
        )


@dataclass
class Mapping:
    model: str
    input_shape: tuple[int, ...]
    hardware: str
    crossbar_rows: int
    crossbar_cols: int
    crossbars_budget: int | None
    layers: list[LayerPlan]
    blocks: list[PlacedBlock]
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
    report: dict[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> LayerPlan:
        for plan in self.layers:
            if plan.name == name:
                return plan
        raise KeyError(name)

    def blocks_of(self, name: str) -> list[PlacedBlock]:
        return [b for b in self.blocks if b.layer == name]

    @property
    def weight_cells(self) -> int:
        return sum(b.weights for b in self.blocks)

    # ---- JSON ----

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mapping:
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        d["layers"] = [LayerPlan(**{**lp, "form": Form(**lp["form"])}) for lp in d["layers"]]
        d["blocks"] = [PlacedBlock(**b) for b in d["blocks"]]
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

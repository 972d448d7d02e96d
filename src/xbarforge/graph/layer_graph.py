"""LayerGraph: the DAG every part of xbarforge reads.

A captured network becomes a list of `Layer` records in topological order. MVM layers (conv,
linear) carry the shapes the compiler needs and their float weights (batch norm already folded
in); digital ops (pool, add, concat, activation, ...) carry only shapes, so the cost model can
count the work they do. A "matmul" layer multiplies two activations (attention's Q K^T and
attention x V): it has no weights to store, so it runs on the digital unit (or on crossbars
written at run time, see `cost.digital`); its `attrs` hold the product's batch, m, k and n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

MVM_KINDS = ("conv", "linear")
DIGITAL_KINDS = (
    "input",
    "output",
    "pool",
    "global_pool",
    "add",
    "mul",
    "concat",
    "act",
    "flatten",
    "reshape",
    "pad",
    "dropout",
    "identity",
    "norm",
    "split",
    "transpose",
    "mean",
    "reduce",
    "matmul",
    "resize",
)


@dataclass
class Layer:
    """One node of the graph.

    `in_shape`/`out_shape` are per-sample shapes without the batch dimension: (C, H, W) for
    feature maps, (F,) or (T, F) for linear inputs.
    """

    name: str
    kind: str
    inputs: list[str] = field(default_factory=list)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    # MVM layers only
    in_channels: int = 0
    out_channels: int = 0
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_mvm(self) -> bool:
        return self.kind in MVM_KINDS

    @property
    def rows_per_group(self) -> int:
        """Rows of one group's weight matrix: k*k*C_in/groups (conv) or in_features (linear)."""
        kh, kw = self.kernel
        return kh * kw * (self.in_channels // self.groups)

    @property
    def cols_per_group(self) -> int:
        """Output channels of one group (weights per row, before bit slicing)."""
        return self.out_channels // self.groups

    @property
    def output_pixels(self) -> int:
        """MVM positions per sample: output H*W for a conv, leading dims for a linear layer."""
        if self.kind == "conv":
            return int(self.out_shape[1] * self.out_shape[2])
        return int(math.prod(self.out_shape[:-1])) if len(self.out_shape) > 1 else 1

    @property
    def num_weights(self) -> int:
        return self.rows_per_group * self.cols_per_group * self.groups

    @property
    def macs(self) -> int:
        return self.num_weights * self.output_pixels

    def describe(self) -> str:
        if self.kind == "conv":
            kh, kw = self.kernel
            g = f" g{self.groups}" if self.groups > 1 else ""
            return f"conv{kh}x{kw}/{self.stride[0]} {self.in_channels}->{self.out_channels}{g}"
        if self.kind == "linear":
            return f"linear {self.in_channels}->{self.out_channels}"
        if self.kind == "matmul" and "m" in self.attrs:
            a = self.attrs
            heads = f"{a['batch']}x" if a["batch"] > 1 else ""
            return f"matmul {heads}({a['m']}x{a['k']})@({a['k']}x{a['n']})"
        if self.kind in ("act", "norm", "reduce") and "fn" in self.attrs:
            return f"{self.kind} {self.attrs['fn']}"
        return self.kind


def token_shapes(full_in: tuple[int, ...], full_out: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of a linear layer whose leading dimension is not the sample.

    nn.MultiheadAttention (sequence first) and its ONNX export apply their projections to
    (tokens, 1, E) or (tokens, E) tensors; dropping the leading dimension as the batch would leave
    one output pixel instead of one per token. Capture runs one sample, so here every vector of the
    whole shape is a token: (tokens, features). Empty when the leading dimension is the sample.
    """
    if len(full_in) < 2 or len(full_out) < 2 or full_in[0] == 1:
        return {}
    return {"in_shape": (math.prod(full_in[:-1]), full_in[-1]), "out_shape": (math.prod(full_out[:-1]), full_out[-1])}


def matmul_attrs(out: tuple[int, ...], k: int) -> dict[str, int]:
    """Batch, m, k, n and MACs of one sample's activation x activation product.

    `out` is the product's full shape as captured, batch of one sample included ((1, heads, m, n),
    or (heads, m, n) when a model folds heads into the batch dimension, which is why the sample
    dimension is not dropped here); `k` is the contracted size. MACs per sample = batch*m*k*n.
    """
    if len(out) >= 2:
        batch, m, n = math.prod(out[:-2]), out[-2], out[-1]
    else:
        batch, m, n = 1, 1, (out[0] if out else 1)
    return {"batch": int(batch), "m": int(m), "k": int(k), "n": int(n), "macs": int(batch * m * k * n)}


@dataclass
class LayerGraph:
    """A network as a DAG of layers in topological order.

    `source` says how it was captured: "fx", "onnx", or "onnx-fallback" (a module torch.fx could
    not capture, exported to ONNX; `note` says why; the simulator cannot run such a graph through
    the module).
    """

    name: str
    input_shape: tuple[int, ...]
    layers: list[Layer]
    source: str = "fx"
    note: str = ""

    def __post_init__(self) -> None:
        self._by_name = {layer.name: layer for layer in self.layers}

    def __getitem__(self, name: str) -> Layer:
        return self._by_name[name]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def mvm_layers(self) -> list[Layer]:
        """Conv and linear layers in execution (topological) order: the RNC chain."""
        return [layer for layer in self.layers if layer.is_mvm]

    @property
    def num_weights(self) -> int:
        return sum(layer.num_weights for layer in self.mvm_layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.mvm_layers)

    def mvm_predecessors(self) -> dict[str, list[str]]:
        """For each MVM layer, the MVM layers it reads from (through any digital ops).

        The DAG-aware schedule uses this: two MVM layers with no path between them can run side
        by side. Computed once per graph (the compiler asks for it on every candidate mapping).
        """
        cached = self.__dict__.get("_mvm_preds")
        if cached is not None:
            return {name: list(preds) for name, preds in cached.items()}
        memo: dict[str, set[str]] = {}
        for layer in self.layers:
            found: set[str] = set()
            for src in layer.inputs:
                if src not in self._by_name:
                    continue
                if self._by_name[src].is_mvm:
                    found.add(src)
                else:
                    found |= memo.get(src, set())
            memo[layer.name] = found
        order = {layer.name: i for i, layer in enumerate(self.layers)}
        self._mvm_preds = {
            layer.name: sorted(memo[layer.name], key=order.__getitem__) for layer in self.mvm_layers
        }
        return {name: list(preds) for name, preds in self._mvm_preds.items()}

    def consumers(self) -> dict[str, list[str]]:
        """For each layer, the layers that read its output (in topological order)."""
        out: dict[str, list[str]] = {layer.name: [] for layer in self.layers}
        for layer in self.layers:
            for src in layer.inputs:
                if src in out and layer.name not in out[src]:
                    out[src].append(layer.name)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (no tensors): name, input shape, totals and one dict per layer."""
        layers = []
        for layer in self.layers:
            d: dict[str, Any] = {
                "name": layer.name,
                "kind": layer.kind,
                "inputs": list(layer.inputs),
                "in_shape": list(layer.in_shape),
                "out_shape": list(layer.out_shape),
            }
            if layer.is_mvm:
                d.update(
                    in_channels=layer.in_channels,
                    out_channels=layer.out_channels,
                    kernel=list(layer.kernel),
                    stride=list(layer.stride),
                    padding=list(layer.padding),
                    dilation=list(layer.dilation),
                    groups=layer.groups,
                    has_bias=layer.bias is not None,
                    num_weights=layer.num_weights,
                    macs=layer.macs,
                )
            if layer.attrs:
                d["attrs"] = _jsonable(layer.attrs)
            layers.append(d)
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_layers": len(self.layers),
            "num_mvm_layers": len(self.mvm_layers),
            "num_weights": self.num_weights,
            "macs": self.macs,
            "layers": layers,
        }

    def summary(self, mvm_only: bool = False) -> str:
        """A plain-text table: one row per layer (or per MVM layer), with totals."""
        rows = [("#", "name", "kind", "inputs", "in_shape", "out_shape", "weights", "MACs")]
        layers = self.mvm_layers if mvm_only else self.layers
        for i, layer in enumerate(layers):
            shape = lambda s: "x".join(str(v) for v in s) or "-"  # noqa: E731
            rows.append(
                (
                    str(i),
                    layer.name,
                    layer.describe(),
                    ",".join(layer.inputs) or "-",
                    shape(layer.in_shape),
                    shape(layer.out_shape),
                    f"{layer.num_weights:,}" if layer.is_mvm else "",
                    f"{layer.macs:,}" if layer.is_mvm else "",
                )
            )
        widths = [min(max(len(r[c]) for r in rows), 48) for c in range(len(rows[0]))]
        lines = []
        for row in rows:
            cells = [
                cell[:48].ljust(width) if c < 6 else cell.rjust(width)
                for c, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        lines.insert(1, "-" * len(lines[0]))
        lines.append(
            f"{self.name}: input {'x'.join(map(str, self.input_shape))}, {len(self.layers)} layers, "
            f"{len(self.mvm_layers)} MVM layers, {self.num_weights:,} weights, {self.macs:,} MACs"
        )
        return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """Attrs made JSON-friendly: tuples to lists, tensors to shapes, other objects to str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return {"tensor_shape": list(value.shape)}
    return str(value)

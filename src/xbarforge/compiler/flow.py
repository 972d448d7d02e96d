"""The layers that move data pixel by pixel: what a line-buffer pipeline schedules (`cost.pixel_pipeline`).

A Mapping keeps, besides its MVM layers, the shapes of every layer that produces a feature map on the
chip: conv and fc layers, pooling layers (a pooling unit) and residual additions (an accumulator). Layers
fused into those (activations, batch norm, flatten, dropout) pass their input through; a layer of any
other kind (concat, upsampling, attention) is also passed through, so its time is not counted here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FlowNode:
    """One producer of a feature map: its kind, inputs (other flow nodes) and shapes."""

    name: str
    kind: str  # conv | fc | pool | add
    inputs: tuple[str, ...] = ()
    in_channels: int = 0
    in_hw: tuple[int, int] = (1, 1)
    out_channels: int = 0
    out_hw: tuple[int, int] = (1, 1)
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    consumers: tuple[str, ...] = field(default=())

    @property
    def positions(self) -> int:
        """Output positions produced one after another (one for an fc layer)."""
        return 1 if self.kind == "fc" else self.out_hw[0] * self.out_hw[1]


def _first(value: Any, default: int) -> int:
    """An attribute that may be a number or a per-axis tuple (ONNX): its first entry."""
    if value is None:
        return default
    if isinstance(value, list | tuple):
        return int(value[0]) if value else default
    return int(value)


def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    return (int(shape[1]), int(shape[2])) if len(shape) == 3 else (1, 1)


def flow_nodes(graph: Any) -> list[FlowNode]:
    """The graph's flow nodes in execution order, with inputs resolved through pass-through layers."""
    alias: dict[str, str | None] = {}
    found: list[tuple[Any, str, tuple[str, ...]]] = []  # (layer, kind, inputs)
    users: dict[str, list[str]] = {}
    for layer in graph.layers:
        ins = tuple(dict.fromkeys(a for a in (alias.get(i) for i in layer.inputs) if a is not None))
        if layer.is_mvm:
            kind = "conv" if len(layer.in_shape) == 3 else "fc"
        elif layer.kind in ("pool", "global_pool"):
            kind = "pool"
        elif layer.kind == "add" and len(ins) > 1:
            kind = "add"
        else:
            alias[layer.name] = ins[0] if ins else None
            continue
        alias[layer.name] = layer.name
        found.append((layer, kind, ins))
        users[layer.name] = []
        for i in ins:
            users[i].append(layer.name)
    return [_node(layer, kind, ins, tuple(users[layer.name])) for layer, kind, ins in found]


def _node(layer: Any, kind: str, ins: tuple[str, ...], consumers: tuple[str, ...]) -> FlowNode:
    if kind in ("conv", "fc"):
        conv = kind == "conv"
        return FlowNode(layer.name, kind, ins, layer.in_channels if conv else layer.rows_per_group,
                        _hw(layer.in_shape), layer.out_channels, _hw(layer.out_shape), layer.kernel[0],
                        layer.stride[0], layer.padding[0], consumers)
    if kind == "pool":
        k = _first(layer.attrs.get("kernel"), layer.in_shape[-1] if layer.kind == "global_pool" else 1)
        return FlowNode(layer.name, "pool", ins, int(layer.in_shape[0]), _hw(layer.in_shape), int(layer.out_shape[0]),
                        _hw(layer.out_shape), k, _first(layer.attrs.get("stride"), k),
                        _first(layer.attrs.get("padding"), 0), consumers)
    c = int(layer.out_shape[0])
    return FlowNode(layer.name, "add", ins, c, _hw(layer.out_shape), c, _hw(layer.out_shape), consumers=consumers)

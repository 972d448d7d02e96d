"""Capture a `torch.nn.Module` as a LayerGraph with torch.fx.

`capture_module` traces the model with `torch.fx.symbolic_trace`, runs shape propagation on one
zero sample (batch 1, eval mode, no grad) and turns every fx node into a `Layer`:

* conv/linear modules and their functional forms (`F.conv2d`, `F.linear`, `x @ W` with a
  parameter `W`) become MVM layers carrying detached float32 copies of their weights;
* products of two activations (`q @ k.transpose(-2, -1)`, `torch.bmm`, two-operand
  `torch.einsum`) become digital "matmul" layers; `F.scaled_dot_product_attention` becomes the
  three layers it computes (Q K^T, softmax, x V), as an ONNX export writes it;
* a batch norm whose only producer is an MVM layer that feeds nothing else is folded into that
  layer's weight and bias (eval-mode formula, running statistics); other batch norms are "norm";
* the digital operators in `DIGITAL_KINDS` become digital layers;
* `size()`/`.shape` arithmetic, parameters and anything computed only from constants are folded
  away (they are not layers);
* any other operator raises `CaptureError` with one line naming the operator and the fx node.
"""

from __future__ import annotations

import math
import operator
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata, _extract_tensor_metadata

from xbarforge.errors import CaptureError
from xbarforge.graph.layer_graph import Layer, LayerGraph, matmul_attrs, token_shapes

__all__ = ["TraceFailure", "UnsupportedOperator", "capture_module", "fold_batchnorm", "trace_module"]

# --------------------------------------------------------------------------------------------
# operator tables
# --------------------------------------------------------------------------------------------

_ACT_MODULES: dict[type, str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
    nn.GELU: "gelu",
    nn.Tanh: "tanh",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "elu",
    nn.Hardtanh: "hardtanh",
    nn.Mish: "mish",
    nn.Softplus: "softplus",
    nn.PReLU: "prelu",
    nn.Softmax: "softmax",
    nn.LogSoftmax: "log_softmax",
}

_MODULE_KINDS: dict[type, str] = {
    nn.MaxPool1d: "pool",
    nn.MaxPool2d: "pool",
    nn.AvgPool1d: "pool",
    nn.AvgPool2d: "pool",
    nn.Flatten: "flatten",
    nn.Unflatten: "reshape",
    nn.Dropout: "dropout",
    nn.Dropout1d: "dropout",
    nn.Dropout2d: "dropout",
    nn.AlphaDropout: "dropout",
    nn.Identity: "identity",
    nn.ZeroPad2d: "pad",
    nn.ConstantPad1d: "pad",
    nn.ConstantPad2d: "pad",
    nn.ReflectionPad1d: "pad",
    nn.ReflectionPad2d: "pad",
    nn.ReplicationPad1d: "pad",
    nn.ReplicationPad2d: "pad",
    nn.CircularPad1d: "pad",
    nn.CircularPad2d: "pad",
    nn.LayerNorm: "norm",
    nn.GroupNorm: "norm",
    nn.InstanceNorm1d: "norm",
    nn.InstanceNorm2d: "norm",
    nn.LocalResponseNorm: "norm",
    nn.ChannelShuffle: "transpose",
}

_ADAPTIVE_MODULES: dict[type, str] = {
    nn.AdaptiveAvgPool1d: "avg",
    nn.AdaptiveAvgPool2d: "avg",
    nn.AdaptiveMaxPool1d: "max",
    nn.AdaptiveMaxPool2d: "max",
}

_ACT_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.relu: "relu",
    F.relu_: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu6: "relu6",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.silu: "silu",
    F.gelu: "gelu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    F.leaky_relu: "leaky_relu",
    F.leaky_relu_: "leaky_relu",
    F.elu: "elu",
    F.elu_: "elu",
    F.hardtanh: "hardtanh",
    F.hardtanh_: "hardtanh",
    torch.sigmoid_: "sigmoid",
    torch.tanh_: "tanh",
    F.mish: "mish",
    F.softplus: "softplus",
    F.softmax: "softmax",
    torch.softmax: "softmax",
    F.log_softmax: "log_softmax",
    torch.log_softmax: "log_softmax",
    torch.clamp: "clamp",
    torch.clip: "clamp",
    torch.exp: "exp",
    torch.sqrt: "sqrt",
    torch.rsqrt: "rsqrt",
    torch.pow: "pow",
    operator.pow: "pow",
    torch.erf: "erf",
    torch.special.erf: "erf",
    torch.reciprocal: "reciprocal",
    torch.abs: "abs",
    operator.neg: "neg",
    torch.neg: "neg",
    torch.log: "log",
    torch.masked_fill: "masked_fill",
    torch.where: "where",
    torch.sin: "sin",
    torch.cos: "cos",
    torch.floor: "floor",
    torch.round: "round",
    torch.ceil: "ceil",
    torch.tril: "tril",
    torch.triu: "triu",
}

_ACT_METHODS: dict[str, str] = {
    "relu": "relu",
    "relu_": "relu",
    "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
    "tanh": "tanh",
    "tanh_": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "clamp": "clamp",
    "clamp_": "clamp",
    "clip": "clamp",
    "exp": "exp",
    "sqrt": "sqrt",
    "rsqrt": "rsqrt",
    "pow": "pow",
    "erf": "erf",
    "reciprocal": "reciprocal",
    "abs": "abs",
    "neg": "neg",
    "log": "log",
    "masked_fill": "masked_fill",
    "masked_fill_": "masked_fill",
    "sin": "sin",
    "cos": "cos",
    "floor": "floor",
    "round": "round",
    "ceil": "ceil",
    "tril": "tril",
    "triu": "triu",
}

_FUNCTION_KINDS: dict[Callable[..., Any], str] = {
    F.max_pool1d: "pool",
    F.max_pool2d: "pool",
    F.avg_pool1d: "pool",
    F.avg_pool2d: "pool",
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    operator.sub: "add",
    operator.isub: "add",
    torch.sub: "add",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    operator.truediv: "mul",
    operator.itruediv: "mul",
    torch.div: "mul",
    torch.cat: "concat",
    torch.concat: "concat",
    torch.concatenate: "concat",
    torch.flatten: "flatten",
    torch.reshape: "reshape",
    torch.squeeze: "reshape",
    torch.unsqueeze: "reshape",
    torch.permute: "transpose",
    torch.transpose: "transpose",
    torch.split: "split",
    torch.chunk: "split",
    torch.unbind: "split",
    F.dropout: "dropout",
    F.dropout1d: "dropout",
    F.dropout2d: "dropout",
    F.alpha_dropout: "dropout",
    F.pad: "pad",
    F.layer_norm: "norm",
    F.group_norm: "norm",
    F.instance_norm: "norm",
    F.local_response_norm: "norm",
    F.normalize: "norm",
    torch.stack: "concat",
    torch.roll: "transpose",
    torch.flip: "transpose",
    torch.gather: "split",
    torch.index_select: "split",
    torch.repeat_interleave: "concat",
    torch.cumsum: "reduce",
    F.interpolate: "resize",
    F.upsample: "resize",
    F.unfold: "reshape",
    F.fold: "reshape",
    F.pixel_shuffle: "reshape",
    F.pixel_unshuffle: "reshape",
}

_ADAPTIVE_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.adaptive_avg_pool1d: "avg",
    F.adaptive_avg_pool2d: "avg",
    F.adaptive_max_pool1d: "max",
    F.adaptive_max_pool2d: "max",
}

_METHOD_KINDS: dict[str, str] = {
    "add": "add",
    "add_": "add",
    "sub": "add",
    "sub_": "add",
    "mul": "mul",
    "mul_": "mul",
    "div": "mul",
    "div_": "mul",
    "flatten": "flatten",
    "view": "reshape",
    "reshape": "reshape",
    "view_as": "reshape",
    "reshape_as": "reshape",
    "squeeze": "reshape",
    "unsqueeze": "reshape",
    "permute": "transpose",
    "transpose": "transpose",
    "t": "transpose",
    "split": "split",
    "chunk": "split",
    "unbind": "split",
    "expand": "reshape",
    "expand_as": "reshape",
    "repeat": "concat",
    "repeat_interleave": "concat",
    "roll": "transpose",
    "flip": "transpose",
    "unfold": "reshape",
    "gather": "split",
    "index_select": "split",
    "cumsum": "reduce",
}

_ARITH_OPS: dict[Callable[..., Any], str] = {
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    operator.sub: "sub",
    operator.isub: "sub",
    torch.sub: "sub",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    operator.truediv: "div",
    operator.itruediv: "div",
    torch.div: "div",
}

# Ops that return their input unchanged for our purposes: no layer, consumers read the producer.
_ALIAS_METHODS = {"contiguous", "clone", "detach", "float", "to", "type", "type_as", "cpu", "requires_grad_"}
_ALIAS_FUNCTIONS: set[Callable[..., Any]] = {torch.clone, torch.detach}

_MATMUL_FUNCTIONS: set[Callable[..., Any]] = {torch.matmul, operator.matmul, torch.bmm}
_MEAN_FUNCTIONS: set[Callable[..., Any]] = {torch.mean}
# Reductions other than the mean (ONNX ReduceSum/ReduceMax/...): kind "reduce" with this fn.
_REDUCE_FUNCTIONS: dict[Callable[..., Any], str] = {
    torch.sum: "sum",
    torch.amax: "max",
    torch.amin: "min",
    torch.prod: "prod",
    torch.logsumexp: "logsumexp",
}
_REDUCE_METHODS: dict[str, str] = {"sum": "sum", "amax": "max", "amin": "min", "prod": "prod", "logsumexp": "logsumexp"}
_BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)

# Positional parameter names of the functional forms we read arguments from.
_CONV_PARAMS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS: dict[str, Any] = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_LINEAR_PARAMS = ("input", "weight", "bias")
_SDPA_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
_MHA_PARAMS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
               "is_causal")
_MHA_DEFAULTS: dict[str, Any] = {"key_padding_mask": None, "need_weights": True, "attn_mask": None,
                                 "average_attn_weights": True, "is_causal": False}
_BN_PARAMS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_BN_DEFAULTS: dict[str, Any] = {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    return line or type(exc).__name__


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    vals = tuple(int(v) for v in value)
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    var: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode batch norm into the preceding MVM layer (output channels on dim 0)."""

    def f64(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device="cpu", dtype=torch.float64)

    mean, var = f64(mean), f64(var)
    gamma64 = torch.ones_like(mean) if gamma is None else f64(gamma)
    beta64 = torch.zeros_like(mean) if beta is None else f64(beta)
    scale = gamma64 / torch.sqrt(var + eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    new_w = (f64(weight) * scale.reshape(shape)).to(torch.float32)
    b = torch.zeros_like(mean) if bias is None else f64(bias)
    new_b = ((b - mean) * scale + beta64).to(torch.float32)
    return new_w.contiguous(), new_b.contiguous()


def _same_pads(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of torch's padding='same' (the extra pixel goes bottom/right)."""
    th = dilation[0] * (kernel[0] - 1)
    tw = dilation[1] * (kernel[1] - 1)
    return (th // 2, tw // 2, th - th // 2, tw - tw // 2)


def _function_name(target: Any) -> str:
    """A readable public name for a function target (only used in error messages)."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    for ns_name, ns in (
        ("torch.nn.functional", F),
        ("torch", torch),
        ("torch.fft", getattr(torch, "fft", None)),
        ("torch.linalg", getattr(torch, "linalg", None)),
        ("torch.special", getattr(torch, "special", None)),
        ("operator", operator),
    ):
        if ns is None:
            continue
        for attr, value in vars(ns).items():
            if value is target and not attr.startswith("_"):
                return f"{ns_name}.{attr}"
    try:
        return torch.fx.node._get_qualified_name(target)
    except Exception:  # pragma: no cover - exotic callables
        return getattr(target, "__name__", repr(target))


class _NameTable:
    """Hands out unique layer names."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, base: str) -> str:
        name = base
        k = 1
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name


class _NodeRunError(Exception):
    """A node failed during shape propagation (carries the node and the original error)."""

    def __init__(self, node: torch.fx.Node, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.node = node
        self.exc = exc


class _Prop(ShapeProp):
    """ShapeProp that also keeps the values of constant nodes (parameters and what derives from them).

    Node failures raise `_NodeRunError` quietly (ShapeProp itself prints a traceback).
    """

    def __init__(self, gm: torch.fx.GraphModule, const_nodes: set[torch.fx.Node]) -> None:
        super().__init__(gm)
        self.const_nodes = const_nodes
        self.values: dict[torch.fx.Node, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            result = torch.fx.Interpreter.run_node(self, n)
        except Exception as exc:
            raise _NodeRunError(n, exc) from exc
        found = False

        def tensor_meta(obj: Any) -> Any:
            nonlocal found
            if isinstance(obj, torch.Tensor):
                found = True
                return _extract_tensor_metadata(obj, include_contiguity=False)
            return obj

        meta = torch.fx.node.map_aggregate(result, tensor_meta)
        if found:
            n.meta["tensor_meta"] = meta
        n.meta["type"] = type(result)
        if n in self.const_nodes:
            self.values[n] = result
        return result


# --------------------------------------------------------------------------------------------
# capture
# --------------------------------------------------------------------------------------------


class _Builder:
    """Walks a shape-propagated fx graph and emits Layers."""

    def __init__(self, gm: torch.fx.GraphModule, prop: _Prop) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.values = prop.values
        self.const_nodes = prop.const_nodes
        self.names = _NameTable()
        self.layers: list[Layer] = []
        # fx node -> name of the layer that holds its value (None: constant or not a tensor)
        self.alias: dict[torch.fx.Node, str | None] = {}
        # fx node -> the MVM layer it produced (for batch-norm / bias folding)
        self.mvm_of: dict[torch.fx.Node, Layer] = {}
        # linear layers made from `x @ W` (they may take the bias of a following add)
        self.from_matmul: set[str] = set()

    # ---- small utilities -------------------------------------------------------------------

    @staticmethod
    def meta_shape(node: Any) -> tuple[int, ...] | list[Any] | None:
        """Per-sample shape(s) of a node's value: a tuple, a list of shapes, or None."""
        if not isinstance(node, torch.fx.Node):
            return None
        meta = node.meta.get("tensor_meta")
        if meta is None:
            return None

        def one(m: Any) -> Any:
            if isinstance(m, TensorMetadata):
                shape = tuple(int(s) for s in m.shape)
                return shape[1:] if shape else ()
            if isinstance(m, list | tuple):
                return [one(x) for x in m]
            if isinstance(m, dict):
                return [one(x) for x in m.values()]
            return None

        return one(meta)

    @staticmethod
    def full_shape(node: Any) -> tuple[int, ...]:
        """A tensor node's whole shape as captured (batch of one sample included)."""
        meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
        return tuple(int(v) for v in meta.shape) if isinstance(meta, TensorMetadata) else ()

    def is_tensor(self, node: torch.fx.Node) -> bool:
        return isinstance(node.meta.get("tensor_meta"), TensorMetadata)

    def produces_tensors(self, node: torch.fx.Node) -> bool:
        return node.meta.get("tensor_meta") is not None

    def data_inputs(self, node: torch.fx.Node) -> list[str]:
        out: list[str] = []
        for src in node.all_input_nodes:
            name = self.alias.get(src)
            if name is not None and name not in out:
                out.append(name)
        return out

    def tensor_in_shapes(self, node: torch.fx.Node) -> list[tuple[int, ...]]:
        """Shapes of the data tensors a node reads, in argument order (repeats kept)."""
        args: list[torch.fx.Node] = []
        torch.fx.node.map_arg((node.args, node.kwargs), args.append)
        shapes: list[tuple[int, ...]] = []
        for src in args:
            if self.alias.get(src) is None:
                continue
            shape = self.meta_shape(src)
            if isinstance(shape, tuple):
                shapes.append(shape)
        return shapes

    def value(self, arg: Any) -> Any:
        """Literal value of an argument (constant nodes resolved), or the node itself."""
        if isinstance(arg, torch.fx.Node):
            if arg in self.values:
                return self.values[arg]
            return arg
        if isinstance(arg, list | tuple):
            return type(arg)(self.value(a) for a in arg)
        return arg

    @staticmethod
    def bind(node: torch.fx.Node, params: Sequence[str], defaults: dict[str, Any]) -> dict[str, Any]:
        bound = dict(defaults)
        for pname, arg in zip(params, node.args, strict=False):
            bound[pname] = arg
        bound.update(node.kwargs)
        return bound

    def base_name(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        base = re.sub(r"_\d+$", "", node.name)
        stack = node.meta.get("nn_module_stack")
        if stack:
            scope = next(reversed(stack.values()))[0]
            if isinstance(scope, str) and scope:
                return f"{scope}.{base}"
        return base

    def op_name(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            mod = self.modules[str(node.target)]
            return f"{type(mod).__module__}.{type(mod).__qualname__}"
        if node.op == "call_method":
            return f"Tensor.{node.target}"
        return _function_name(node.target)

    def unsupported(self, node: torch.fx.Node, why: str = "") -> UnsupportedOperator:
        where = str(node.target) if node.op == "call_module" else node.name
        extra = f" ({why})" if why else ""
        return UnsupportedOperator(f"unsupported operator '{self.op_name(node)}' at node '{where}'{extra}")

    def add_layer(self, node: torch.fx.Node, kind: str, **fields: Any) -> Layer:
        in_shapes = self.tensor_in_shapes(node)
        out = self.meta_shape(node)
        attrs = fields.pop("attrs", {})
        if len(in_shapes) > 1:
            attrs.setdefault("in_shapes", in_shapes)
        if isinstance(out, list):
            attrs.setdefault("out_shapes", out)
            out = in_shapes[0] if in_shapes else ()
        _note_folded_batch(attrs, self.full_shape(node), self.full_shape(self.first_data_arg(node)))
        layer = Layer(
            name=self.names.take(fields.pop("name", None) or self.base_name(node)),
            kind=kind,
            inputs=fields.pop("inputs", None) or self.data_inputs(node),
            in_shape=fields.pop("in_shape", None) or (in_shapes[0] if in_shapes else ()),
            out_shape=fields.pop("out_shape", None) or (out if isinstance(out, tuple) else ()),
            attrs=attrs,
            **fields,
        )
        self.layers.append(layer)
        self.alias[node] = layer.name
        return layer

    # ---- MVM layers ------------------------------------------------------------------------

    def conv_layer(
        self,
        node: torch.fx.Node,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
        padding_mode: str = "zeros",
    ) -> Layer:
        x = node.args[0] if node.args else node.kwargs["input"]
        in_shape = self.meta_shape(x)
        out_shape = self.meta_shape(node)
        assert isinstance(in_shape, tuple) and isinstance(out_shape, tuple)
        w = weight.detach().to(device="cpu", dtype=torch.float32, copy=True)
        one_d = w.dim() == 3
        attrs: dict[str, Any] = {}
        if one_d:
            w = w.unsqueeze(2)
            in_shape = (in_shape[0], 1, in_shape[1])
            out_shape = (out_shape[0], 1, out_shape[1])
            stride = (1, _pair(stride)[0])
            dilation = (1, _pair(dilation)[0])
            if not isinstance(padding, str):
                padding = (0, _pair(padding)[0])
            attrs["conv1d"] = True
        elif w.dim() != 4:
            raise self.unsupported(node, f"{w.dim() - 2}-d convolution")
        kernel = (int(w.shape[2]), int(w.shape[3]))
        stride_t, dilation_t = _pair(stride), _pair(dilation)
        if isinstance(padding, str):
            pads = (0, 0, 0, 0) if padding == "valid" else _same_pads(kernel, dilation_t)
        else:
            p = _pair(padding)
            pads = (p[0], p[1], p[0], p[1])
        inputs = self.data_inputs(node)
        if padding_mode != "zeros" and any(pads):
            # torch pads explicitly (reflect/replicate/circular) and then convolves without padding
            pad_layer = Layer(
                name=self.names.take(f"{self.base_name(node)}.pad"),
                kind="pad",
                inputs=inputs,
                in_shape=in_shape,
                out_shape=(in_shape[0], in_shape[1] + pads[0] + pads[2], in_shape[2] + pads[1] + pads[3]),
                attrs={"mode": padding_mode, "pads": pads},
            )
            self.layers.append(pad_layer)
            inputs = [pad_layer.name]
            in_shape = pad_layer.out_shape
            pads = (0, 0, 0, 0)
        if pads[0] != pads[2] or pads[1] != pads[3]:
            attrs["pads"] = pads
        layer = self.add_layer(
            node,
            "conv",
            inputs=inputs,
            in_shape=in_shape,
            out_shape=out_shape,
            in_channels=int(w.shape[1]) * int(groups),
            out_channels=int(w.shape[0]),
            kernel=kernel,
            stride=stride_t,
            padding=(pads[0], pads[1]),
            dilation=dilation_t,
            groups=int(groups),
            weight=w,
            bias=None if bias is None else bias.detach().to(device="cpu", dtype=torch.float32, copy=True),
            attrs=attrs,
        )
        self.mvm_of[node] = layer
        return layer

    def linear_layer(self, node: torch.fx.Node, weight: torch.Tensor, bias: torch.Tensor | None) -> Layer:
        w = weight.detach().to(device="cpu", dtype=torch.float32, copy=True)
        layer = self.add_layer(
            node,
            "linear",
            **token_shapes(self.full_shape(self.first_data_arg(node)), self.full_shape(node)),
            in_channels=int(w.shape[1]),
            out_channels=int(w.shape[0]),
            weight=w,
            bias=None if bias is None else bias.detach().to(device="cpu", dtype=torch.float32, copy=True),
        )
        self.mvm_of[node] = layer
        return layer

    def const_tensor(self, node: torch.fx.Node, arg: Any, what: str) -> torch.Tensor | None:
        val = self.value(arg)
        if val is None or isinstance(val, torch.Tensor):
            return val
        raise self.unsupported(node, f"{what} is computed from the input, not a parameter")

    # ---- batch norm ------------------------------------------------------------------------

    def try_fold_bn(
        self,
        node: torch.fx.Node,
        mean: torch.Tensor | None,
        var: torch.Tensor | None,
        gamma: torch.Tensor | None,
        beta: torch.Tensor | None,
        eps: float,
    ) -> bool:
        src = node.args[0] if node.args else node.kwargs.get("input")
        if not isinstance(src, torch.fx.Node) or src not in self.mvm_of or mean is None or var is None:
            return False
        layer = self.mvm_of[src]
        if len(src.users) != 1 or mean.numel() != layer.out_channels:
            return False
        src_shape = self.meta_shape(src)
        if layer.kind == "linear" and not (isinstance(src_shape, tuple) and len(src_shape) == 1):
            return False  # BatchNorm1d on (N, T, F) normalizes T, not the output features
        assert layer.weight is not None
        layer.weight, layer.bias = fold_batchnorm(layer.weight, layer.bias, mean, var, gamma, beta, eps)
        layer.attrs["folded_bn"] = self.base_name(node)
        self.alias[node] = layer.name
        del self.mvm_of[src]
        return True

    # ---- dispatch --------------------------------------------------------------------------

    def handle(self, node: torch.fx.Node) -> None:
        if node.op == "call_module":
            self.handle_module(node)
        elif node.op == "call_function":
            self.handle_function(node)
        elif node.op == "call_method":
            self.handle_method(node)
        else:  # pragma: no cover - fx has no other op kinds with data inputs
            raise self.unsupported(node)

    def handle_module(self, node: torch.fx.Node) -> None:
        mod = self.modules[str(node.target)]
        mtype = type(mod)
        if isinstance(mod, nn.Conv2d | nn.Conv1d) and mtype.forward in (nn.Conv2d.forward, nn.Conv1d.forward):
            self.conv_layer(
                node,
                mod.weight,
                mod.bias,
                mod.stride,
                mod.padding,
                mod.dilation,
                mod.groups,
                mod.padding_mode,
            )
        elif isinstance(mod, nn.Linear) and mtype.forward is nn.Linear.forward:
            self.linear_layer(node, mod.weight, mod.bias)
        elif isinstance(mod, nn.MultiheadAttention) and mtype.forward is nn.MultiheadAttention.forward:
            self.multihead_attention(node, mod)
        elif isinstance(mod, _BN_MODULES) and mtype.forward is nn.modules.batchnorm._BatchNorm.forward:
            if not self.try_fold_bn(node, mod.running_mean, mod.running_var, mod.weight, mod.bias, mod.eps):
                self.add_layer(node, "norm", attrs={"fn": "batch_norm"})
        elif mtype in _ACT_MODULES:
            self.add_layer(node, "act", attrs={"fn": _ACT_MODULES[mtype]})
        elif mtype in _ADAPTIVE_MODULES:
            self.adaptive_pool(node, _ADAPTIVE_MODULES[mtype])
        elif mtype in _MODULE_KINDS:
            kind = _MODULE_KINDS[mtype]
            attrs: dict[str, Any] = {}
            if kind == "pool":
                attrs = {
                    "fn": "max" if "Max" in mtype.__name__ else "avg",
                    "kernel": mod.kernel_size,
                    "stride": mod.stride,
                    "padding": mod.padding,
                }
            elif kind == "norm":
                attrs = {"fn": mtype.__name__}
            self.add_layer(node, kind, attrs=attrs)
        else:
            raise self.unsupported(node)

    def adaptive_pool(self, node: torch.fx.Node, fn: str) -> None:
        out = self.meta_shape(node)
        spatial = out[1:] if isinstance(out, tuple) else (2,)
        kind = "global_pool" if all(s == 1 for s in spatial) else "pool"
        self.add_layer(node, kind, attrs={"fn": fn})

    def mean_like(self, node: torch.fx.Node, dims: Any) -> None:
        src = self.meta_shape(node.args[0])
        rank = len(src) + 1 if isinstance(src, tuple) else 0
        if isinstance(dims, int):
            dims = (dims,)
        norm = sorted({int(d) % rank for d in dims}) if dims is not None and rank else []
        if rank >= 3 and norm == list(range(2, rank)):
            self.add_layer(node, "global_pool", attrs={"fn": "avg"})
        else:
            self.add_layer(node, "mean", attrs={"dims": tuple(norm)})

    def act_attrs(self, node: torch.fx.Node, fn: str) -> dict[str, Any]:
        if fn == "clamp":
            bound = self.bind(node, ("input", "min", "max"), {"min": None, "max": None})
            lo, hi = self.value(bound["min"]), self.value(bound["max"])
            if lo == 0 and hi == 6:
                return {"fn": "relu6"}
            if lo == 0 and hi is None:
                return {"fn": "relu"}
            return {"fn": "clamp", "min": lo, "max": hi}
        return {"fn": fn}

    def handle_function(self, node: torch.fx.Node) -> None:
        target = node.target
        if target is operator.getitem:
            src = node.args[0]
            if isinstance(src, torch.fx.Node) and not self.is_tensor(src):
                # picking one output of a tuple-valued layer (split, chunk): read that layer
                self.alias[node] = self.alias.get(src)
            else:
                self.add_layer(node, "split", attrs={"fn": "getitem"})
            return
        if target in _ALIAS_FUNCTIONS:
            self.alias[node] = self.alias.get(node.args[0])  # type: ignore[arg-type]
            return
        if target in (F.conv1d, F.conv2d):
            b = self.bind(node, _CONV_PARAMS, _CONV_DEFAULTS)
            w = self.const_tensor(node, b["weight"], "conv weight")
            assert w is not None
            bias = self.const_tensor(node, b["bias"], "conv bias")
            args = [self.value(b[k]) for k in ("stride", "padding", "dilation", "groups")]
            if any(isinstance(a, torch.fx.Node) for a in args):
                raise self.unsupported(node, "conv arguments computed at run time")
            self.conv_layer(node, w, bias, *args)
            return
        if target is F.linear:
            b = self.bind(node, _LINEAR_PARAMS, {"bias": None})
            w = self.const_tensor(node, b["weight"], "linear weight")
            assert w is not None
            self.linear_layer(node, w, self.const_tensor(node, b["bias"], "linear bias"))
            return
        if target in _MATMUL_FUNCTIONS:
            self.matmul(node, node.args[0], node.args[1])
            return
        if target is torch.einsum:
            self.einsum(node)
            return
        if target is F.scaled_dot_product_attention:
            self.attention(node)
            return
        if target in _REDUCE_FUNCTIONS:
            self.add_layer(node, "reduce", attrs={"fn": _REDUCE_FUNCTIONS[target]})
            return
        if target is F.batch_norm:
            b = self.bind(node, _BN_PARAMS, _BN_DEFAULTS)
            vals = [self.value(b[k]) for k in ("running_mean", "running_var", "weight", "bias")]
            if any(isinstance(v, torch.fx.Node) for v in vals):
                raise self.unsupported(node, "batch-norm statistics computed at run time")
            if self.value(b["training"]) is True or not self.try_fold_bn(node, *vals, float(b["eps"])):
                self.add_layer(node, "norm", attrs={"fn": "batch_norm"})
            return
        if target in _ACT_FUNCTIONS:
            self.add_layer(node, "act", attrs=self.act_attrs(node, _ACT_FUNCTIONS[target]))
            return
        if target in _ADAPTIVE_FUNCTIONS:
            self.adaptive_pool(node, _ADAPTIVE_FUNCTIONS[target])
            return
        if target in _MEAN_FUNCTIONS:
            b = self.bind(node, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
            self.mean_like(node, b["dim"])
            return
        if target in _FUNCTION_KINDS:
            kind = _FUNCTION_KINDS[target]
            if kind in ("add", "mul") and self.try_fold_matmul_bias(node):
                return
            self.add_layer(node, kind, attrs=self.op_attrs(node, kind))
            return
        raise self.unsupported(node)

    def op_attrs(self, node: torch.fx.Node, kind: str) -> dict[str, Any]:
        if kind in ("add", "mul"):
            return {"op": _ARITH_OPS.get(node.target, kind)}
        if kind == "pool":
            return {"fn": "max" if "max" in self.op_name(node) else "avg"}
        if kind in ("norm", "reduce", "resize"):
            return {"fn": getattr(node.target, "__name__", kind)}
        return {}

    def handle_method(self, node: torch.fx.Node) -> None:
        name = str(node.target)
        if name in ("size", "dim", "numel"):
            self.alias[node] = None
            return
        if name in _ALIAS_METHODS:
            self.alias[node] = self.alias.get(node.args[0])  # type: ignore[arg-type]
            return
        if name in ("matmul", "bmm"):
            self.matmul(node, node.args[0], node.args[1])
            return
        if name in _REDUCE_METHODS:
            self.add_layer(node, "reduce", attrs={"fn": _REDUCE_METHODS[name]})
            return
        if name in _ACT_METHODS:
            self.add_layer(node, "act", attrs=self.act_attrs(node, _ACT_METHODS[name]))
            return
        if name == "mean":
            b = self.bind(node, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
            self.mean_like(node, b["dim"])
            return
        if name in _METHOD_KINDS:
            kind = _METHOD_KINDS[name]
            if kind in ("add", "mul") and self.try_fold_matmul_bias(node):
                return
            self.add_layer(node, kind, attrs={"op": name.rstrip("_")} if kind in ("add", "mul") else {})
            return
        raise self.unsupported(node)

    def is_data(self, arg: Any) -> bool:
        return isinstance(arg, torch.fx.Node) and self.alias.get(arg) is not None

    def matmul(self, node: torch.fx.Node, lhs: Any, rhs: Any) -> None:
        """`x @ W` with a 2-d parameter W is a linear layer; `a @ b` of two activations is digital."""
        if self.is_data(lhs) and self.is_data(rhs):
            k = self.full_shape(lhs)[-1] if self.full_shape(lhs) else 1
            self.add_layer(node, "matmul", attrs=matmul_attrs(self.full_shape(node), k))
            return
        w = self.value(rhs)
        if not isinstance(w, torch.Tensor) or w.dim() != 2 or not self.is_data(lhs):
            raise self.unsupported(node, "a product with a parameter is captured only as input @ 2-d parameter")
        layer = self.linear_layer(node, w.t(), None)
        self.from_matmul.add(layer.name)

    def einsum(self, node: torch.fx.Node) -> None:
        """Two-operand einsum of activations (attention written as einsum): a digital matmul."""
        equation = node.args[0]
        operands = list(node.args[1]) if len(node.args) == 2 and isinstance(node.args[1], list | tuple) else list(
            node.args[1:]
        )
        if not isinstance(equation, str) or len(operands) != 2 or not all(self.is_data(o) for o in operands):
            raise self.unsupported(node, "einsum is captured only as a product of two activations")
        lhs, _, out_idx = equation.replace(" ", "").partition("->")
        terms = lhs.split(",")
        sizes: dict[str, int] = {}
        for term, op in zip(terms, operands, strict=True):
            for letter, size in zip(term, self.full_shape(op), strict=False):
                sizes[letter] = max(sizes.get(letter, 1), size)
        contracted = [c for c in sizes if c not in out_idx]
        k = math.prod(sizes[c] for c in contracted) if contracted else 1
        self.add_layer(node, "matmul", attrs=matmul_attrs(self.full_shape(node), k))

    def attention(self, node: torch.fx.Node) -> None:
        """`F.scaled_dot_product_attention`: Q K^T, softmax and x V as three digital layers."""
        b = self.bind(node, _SDPA_PARAMS, {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None})
        q, k, v = b["query"], b["key"], b["value"]
        if not all(self.is_data(t) for t in (q, k, v)):
            raise self.unsupported(node, "attention with a query, key or value that is a parameter")
        qs, ks, vs = self.full_shape(q), self.full_shape(k), self.full_shape(v)
        scores = (*qs[:-1], ks[-2])
        base = self.base_name(node)
        qk = self.add_layer(
            node, "matmul", name=f"{base}.qk", inputs=self.data_inputs_of([q, k]),
            in_shape=qs[1:], out_shape=scores[1:], attrs=matmul_attrs(scores, qs[-1]),
        )
        qk.attrs["in_shapes"] = [qs[1:], ks[1:]]
        soft = self.add_layer(
            node, "act", name=f"{base}.softmax", inputs=[qk.name], in_shape=scores[1:], out_shape=scores[1:],
            attrs={"fn": "softmax"},
        )
        soft.attrs.pop("in_shapes", None)
        out = (*scores[:-1], vs[-1])
        av = self.add_layer(
            node, "matmul", name=f"{base}.av", inputs=[soft.name, *self.data_inputs_of([v])],
            in_shape=scores[1:], out_shape=out[1:], attrs=matmul_attrs(out, ks[-2]),
        )
        av.attrs["in_shapes"] = [scores[1:], vs[1:]]

    def first_data_arg(self, node: torch.fx.Node) -> torch.fx.Node | None:
        args: list[torch.fx.Node] = []
        torch.fx.node.map_arg((node.args, node.kwargs), args.append)
        return next((a for a in args if self.alias.get(a) is not None), None)

    def multihead_attention(self, node: torch.fx.Node, mod: nn.MultiheadAttention) -> None:
        """nn.MultiheadAttention as its projections (MVM layers) and Q K^T, softmax, x V (digital).

        Self-attention (query, key and value one tensor, one embedding size) keeps the packed
        in-projection as one layer `.in_proj` (E -> 3E); otherwise `.q_proj`, `.k_proj`, `.v_proj`.
        Masks change no cost. `xbarforge.compiler.execute.multihead_attention` runs it the same way.
        """
        b = self.bind(node, _MHA_PARAMS, _MHA_DEFAULTS)
        q, k, v = b["query"], b["key"], b["value"]
        if mod.bias_k is not None or mod.add_zero_attn:
            raise self.unsupported(node, "add_bias_kv and add_zero_attn are not captured")
        if not all(self.is_data(t) for t in (q, k, v)):
            raise self.unsupported(node, "attention with a query, key or value that is a parameter")
        e, heads = mod.embed_dim, mod.num_heads
        qs, ks = self.full_shape(q), self.full_shape(k)
        tokens_q, tokens_k = math.prod(qs[:-1]), math.prod(ks[:-1])  # one sample: every vector is a token
        base = str(node.target)
        packed = q is k is v and mod._qkv_same_embed_dim

        def proj(name: str, src: Any, weight: torch.Tensor, bias: torch.Tensor | None, tokens: int) -> Layer:
            w = weight.detach().to(device="cpu", dtype=torch.float32, copy=True)
            width = int(w.shape[1])
            return self.add_layer(
                node, "linear", name=f"{base}.{name}", inputs=self.data_inputs_of([src]),
                in_shape=(tokens, width), out_shape=(tokens, int(w.shape[0])), in_channels=width,
                out_channels=int(w.shape[0]), weight=w,
                bias=None if bias is None else bias.detach().to(device="cpu", dtype=torch.float32, copy=True),
                attrs={"mha": base},
            )

        if packed:
            projected = [proj("in_proj", q, mod.in_proj_weight, mod.in_proj_bias, tokens_q).name]
        else:
            ws = (mod.in_proj_weight.chunk(3) if mod._qkv_same_embed_dim
                  else (mod.q_proj_weight, mod.k_proj_weight, mod.v_proj_weight))
            bs = mod.in_proj_bias.chunk(3) if mod.in_proj_bias is not None else (None, None, None)
            projected = [proj(f"{n}_proj", src, w, bias, t).name for n, src, w, bias, t in
                         zip("qkv", (q, k, v), ws, bs, (tokens_q, tokens_k, tokens_k), strict=True)]
        hd = e // heads
        scores = (heads, tokens_q, tokens_k)
        qk = self.add_layer(node, "matmul", name=f"{base}.qk", inputs=projected[:2], in_shape=(tokens_q, e),
                            out_shape=scores, attrs={**matmul_attrs(scores, hd), "mha": base})
        soft = self.add_layer(node, "act", name=f"{base}.softmax", inputs=[qk.name], in_shape=scores,
                              out_shape=scores, attrs={"fn": "softmax", "mha": base})
        av = self.add_layer(node, "matmul", name=f"{base}.av", inputs=[soft.name, projected[-1]], in_shape=scores,
                            out_shape=(heads, tokens_q, hd),
                            attrs={**matmul_attrs((heads, tokens_q, hd), tokens_k), "mha": base})
        out = proj("out_proj", None, mod.out_proj.weight, mod.out_proj.bias, tokens_q)
        out.inputs = [av.name]
        for layer in self.layers[-(len(projected) + 4):]:  # shapes read off the module's call do not apply
            for key in ("in_shapes", "out_shapes", "in_elems", "out_elems"):
                layer.attrs.pop(key, None)
        self.alias[node] = out.name

    def data_inputs_of(self, args: list[Any]) -> list[str]:
        names = [self.alias.get(a) for a in args if isinstance(a, torch.fx.Node)]
        return list(dict.fromkeys(n for n in names if n is not None))

    def try_fold_matmul_bias(self, node: torch.fx.Node) -> bool:
        """`x @ W + b` with a constant vector b: fold b into the linear layer made from the matmul."""
        if len(node.args) != 2 or node.kwargs:
            return False
        op = node.target.rstrip("_") if isinstance(node.target, str) else _ARITH_OPS.get(node.target)
        if op != "add":
            return False
        a, b = node.args
        for src, other in ((a, b), (b, a)):
            if not isinstance(src, torch.fx.Node) or src not in self.mvm_of:
                continue
            layer = self.mvm_of[src]
            bias = self.value(other)
            if (
                layer.name in self.from_matmul
                and layer.bias is None
                and len(src.users) == 1
                and isinstance(bias, torch.Tensor)
                and bias.dim() == 1
                and bias.numel() == layer.out_channels
            ):
                layer.bias = bias.detach().to(device="cpu", dtype=torch.float32, copy=True)
                self.alias[node] = layer.name
                del self.mvm_of[src]
                return True
        return False

    # ---- main loop -------------------------------------------------------------------------

    def run(self, input_shape: tuple[int, ...]) -> list[Layer]:
        placeholder_done = False
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if placeholder_done or not self.is_tensor(node):
                    self.alias[node] = None
                    continue
                placeholder_done = True
                self.add_layer(
                    node, "input", name=str(node.target), in_shape=input_shape, out_shape=input_shape
                )
                continue
            if node.op == "output":
                inputs = self.data_inputs(node)
                shapes = [self.meta_shape(n) for n in node.all_input_nodes if self.alias.get(n)]
                out_shape = shapes[0] if shapes and isinstance(shapes[0], tuple) else ()
                layer = Layer(
                    name=self.names.take("output"),
                    kind="output",
                    inputs=inputs,
                    in_shape=out_shape,
                    out_shape=out_shape,
                    attrs={"out_shapes": shapes} if len(shapes) > 1 else {},
                )
                self.layers.append(layer)
                continue
            if node in self.const_nodes or node.op == "get_attr":
                self.alias[node] = None
                continue
            if not self.produces_tensors(node) or not self.data_inputs(node):
                # size()/shape arithmetic, or a tensor computed without reading the input
                self.alias[node] = None
                continue
            self.handle(node)
        return self.layers


def _const_nodes(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    const: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "get_attr":
            const.add(node)
        elif node.op.startswith("call_") and all(n in const for n in node.all_input_nodes):
            const.add(node)
    return const


def _note_folded_batch(attrs: dict[str, Any], out_full: tuple[int, ...], in_full: tuple[int, ...]) -> None:
    """Element counts of a layer whose leading dimension is not the sample (heads folded into the
    batch, `(B * heads, n, n)`): per-sample shapes drop that dimension, so the digital cost model
    reads these counts instead. Capture runs one sample, so a whole shape's size is per sample."""
    if len(out_full) > 1 and out_full[0] != 1:
        attrs.setdefault("out_elems", math.prod(out_full))
    if len(in_full) > 1 and in_full[0] != 1:
        attrs.setdefault("in_elems", math.prod(in_full))


class UnsupportedOperator(CaptureError):
    """An operator torch.fx capture does not know; `capture` then tries an ONNX export, which
    decomposes modules such as nn.TransformerEncoder into operators it may know."""


class TraceFailure(CaptureError):
    """torch.fx could not trace the model (control flow on values, unsupported Python); `module`
    names the innermost submodule whose forward failed. `capture` then tries an ONNX export."""

    def __init__(self, message: str, module: str) -> None:
        super().__init__(message)
        self.module = module


def _failing_module(model: nn.Module, exc: BaseException) -> str:
    """Qualified name and class of the innermost submodule of `model` on the traceback of `exc`."""
    names = {id(m): name for name, m in model.named_modules()}
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            name = names[id(owner)] or "(the model itself)"
            found = f"{name} ({type(owner).__name__})"
        tb = tb.tb_next
    return found or f"(the model itself) ({type(model).__name__})"


def trace_module(model: nn.Module) -> torch.fx.GraphModule:
    """`torch.fx.symbolic_trace`, failing with one line (`TraceFailure`) that names the module."""
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:
        module = _failing_module(model, exc)
        raise TraceFailure(
            f"cannot trace {type(model).__name__} with torch.fx in module {module}: {_first_line(exc)}", module
        ) from None


def _check_single_input(gm: torch.fx.GraphModule, model_name: str) -> None:
    """Only the first forward argument may be required: capture feeds exactly one tensor."""
    required = [
        str(n.target)
        for n in gm.graph.nodes
        if n.op == "placeholder" and (not n.args or n.target.startswith("*"))
    ]
    if len(required) != 1:
        names = ", ".join(required) or "none"
        raise CaptureError(
            f"cannot capture {model_name}: forward takes {len(required)} required inputs ({names}); "
            "only single-input models are supported"
        )


def _check_input_shape(input_shape: Iterable[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise CaptureError(f"input_shape must be a tuple of positive ints, got {input_shape!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise CaptureError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
    return shape


def capture_module(model: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> LayerGraph:
    """Trace `model` with torch.fx and return its LayerGraph.

    `input_shape` is the per-sample shape without batch, e.g. (3, 32, 32). The model is traced and
    run once in eval mode under `torch.no_grad()`; its train/eval flags are restored afterwards and
    its parameters are not modified (MVM weights are detached float32 copies, batch norm folded).
    """
    if not isinstance(model, nn.Module):
        raise CaptureError(f"expected a torch.nn.Module, got {type(model).__name__}")
    shape = _check_input_shape(input_shape)
    model_name = type(model).__name__
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        gm = trace_module(model)
        _check_single_input(gm, model_name)
        const = _const_nodes(gm.graph)
        prop = _Prop(gm, const)
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = torch.zeros((1, *shape), dtype=dtype, device=device)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a forward pass on zeros; its warnings are noise here
                prop.propagate(x)
        except _NodeRunError as exc:
            raise CaptureError(
                f"cannot run {model_name} on input shape {shape} at node '{exc.node.name}': "
                f"{_first_line(exc.exc)}"
            ) from None
        except Exception as exc:
            raise CaptureError(
                f"cannot run {model_name} on input shape {shape}: {_first_line(exc)}"
            ) from None
        layers = _Builder(gm, prop).run(shape)
    finally:
        for m, training in flags:
            m.training = training
    return LayerGraph(name=name or model_name, input_shape=shape, layers=layers)

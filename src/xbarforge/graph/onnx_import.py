"""Import an ONNX model as a LayerGraph.

`import_onnx` loads the file with `onnx`, runs `onnx.shape_inference.infer_shapes` (with data
propagation, so reshape targets computed by Shape/Gather/Concat chains resolve) and walks the
nodes in file order (ONNX requires topological order):

* Conv, Gemm, and MatMul with an initializer operand become MVM layers (float32 torch weights);
  MatMul (or a two-operand Einsum) of two activations becomes a digital "matmul" layer;
  a BatchNormalization whose input is such a layer's only consumer is folded into it, and an Add
  of a constant vector right after a MatMul becomes that layer's bias (how exporters write
  `nn.Linear` on 3-d inputs);
* digital operators become digital layers (kinds in `DIGITAL_KINDS`);
* anything computed without reading the network input (Constant, Shape/Gather/Unsqueeze/Concat
  chains that build reshape targets) is folded away;
* any other operator raises `CaptureError` naming its op_type and node.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xbarforge.errors import CaptureError
from xbarforge.graph.fx_capture import (
    _check_input_shape,
    _first_line,
    _NameTable,
    _note_folded_batch,
    fold_batchnorm,
)
from xbarforge.graph.layer_graph import Layer, LayerGraph, matmul_attrs, token_shapes

__all__ = ["ONNX_SUPPORTED", "import_onnx", "load_onnx"]

_ACT_OPS: dict[str, str] = {
    "Relu": "relu",
    "HardSwish": "hardswish",
    "HardSigmoid": "hardsigmoid",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "LeakyRelu": "leaky_relu",
    "Elu": "elu",
    "Gelu": "gelu",
    "Erf": "erf",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
    "Softplus": "softplus",
    "Mish": "mish",
    "PRelu": "prelu",
    "Exp": "exp",
    "Sqrt": "sqrt",
    "Pow": "pow",
    "Reciprocal": "reciprocal",
    "Neg": "neg",
    "Abs": "abs",
    "Log": "log",
    "Where": "where",
    "Sin": "sin",
    "Cos": "cos",
    "Floor": "floor",
    "Ceil": "ceil",
    "Round": "round",
    "Trilu": "trilu",
    "Equal": "equal",
    "Less": "less",
    "LessOrEqual": "less_equal",
    "Greater": "greater",
    "GreaterOrEqual": "greater_equal",
    "Not": "not",
    "And": "and",
    "Or": "or",
}
# Reductions other than the mean: kind "reduce" with this fn.
_REDUCE_OPS: dict[str, str] = {
    "ReduceSum": "sum",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "ReduceL2": "l2",
    "ReduceLogSumExp": "logsumexp",
    "CumSum": "cumsum",
    "ArgMax": "argmax",
    "ArgMin": "argmin",
}

_KIND_OPS: dict[str, str] = {
    "MaxPool": "pool",
    "AveragePool": "pool",
    "GlobalAveragePool": "global_pool",
    "GlobalMaxPool": "global_pool",
    "Add": "add",
    "Sub": "add",
    "Sum": "add",
    "Max": "add",
    "Min": "add",
    "Mul": "mul",
    "Div": "mul",
    "Concat": "concat",
    "Flatten": "flatten",
    "Reshape": "reshape",
    "Squeeze": "reshape",
    "Unsqueeze": "reshape",
    "Transpose": "transpose",
    "Expand": "reshape",
    "Tile": "concat",
    "Resize": "resize",
    "Upsample": "resize",
    "DepthToSpace": "reshape",
    "SpaceToDepth": "reshape",
    "GatherElements": "split",
    "GatherND": "split",
    "ScatterND": "concat",
    "Split": "split",
    "Slice": "split",
    "Gather": "split",
    "Pad": "pad",
    "Dropout": "dropout",
    "Identity": "identity",
    "LayerNormalization": "norm",
    "InstanceNormalization": "norm",
    "GroupNormalization": "norm",
    "LRN": "norm",
}

# Layers whose cost is counted from their shapes (MVM layers and the digital stages of cost.digital).
_SHAPED_KINDS = frozenset({"conv", "linear", "matmul", "act", "norm", "reduce", "mean"})
# Ops whose output is the input as far as the layer graph cares.
_ALIAS_OPS = {"Cast"}
# Ops whose output describes the input's shape, not its values.
_META_OPS = {"Shape", "Size"}
# Constants with at most this many elements keep their values during shape inference.
_SMALL_CONST = 4096

ONNX_SUPPORTED = sorted(
    {"Conv", "Gemm", "MatMul", "Einsum", "BatchNormalization", "Clip", "ReduceMean", "Constant"}
    | set(_ACT_OPS)
    | set(_REDUCE_OPS)
    | set(_KIND_OPS)
    | _ALIAS_OPS
    | _META_OPS
)


def load_onnx(path_or_model: Any) -> Any:
    """Load an ONNX ModelProto from a path, bytes, or return a ModelProto unchanged."""
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, bytes | bytearray):
        try:
            return onnx.load_from_string(bytes(path_or_model))
        except Exception as exc:
            raise CaptureError(f"cannot read ONNX model from bytes: {_first_line(exc)}") from None
    path = Path(path_or_model)
    if not path.is_file():
        raise CaptureError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise CaptureError(f"cannot read ONNX file {path}: {_first_line(exc)}") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise CaptureError(f"cannot read ONNX file {path}: no graph nodes (not an ONNX model?)")
    return model


def _dims(value_info: Any) -> list[int | None] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _skeleton(
    model: Any,
    input_name: str,
    input_dims: list[int] | None,
    consts: dict[str, np.ndarray],
    folded: set[int],
) -> Any:
    """The model without its large constants (declared as inputs instead), for fast shape inference.

    Shape inference needs only the shapes of weights; small constants (initializers and folded
    constant subgraphs) keep their values so that data propagation can resolve reshape and pad
    targets. `input_dims` replaces the declared shape of the input.
    """
    import onnx
    from onnx import helper, numpy_helper

    src = model.graph
    inputs = []
    for inp in src.input:
        if inp.name in consts:
            continue
        if inp.name == input_name and input_dims is not None:
            elem = inp.type.tensor_type.elem_type or onnx.TensorProto.FLOAT
            inputs.append(helper.make_tensor_value_info(inp.name, elem, input_dims))
        else:
            inputs.append(inp)
    small = []
    for cname, arr in consts.items():
        if arr.size <= _SMALL_CONST:
            small.append(numpy_helper.from_array(np.asarray(arr), cname))
        else:
            dtype = helper.np_dtype_to_tensor_dtype(arr.dtype)
            inputs.append(helper.make_tensor_value_info(cname, dtype, list(arr.shape)))
    nodes = [n for i, n in enumerate(src.node) if i not in folded]
    value_info = [] if input_dims is not None else list(src.value_info)
    graph = helper.make_graph(
        nodes, src.name or "graph", inputs, list(src.output), initializer=small, value_info=value_info
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    out.functions.extend(model.functions)
    return out


def _fold_constant_nodes(model: Any, consts: dict[str, np.ndarray]) -> set[int]:
    """Evaluate every node that does not depend on the graph input; store outputs in `consts`.

    Constant nodes are read directly; other constant subgraphs (ConstantOfShape/Concat/Slice/
    Transpose chains some exporters write for pads, weights passed through Identity, ...) run once
    through onnx's reference evaluator. Returns the indices of the folded nodes.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    known = set(consts)
    folded: list[int] = []
    for i, node in enumerate(graph.node):
        if all((not t) or t in known for t in node.input) and node.op_type not in _META_OPS:
            if node.op_type.startswith("Random") or node.domain not in ("", "ai.onnx"):
                continue
            folded.append(i)
            known.update(o for o in node.output if o)
    rest = []
    for i in folded:
        node = graph.node[i]
        if node.op_type == "Constant" and len(node.attribute) == 1:
            a = node.attribute[0]
            if a.name == "value":
                consts[node.output[0]] = numpy_helper.to_array(a.t)
                continue
            value = helper.get_attribute_value(a)
            if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                dtype = np.float32 if "float" in a.name else np.int64
                consts[node.output[0]] = np.asarray(value, dtype=dtype)
                continue
        rest.append(i)
    if not rest:
        return set(folded)
    from onnx.reference import ReferenceEvaluator

    nodes = [graph.node[i] for i in rest]
    produced = {o for n in nodes for o in n.output if o}
    needed = {t for n in nodes for t in n.input if t and t not in produced}
    inits = [numpy_helper.from_array(np.asarray(consts[t]), t) for t in needed]
    outputs = [helper.make_empty_tensor_value_info(o) for o in sorted(produced)]
    sub = helper.make_model(
        helper.make_graph(nodes, "constants", [], outputs, initializer=inits),
        opset_imports=list(model.opset_import),
    )
    sub.ir_version = model.ir_version
    try:
        values = ReferenceEvaluator(sub).run(None, {})
    except Exception:
        # leave these nodes to the importer; only plain Constant nodes are folded
        return set(folded) - set(rest)
    for oname, value in zip(sorted(produced), values, strict=True):
        consts[oname] = np.asarray(value)
    return set(folded)


def _known(dims: list[int | None] | None) -> bool:
    return dims is not None and all(d is not None for d in dims)


def _run_shapes(model: Any, input_name: str, full: list[int], names: list[str]) -> dict[str, list[int | None]]:
    """Shapes static inference leaves unknown, read off one run of the model on zeros.

    onnx's shape inference cannot follow every shape computation exporters write (a Slice whose
    bounds come from Shape -> Div chains, as `torch.chunk` exports); without shapes, token counts
    and attention costs would be silently wrong. The reference evaluator runs the graph once (numpy,
    batch of one) with those tensors as extra outputs. Tensors it cannot produce stay unknown.
    """
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    probe = type(model)()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    elem = next((i.type.tensor_type.elem_type for i in model.graph.input if i.name == input_name), TensorProto.FLOAT)
    dtype = helper.tensor_dtype_to_np_dtype(elem or TensorProto.FLOAT)
    try:
        values = ReferenceEvaluator(probe).run(None, {input_name: np.zeros(full, dtype=dtype)})
    except Exception:
        return {}
    return {n: list(np.shape(v)) for n, v in zip(names, values, strict=True)}


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


class _Importer:
    def __init__(self, model: Any, input_shape: tuple[int, ...] | None) -> None:
        import onnx
        from onnx import numpy_helper

        graph = model.graph
        self.consts: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        real_inputs = [i for i in graph.input if i.name not in self.consts]
        if len(real_inputs) != 1:
            names = ", ".join(i.name for i in real_inputs) or "none"
            raise CaptureError(f"ONNX model must have exactly one input, found {len(real_inputs)}: {names}")
        self.input = real_inputs[0]
        declared = _dims(self.input)
        if input_shape is None:
            if not declared or any(d is None or d <= 0 for d in declared[1:]):
                raise CaptureError(
                    f"ONNX input '{self.input.name}' has no fixed shape ({declared}); pass input_shape"
                )
            self.input_shape = tuple(int(d) for d in declared[1:])  # type: ignore[arg-type]
        else:
            self.input_shape = _check_input_shape(input_shape)
        full = [1, *self.input_shape]
        self.folded = _fold_constant_nodes(model, self.consts)
        skeleton = _skeleton(
            model, self.input.name, full if declared != full else None, self.consts, self.folded
        )
        try:
            inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
        except Exception as exc:
            raise CaptureError(f"ONNX shape inference failed: {_first_line(exc)}") from None
        self.shapes: dict[str, list[int | None] | None] = {}
        ig = inferred.graph
        for vi in list(ig.value_info) + list(ig.output) + list(ig.input):
            self.shapes[vi.name] = _dims(vi)
        unknown = [
            o for i, node in enumerate(graph.node) if i not in self.folded for o in node.output
            if o and not _known(self.shapes.get(o))
        ]
        if unknown:  # e.g. Slice bounds computed from Shape: run the model once to read them off
            self.shapes.update(_run_shapes(model, self.input.name, full, unknown))
        self.graph = graph
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for t in node.input:
                self.consumers[t] = self.consumers.get(t, 0) + 1
        for out in self.graph.output:
            self.consumers[out.name] = self.consumers.get(out.name, 0) + 1
        self.names = _NameTable()
        self.layers: list[Layer] = []
        # tensor name -> layer holding it; tensors absent here are constants or shape metadata
        self.producer: dict[str, str] = {}
        # tensor name -> MVM layer that wrote it (for BN / bias folding)
        self.mvm_out: dict[str, Layer] = {}
        # linear layers made from MatMul (they may take the bias of a following Add)
        self.from_matmul: set[str] = set()

    # ---- helpers ---------------------------------------------------------------------------

    def sample_shape(self, tensor: str) -> tuple[int, ...]:
        dims = self.shapes.get(tensor)
        if not dims or any(d is None for d in dims):
            return ()
        return tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]

    def node_name(self, node: Any) -> str:
        return node.name or (node.output[0] if node.output else node.op_type)

    def unsupported(self, node: Any, why: str = "") -> CaptureError:
        extra = f" ({why})" if why else ""
        return CaptureError(
            f"unsupported ONNX operator '{node.op_type}' at node '{self.node_name(node)}'{extra}"
        )

    def const(self, node: Any, index: int, what: str) -> np.ndarray | None:
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.consts:
            raise self.unsupported(node, f"{what} '{name}' is not a constant")
        return self.consts[name]

    def data_inputs(self, node: Any) -> list[str]:
        out: list[str] = []
        for t in node.input:
            src = self.producer.get(t)
            if src is not None and src not in out:
                out.append(src)
        return out

    def add_layer(self, node: Any, kind: str, **fields: Any) -> Layer:
        data = [t for t in node.input if t in self.producer]
        in_shapes = [self.sample_shape(t) for t in data]
        attrs = fields.pop("attrs", {})
        if len(in_shapes) > 1:
            attrs.setdefault("in_shapes", in_shapes)
        outs = [o for o in node.output if o]
        if kind in _SHAPED_KINDS and outs and not _known(self.shapes.get(outs[0])):  # never price them blind
            raise CaptureError(
                f"ONNX import: the output shape of node '{self.node_name(node)}' ({node.op_type}) is unknown after "
                "shape inference and a reference run; export with a fixed input shape"
            )
        if kind == "split" and len(outs) > 1:
            attrs.setdefault("out_shapes", [self.sample_shape(o) for o in outs])
        if kind not in ("conv", "linear"):
            out_full = self.full_shape(outs[0]) if outs else ()
            _note_folded_batch(attrs, out_full, self.full_shape(data[0]) if data else ())
        layer = Layer(
            name=self.names.take(self.node_name(node)),
            kind=kind,
            inputs=self.data_inputs(node),
            in_shape=fields.pop("in_shape", None) or (in_shapes[0] if in_shapes else ()),
            out_shape=fields.pop("out_shape", None) or (self.sample_shape(outs[0]) if outs else ()),
            attrs=attrs,
            **fields,
        )
        self.layers.append(layer)
        for o in outs:
            self.producer[o] = layer.name
        return layer

    # ---- MVM layers ------------------------------------------------------------------------

    def conv(self, node: Any) -> None:
        a = _attrs(node)
        w = self.const(node, 1, "Conv weight")
        assert w is not None
        b = self.const(node, 2, "Conv bias")
        if w.ndim not in (3, 4):
            raise self.unsupported(node, f"{w.ndim - 2}-d convolution")
        one_d = w.ndim == 3
        weight = _tensor(w)
        in_shape = self.sample_shape(node.input[0])
        out_shape = self.sample_shape(node.output[0])
        k = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * len(k)))
        dilations = list(a.get("dilations", [1] * len(k)))
        pads = list(a.get("pads", [0] * 2 * len(k)))
        attrs: dict[str, Any] = {}
        if one_d:
            weight = weight.unsqueeze(2)
            k, strides, dilations = [1, k[0]], [1, strides[0]], [1, dilations[0]]
            pads = [0, pads[0], 0, pads[1]]
            if in_shape:
                in_shape = (in_shape[0], 1, in_shape[1])
            if out_shape:
                out_shape = (out_shape[0], 1, out_shape[1])
            attrs["conv1d"] = True
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if auto_pad == "VALID":
            pads = [0, 0, 0, 0]
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for i in range(2):
                size = in_shape[1 + i] if in_shape else 1
                out = math.ceil(size / strides[i])
                total = max(0, (out - 1) * strides[i] + dilations[i] * (k[i] - 1) + 1 - size)
                small, big = total // 2, total - total // 2
                pads[i], pads[i + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        if pads[0] != pads[2] or pads[1] != pads[3]:
            attrs["pads"] = tuple(int(p) for p in pads)
        group = int(a.get("group", 1))
        layer = self.add_layer(
            node,
            "conv",
            in_shape=in_shape,
            out_shape=out_shape,
            in_channels=int(weight.shape[1]) * group,
            out_channels=int(weight.shape[0]),
            kernel=(int(k[0]), int(k[1])),
            stride=(int(strides[0]), int(strides[1])),
            padding=(int(pads[0]), int(pads[1])),
            dilation=(int(dilations[0]), int(dilations[1])),
            groups=group,
            weight=weight,
            bias=None if b is None else _tensor(b),
            attrs=attrs,
        )
        self.mvm_out[node.output[0]] = layer

    def gemm(self, node: Any) -> None:
        a = _attrs(node)
        if node.input[0] not in self.producer or int(a.get("transA", 0)):
            raise self.unsupported(node, "Gemm is captured only as input x constant weight (transA=0)")
        b = self.const(node, 1, "Gemm weight")
        assert b is not None
        c = self.const(node, 2, "Gemm bias")
        w = b if int(a.get("transB", 0)) else b.T
        weight = _tensor(w) * float(a.get("alpha", 1.0))
        bias = None
        if c is not None:
            bias = torch.broadcast_to(_tensor(c).reshape(-1), (weight.shape[0],)) * float(a.get("beta", 1.0))
            bias = bias.contiguous()
        layer = self.add_layer(
            node,
            "linear",
            **token_shapes(self.full_shape(node.input[0]), self.full_shape(node.output[0])),
            in_channels=int(weight.shape[1]),
            out_channels=int(weight.shape[0]),
            weight=weight.contiguous(),
            bias=bias,
        )
        self.mvm_out[node.output[0]] = layer

    def full_shape(self, tensor: str) -> tuple[int, ...]:
        """A tensor's whole shape (the batch of one sample included), () when unknown."""
        dims = self.shapes.get(tensor)
        if not dims or any(d is None for d in dims):
            return ()
        return tuple(int(d) for d in dims)  # type: ignore[arg-type]

    def matmul(self, node: Any) -> None:
        lhs, rhs = node.input[0], node.input[1]
        if lhs in self.producer and rhs in self.producer:  # two activations: attention's products
            k = self.full_shape(lhs)[-1] if self.full_shape(lhs) else 1
            self.add_layer(node, "matmul", attrs=matmul_attrs(self.full_shape(node.output[0]), k))
            return
        if lhs not in self.producer or rhs not in self.consts or self.consts[rhs].ndim != 2:
            raise self.unsupported(node, "a product with a constant is captured only as input x 2-d initializer")
        weight = _tensor(self.consts[rhs].T)
        layer = self.add_layer(
            node,
            "linear",
            **token_shapes(self.full_shape(lhs), self.full_shape(node.output[0])),
            in_channels=int(weight.shape[1]),
            out_channels=int(weight.shape[0]),
            weight=weight,
            bias=None,
        )
        self.from_matmul.add(layer.name)
        self.mvm_out[node.output[0]] = layer

    def einsum(self, node: Any) -> None:
        equation = _attrs(node).get("equation", b"")
        equation = equation.decode() if isinstance(equation, bytes) else str(equation)
        if len(node.input) != 2 or not all(t in self.producer for t in node.input):
            raise self.unsupported(node, "Einsum is captured only as a product of two activations")
        lhs, _, out_idx = equation.replace(" ", "").partition("->")
        sizes: dict[str, int] = {}
        for term, t in zip(lhs.split(","), node.input, strict=True):
            for letter, size in zip(term, self.full_shape(t), strict=False):
                sizes[letter] = max(sizes.get(letter, 1), size)
        k = math.prod(sizes[c] for c in sizes if c not in out_idx)
        self.add_layer(node, "matmul", attrs=matmul_attrs(self.full_shape(node.output[0]), k))

    def try_fold_bn(self, node: Any) -> bool:
        src = node.input[0]
        layer = self.mvm_out.get(src)
        if layer is None or self.consumers.get(src, 0) != 1:
            return False
        vals = [self.consts.get(t) for t in node.input[1:5]]
        if any(v is None for v in vals):
            return False
        gamma, beta, mean, var = (torch.from_numpy(np.asarray(v, dtype=np.float64)) for v in vals)
        if mean.numel() != layer.out_channels:
            return False
        if layer.kind == "linear" and len(self.sample_shape(src)) != 1:
            return False
        eps = float(_attrs(node).get("epsilon", 1e-5))
        assert layer.weight is not None
        layer.weight, layer.bias = fold_batchnorm(layer.weight, layer.bias, mean, var, gamma, beta, eps)
        layer.attrs["folded_bn"] = self.node_name(node)
        self.producer[node.output[0]] = layer.name
        del self.mvm_out[src]
        return True

    def try_fold_bias(self, node: Any) -> bool:
        if node.op_type != "Add" or len(node.input) != 2:
            return False
        for src, other in (node.input, reversed(node.input)):
            layer = self.mvm_out.get(src)
            if layer is None or layer.name not in self.from_matmul or layer.bias is not None:
                continue
            bias = self.consts.get(other)
            if bias is None or self.consumers.get(src, 0) != 1 or bias.size != layer.out_channels:
                continue
            if bias.ndim != 1:
                continue
            layer.bias = _tensor(bias)
            self.producer[node.output[0]] = layer.name
            del self.mvm_out[src]
            return True
        return False

    # ---- digital layers --------------------------------------------------------------------

    def clip(self, node: Any) -> None:
        a = _attrs(node)
        lo = self.const(node, 1, "Clip min")
        hi = self.const(node, 2, "Clip max")
        lo_v = float(lo) if lo is not None else a.get("min")
        hi_v = float(hi) if hi is not None else a.get("max")
        if lo_v == 0 and hi_v == 6:
            attrs: dict[str, Any] = {"fn": "relu6"}
        elif lo_v == 0 and hi_v is None:
            attrs = {"fn": "relu"}
        else:
            attrs = {"fn": "clamp", "min": lo_v, "max": hi_v}
        self.add_layer(node, "act", attrs=attrs)

    def reduce_mean(self, node: Any) -> None:
        a = _attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes_arr = self.const(node, 1, "ReduceMean axes")
            axes = [] if axes_arr is None else [int(v) for v in np.asarray(axes_arr).reshape(-1)]
        rank = len(self.shapes.get(node.input[0]) or [])
        norm = sorted({int(x) % rank for x in axes}) if axes and rank else []
        if rank >= 3 and norm == list(range(2, rank)):
            self.add_layer(node, "global_pool", attrs={"fn": "avg"})
        else:
            self.add_layer(node, "mean", attrs={"dims": tuple(norm)})

    def run(self) -> list[Layer]:
        inp = self.input.name
        self.layers.append(
            Layer(
                name=self.names.take(inp),
                kind="input",
                in_shape=self.input_shape,
                out_shape=self.input_shape,
            )
        )
        self.producer[inp] = self.layers[-1].name
        for i, node in enumerate(self.graph.node):
            op = node.op_type
            if i in self.folded or not any(t in self.producer for t in node.input):
                continue  # constants and shape arithmetic: not layers
            if op in _META_OPS:
                continue
            if node.domain not in ("", "ai.onnx"):
                raise self.unsupported(node, f"custom domain '{node.domain}'")
            if op == "Conv":
                self.conv(node)
            elif op == "Gemm":
                self.gemm(node)
            elif op == "MatMul":
                self.matmul(node)
            elif op == "Einsum":
                self.einsum(node)
            elif op in _REDUCE_OPS:
                self.add_layer(node, "reduce", attrs={"fn": _REDUCE_OPS[op]})
            elif op == "BatchNormalization":
                if not self.try_fold_bn(node):
                    self.add_layer(node, "norm", attrs={"fn": "batch_norm"})
            elif op in _ALIAS_OPS:
                self.producer[node.output[0]] = self.producer[node.input[0]]
            elif op == "Clip":
                self.clip(node)
            elif op in _ACT_OPS:
                self.add_layer(node, "act", attrs={"fn": _ACT_OPS[op]})
            elif op == "ReduceMean":
                self.reduce_mean(node)
            elif op in _KIND_OPS:
                if self.try_fold_bias(node):
                    continue
                kind = _KIND_OPS[op]
                attrs: dict[str, Any] = {}
                if kind in ("add", "mul"):
                    attrs = {"op": op.lower()}
                elif kind == "norm":
                    attrs = {"fn": op}
                elif kind in ("pool", "global_pool"):
                    attrs = {"fn": "max" if "Max" in op else "avg"}
                    a = _attrs(node)
                    if "kernel_shape" in a:
                        attrs.update(kernel=tuple(a["kernel_shape"]), stride=tuple(a.get("strides", ())))
                        attrs["padding"] = tuple(a.get("pads", ()))
                self.add_layer(node, kind, attrs=attrs)
            else:
                raise self.unsupported(node)
        outputs = [self.producer[o.name] for o in self.graph.output if o.name in self.producer]
        shapes = [self.sample_shape(o.name) for o in self.graph.output if o.name in self.producer]
        self.layers.append(
            Layer(
                name=self.names.take("output"),
                kind="output",
                inputs=list(dict.fromkeys(outputs)),
                in_shape=shapes[0] if shapes else (),
                out_shape=shapes[0] if shapes else (),
                attrs={"out_shapes": shapes} if len(shapes) > 1 else {},
            )
        )
        return self.layers


def import_onnx(
    path_or_model: Any, input_shape: tuple[int, ...] | None = None, name: str | None = None
) -> LayerGraph:
    """Build a LayerGraph from an ONNX file path, serialized bytes or `onnx.ModelProto`.

    `input_shape` is the per-sample shape (no batch); None uses the model's declared input shape.
    """
    model = load_onnx(path_or_model)
    importer = _Importer(model, input_shape)
    layers = importer.run()
    if name is None:
        if isinstance(path_or_model, str | Path):
            name = Path(path_or_model).stem
        else:
            name = model.graph.name or "onnx_model"
    return LayerGraph(name=name, input_shape=importer.input_shape, layers=layers, source="onnx")

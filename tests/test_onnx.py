"""ONNX import, and agreement of the ONNX route with the torch.fx route."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from xbarforge.errors import CaptureError
from xbarforge.graph import LayerGraph, capture, capture_module, clear_capture_cache, import_onnx

try:  # the small models live next door (tests/ is on sys.path under pytest's default import mode)
    from test_capture import BranchNet, ConvZoo, _randomize_bn
except ImportError:  # tests/ made a package
    from tests.test_capture import BranchNet, ConvZoo, _randomize_bn

_GEOMETRY = (
    "kind",
    "in_channels",
    "out_channels",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "in_shape",
    "out_shape",
)


def assert_same_mvm_layers(a: LayerGraph, b: LayerGraph, atol: float = 1e-5) -> None:
    """Same MVM layers in the same order: geometry identical, weights and biases within `atol`."""
    la, lb = a.mvm_layers, b.mvm_layers
    assert len(la) == len(lb), f"{len(la)} MVM layers vs {len(lb)}"
    for i, (x, y) in enumerate(zip(la, lb, strict=True)):
        where = f"MVM layer {i} ({x.name} vs {y.name})"
        for field in _GEOMETRY:
            assert getattr(x, field) == getattr(y, field), (
                f"{where}: {field} {getattr(x, field)} != {getattr(y, field)}"
            )
        assert x.attrs.get("pads") == y.attrs.get("pads"), f"{where}: asymmetric pads differ"
        assert x.weight is not None and y.weight is not None
        assert x.weight.shape == y.weight.shape, f"{where}: weight shape"
        err = (x.weight - y.weight).abs().max().item()
        assert err <= atol, f"{where}: weights differ by {err}"
        bx = torch.zeros(x.out_channels) if x.bias is None else x.bias
        by = torch.zeros(y.out_channels) if y.bias is None else y.bias
        err = (bx - by).abs().max().item()
        assert err <= atol, f"{where}: biases differ by {err}"
    # the same dependency structure between MVM layers, compared by position
    pos_a = {layer.name: i for i, layer in enumerate(la)}
    pos_b = {layer.name: i for i, layer in enumerate(lb)}
    deps_a = [[pos_a[n] for n in a.mvm_predecessors()[layer.name]] for layer in la]
    deps_b = [[pos_b[n] for n in b.mvm_predecessors()[layer.name]] for layer in lb]
    assert deps_a == deps_b, "MVM dependency structure differs"


def export_onnx(model: nn.Module, shape: tuple[int, ...], **kwargs: object) -> bytes:
    """Legacy (TorchScript) export in eval mode, opset 17."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(1, *shape), f, dynamo=False, opset_version=17, **kwargs)
    return f.getvalue()


def check_routes_agree(model: nn.Module, shape: tuple[int, ...], **export_kwargs: object) -> LayerGraph:
    model.eval()
    g_fx = capture_module(model, shape)
    g_onnx = import_onnx(export_onnx(model, shape, **export_kwargs))
    assert g_onnx.input_shape == g_fx.input_shape
    assert_same_mvm_layers(g_fx, g_onnx)
    return g_onnx


# ---------------------------------------------------------------------------------------------
# fx vs ONNX on small models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fold", [True, False], ids=["exporter-folds-bn", "bn-in-onnx"])
def test_branchnet_routes_agree(fold: bool) -> None:
    g = check_routes_agree(_randomize_bn(BranchNet()), (3, 8, 8), do_constant_folding=fold)
    kinds = [layer.kind for layer in g.layers]
    assert "norm" not in kinds and kinds.count("conv") == 7 and kinds.count("linear") == 1
    assert g.layers[0].kind == "input" and g.layers[-1].kind == "output"
    conv_names = [layer.name for layer in g.mvm_layers]
    assert conv_names[0] == "/stem/conv/Conv"  # ONNX node names
    cat = next(layer for layer in g.layers if layer.kind == "concat")
    assert cat.inputs == ["/block/left/Conv", "/block/right/Conv"]
    mul = next(layer for layer in g.layers if layer.kind == "mul")
    assert mul.inputs[0] == cat.name and g[mul.inputs[1]].attrs["fn"] == "hardsigmoid"
    add = next(layer for layer in g.layers if layer.kind == "add")
    assert len(add.inputs) == 2
    if not fold:
        assert g["/stem/conv/Conv"].attrs["folded_bn"] == "/stem/bn/BatchNormalization"


def test_conv_flavours_routes_agree() -> None:
    g = check_routes_agree(ConvZoo(), (3, 16, 16))
    clip = next(layer for layer in g.layers if layer.kind == "act" and layer.attrs["fn"] == "relu6")
    assert clip.inputs == ["/dw/Conv"]


def test_padding_conv1d_matmul_and_dynamic_batch_agree() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.same = nn.Conv2d(3, 4, 4, padding="same")
            self.refl = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
            self.conv1d = nn.Conv1d(4, 6, 3, stride=2, padding=1)
            self.bn1d = nn.BatchNorm1d(6)
            self.w = nn.Parameter(torch.randn(8, 5))
            self.b = nn.Parameter(torch.randn(5))
            self.fc = nn.Linear(5, 7)  # on a 3-d input: MatMul + Add in ONNX

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.refl(self.same(x))
            x = x.flatten(2)
            x = self.bn1d(self.conv1d(x))  # (N, 6, 8)
            x = x @ self.w + self.b
            return self.fc(F.silu(x))

    model = _randomize_bn(Mixed())
    g = check_routes_agree(model, (3, 4, 4), input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert g.mvm_layers[0].attrs["pads"] == (1, 1, 2, 2)
    # with a dynamic batch, shapes still resolve through Shape/Gather/Concat chains
    assert all(layer.out_shape for layer in g.layers if layer.kind != "output")
    assert [layer.kind for layer in g.layers].count("add") == 0  # both biases folded into MatMul


def test_linear_bn1d_head_agrees() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    g = check_routes_agree(_randomize_bn(model), (3, 2, 2), do_constant_folding=False)
    assert g.mvm_layers[0].attrs.get("folded_bn")


def test_input_shape_override() -> None:
    data = export_onnx(BranchNet(), (3, 8, 8))
    g = import_onnx(data, input_shape=(3, 16, 16))
    assert g.input_shape == (3, 16, 16)
    assert g.mvm_layers[0].out_shape == (8, 16, 16)
    assert_same_mvm_layers(capture_module(BranchNet().eval(), (3, 16, 16)), g, atol=float("inf"))


# ---------------------------------------------------------------------------------------------
# hand-written ONNX graphs
# ---------------------------------------------------------------------------------------------


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _model(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], in_shape: list, out: str
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "handmade",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_handmade_graph_ops_and_names() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3))
    scale, bias, mean, var = (
        rng.uniform(0.5, 1.5, 4),
        rng.normal(size=4),
        rng.normal(size=4),
        rng.uniform(0.5, 2, 4),
    )
    gemm_b = rng.normal(size=(4 * 3 * 3, 5))  # transB=0: (K, N)
    gemm_c = rng.normal(size=(5,))
    nodes = [
        # unnamed conv: its layer is named after its output tensor
        helper.make_node("Conv", ["data", "w"], ["c1"], group=2, strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node(
            "Constant", [], ["lo"], value=numpy_helper.from_array(np.array(0, dtype=np.float32))
        ),
        helper.make_node(
            "Constant", [], ["hi"], value=numpy_helper.from_array(np.array(6, dtype=np.float32))
        ),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["act"], name="clip"),
        helper.make_node("HardSwish", ["act"], ["hs"], name="hswish"),
        helper.make_node("Flatten", ["hs"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "gb", "gc"], ["y"], name="fc", alpha=0.5, beta=2.0),
    ]
    inits = [_init("w", w), _init("s", scale), _init("b", bias), _init("m", mean), _init("v", var)]
    inits += [_init("gb", gemm_b), _init("gc", gemm_c)]
    g = import_onnx(_model(nodes, inits, [1, 4, 6, 6], "y"))
    assert [layer.name for layer in g.layers] == ["data", "c1", "clip", "hswish", "flatten", "fc", "output"]
    conv = g["c1"]
    assert conv.groups == 2 and conv.stride == (2, 2) and conv.out_shape == (4, 3, 3)
    assert conv.padding == (0, 0) and conv.attrs["pads"] == (0, 0, 1, 1)  # SAME_UPPER: extra after
    assert conv.attrs["folded_bn"] == "bn"
    assert g["clip"].attrs["fn"] == "relu6" and g["clip"].inputs == ["c1"]
    assert g["hswish"].attrs["fn"] == "hardswish"
    fc = g["fc"]
    assert (fc.in_channels, fc.out_channels) == (36, 5) and fc.in_shape == (36,)
    assert fc.weight is not None and fc.bias is not None
    np.testing.assert_allclose(fc.weight.numpy(), 0.5 * gemm_b.T, rtol=1e-6)
    np.testing.assert_allclose(fc.bias.numpy(), 2.0 * gemm_c, rtol=1e-6)
    # folded conv+BN reproduces the two ops (with SAME_UPPER padding done by hand)
    x = torch.randn(2, 4, 6, 6)
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), torch.tensor(w, dtype=torch.float32), None, 2, 0, 1, 2)
    ref = F.batch_norm(
        ref,
        *(torch.tensor(a, dtype=torch.float32) for a in (mean, var, scale, bias)),
        training=False,
        eps=1e-3,
    )
    assert conv.weight is not None and conv.bias is not None
    got = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, 2, 0, 1, 2)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_unsupported_onnx_op_is_one_line() -> None:
    nodes = [
        helper.make_node("Relu", ["data"], ["r"], name="relu"),
        helper.make_node("Hardmax", ["r"], ["y"], name="head/hardmax"),
    ]
    with pytest.raises(CaptureError) as info:
        import_onnx(_model(nodes, [], [1, 3, 4, 4], "y"))
    msg = str(info.value)
    assert msg == "unsupported ONNX operator 'Hardmax' at node 'head/hardmax'"  # op and node, and stops there


def test_onnx_input_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xfe\x00\x01")
    for path in (bad, tmp_path / "missing.onnx"):
        with pytest.raises(CaptureError) as info:
            import_onnx(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(CaptureError, match="no graph nodes"):
        import_onnx(empty)
    # a dynamic spatial shape needs an explicit input_shape
    node = helper.make_node("Relu", ["data"], ["y"], name="relu")
    dynamic = _model([node], [], ["N", 3, "H", "W"], "y")
    with pytest.raises(CaptureError, match="pass input_shape"):
        import_onnx(dynamic)
    assert import_onnx(dynamic, input_shape=(3, 5, 5))["relu"].out_shape == (3, 5, 5)
    # two real inputs
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add")],
        "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(CaptureError, match="exactly one input"):
        import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_capture_dispatches_onnx_path(tmp_path: Path) -> None:
    clear_capture_cache()
    path = tmp_path / "branch.onnx"
    model = BranchNet()
    path.write_bytes(export_onnx(model, (3, 8, 8)))
    g = capture(path)
    assert g.name == "branch" and g.input_shape == (3, 8, 8)
    assert_same_mvm_layers(capture(model, (3, 8, 8)), g)
    assert capture(str(path), (3, 16, 16)).mvm_layers[0].out_shape == (8, 16, 16)
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(CaptureError, match="only .onnx files"):
        capture(tmp_path / "model.pt")


# ---------------------------------------------------------------------------------------------
# zoo models (skipped until the zoo exists)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zoo_name", ["squeezenet1_1", "mobilenetv3_small", "resnet20"])
def test_zoo_routes_agree(zoo_name: str) -> None:
    zoo = pytest.importorskip("xbarforge.zoo")
    if zoo_name not in zoo.list_models():
        pytest.skip(f"{zoo_name} not in the zoo")
    torch.manual_seed(0)
    model = _randomize_bn(zoo.create_model(zoo_name, num_classes=10, input_size=(3, 32, 32)))
    for fold in (True, False):
        check_routes_agree(model, (3, 32, 32), do_constant_folding=fold)

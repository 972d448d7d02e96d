"""torch.fx capture: shapes, BN folding, DAG edges, error messages, the `capture` dispatcher."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xbarforge.errors import CaptureError, ModelNotFoundError
from xbarforge.graph import LayerGraph, cache_info, capture, capture_module, clear_capture_cache

# ---------------------------------------------------------------------------------------------
# small models
# ---------------------------------------------------------------------------------------------


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                mod.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                if mod.affine:
                    mod.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    mod.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return model


class ConvZoo(nn.Module):
    """Every conv flavour: plain, strided, depthwise, grouped, dilated, 1x1, no bias."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=1, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.grouped = nn.Conv2d(16, 32, 3, padding=2, dilation=2, groups=4)
        self.rect = nn.Conv2d(32, 8, (1, 3), stride=(1, 2), padding=(0, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = self.down(x).relu()
        x = nn.functional.relu6(self.dw(x))
        x = self.grouped(x)
        x = self.rect(x)
        x = self.pool(x)
        return self.fc(torch.flatten(x, 1))


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // 4, 1)
        self.expand = nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class Block(nn.Module):
    """Residual add, a two-branch concat and squeeze-excite scaling."""

    def __init__(self) -> None:
        super().__init__()
        self.a = ConvBN(8, 8)
        self.b = ConvBN(8, 8, groups=8)
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Conv2d(8, 4, 3, padding=1)
        self.se = SqueezeExcite(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.a(x))
        y = y + x
        z = torch.cat([self.left(y), self.right(y)], dim=1)
        return self.se(z)


class BranchNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, 8)
        self.block = Block()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.stem(x))
        x = self.pool(x)
        x = x.view(x.size(0), -1)
        return self.fc(self.drop(x))


def _kinds(graph: LayerGraph) -> list[str]:
    return [layer.kind for layer in graph.layers]


# ---------------------------------------------------------------------------------------------
# MVM layer records
# ---------------------------------------------------------------------------------------------


def test_conv_flavours_recorded() -> None:
    model = ConvZoo()
    g = capture_module(model, (3, 16, 16))
    convs = {layer.name: layer for layer in g.mvm_layers}
    assert list(convs) == ["stem", "down", "dw", "grouped", "rect", "fc"]

    stem = convs["stem"]
    assert (stem.in_channels, stem.out_channels, stem.kernel, stem.stride, stem.padding) == (
        3,
        8,
        (3, 3),
        (1, 1),
        (1, 1),
    )
    assert stem.in_shape == (3, 16, 16) and stem.out_shape == (8, 16, 16)

    down = convs["down"]
    assert down.stride == (2, 2) and down.out_shape == (16, 8, 8) and down.bias is None

    dw = convs["dw"]
    assert dw.groups == 16 and dw.in_channels == 16 and dw.rows_per_group == 9 and dw.cols_per_group == 1
    assert dw.weight is not None and tuple(dw.weight.shape) == (16, 1, 3, 3)

    grouped = convs["grouped"]
    assert grouped.groups == 4 and grouped.dilation == (2, 2) and grouped.padding == (2, 2)
    assert grouped.out_shape == (32, 8, 8)

    rect = convs["rect"]
    assert rect.kernel == (1, 3) and rect.stride == (1, 2) and rect.padding == (0, 1)
    assert rect.out_shape == (8, 8, 4)

    fc = convs["fc"]
    assert fc.kind == "linear" and (fc.in_channels, fc.out_channels) == (8, 5)
    assert fc.in_shape == (8,) and fc.out_shape == (5,)

    # weights are detached float32 copies, not the module's storage
    assert stem.weight is not None
    assert torch.equal(stem.weight, model.stem.weight.detach())
    assert stem.weight.data_ptr() != model.stem.weight.data_ptr()
    assert not stem.weight.requires_grad

    acts = [layer.attrs["fn"] for layer in g.layers if layer.kind == "act"]
    assert acts == ["relu", "relu", "relu6"]
    assert g["pool"].kind == "global_pool"
    assert g.layers[0].kind == "input" and g.layers[-1].kind == "output"
    assert g.layers[-1].inputs == ["fc"]


def test_string_padding_and_padding_mode() -> None:
    class Pads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.same3 = nn.Conv2d(3, 4, 3, padding="same")
            self.same4 = nn.Conv2d(4, 4, 4, padding="same")
            self.valid = nn.Conv2d(4, 4, 3, padding="valid")
            self.refl = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.refl(self.valid(self.same4(self.same3(x))))

    g = capture_module(Pads(), (3, 12, 12))
    assert g["same3"].padding == (1, 1) and "pads" not in g["same3"].attrs
    assert g["same4"].padding == (1, 1) and g["same4"].attrs["pads"] == (1, 1, 2, 2)
    assert g["same4"].out_shape == (4, 12, 12)
    assert g["valid"].padding == (0, 0) and g["valid"].out_shape == (4, 10, 10)
    # reflect padding is an explicit pad layer, then a conv without padding
    assert g["refl"].padding == (0, 0) and g["refl"].inputs == ["refl.pad"]
    assert g["refl.pad"].kind == "pad" and g["refl.pad"].out_shape == (4, 12, 12)
    assert g["refl"].out_shape == (4, 10, 10)


def test_functional_linear_matmul_and_conv1d() -> None:
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(4, 6, 3, stride=2, padding=1)
            self.w = nn.Parameter(torch.randn(16, 5))
            self.b = nn.Parameter(torch.randn(5))
            self.proj = nn.Parameter(torch.randn(3, 5))
            self.fc = nn.Linear(5, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)  # (N, 6, 16)
            x = x @ self.w + self.b  # (N, 6, 5): linear with a folded bias
            x = F.linear(x, self.proj)  # (N, 6, 3)
            return x

    model = Seq()
    g = capture_module(model, (4, 32))
    names = [layer.name for layer in g.mvm_layers]
    assert names == ["conv", "matmul", "linear"]
    conv = g["conv"]
    assert conv.kernel == (1, 3) and conv.stride == (1, 2) and conv.padding == (0, 1)
    assert conv.in_shape == (4, 1, 32) and conv.out_shape == (6, 1, 16) and conv.attrs["conv1d"]
    assert conv.weight is not None and tuple(conv.weight.shape) == (6, 4, 1, 3)
    mm = g["matmul"]
    assert (mm.in_channels, mm.out_channels) == (16, 5) and mm.in_shape == (6, 16)
    assert mm.output_pixels == 6 and mm.macs == 6 * 16 * 5
    assert mm.weight is not None and torch.equal(mm.weight, model.w.detach().t())
    assert mm.bias is not None and torch.equal(mm.bias, model.b.detach())
    assert "add" not in _kinds(g)  # the bias add is folded into the matmul layer
    lin = g["linear"]
    assert lin.inputs == ["matmul"] and lin.bias is None and lin.out_shape == (6, 3)


# ---------------------------------------------------------------------------------------------
# batch-norm folding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups,bias", [(1, False), (1, True), (8, False)])
def test_bn_folding_matches_eval_output(groups: int, bias: bool) -> None:
    torch.manual_seed(0)
    block = _randomize_bn(ConvBN(8, 16 if groups == 1 else 8, groups=groups, bias=bias)).eval()
    g = capture_module(block, (8, 10, 10))
    assert "norm" not in _kinds(g)
    conv = g["conv"]
    assert conv.attrs["folded_bn"] == "bn" and conv.bias is not None and conv.weight is not None
    assert g["act"].inputs == ["conv"]  # the BN's consumer reads the conv
    x = torch.randn(4, 8, 10, 10)
    with torch.no_grad():
        ref = block.bn(block.conv(x))
        got = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_bn_after_linear_folds_and_lonely_bn_is_norm() -> None:
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn0 = nn.BatchNorm2d(3)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn_shared = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 6 * 6, 10)
            self.bn1 = nn.BatchNorm1d(10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.bn0(x)  # not after a conv: a digital norm layer
            y = self.conv(x)
            y = self.bn_shared(y) + y  # the conv has two readers: no folding
            return self.bn1(self.fc(y.flatten(1)))

    model = _randomize_bn(Head()).eval()
    g = capture_module(model, (3, 6, 6))
    assert g["bn0"].kind == "norm" and g["bn0"].attrs["fn"] == "batch_norm"
    assert g["bn_shared"].kind == "norm" and g["bn_shared"].inputs == ["conv"]
    assert "folded_bn" not in g["conv"].attrs
    fc = g["fc"]
    assert fc.attrs["folded_bn"] == "bn1"
    assert g.layers[-1].inputs == ["fc"]
    feats = torch.randn(5, 4 * 6 * 6)
    assert fc.weight is not None and fc.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(
            F.linear(feats, fc.weight, fc.bias), model.bn1(model.fc(feats)), atol=1e-5, rtol=1e-5
        )


def test_capture_leaves_model_untouched() -> None:
    model = _randomize_bn(BranchNet()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = capture_module(model, (3, 8, 8))
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # folding uses running statistics even though the model is in train mode
    model.eval()
    conv = g["stem.conv"]
    x = torch.randn(2, 3, 8, 8)
    assert conv.weight is not None
    with torch.no_grad():
        ref = model.stem.bn(model.stem.conv(x))
        got = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# DAG structure
# ---------------------------------------------------------------------------------------------


def test_residual_concat_and_se_edges() -> None:
    g = capture_module(BranchNet(), (3, 8, 8))
    mvm = [layer.name for layer in g.mvm_layers]
    assert mvm == [
        "stem.conv",
        "block.a.conv",
        "block.b.conv",
        "block.left",
        "block.right",
        "block.se.reduce",
        "block.se.expand",
        "fc",
    ]
    assert "norm" not in _kinds(g)
    add = g["block.add"]
    assert add.kind == "add" and add.inputs == ["block.b.act", "stem.act"]
    cat = g["block.cat"]
    assert cat.kind == "concat" and cat.inputs == ["block.left", "block.right"]
    assert cat.attrs["in_shapes"] == [(4, 8, 8), (4, 8, 8)] and cat.out_shape == (8, 8, 8)
    mean = g["block.se.mean"]
    assert mean.kind == "global_pool" and mean.inputs == ["block.cat"] and mean.out_shape == (8, 1, 1)
    mul = g["block.se.mul"]
    assert mul.kind == "mul" and mul.inputs == ["block.cat", "block.se.hardsigmoid"]
    assert g["block.se.hardsigmoid"].attrs["fn"] == "hardsigmoid"
    # x.view(x.size(0), -1): size() is folded away, the view is one reshape layer
    view = g["view"]
    assert view.kind == "reshape" and view.inputs == ["pool"] and view.out_shape == (8,)
    assert g["drop"].kind == "dropout"
    assert g["fc"].inputs == ["drop"]
    # topological order and unique names
    names = [layer.name for layer in g.layers]
    assert len(set(names)) == len(names)
    seen: set[str] = set()
    for layer in g.layers:
        assert all(src in seen for src in layer.inputs), layer.name
        seen.add(layer.name)


def test_mvm_predecessors_on_branching_model() -> None:
    g = capture_module(BranchNet(), (3, 8, 8))
    preds = g.mvm_predecessors()
    assert preds["stem.conv"] == []
    assert preds["block.a.conv"] == ["stem.conv"]
    # the residual add reaches back to the stem through digital ops
    assert preds["block.left"] == ["stem.conv", "block.b.conv"]
    assert preds["block.right"] == ["stem.conv", "block.b.conv"]
    # the SE branch reads the concat of both parallel branches
    assert preds["block.se.reduce"] == ["block.left", "block.right"]
    assert preds["block.se.expand"] == ["block.se.reduce"]
    assert preds["fc"] == ["block.left", "block.right", "block.se.expand"]
    consumers = g.consumers()
    assert consumers["block.cat"] == ["block.se.mean", "block.se.mul"]


def test_shared_module_gets_unique_names_and_pools() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.mp = nn.MaxPool2d(2)
            self.ap = nn.AdaptiveAvgPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.act(self.conv(x))
            x = self.act(self.conv(self.mp(x) * 2.0 - 1.0))
            return F.avg_pool2d(self.ap(x), 2)

    g = capture_module(Shared(), (4, 8, 8))
    assert [layer.name for layer in g.mvm_layers] == ["conv", "conv_1"]
    assert [layer.name for layer in g.layers if layer.kind == "act"] == ["act", "act_1"]
    assert g["mp"].kind == "pool" and g["mp"].attrs["fn"] == "max" and g["mp"].out_shape == (4, 4, 4)
    assert g["ap"].kind == "pool" and g["ap"].out_shape == (4, 2, 2)  # adaptive, but not 1x1
    assert g["avg_pool2d"].kind == "pool" and g["avg_pool2d"].out_shape == (4, 1, 1)
    assert g["mul"].kind == "mul" and g["mul"].inputs == ["mp"]
    assert g["sub"].kind == "add" and g["sub"].attrs["op"] == "sub"
    assert g["conv_1"].inputs == ["sub"]


def test_summary_and_to_dict() -> None:
    g = capture_module(BranchNet(), (3, 8, 8), name="branchnet")
    text = g.summary()
    assert "block.se.mul" in text and "branchnet" in text and "MVM layers" in text
    assert len(g.summary(mvm_only=True).splitlines()) == len(g.mvm_layers) + 3
    d = g.to_dict()
    json.dumps(d)
    assert d["name"] == "branchnet" and d["num_mvm_layers"] == len(g.mvm_layers)
    assert d["layers"][1]["kind"] == "conv" and d["layers"][1]["kernel"] == [3, 3]
    assert d["macs"] == g.macs and d["num_weights"] == g.num_weights


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.encoder = Encoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.proj(x))


def test_unsupported_module_is_one_line_naming_node() -> None:
    with pytest.raises(CaptureError) as info:
        capture_module(Recurrent(), (4, 8))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == "unsupported operator 'torch.nn.modules.rnn.LSTM' at node 'encoder.lstm'"  # and stops there


def test_unsupported_function_is_one_line_naming_node() -> None:
    class Spectral(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft2(self.conv(x)).abs()

    with pytest.raises(CaptureError) as info:
        capture_module(Spectral(), (3, 8, 8))
    msg = str(info.value)
    assert "\n" not in msg
    assert "'torch.fft.fft2'" in msg and "at node 'fft_fft2'" in msg


def test_untraceable_model() -> None:
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                return self.conv(x)
            return x

    with pytest.raises(CaptureError) as info:
        capture_module(Dynamic(), (3, 8, 8))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("cannot trace Dynamic with torch.fx in module (the model itself)")
    # capture() falls back to an ONNX export, which records the branch taken on the capture input
    # (zeros: x.sum() > 0 is False, so the model is the identity)
    g = capture(Dynamic(), (3, 8, 8))
    assert g.source == "onnx-fallback" and g.mvm_layers == [] and [layer.kind for layer in g.layers] == [
        "input", "identity", "output"]


def test_bad_inputs() -> None:
    class TwoInputs(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    with pytest.raises(CaptureError, match="2 required inputs"):
        capture_module(TwoInputs(), (3,))
    with pytest.raises(CaptureError, match=r"at node 'conv'.*3 channels"):
        capture_module(_OneConv(), (5, 8, 8))
    with pytest.raises(CaptureError, match="positive ints"):
        capture_module(_OneConv(), (3, 0, 8))
    with pytest.raises(CaptureError, match="expected a torch.nn.Module"):
        capture_module("resnet20", (3, 8, 8))  # type: ignore[arg-type]


class _OneConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


# ---------------------------------------------------------------------------------------------
# capture() dispatcher and cache
# ---------------------------------------------------------------------------------------------


def test_capture_cache_hits_and_invalidation() -> None:
    clear_capture_cache()
    model = BranchNet()
    g1 = capture(model, (3, 8, 8))
    g2 = capture(model, (3, 8, 8))
    assert cache_info()["hits"] == 1 and cache_info()["misses"] == 1
    assert g1 is not g2 and g1.layers[1] is not g2.layers[1]
    assert [layer.name for layer in g1.layers] == [layer.name for layer in g2.layers]
    g2.layers[1].attrs["touched"] = True
    assert "touched" not in capture(model, (3, 8, 8)).layers[1].attrs
    # another input shape is another entry
    assert capture(model, (3, 16, 16))["stem.conv"].out_shape == (8, 16, 16)
    # an in-place weight update invalidates the entry
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    g3 = capture(model, (3, 8, 8))
    assert g3["fc"].weight is not None and g1["fc"].weight is not None
    assert torch.allclose(g3["fc"].weight, g1["fc"].weight + 1.0)
    clear_capture_cache()
    assert cache_info()["size"] == 0


def test_capture_dispatch_errors() -> None:
    with pytest.raises(CaptureError, match="input_shape is required"):
        capture(BranchNet())
    with pytest.raises(ModelNotFoundError):
        capture("definitely_not_a_model_name")
    with pytest.raises(CaptureError, match="ONNX file not found"):
        capture("/nonexistent/model.onnx")
    with pytest.raises(CaptureError, match="cannot capture a int"):
        capture(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# zoo-wide (skipped until the zoo exists)
# ---------------------------------------------------------------------------------------------


def _zoo_names() -> list[str]:
    try:
        from xbarforge.zoo import list_models
    except ImportError:
        return []
    return list_models()


@pytest.mark.parametrize("zoo_name", _zoo_names() or ["<no zoo>"])
def test_zoo_models_capture(zoo_name: str) -> None:
    zoo = pytest.importorskip("xbarforge.zoo")
    c, h, w = zoo.default_input_shape(zoo_name)
    shape = (c, min(h, 64), min(w, 64))  # keep ImageNet-style models cheap
    model = zoo.create_model(zoo_name, num_classes=10, input_size=shape)
    g = capture_module(model, shape, name=zoo_name)
    assert g.mvm_layers and g.mvm_layers[-1].out_channels == 10  # the classifier (conv or linear)
    if not zoo_name.startswith("densenet"):  # DenseNet is pre-activation: BN before conv stays "norm"
        assert not [layer for layer in g.layers if layer.kind == "norm" and layer.attrs.get("fn") == "batch_norm"]
    names = [layer.name for layer in g.layers]
    assert len(set(names)) == len(names)
    for layer in g.mvm_layers:
        assert layer.weight is not None and layer.num_weights == layer.weight.numel()
        assert layer.in_channels % layer.groups == 0 and layer.out_channels % layer.groups == 0


def test_capture_by_zoo_name() -> None:
    zoo = pytest.importorskip("xbarforge.zoo")
    if "resnet20" not in zoo.list_models():
        pytest.skip("resnet20 not in the zoo")
    clear_capture_cache()
    g = capture("resnet20", num_classes=7)
    assert g.name == "resnet20" and g.input_shape == tuple(zoo.default_input_shape("resnet20"))
    assert g.mvm_layers[-1].out_channels == 7
    again = capture("ResNet20", num_classes=7)
    assert cache_info()["hits"] == 1
    assert [layer.name for layer in again.layers] == [layer.name for layer in g.layers]
    assert capture("resnet20", (3, 16, 16), num_classes=7).mvm_layers[0].out_shape[1:] == (16, 16)

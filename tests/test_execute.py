"""Executing a Mapping on ideal crossbars reproduces the quantized network.

`xbarforge.compiler.execute` writes every layer's quantized weights into crossbar cells exactly as
the Mapping places them and computes each layer from those cells only. If the compiler misplaced,
dropped or doubled a block, or wired a depthwise slot to the wrong group, the outputs here would
not match a plain torch model with the same quantized weights.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from xbarforge import load_hardware
from xbarforge.compiler.compile import compile_graph, isaac_like, min_crossbars
from xbarforge.compiler.execute import (
    dequantized_weight,
    encode,
    execute_layer,
    execute_mapping,
    execute_model,
    program_crossbars,
    quantize_weight,
    reference_forward,
    reference_layer,
    slice_coefficients,
)
from xbarforge.compiler.lower import Form, lower
from xbarforge.compiler.mapping import LayerPlan, Mapping, PlacedBlock
from xbarforge.compiler.pack import pack_counts
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.zoo import create_model

PRESETS = ("rnc-paper", "isaac", "edge")
TIGHT = {"rtol": 1e-4, "atol": 1e-4}


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# models and helpers
# ------------------------------------------------------------------------------------------------


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch-norm statistics, so that folding them matters."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                mod.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval()


class Mixed(nn.Module):
    """Dense conv + BN, strided dilated conv, groups=2 with groups that tile, depthwise + BN, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.down = nn.Conv2d(16, 48, 3, stride=2, padding=2, dilation=2)
        self.grouped = nn.Conv2d(48, 64, 3, padding=1, groups=2)  # 216-row groups: row tiles
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
        self.dw_bn = nn.BatchNorm2d(64)
        self.pw = nn.Conv2d(64, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.down(x))
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.dw_bn(self.dw(x)))
        x = self.pw(x)
        return self.fc(x.mean((2, 3)))


class Sequence1d(nn.Module):
    """Conv1d with 'same' padding of an even kernel (uneven pads), then a linear over (N, T, F)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(5, 12, 4, padding="same")
        self.conv2 = nn.Conv2d(1, 3, 2, padding="same")
        self.fc = nn.Linear(12, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))  # (N, 12, T)
        z = self.conv2(y.unsqueeze(1)).mean(1)  # (N, 12, T), 2-D 'same' with an even kernel
        return self.fc(z.transpose(1, 2))  # (N, T, 7)


def quantized_torch(model: nn.Module, graph: LayerGraph, hw: HardwareSpec) -> nn.Module:
    """The model with BN fused by torch and each MVM weight replaced by its quantized value.

    Quantized here with the documented formula, not with execute.py's helpers.
    """
    qmax = 2 ** (hw.precision.weight_bits - 1) - 1
    fused = fuse(model)
    mods = dict(fused.named_modules())
    for layer in graph.mvm_layers:
        w = layer.weight.double()
        scale = float(w.abs().max()) / qmax
        deq = (torch.round(w / scale).clamp(-qmax, qmax) * scale).float()
        mod = mods[layer.name]
        mod.weight = nn.Parameter(deq.reshape(mod.weight.shape))
        if layer.bias is not None:
            mod.bias = nn.Parameter(layer.bias.clone())
    return fused.eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def mappings(graph: LayerGraph, hw: HardwareSpec) -> tuple[dict[str, Mapping], int]:
    fewest = min_crossbars(graph, hw)
    return {
        "isaac-like": isaac_like(graph, hw),
        "min": compile_graph(graph, hw, crossbars=fewest, samples=[1, 8]),
        "3x": compile_graph(graph, hw, crossbars=3 * fewest, samples=[1, 8]),
        "rounds": compile_graph(graph, hw, crossbars=max(1, fewest // 2), samples=[1, 8]),
    }, fewest


def hand_mapping(graph: LayerGraph, hw: HardwareSpec, forms: dict[str, Form], copies: int) -> Mapping:
    """Lower each layer in the given form and pack all copies into shared crossbars (MaxRects, in counts)."""
    plans, by_shape = [], {}
    for layer in graph.mvm_layers:
        low = lower(layer, hw, forms.get(layer.name))
        plans.append(LayerPlan.from_lowered(low, copies))
        for c in range(copies):
            for b in low.blocks:
                by_shape.setdefault((b.height, b.width), []).append((layer.name, c, b))
    shapes = list(by_shape)
    types = pack_counts([(len(by_shape[s]), *s) for s in shapes], hw.crossbar.rows, hw.usable_cols)
    blocks, x = [], 0
    for bt in types:
        for _ in range(bt.count):
            for key, row, col in bt.content:
                name, c, b = by_shape[shapes[key]].pop()
                blocks.append(PlacedBlock(name, c, b.group0, b.group1, b.row0, b.row1, b.col0, b.col1,
                                          x, row, col, b.height, b.width, b.weights))
            x += 1
    return Mapping(graph.name, graph.input_shape, hw.name, hw.crossbar.rows, hw.crossbar.cols, None,
                   plans, blocks, x)


@pytest.fixture(scope="module")
def mixed() -> tuple[nn.Module, LayerGraph]:
    torch.manual_seed(0)
    model = randomize_bn(Mixed())
    return model, capture(model, (3, 12, 12))


# ------------------------------------------------------------------------------------------------
# encoding
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS + ("mnsim-default",))
def test_encoding_decodes_to_q(preset: str) -> None:
    """Shift-adding the slices (minus the offset bias) gives q back; levels fit the cells."""
    hw = load_hardware(preset)
    qmax = 2 ** (hw.precision.weight_bits - 1) - 1
    q = torch.cat((torch.arange(-qmax, qmax + 1), torch.randint(-qmax, qmax + 1, (1000,))))
    levels = encode(q, hw)
    assert levels.shape == (q.numel(), hw.cols_per_weight)
    bias = 2 ** (hw.precision.weight_bits - 1) if hw.crossbar.encoding == "offset" else 0
    decoded = levels.double() @ slice_coefficients(hw) - bias
    assert torch.equal(decoded.long(), q)
    top = 2**hw.crossbar.cell_bits - 1
    if hw.crossbar.encoding == "signed":
        assert int(levels.abs().max()) <= min(top, qmax)
    else:
        assert 0 <= int(levels.min()) and int(levels.max()) <= top


def test_differential_column_order() -> None:
    """Differential pairs are interleaved, least significant slice first: G+ s0, G- s0, G+ s1, ..."""
    hw = load_hardware("edge")  # 8-bit weights, 2-bit cells: 4 slices, 8 columns
    assert encode(torch.tensor([0b01_10_11_01]), hw).tolist() == [[1, 0, 3, 0, 2, 0, 1, 0]]
    assert encode(torch.tensor([-6]), hw).tolist() == [[0, 2, 0, 1, 0, 0, 0, 0]]


def test_quantize_is_symmetric_per_layer() -> None:
    hw = load_hardware("edge")
    w = torch.tensor([[-2.0, 1.0, 0.5]])
    q, scale = quantize_weight(w, hw)
    assert scale == pytest.approx(2.0 / 127)
    assert q.tolist() == [[-127, 64, 32]]


# ------------------------------------------------------------------------------------------------
# compiled mappings of the mixed model on every preset
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_mixed_model_every_mapping(preset: str, mixed: tuple[nn.Module, LayerGraph]) -> None:
    model, graph = mixed
    hw = load_hardware(preset)
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_q = quantized_torch(model, graph, hw)(x)
        want_f = model(x)
    ref_out, ref_layers = reference_forward(model, x, hw, graph=graph)
    torch.testing.assert_close(ref_out, want_q, **TIGHT)
    maps, fewest = mappings(graph, hw)
    for kind, m in maps.items():
        out, per_layer = execute_model(m, model, x, hw, graph=graph)
        assert set(per_layer) == {layer.name for layer in graph.mvm_layers}
        for name, y in per_layer.items():
            torch.testing.assert_close(y, ref_layers[name], **TIGHT, msg=f"{preset} {kind} {name}")
        torch.testing.assert_close(out, want_q, **TIGHT)
        assert rel_err(out, want_f) < 0.05, (preset, kind)
        if kind == "rounds" and fewest > 1:
            assert m.rounds > 1


def test_budget_brings_duplication_and_diagonal_forms(mixed: tuple[nn.Module, LayerGraph]) -> None:
    """The 3x budget really exercises copies and diag > 1 (so the test above covers them)."""
    _, graph = mixed
    hw = load_hardware("rnc-paper")
    m = compile_graph(graph, hw, crossbars=3 * min_crossbars(graph, hw), samples=[1, 8])
    assert any(p.copies > 1 for p in m.layers)
    assert any(not p.form.tiled and p.form.diag > 1 for p in m.layers)
    grouped = m.layer("grouped")
    assert grouped.form.tiled and grouped.rows_per_group > hw.crossbar.rows  # groups that tile


@pytest.mark.parametrize("preset", PRESETS)
def test_conv1d_uneven_pads_and_linear_leading_dims(preset: str) -> None:
    torch.manual_seed(2)
    model = Sequence1d().eval()
    graph = capture(model, (5, 9))
    assert graph["conv"].attrs.get("conv1d") and graph["conv"].attrs.get("pads")
    assert graph["conv2"].attrs.get("pads")
    hw = load_hardware(preset)
    x = torch.randn(3, 5, 9)
    with torch.no_grad():
        want_q = quantized_torch(model, graph, hw)(x)
    m = compile_graph(graph, hw, crossbars=2 * min_crossbars(graph, hw), samples=[1, 8])
    out, _ = execute_model(m, model, x, hw, graph=graph)
    assert out.shape == (3, 9, 7)
    torch.testing.assert_close(out, want_q, **TIGHT)


# ------------------------------------------------------------------------------------------------
# grouped forms lowered directly
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("diag,stack", [(1, 1), (1, 7), (2, 3), (3, 5), (5, 1), (4, 2)])
def test_depthwise_forms(preset: str, diag: int, stack: int) -> None:
    """Every (diag, stack) slot layout computes the right groups, packed with other layers."""
    hw = load_hardware(preset)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(37, 37, 3, padding=1, groups=37), nn.Conv2d(37, 74, 3, groups=37))
    graph = capture(model, (37, 6, 6))
    forms = {}
    for layer in graph.mvm_layers:  # shrink the form until a block (diag*stack groups) fits
        cols_g = layer.cols_per_group * hw.cols_per_weight
        d = min(diag, hw.crossbar.rows // layer.rows_per_group)
        forms[layer.name] = Form(diag=d, stack=max(1, min(stack, hw.usable_cols // (d * cols_g))), tiled=False)
    m = hand_mapping(graph, hw, forms, copies=2)
    xbars = program_crossbars(m, graph, hw)
    x = torch.randn(2, 37, 6, 6)
    for layer in graph.mvm_layers:
        torch.testing.assert_close(execute_layer(m, graph, hw, layer.name, x, xbars),
                                   reference_layer(layer, x, hw), **TIGHT)
        form = m.layer(layer.name).form
        assert all(b.group1 - b.group0 == min(form.diag * form.stack, 37 - b.group0)
                   for b in m.blocks_of(layer.name))


# ------------------------------------------------------------------------------------------------
# the checks catch broken mappings
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> tuple[LayerGraph, HardwareSpec, Mapping]:
    torch.manual_seed(4)
    graph = capture(nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 200, 3)), (8, 6, 6))
    hw = load_hardware("edge")
    m = compile_graph(graph, hw, crossbars=2 * min_crossbars(graph, hw), samples=[1, 8])
    return graph, hw, m


def _replace(m: Mapping, i: int, **changes: int) -> Mapping:
    """A copy of `m` with every block explicit and block i changed."""
    blocks = list(m.blocks)
    blocks[i] = dataclasses.replace(blocks[i], **changes)
    return dataclasses.replace(m, placed=blocks, runs=[])


def test_overlap_is_rejected(small: tuple[LayerGraph, HardwareSpec, Mapping]) -> None:
    graph, hw, m = small
    a = m.blocks[0]
    i = next(k for k, b in enumerate(m.blocks) if (b.round, b.crossbar) != (a.round, a.crossbar)
             and b.height <= hw.crossbar.rows - a.row_offset and b.width <= hw.usable_cols - a.col_offset)
    bad = _replace(m, i, crossbar=a.crossbar, round=a.round, row_offset=a.row_offset, col_offset=a.col_offset)
    with pytest.raises(ValueError, match="overlaps"):
        program_crossbars(bad, graph, hw)


def test_missing_and_doubled_weights_are_rejected(small: tuple[LayerGraph, HardwareSpec, Mapping]) -> None:
    graph, hw, m = small
    with pytest.raises(ValueError, match="missing|copies"):
        program_crossbars(dataclasses.replace(m, placed=m.blocks[1:], runs=[]), graph, hw)
    tiled = next(k for k, b in enumerate(m.blocks) if m.layer(b.layer).form.tiled and b.col0 > 0)
    b, cpw = m.blocks[tiled], hw.cols_per_weight
    with pytest.raises(ValueError, match="missing"):
        program_crossbars(_replace(m, tiled, col0=b.col0 - cpw, col1=b.col1 - cpw), graph, hw)


def test_block_outside_crossbar_is_rejected(small: tuple[LayerGraph, HardwareSpec, Mapping]) -> None:
    graph, hw, m = small
    b = m.blocks[0]
    with pytest.raises(ValueError, match="leaves"):
        program_crossbars(_replace(m, 0, col_offset=hw.usable_cols - b.width + 1), graph, hw)


def test_output_comes_from_the_cells(small: tuple[LayerGraph, HardwareSpec, Mapping]) -> None:
    """Changing one programmed cell changes the output; changing one copy's cell is caught."""
    graph, hw, m = small
    name = graph.mvm_layers[1].name
    x = torch.randn(2, 8, 4, 4)
    xbars = program_crossbars(m, graph, hw)
    good = execute_layer(m, graph, hw, name, x, xbars)
    first = next(b for b in m.blocks_of(name) if b.copy == 0)
    for b in m.blocks_of(name):  # the same cell of every copy, so the copies still agree
        if (b.group0, b.row0, b.col0) == (first.group0, first.row0, first.col0):
            xbars[(b.round, b.crossbar)][b.row_offset, b.col_offset] += 1
    assert not torch.allclose(execute_layer(m, graph, hw, name, x, xbars), good, **TIGHT)
    if m.layer(name).copies > 1:
        xbars = program_crossbars(m, graph, hw)
        c = next(b for b in m.blocks_of(name) if b.copy == 1)
        xbars[(c.round, c.crossbar)][c.row_offset, c.col_offset] += 1
        with pytest.raises(ValueError, match="differs"):
            execute_layer(m, graph, hw, name, x, xbars)


def test_execute_mapping_and_method(small: tuple[LayerGraph, HardwareSpec, Mapping]) -> None:
    graph, hw, m = small
    outs = m.execute(graph, None, hw)
    assert set(outs) == {layer.name for layer in graph.mvm_layers}
    for layer in graph.mvm_layers:
        assert outs[layer.name].shape[1:] == layer.out_shape
    x = {graph.mvm_layers[0].name: torch.randn(3, 8, 6, 6)}
    out = execute_mapping(m, graph, hw, x)[graph.mvm_layers[0].name]
    torch.testing.assert_close(out, reference_layer(graph.mvm_layers[0], x[graph.mvm_layers[0].name], hw), **TIGHT)
    torch.testing.assert_close(dequantized_weight(graph.mvm_layers[0], hw), graph.mvm_layers[0].weight,
                               rtol=0, atol=float(graph.mvm_layers[0].weight.abs().max()) / 127)


def test_mapping_survives_json_before_execution(small: tuple[LayerGraph, HardwareSpec, Mapping]) -> None:
    graph, hw, m = small
    loaded = Mapping.from_dict(m.to_dict())
    a = execute_mapping(loaded, graph, hw, {graph.mvm_layers[1].name: torch.ones(1, 8, 4, 4)})
    b = execute_mapping(m, graph, hw, {graph.mvm_layers[1].name: torch.ones(1, 8, 4, 4)})
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------
# zoo models end to end
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["squeezenet1_1", "mobilenetv3_small"])
def test_zoo_model_end_to_end(name: str) -> None:
    torch.manual_seed(5)
    model = randomize_bn(create_model(name, num_classes=10, input_size=(32, 32)))
    graph = capture(model, (3, 32, 32))
    hw = load_hardware("rnc-paper")
    m = compile_graph(graph, hw, crossbars=2 * min_crossbars(graph, hw), samples=[1, 8])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    out, per_layer = execute_model(m, model, x, hw, graph=graph)
    assert len(per_layer) == len(graph.mvm_layers)
    with torch.no_grad():
        want_q = quantized_torch(model, graph, hw)(x)
        want_f = model(x)
    scale = float(want_q.abs().max())
    torch.testing.assert_close(out, want_q, rtol=1e-4, atol=1e-4 * scale)
    assert rel_err(out, want_f) < 0.1
    if name == "mobilenetv3_small":
        assert any(not p.form.tiled for p in m.layers)
    assert math.isfinite(float(out.sum()))

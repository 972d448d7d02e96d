"""Tests for the zoo transformers: shapes, token counts, DeiT-Tiny size, fx trace, ONNX export, init."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from xbarforge.zoo import create_model, default_input_shape, list_models

# Small configurations (32x32, shallow) so every check runs in well under a second.
SMALL: list[tuple[str, dict[str, object]]] = [
    ("vit_tiny", {"input_size": 32, "depth": 2}),
    ("vit_cifar", {"input_size": 32, "depth": 2}),
    ("hybrid_vit", {"input_size": 32, "depth": 2}),
]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(name: str, **kwargs: object) -> nn.Module:
    """Build on the meta device: shapes only, no memory or init cost (for parameter counting)."""
    with torch.device("meta"):
        return create_model(name, **kwargs)  # type: ignore[arg-type]


def _small(name: str, kwargs: dict[str, object]) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=10, **kwargs).eval()  # type: ignore[arg-type]


def test_registered_with_default_shapes() -> None:
    assert {"vit_tiny", "vit_cifar", "hybrid_vit"} <= set(list_models())
    assert default_input_shape("vit_tiny") == (3, 224, 224)
    assert default_input_shape("vit_cifar") == (3, 32, 32)
    assert default_input_shape("hybrid_vit") == (3, 224, 224)


@pytest.mark.parametrize(
    ("name", "kwargs", "hw"),
    [
        ("vit_cifar", {}, (32, 32)),  # full default model
        ("hybrid_vit", {"input_size": 32}, (32, 32)),  # full depth, 2x2 tokens
        ("vit_tiny", {"input_size": (48, 64), "depth": 2}, (48, 64)),  # non-square, 12x16 patches of 4
        ("hybrid_vit", {"input_size": (48, 64), "depth": 2}, (48, 64)),  # 3x4 tokens
    ],
)
def test_output_shapes(name: str, kwargs: dict[str, object], hw: tuple[int, int]) -> None:
    model = _small(name, kwargs)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "kwargs"), [("vit_tiny", {}), ("hybrid_vit", {"depth": 2})])
def test_224_forward_batch1(name: str, kwargs: dict[str, object]) -> None:
    model = _small(name, kwargs)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 10)


def test_deit_tiny_parameter_count() -> None:
    # DeiT-Tiny (Touvron et al. 2021, Table 1: 5M); timm's deit_tiny_patch16_224 has exactly this many.
    model = _meta_model("vit_tiny", num_classes=1000, input_size=224)
    assert _n_params(model) == 5_717_416
    assert model.patch_embed.proj.kernel_size == (16, 16) and model.patch_embed.proj.stride == (16, 16)
    assert model.pos_embed.shape == (1, 197, 192)
    assert len(model.blocks) == 12
    assert model.blocks[0].attn.heads == 3 and model.blocks[0].mlp.fc1.out_features == 768


def test_timm_state_dict_names() -> None:
    keys = set(_meta_model("vit_tiny", input_size=32, depth=1).state_dict())
    for key in (
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.bias",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.bias",
        "norm.weight",
        "head.weight",
    ):
        assert key in keys


def test_token_counts() -> None:
    assert _meta_model("vit_tiny", input_size=32).pos_embed.shape == (1, 8 * 8 + 1, 192)  # auto patch 4
    assert _meta_model("vit_tiny", input_size=(224, 160)).pos_embed.shape == (1, 14 * 10 + 1, 192)
    assert _meta_model("vit_tiny", input_size=224, patch_size=32).pos_embed.shape == (1, 50, 192)
    cifar = _meta_model("vit_cifar")
    assert cifar.pos_embed.shape == (1, 65, 128)
    assert len(cifar.blocks) == 6 and cifar.blocks[0].attn.heads == 4 and cifar.blocks[0].mlp.fc1.out_features == 256

    hybrid = _meta_model("hybrid_vit")
    assert hybrid.pos_embed.shape == (1, 196, 192)
    convs = [m for m in hybrid.stem.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [24, 48, 96, 192]
    assert [c.stride for c in convs] == [(2, 2)] * 4
    assert hybrid.proj.kernel_size == (1, 1) and hybrid.proj.out_channels == 192
    assert len(hybrid.blocks) == 6 and hybrid.blocks[0].mlp.fc1.out_features == 576
    assert _meta_model("hybrid_vit", input_size=32).pos_embed.shape == (1, 4, 192)
    # 16x16: three stride-2 stages reach 2x2, the fourth stays stride 1; the weights do not change.
    small = _meta_model("hybrid_vit", input_size=16)
    assert [m.stride for m in small.stem.modules() if isinstance(m, nn.Conv2d)] == [(2, 2)] * 3 + [(1, 1)]
    assert small.pos_embed.shape == (1, 4, 192)
    assert _n_params(small) == _n_params(_meta_model("hybrid_vit", input_size=32))


@pytest.mark.parametrize(("name", "kwargs"), SMALL)
def test_fx_trace_matches_module(name: str, kwargs: dict[str, object]) -> None:
    model = _small(name, kwargs)
    x = torch.randn(2, 3, 32, 32)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    # Explicit attention: two activation matmuls per block, no fused attention anywhere.
    targets = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    assert F.scaled_dot_product_attention not in targets
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    # Every module is called exactly once per forward (the capture maps one layer per module call).
    called = [n.target for n in traced.graph.nodes if n.op == "call_module"]
    assert len(called) == len(set(called))
    weighted = {name for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}
    assert weighted <= set(called)


@pytest.mark.parametrize(("name", "kwargs"), SMALL)
def test_onnx_export(name: str, kwargs: dict[str, object]) -> None:
    model = _small(name, kwargs)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 32, 32), buffer, dynamo=False, opset_version=17)
    assert len(buffer.getvalue()) > 0


def test_bad_patch_size_raises() -> None:
    with pytest.raises(ValueError, match="not divisible by the ViT patch size 4") as info:
        create_model("vit_tiny", input_size=30)  # auto patch 4
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="patch size 16"):
        create_model("vit_tiny", input_size=(224, 200))
    with pytest.raises(ValueError, match="patch size 7"):
        create_model("vit_cifar", patch_size=7)
    with pytest.raises(ValueError, match="patch size 0"):
        create_model("vit_cifar", patch_size=0)


def test_heads_must_divide_dim() -> None:
    with pytest.raises(ValueError, match="not divisible by the number of heads"):
        create_model("vit_cifar", heads=3)
    with pytest.raises(ValueError, match="not divisible by the number of heads"):
        create_model("hybrid_vit", input_size=32, dim=100, heads=3)


def test_weight_init() -> None:
    torch.manual_seed(0)
    model = create_model("vit_cifar")
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert abs(m.weight.std().item() - 0.02) < 0.003
            assert m.weight.abs().max().item() <= 2.0
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
        elif isinstance(m, nn.LayerNorm):
            assert m.eps == 1e-6
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    assert abs(model.pos_embed.std().item() - 0.02) < 0.003
    assert 0.0 < model.cls_token.abs().max().item() <= 2.0
    hybrid = create_model("hybrid_vit", input_size=32, depth=1)
    assert abs(hybrid.pos_embed.std().item() - 0.02) < 0.01
    bn = hybrid.stem[1]
    assert isinstance(bn, nn.BatchNorm2d) and torch.equal(bn.weight, torch.ones_like(bn.weight))

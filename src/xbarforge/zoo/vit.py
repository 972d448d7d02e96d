"""Vision transformers: ViT-Tiny / DeiT-Tiny, a small CIFAR ViT, and a conv-stem hybrid.

`vit_tiny` is DeiT-Tiny (Touvron et al. 2021, "Training data-efficient image transformers &
distillation through attention", ICML, Table 1), the ViT of Dosovitskiy et al. 2021 ("An Image is
Worth 16x16 Words", ICLR) at embed dim 192, depth 12, 3 heads, MLP ratio 4, 16x16 patches: a patch
embedding conv, a class token, a learned position embedding, pre-norm blocks (LayerNorm eps 1e-6,
GELU MLP), a final LayerNorm and a Linear head on the class token. Module names follow the timm
reference (`patch_embed.proj`, `blocks.N.attn.qkv`, ...), so its state dict keys match timm's
`deit_tiny_patch16_224`. Parameter count with 1000 classes at 224x224: 5,717,416.

`vit_cifar` is the same class sized for CIFAR-10 on a CPU (4x4 patches, dim 128, depth 6, 4 heads,
MLP ratio 2), and `hybrid_vit` replaces the patchify conv with a stride-2 3x3 conv + BN + ReLU stem
followed by a 1x1 conv, as in Xiao et al. 2021 ("Early Convolutions Help Transformers See Better",
NeurIPS), in the spirit of the LeViT and MobileViT conv-attention hybrids.

Attention is written out as explicit matmuls and a softmax (no `F.scaled_dot_product_attention`,
no `nn.MultiheadAttention`), every weight-bearing layer is an `nn.Linear` or `nn.Conv2d` called
once per forward, and there is no dropout: the capture sees one layer per crossbar-mapped weight.
The position embeddings are sized from `input_size`, so a model only runs at the size it was built for.
"""

from __future__ import annotations

import torch
from torch import nn

from xbarforge.zoo.registry import register_model

_LN_EPS = 1e-6


def _vit_init(model: nn.Module) -> None:
    """DeiT / timm init: Linear trunc-normal(0.02) with zero bias, LayerNorm weight 1 bias 0.

    Convs are left alone here: the ViT patch embedding keeps PyTorch's default init as in the
    reference code, and the hybrid's conv stem is initialised by its own class.
    """
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _check_heads(dim: int, heads: int) -> None:
    if heads < 1 or dim % heads != 0:
        raise ValueError(f"embed dim {dim} is not divisible by the number of heads {heads}")


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv Linear, written as explicit matmuls.

    Spelled out (rather than `F.scaled_dot_product_attention`) so the capture sees Q K^T, the
    softmax and (attn V) as separate operations and the qkv / proj Linears as the only weights.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x


class Mlp(nn.Module):
    """Transformer feed-forward: Linear to `hidden`, GELU, Linear back to `dim`."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping patches as a conv with kernel = stride = patch, flattened to (B, N, dim) tokens."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT / DeiT: patch embedding, class token + learned position embedding, blocks, LN, head on the class token."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: tuple[int, int] = (224, 224),
        patch_size: int = 16,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        h, w = input_size
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise ValueError(f"input size {h}x{w} is not divisible by the ViT patch size {patch_size}")
        _check_heads(dim, heads)
        num_patches = (h // patch_size) * (w // patch_size)
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        _vit_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x[:, 0])


def _stem_strides(input_size: tuple[int, int], stages: int) -> list[int]:
    """Stride 2 for each stem stage while the feature map stays at least 2x2 after it, stride 1 after that.

    A 3x3 / pad 1 / stride 2 conv maps a side s to ceil(s / 2), so 224 -> 14x14 and 32 -> 2x2
    (all four stages stride 2), 16 -> 2x2 (the fourth stage stride 1).
    """
    h, w = input_size
    strides = []
    for _ in range(stages):
        if min(h, w) >= 3:
            strides.append(2)
            h, w = (h + 1) // 2, (w + 1) // 2
        else:
            strides.append(1)
    return strides


def _stem_out(input_size: tuple[int, int], strides: list[int]) -> tuple[int, int]:
    h, w = input_size
    for s in strides:
        h, w = (h - 1) // s + 1, (w - 1) // s + 1
    return h, w


class HybridViT(nn.Module):
    """Conv stem (3x3 conv + BN + ReLU stages, stride 2 while >= 2x2 remains) + 1x1 conv, then ViT blocks.

    Tokens are the stem's output pixels with a learned position embedding (no class token); the
    head is a Linear on the mean over tokens after a final LayerNorm.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: tuple[int, int] = (224, 224),
        stem_channels: tuple[int, ...] = (24, 48, 96, 192),
        dim: int = 192,
        depth: int = 6,
        heads: int = 3,
        mlp_ratio: float = 3.0,
    ) -> None:
        super().__init__()
        _check_heads(dim, heads)
        strides = _stem_strides(input_size, len(stem_channels))
        layers: list[nn.Module] = []
        c = in_channels
        for out, stride in zip(stem_channels, strides, strict=True):
            layers += [
                nn.Conv2d(c, out, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            c = out
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c, dim, kernel_size=1)
        h, w = _stem_out(input_size, strides)
        self.pos_embed = nn.Parameter(torch.zeros(1, h * w, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)
        self.head = nn.Linear(dim, num_classes)
        for m in self.stem.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        _vit_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.stem(x)).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1))


@register_model
def vit_tiny(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (224, 224),
    patch_size: int | None = None,
    dim: int = 192,
    depth: int = 12,
    heads: int = 3,
    mlp_ratio: float = 4.0,
) -> VisionTransformer:
    """ViT-Tiny / DeiT-Tiny (Touvron et al. 2021, Table 1).

    `patch_size=None` picks 16 for inputs of at least 128 on the short side and 4 below that, so a
    32x32 input still gives 8x8 = 64 tokens instead of 2x2. Raises ValueError when `input_size` is
    not divisible by the patch size.
    """
    if patch_size is None:
        patch_size = 16 if min(input_size) >= 128 else 4
    return VisionTransformer(num_classes, in_channels, input_size, patch_size, dim, depth, heads, mlp_ratio)


@register_model(input_shape=(3, 32, 32))
def vit_cifar(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (32, 32),
    patch_size: int = 4,
    dim: int = 128,
    depth: int = 6,
    heads: int = 4,
    mlp_ratio: float = 2.0,
) -> VisionTransformer:
    """A ViT small enough to train on CIFAR-10 on a CPU: 4x4 patches (64 tokens), dim 128, depth 6, 4 heads."""
    return VisionTransformer(num_classes, in_channels, input_size, patch_size, dim, depth, heads, mlp_ratio)


@register_model
def hybrid_vit(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (224, 224),
    stem_channels: tuple[int, ...] = (24, 48, 96, 192),
    dim: int = 192,
    depth: int = 6,
    heads: int = 3,
    mlp_ratio: float = 3.0,
) -> HybridViT:
    """Conv-stem hybrid ViT (after Xiao et al. 2021): 224 -> 14x14 = 196 tokens of dim 192, depth 6, 3 heads.

    The stem has one 3x3 conv + BN + ReLU stage per `stem_channels` entry; each is stride 2 while
    the map stays at least 2x2 after it and stride 1 otherwise, so 32x32 gives 2x2 tokens and
    smaller inputs keep every stage (same weights) with fewer downsamplings (a side below 3 is
    never downsampled).
    """
    return HybridViT(num_classes, in_channels, input_size, tuple(stem_channels), dim, depth, heads, mlp_ratio)

"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR)
and MobileNetV3 small / large (Howard et al. 2019, "Searching for MobileNetV3", ICCV), width 1.0.

Both keep the ImageNet strides (total stride 32) by default, so a 32x32 input reaches the
classifier as 1x1; `cifar_stem=True` makes the stem conv stride 1 (total stride 16) for small
inputs. Channel counts are rounded with `make_divisible(., 8)`. Parameter counts with 1000
classes: mobilenetv2 3,504,872, mobilenetv3_small 2,542,856, mobilenetv3_large 5,483,032.
"""

from __future__ import annotations

import torch
from torch import nn

from xbarforge.zoo._common import init_weights, make_divisible
from xbarforge.zoo.registry import register_model


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = None,
) -> nn.Sequential:
    """Conv (no bias) + BN (+ activation), 'same' padding for odd kernels."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------- V2


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (t > 1) + ReLU6, 3x3 depthwise + ReLU6, linear 1x1 project."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn(in_channels, hidden, 1, act=nn.ReLU6))
        layers.append(conv_bn(hidden, hidden, 3, stride=stride, groups=hidden, act=nn.ReLU6))
        layers.append(conv_bn(hidden, out_channels, 1))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


# (expansion t, output channels c, repeats n, first stride s) -- Sandler et al. 2018, Table 2.
_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2: 3x3 stem (32), 17 inverted residual blocks, 1x1 conv to 1280, pool, dropout, FC."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, first_stride: int = 2, dropout: float = 0.2
    ) -> None:
        super().__init__()
        c = make_divisible(32)
        last = make_divisible(1280)
        layers: list[nn.Module] = [conv_bn(in_channels, c, 3, stride=first_stride, act=nn.ReLU6)]
        for t, channels, n, s in _V2_SETTINGS:
            out = make_divisible(channels)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        layers.append(conv_bn(c, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------------- V3


class SqueezeExcite(nn.Module):
    """SE: global average pool, 1x1 conv reduce + ReLU, 1x1 conv expand + hard sigmoid, rescale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, kernel_size=1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, kernel_size=1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.hardsigmoid(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        return x * scale


class V3Block(nn.Module):
    """MobileNetV3 bneck: 1x1 expand (if exp != in), kxk depthwise, optional SE, linear 1x1 project."""

    def __init__(
        self,
        in_channels: int,
        kernel_size: int,
        expand: int,
        out_channels: int,
        use_se: bool,
        act: type[nn.Module],
        stride: int,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand != in_channels:
            layers.append(conv_bn(in_channels, expand, 1, act=act))
        layers.append(conv_bn(expand, expand, kernel_size, stride=stride, groups=expand, act=act))
        if use_se:
            layers.append(SqueezeExcite(expand, make_divisible(expand // 4)))
        layers.append(conv_bn(expand, out_channels, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


# (kernel, expansion size, output channels, SE, nonlinearity "RE"/"HS", stride) -- Howard et al. 2019.
_V3Row = tuple[int, int, int, bool, str, int]
_V3_LARGE: tuple[_V3Row, ...] = (  # Table 1
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
V3_SMALL: tuple[_V3Row, ...] = (  # Table 2
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)
_ACTS: dict[str, type[nn.Module]] = {"RE": nn.ReLU, "HS": nn.Hardswish}


class MobileNetV3(nn.Module):
    """MobileNetV3: 3x3 hardswish stem (16), bneck blocks, 1x1 conv (6x last width), pool, 2-layer head."""

    def __init__(
        self,
        config: tuple[_V3Row, ...],
        last_channels: int,
        num_classes: int = 10,
        in_channels: int = 3,
        first_stride: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        c = make_divisible(16)
        layers: list[nn.Module] = [conv_bn(in_channels, c, 3, stride=first_stride, act=nn.Hardswish)]
        for k, exp, out, se, nl, s in config:
            out_c = make_divisible(out)
            layers.append(V3Block(c, k, make_divisible(exp), out_c, se, _ACTS[nl], s))
            c = out_c
        last_conv = 6 * c
        layers.append(conv_bn(c, last_conv, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channels),
            nn.Hardswish(),
            nn.Dropout(p=dropout),
            nn.Linear(last_channels, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model
def mobilenetv2(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (224, 224),
    cifar_stem: bool = False,
) -> MobileNetV2:
    """MobileNetV2 1.0 (Sandler et al. 2018); `cifar_stem=True` uses a stride-1 stem."""
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, first_stride=1 if cifar_stem else 2)


@register_model(input_shape=(3, 32, 32))
def mobilenetv2_cifar(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (32, 32),
) -> MobileNetV2:
    """MobileNetV2 1.0 for 32x32 inputs (CIFAR): the stride-1 stem of `mobilenetv2(cifar_stem=True)`."""
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, first_stride=1)


@register_model
def mobilenetv3_small(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (224, 224),
    cifar_stem: bool = False,
) -> MobileNetV3:
    """MobileNetV3-Small 1.0 (Howard et al. 2019, Table 2): last conv 576, head 1024."""
    return MobileNetV3(
        V3_SMALL, 1024, num_classes=num_classes, in_channels=in_channels, first_stride=1 if cifar_stem else 2
    )


@register_model
def mobilenetv3_large(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (224, 224),
    cifar_stem: bool = False,
) -> MobileNetV3:
    """MobileNetV3-Large 1.0 (Howard et al. 2019, Table 1): last conv 960, head 1280."""
    return MobileNetV3(
        _V3_LARGE, 1280, num_classes=num_classes, in_channels=in_channels, first_stride=1 if cifar_stem else 2
    )

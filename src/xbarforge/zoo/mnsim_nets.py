"""The CIFAR networks MNSIM 2.0 ships (MNSIM/Interface/network.py, `get_net`), rebuilt in plain torch.

MNSIM's own LeNet, AlexNet, VGG-8, VGG-16 and ResNet-18 differ from the usual ones (AlexNet with a
stride-2 3x3 first conv, VGG-8 with a 1024-channel unpadded conv, ResNet-18 with a max pool after the
stem, 3x3 stride-2 shortcut convs and a 2048-512-classes head), so comparing a cost model with MNSIM
(`benchmarks/fidelity_mnsim.py`) needs these exact shapes. As in MNSIM every conv and fc is followed
by batch norm (folded away when captured) and ReLU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xbarforge.zoo._common import check_spatial, init_weights, out_size
from xbarforge.zoo.registry import register_model

# ("conv", out_channels, kernel, stride, padding) | ("pool",): the feature layers in MNSIM's order
Spec = list[tuple[Any, ...]]

LENET: Spec = [("conv", 6, 5, 1, 0), ("pool",), ("conv", 16, 5, 1, 0), ("pool",), ("conv", 120, 5, 1, 0)]
ALEXNET: Spec = [("conv", 64, 3, 2, 1), ("pool",), ("conv", 192, 3, 1, 1), ("pool",), ("conv", 384, 3, 1, 1),
                 ("conv", 256, 3, 1, 1), ("conv", 256, 3, 1, 1), ("pool",)]
VGG8: Spec = [("conv", 128, 3, 1, 1), ("conv", 128, 3, 1, 1), ("pool",), ("conv", 256, 3, 1, 1),
              ("conv", 256, 3, 1, 1), ("pool",), ("conv", 512, 3, 1, 1), ("conv", 512, 3, 1, 1), ("pool",),
              ("conv", 1024, 3, 1, 0), ("pool",)]
VGG16: Spec = [("conv", 64, 3, 1, 1), ("conv", 64, 3, 1, 1), ("pool",), ("conv", 128, 3, 1, 1),
               ("conv", 128, 3, 1, 1), ("pool",), *[("conv", 256, 3, 1, 1)] * 3, ("pool",),
               *[("conv", 512, 3, 1, 1)] * 3, ("pool",), *[("conv", 512, 3, 1, 1)] * 3]


def _conv(cin: int, cout: int, k: int, stride: int, pad: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, pad), nn.BatchNorm2d(cout)]


class MnsimPlain(nn.Module):
    """A chain of MNSIM conv/pool layers and fc layers (`hidden` widths, then the classifier)."""

    def __init__(self, name: str, spec: Spec, hidden: tuple[int, ...], num_classes: int, in_channels: int,
                 input_size: tuple[int, int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, (h, w) = in_channels, input_size
        for item in spec:
            if item[0] == "pool":
                layers.append(nn.MaxPool2d(2, 2))
                h, w = out_size(h, 2, 2), out_size(w, 2, 2)
                continue
            _, cout, k, stride, pad = item
            layers += [*_conv(c, cout, k, stride, pad), nn.ReLU()]
            c, h, w = cout, out_size(h, k, stride, pad), out_size(w, k, stride, pad)
        check_spatial(name, input_size, (h, w))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = []
        width = c * h * w
        for n in hidden:
            head += [nn.Linear(width, n), nn.BatchNorm1d(n), nn.ReLU()]
            width = n
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class _Block(nn.Module):
    """MNSIM's residual block: two 3x3 convs, and a 3x3 conv shortcut where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv(cin, cout, 3, stride, 1), nn.ReLU(), *_conv(cout, cout, 3, 1, 1))
        self.shortcut = nn.Sequential(*_conv(cin, cout, 3, stride, 1)) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)  # before the shortcut, in MNSIM's layer order (its tiles are placed in that order)
        skip = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(out + skip)


class MnsimResNet18(nn.Module):
    """MNSIM's ResNet-18: stem conv, max pool, 8 blocks (64, 64, 128, 128, 256, 256, 512, 512), fc 512, fc."""

    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv(in_channels, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2))
        h, w = out_size(input_size[0], 2, 2), out_size(input_size[1], 2, 2)
        blocks, c = [], 64
        for cout in (64, 64, 128, 128, 256, 256, 512, 512):
            stride = 2 if cout != c else 1
            blocks.append(_Block(c, cout, stride))
            c, h, w = cout, out_size(h, 3, stride, 1), out_size(w, 3, stride, 1)
        check_spatial("mnsim_resnet18", input_size, (h, w))
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Linear(c * h * w, 512), nn.BatchNorm1d(512), nn.ReLU(),
                                        nn.Linear(512, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.blocks(self.stem(x)), 1))


@register_model(input_shape=(3, 32, 32))
def mnsim_lenet(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)) -> MnsimPlain:
    """MNSIM 2.0's LeNet: 3 convs 5x5 (6, 16, 120) with two max pools, fc 84, fc."""
    return MnsimPlain("mnsim_lenet", LENET, (84,), num_classes, in_channels, input_size)


@register_model(input_shape=(3, 32, 32))
def mnsim_alexnet(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)) -> MnsimPlain:
    """MNSIM 2.0's AlexNet for CIFAR: 5 convs 3x3 (the first stride 2), three max pools, fc 512, fc."""
    return MnsimPlain("mnsim_alexnet", ALEXNET, (512,), num_classes, in_channels, input_size)


@register_model(input_shape=(3, 32, 32))
def mnsim_vgg8(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)) -> MnsimPlain:
    """MNSIM 2.0's VGG-8: 7 convs 3x3 (128 to 1024 channels, the last unpadded), four max pools, fc."""
    return MnsimPlain("mnsim_vgg8", VGG8, (), num_classes, in_channels, input_size)


@register_model(input_shape=(3, 32, 32))
def mnsim_vgg16(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)) -> MnsimPlain:
    """MNSIM 2.0's VGG-16: 13 convs 3x3, four max pools, one fc."""
    return MnsimPlain("mnsim_vgg16", VGG16, (), num_classes, in_channels, input_size)


@register_model(input_shape=(3, 32, 32))
def mnsim_resnet18(num_classes: int = 10, in_channels: int = 3,
                   input_size: tuple[int, int] = (32, 32)) -> MnsimResNet18:
    """MNSIM 2.0's ResNet-18 for CIFAR (3x3 stride-2 shortcut convs, fc 2048 -> 512 -> classes)."""
    return MnsimResNet18(num_classes, in_channels, input_size)

"""DenseNets (Huang et al. 2017, "Densely Connected Convolutional Networks", CVPR).

densenet121 (ImageNet, Table 1): 7x7/2 conv stem (64) + 3x3/2 max pool, dense blocks of
6/12/24/16 bottleneck layers (BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3 conv to k) with growth k=32,
transitions BN-ReLU-1x1 conv (compression 0.5) + 2x2/2 average pool, final BN-ReLU, global pool, FC
(7,978,856 parameters with 1000 classes).

densenet40 (CIFAR, section 4): depth 40, growth 12, no bottleneck and no compression: 3x3 conv stem
(16), three dense blocks of 12 BN-ReLU-3x3 layers, transitions BN-ReLU-1x1 conv + 2x2 average pool,
final BN-ReLU, global pool, FC. The paper's dropout (used only without data augmentation) is omitted.

Dense connectivity is written as `x = torch.cat([x, layer(x)], 1)` after every layer, which is the
same computation as concatenating all previous outputs at each layer.
"""

from __future__ import annotations

import torch
from torch import nn

from xbarforge.zoo._common import init_weights
from xbarforge.zoo.registry import register_model


class DenseLayer(nn.Module):
    """Pre-activation composite: [BN-ReLU-1x1 conv (bn_size*k)] if bottleneck, then BN-ReLU-3x3 conv (k)."""

    def __init__(self, in_channels: int, growth: int, bottleneck: bool, bn_size: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        if bottleneck:
            layers += [
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.Conv2d(c, bn_size * growth, kernel_size=1, bias=False),
            ]
            c = bn_size * growth
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, growth, kernel_size=3, padding=1, bias=False)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DenseBlock(nn.Module):
    """`num_layers` dense layers; each one's k new channels are concatenated onto its input."""

    def __init__(self, num_layers: int, in_channels: int, growth: int, bottleneck: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth, growth, bottleneck) for i in range(num_layers)
        )
        self.out_channels = in_channels + num_layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compression), 2x2/2 average pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )


class DenseNet(nn.Module):
    """DenseNet with an ImageNet (7x7/2 + max pool) or CIFAR (3x3) stem."""

    def __init__(
        self,
        blocks: tuple[int, ...],
        growth: int,
        stem_channels: int,
        bottleneck: bool,
        compression: float,
        imagenet_stem: bool,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module]
        if imagenet_stem:
            layers = [
                nn.Conv2d(in_channels, stem_channels, kernel_size=7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            ]
        else:
            layers = [nn.Conv2d(in_channels, stem_channels, kernel_size=3, padding=1, bias=False)]
        c = stem_channels
        for i, n in enumerate(blocks):
            block = DenseBlock(n, c, growth, bottleneck)
            layers.append(block)
            c = block.out_channels
            if i != len(blocks) - 1:
                out = int(c * compression)
                layers.append(Transition(c, out))
                c = out
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model
def densenet121(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224)
) -> DenseNet:
    """DenseNet-121 (Huang et al. 2017, DenseNet-BC, k=32, blocks 6/12/24/16, compression 0.5)."""
    return DenseNet(
        (6, 12, 24, 16),
        growth=32,
        stem_channels=64,
        bottleneck=True,
        compression=0.5,
        imagenet_stem=True,
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model(input_shape=(3, 32, 32))
def densenet40(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)
) -> DenseNet:
    """DenseNet-40 for CIFAR (Huang et al. 2017, k=12, 3 blocks of 12 layers, no bottleneck/compression)."""
    return DenseNet(
        (12, 12, 12),
        growth=12,
        stem_channels=16,
        bottleneck=False,
        compression=1.0,
        imagenet_stem=False,
        num_classes=num_classes,
        in_channels=in_channels,
    )

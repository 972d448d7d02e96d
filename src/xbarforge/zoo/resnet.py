"""ResNets (He et al. 2016, "Deep Residual Learning for Image Recognition", CVPR).

ImageNet style (resnet18/34/50): 7x7/2 stem + 3x3/2 max pool, four stages of 64/128/256/512 base
width, 1x1 conv + BN projection shortcuts where the shape changes (option B). resnet50 uses the
bottleneck block with the stride on the 3x3 conv (the widely used "v1.5" placement; the paper puts
it on the first 1x1 conv, which changes FLOPs but not parameters).

CIFAR style (resnet20/32/56, paper section 4.2): 3x3 16-channel stem, three stages of 16/32/64
channels with n = 3/5/9 basic blocks each. The paper uses parameter-free option-A shortcuts
(strided identity + zero padding); here the two shape-changing shortcuts are 1x1 conv + BN
projections (option B) so every op is a plain conv, which adds 2,752 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from xbarforge.zoo._common import init_weights
from xbarforge.zoo.registry import register_model


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual add (projection shortcut if the shape changes)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand x4, each with BN, plus a residual add."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu3 = nn.ReLU()
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def _stage(block: Block, in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(blocks):
        layers.append(block(in_channels, channels, stride if i == 0 else 1))
        in_channels = channels * block.expansion
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """ImageNet-style ResNet: 7x7/2 conv stem, 3x3/2 max pool, four stages, global pool, FC."""

    def __init__(
        self, block: Block, layers: tuple[int, int, int, int], num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = (64, 128, 256, 512)
        strides = (1, 2, 2, 2)
        c = 64
        stages: list[nn.Sequential] = []
        for width, n, stride in zip(widths, layers, strides, strict=True):
            stages.append(_stage(block, c, width, n, stride))
            c = width * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class CifarResNet(nn.Module):
    """CIFAR-style ResNet-(6n+2): 3x3 16-channel stem, stages of 16/32/64 channels, global pool, FC."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = _stage(BasicBlock, 16, 16, n, 1)
        self.layer2 = _stage(BasicBlock, 16, 32, n, 2)
        self.layer3 = _stage(BasicBlock, 32, 64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model
def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224)) -> ResNet:
    """ResNet-18 (He et al. 2016), ImageNet style, basic blocks (2, 2, 2, 2)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels)


@register_model
def resnet34(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224)) -> ResNet:
    """ResNet-34 (He et al. 2016), ImageNet style, basic blocks (3, 4, 6, 3)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels)


@register_model
def resnet50(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224)) -> ResNet:
    """ResNet-50 (He et al. 2016), ImageNet style, bottleneck blocks (3, 4, 6, 3), stride on the 3x3."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels)


@register_model(input_shape=(3, 32, 32))
def resnet20(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)
) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, sec. 4.2), n=3, projection shortcuts."""
    return CifarResNet(20, num_classes=num_classes, in_channels=in_channels)


@register_model(input_shape=(3, 32, 32))
def resnet32(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)
) -> CifarResNet:
    """ResNet-32 for CIFAR (He et al. 2016, sec. 4.2), n=5, projection shortcuts."""
    return CifarResNet(32, num_classes=num_classes, in_channels=in_channels)


@register_model(input_shape=(3, 32, 32))
def resnet56(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)
) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016, sec. 4.2), n=9, projection shortcuts."""
    return CifarResNet(56, num_classes=num_classes, in_channels=in_channels)

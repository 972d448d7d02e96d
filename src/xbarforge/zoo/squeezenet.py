"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size", arXiv:1602.07360; 1.1 per the SqueezeNet v1.1 release notes).

Layer layout and module names follow the common reference layout (`features` / `classifier`
Sequentials, Fire modules with `squeeze`, `expand1x1`, `expand3x3`), so parameter counts match it
exactly: 1,248,424 (1.0) and 1,235,496 (1.1) with 1000 classes. No batch norm, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from xbarforge.zoo._common import init_weights
from xbarforge.zoo.registry import register_model


class Fire(nn.Module):
    """Squeeze 1x1 + ReLU, then expand 1x1 + ReLU and expand 3x3 (pad 1) + ReLU, concatenated."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        left = self.expand1x1_activation(self.expand1x1(x))
        right = self.expand3x3_activation(self.expand3x3(x))
        return torch.cat([left, right], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet body: `features` then a 1x1-conv classifier with global average pooling."""

    def __init__(self, version: str = "1_1", num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 96, kernel_size=7, stride=2),
                nn.ReLU(),
                pool(),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                pool(),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                pool(),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 64, kernel_size=3, stride=2),
                nn.ReLU(),
                pool(),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                pool(),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                pool(),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"unknown SqueezeNet version {version!r} (expected '1_0' or '1_1')")
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5),
            nn.Conv2d(512, num_classes, kernel_size=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)


@register_model
def squeezenet1_0(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224)
) -> SqueezeNet:
    """SqueezeNet 1.0 (Iandola et al. 2016): 7x7/2 96-channel stem, 8 Fire modules, 1x1-conv head."""
    return SqueezeNet("1_0", num_classes=num_classes, in_channels=in_channels)


@register_model
def squeezenet1_1(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224)
) -> SqueezeNet:
    """SqueezeNet 1.1 (Iandola et al. 2016, v1.1 release): 3x3/2 64-channel stem, earlier pooling."""
    return SqueezeNet("1_1", num_classes=num_classes, in_channels=in_channels)

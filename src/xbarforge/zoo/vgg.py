"""VGG networks (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR), all with batch norm after every conv (Ioffe & Szegedy 2015).

vgg11 / vgg16 (configurations A and D) have two classifier heads, chosen by `head`:

* "imagenet": AdaptiveAvgPool2d(7x7), FC 25088-4096-4096-num_classes with ReLU and dropout, as in the
  paper (138,365,992 parameters for vgg16 with 1000 classes, 132,868,840 for vgg11).
* "compact": AdaptiveAvgPool2d(1x1), FC 512-512-num_classes with ReLU and dropout, a common choice
  for CIFAR-size inputs where the feature map is already 1x1 after the five max pools.
* "auto" (default): "imagenet" when the smaller input side is at least 224, otherwise "compact".

vgg8 is the small CIFAR VGG used in crossbar-accelerator studies (e.g. DNN+NeuroSim): six 3x3 convs
128, 128, M, 256, 256, M, 512, 512, M (BN + ReLU after each), then FC 1024 + ReLU and the
classifier FC. Its first FC is sized from the input: 512 * (H/8) * (W/8) inputs (8192 at 32x32).
"""

from __future__ import annotations

import torch
from torch import nn

from xbarforge.errors import XbarforgeError
from xbarforge.zoo._common import check_spatial, init_weights, out_size
from xbarforge.zoo.registry import register_model

LayerCfg = tuple[int | str, ...]
_VGG11: LayerCfg = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
_VGG16: LayerCfg = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VGG8: LayerCfg = (128, 128, "M", 256, 256, "M", 512, 512, "M")


def _features(cfg: LayerCfg, in_channels: int, batch_norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU())
        c = v
    return nn.Sequential(*layers)


def _spatial_after(cfg: LayerCfg, size: tuple[int, int]) -> tuple[int, int]:
    h, w = size
    for v in cfg:
        if v == "M":
            h, w = out_size(h, 2, 2), out_size(w, 2, 2)
    return h, w


class VGG(nn.Module):
    """VGG-BN body (`features`), adaptive average pool, FC classifier."""

    def __init__(
        self, cfg: LayerCfg, num_classes: int = 10, in_channels: int = 3, head: str = "imagenet"
    ) -> None:
        super().__init__()
        self.features = _features(cfg, in_channels)
        if head == "imagenet":
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(),
                nn.Dropout(p=0.5),
                nn.Linear(4096, 4096),
                nn.ReLU(),
                nn.Dropout(p=0.5),
                nn.Linear(4096, num_classes),
            )
        elif head == "compact":
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(512, 512),
                nn.ReLU(),
                nn.Dropout(p=0.5),
                nn.Linear(512, num_classes),
            )
        else:
            raise XbarforgeError(f"unknown VGG head {head!r} (expected 'auto', 'imagenet' or 'compact')")
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class VGG8(nn.Module):
    """CIFAR VGG-8: six conv-BN-ReLU layers in three pooled stages, FC 1024, FC classifier."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: tuple[int, int] = (32, 32),
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.features = _features(_VGG8, in_channels, batch_norm=batch_norm)
        fh, fw = _spatial_after(_VGG8, input_size)
        check_spatial("vgg8", input_size, (fh, fw))
        self.classifier = nn.Sequential(
            nn.Linear(512 * fh * fw, 1024),
            nn.ReLU(),
            nn.Linear(1024, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _pick_head(head: str, input_size: tuple[int, int]) -> str:
    if head == "auto":
        return "imagenet" if min(input_size) >= 224 else "compact"
    return head


@register_model(input_shape=(3, 32, 32))
def vgg8(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (32, 32),
    batch_norm: bool = True,
) -> VGG8:
    """VGG-8 for CIFAR (VGG style of Simonyan & Zisserman 2015, as in DNN+NeuroSim), with BN."""
    return VGG8(
        num_classes=num_classes, in_channels=in_channels, input_size=input_size, batch_norm=batch_norm
    )


@register_model
def vgg11(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224), head: str = "auto"
) -> VGG:
    """VGG-11 with BN (Simonyan & Zisserman 2015, configuration A)."""
    return VGG(_VGG11, num_classes=num_classes, in_channels=in_channels, head=_pick_head(head, input_size))


@register_model
def vgg16(
    num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (224, 224), head: str = "auto"
) -> VGG:
    """VGG-16 with BN (Simonyan & Zisserman 2015, configuration D)."""
    return VGG(_VGG16, num_classes=num_classes, in_channels=in_channels, head=_pick_head(head, input_size))

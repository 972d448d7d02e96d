"""LeNet-5 (LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE).

C1 conv 5x5 -> 6, S2 2x2 pool, C3 conv 5x5 -> 16, S4 2x2 pool, C5 FC -> 120, F6 FC -> 84, output FC.
Modernised as is usual: ReLU instead of scaled tanh, max pooling instead of trainable subsampling,
full C3 connectivity, and a linear output layer instead of RBF units; no batch norm. C5 is written as
a Linear layer on the flattened S4 map (for the 32x32 input of the paper, S4 is 16x5x5 and C5's 5x5
conv is exactly that FC). Its input width is sized from `input_size`: 400 at 32x32, 256 at 28x28.
"""

from __future__ import annotations

import torch
from torch import nn

from xbarforge.zoo._common import check_spatial, init_weights, out_size
from xbarforge.zoo.registry import register_model


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max pooling; `in_channels` 1 (MNIST) or 3 (CIFAR-style) both work."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, input_size: tuple[int, int] = (32, 32)
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        h, w = input_size
        for _ in range(2):
            h, w = out_size(out_size(h, 5), 2, 2), out_size(out_size(w, 5), 2, 2)
        check_spatial("lenet5", input_size, (h, w))
        self.classifier = nn.Sequential(
            nn.Linear(16 * h * w, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(input_shape=(1, 32, 32))
def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: tuple[int, int] = (32, 32)) -> LeNet5:
    """LeNet-5 (LeCun et al. 1998), ReLU + max pool, FC sizes 120/84."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, input_size=input_size)

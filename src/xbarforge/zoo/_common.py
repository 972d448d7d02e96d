"""Helpers shared by the zoo models: weight init, channel rounding, output-size arithmetic."""

from __future__ import annotations

from torch import nn

from xbarforge.errors import XbarforgeError


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU gain) convs, BN weight 1 / bias 0, Linear N(0, 0.01), zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never dropping more than 10 %.

    This is the rounding rule of the MobileNet reference implementations.
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def out_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a conv / pool window along one axis (dilation 1, floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def check_spatial(model: str, size: tuple[int, int], final: tuple[int, int]) -> None:
    """Raise a one-line XbarforgeError when an input is too small to reach the classifier."""
    if final[0] < 1 or final[1] < 1:
        raise XbarforgeError(
            f"input size {size[0]}x{size[1]} is too small for {model} "
            f"(feature map before the classifier would be {final[0]}x{final[1]})"
        )

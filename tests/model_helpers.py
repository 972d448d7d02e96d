"""Random small models for the compiler's property tests (shared by several test files)."""

from __future__ import annotations

import random

from torch import nn


def random_cnn(rng: random.Random, channels: int, conv_out: int, linear_out: int, max_linears: int,
               depthwise: float = 0.0) -> tuple[nn.Sequential, int]:
    """1-3 convs (dense, or depthwise with probability `depthwise`), global pooling, then 0 to
    `max_linears` linears; returns the model and its input channels."""
    c = first = rng.randint(1, channels)
    mods: list[nn.Module] = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < depthwise:
            mods.append(nn.Conv2d(c, c, 3, padding=1, groups=c))
        else:
            out, k = rng.randint(1, conv_out), rng.choice([1, 3])
            mods.append(nn.Conv2d(c, out, k, padding=k // 2))
            c = out
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for _ in range(rng.randint(0, max_linears)):
        out = rng.randint(1, linear_out)
        mods.append(nn.Linear(c, out))
        c = out
    return nn.Sequential(*mods), first

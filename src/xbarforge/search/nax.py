"""The NAX search space: ResNet-20 whose every residual-block conv picks a kernel and a crossbar size.

NAX (Negi et al., "NAX: Co-Designing Neural Network and Hardware Architecture for Memristive Xbar
based Computing Systems", DAC 2022) searches, per layer, the kernel size together with the size of
the crossbars the layer is mapped on: large crossbars need fewer peripherals per weight but suffer
more IR drop and waste more cells, small ones the reverse, and the best size differs per layer.

Genes: one per residual-block conv (18), its options (kernel, crossbar) in {3, 5, 7} x {16, 32, 64,
128}, plus "skip" for the convs whose block keeps its shape (all but the first block of stages 2
and 3). Kernel, size and skip share one gene, so a skipped conv leaves no dead size gene. The stem,
the two projection shortcuts and the classifier have a crossbar-size gene each.

A skipped conv takes its batch norm and ReLU with it: with conv1 skipped a block computes
relu(x + bn2(conv2(x))), with conv2 skipped relu(x + relu(bn1(conv1(x)))), with both the block is
the identity. Weight sharing: every conv holds 7x7 kernels and a sub-net uses their centre; a
supernet initialised from a trained ResNet-20 (`init_from`) starts with the 3x3 kernels at the
centre and a zero ring, so every kernel choice first computes the trained network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xbarforge.errors import XbarforgeError
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.search.mbv3 import _fit, _GraphBuilder
from xbarforge.search.space import Arch, Gene, SearchSpace, SpaceError
from xbarforge.zoo._common import init_weights

KERNELS = (3, 5, 7)
SIZES = (16, 32, 64, 128)
CONV_CHOICES = tuple((k, s) for k in KERNELS for s in SIZES)  # small to large
STAGES = ((16, 1), (32, 2), (64, 2))  # channels, stride of the first block (ResNet-20, He et al. 2016)
BLOCKS = 3
STEM = 16
FIXED = ("conv1", "layer2.0.downsample.0", "layer3.0.downsample.0", "fc")  # layers with a size gene only


def _blocks() -> list[tuple[str, int, int, int]]:
    """(prefix, in channels, out channels, stride) of the nine residual blocks."""
    out, c = [], STEM
    for s, (ch, stride) in enumerate(STAGES):
        for i in range(BLOCKS):
            out.append((f"layer{s + 1}.{i}", c, ch, stride if i == 0 else 1))
            c = ch
    return out


def _skippable(cin: int, cout: int, stride: int) -> bool:
    return stride == 1 and cin == cout


def _conv_choice(arch: Arch, name: str) -> tuple[int, int] | None:
    v = arch[name]
    return None if v is None else (int(v[0]), int(v[1]))


class NAXBlock(nn.Module):
    """A BasicBlock whose convs have their own kernel sizes or are skipped (None)."""

    def __init__(self, cin: int, cout: int, stride: int, k1: int | None, k2: int | None) -> None:
        super().__init__()
        self.downsample: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        if (k1 is None or k2 is None) and self.downsample is not None:
            raise SpaceError("nax-resnet20: a conv that changes the shape cannot be skipped")
        self.conv1 = nn.Conv2d(cin, cout, k1, stride=stride, padding=k1 // 2, bias=False) if k1 else None
        self.bn1 = nn.BatchNorm2d(cout) if k1 else None
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, k2, padding=k2 // 2, bias=False) if k2 else None
        self.bn2 = nn.BatchNorm2d(cout) if k2 else None
        self.relu2 = nn.ReLU()
        self.identity = k1 is None and k2 is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        if self.conv1 is not None and self.bn1 is not None:
            out = self.relu1(self.bn1(self.conv1(out)))
        if self.conv2 is not None and self.bn2 is not None:
            out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class NAXResNet(nn.Module):
    """A standalone NAX sub-net: ResNet-20's layout and names with per-conv kernels (or skips)."""

    def __init__(self, arch: Arch, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, STEM, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        self.relu = nn.ReLU()
        stages: list[list[nn.Module]] = [[], [], []]
        for prefix, cin, cout, stride in _blocks():
            k1, k2 = (_conv_choice(arch, f"{prefix}.conv{j}") for j in (1, 2))
            stages[int(prefix[5]) - 1].append(NAXBlock(cin, cout, stride, k1 and k1[0], k2 and k2[0]))
        self.layer1, self.layer2, self.layer3 = (nn.Sequential(*s) for s in stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGES[-1][0], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class NAXSupernet(nn.Module):
    """Every NAX sub-net in one module: 7x7 kernels everywhere, `set_active(arch)` picks the sub-net."""

    def __init__(self, space: NAXSpace) -> None:
        super().__init__()
        self.space = space
        largest = space.decode(space.largest())
        self.net = NAXResNet({k: (7, v[1]) if isinstance(v, list) else v for k, v in largest.items()},
                             space.num_classes, space.input_shape[0])
        self.active: dict[str, int | None] = {}
        self.set_active(largest)

    def set_active(self, arch: Arch) -> None:
        self.active = {p: (c[0] if (c := _conv_choice(arch, p)) else None)
                       for p in (f"{b[0]}.conv{j}" for b in _blocks() for j in (1, 2))}

    @staticmethod
    def _conv(conv: nn.Conv2d, k: int, x: torch.Tensor) -> torch.Tensor:
        off = (conv.weight.shape[-1] - k) // 2
        return F.conv2d(x, conv.weight[:, :, off : off + k, off : off + k], stride=conv.stride, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.relu(net.bn1(net.conv1(x)))
        for prefix, *_ in _blocks():
            stage, i = prefix.split(".")
            block = getattr(net, stage)[int(i)]
            k1, k2 = self.active[f"{prefix}.conv1"], self.active[f"{prefix}.conv2"]
            if k1 is None and k2 is None:
                continue
            identity = x if block.downsample is None else block.downsample(x)
            out = x
            if k1 is not None:
                out = block.relu1(block.bn1(self._conv(block.conv1, k1, out)))
            if k2 is not None:
                out = block.bn2(self._conv(block.conv2, k2, out))
            x = block.relu2(out + identity)
        return net.fc(torch.flatten(net.avgpool(x), 1))

    def export(self, arch: Arch) -> nn.Module:
        """The sub-net as a standalone `NAXResNet` holding copies of its shared weights."""
        self.set_active(arch)
        sub = self.space.build(arch)
        source = self.net.state_dict()
        sub.load_state_dict({k: _fit(source[k], v.shape) for k, v in sub.state_dict().items()})
        return sub


class NAXSpace(SearchSpace):
    """ResNet-20 with a (kernel, crossbar size) or skip per residual-block conv (NAX, DAC 2022)."""

    def __init__(self, resolution: int = 32, num_classes: int = 10, in_channels: int = 3) -> None:
        if resolution < 8:
            raise SpaceError(f"nax-resnet20: resolution {resolution} is below 8")
        self.name = "nax-resnet20"
        self.input_shape = (in_channels, resolution, resolution)
        self.num_classes = num_classes
        genes = [Gene("conv1", SIZES)]
        for prefix, cin, cout, stride in _blocks():
            skip: tuple[Any, ...] = (None,) if _skippable(cin, cout, stride) else ()
            if prefix.endswith(".0") and not skip:
                genes.append(Gene(f"{prefix}.downsample.0", SIZES))
            for j in (1, 2):
                genes.append(Gene(f"{prefix}.conv{j}", (*skip, *CONV_CHOICES)))
        genes.append(Gene("fc", SIZES))
        self.genes = tuple(genes)

    def build(self, arch: Arch) -> nn.Module:
        return NAXResNet(arch, self.num_classes, self.input_shape[0])

    def supernet(self) -> NAXSupernet:
        return NAXSupernet(self)

    def crossbar_sizes(self, arch: Arch) -> dict[str, int]:
        """Crossbar size of every MVM layer of the sub-net (skipped convs have none)."""
        out = {}
        for g in self.genes:
            v = arch[g.name]
            if v is not None:
                out[g.name] = int(v) if g.name in FIXED else int(v[1])
        return out

    def baseline_arch(self, size: int) -> Arch:
        """Plain ResNet-20 (3x3 everywhere, nothing skipped) with every layer on `size` crossbars."""
        if size not in SIZES:
            raise SpaceError(f"nax-resnet20: crossbar size {size} is not one of {SIZES}")
        return {g.name: size if g.name in FIXED else [3, size] for g in self.genes}

    def seeds(self) -> list[list[int]]:
        """The extremes and the four homogeneous ResNet-20s: the designs NAX starts from."""
        return [self.largest(), self.smallest(), *(self.encode(self.baseline_arch(s)) for s in SIZES)]

    def baseline(self) -> tuple[str, LayerGraph, dict[str, dict[str, int]]]:
        """ResNet-20 mapped homogeneously on each crossbar size: NAX's baselines."""
        graph = self.layer_graph(self.baseline_arch(SIZES[-1]))
        return "resnet20", graph, {f"homogeneous-{s}": self.crossbar_sizes(self.baseline_arch(s)) for s in SIZES}

    def sample_training(self, rng: np.random.Generator) -> Arch:
        """Kernels uniform, a skippable conv skipped one time in four (sizes do not change weights)."""
        arch: Arch = {}
        for g in self.genes:
            if g.name in FIXED:
                arch[g.name] = SIZES[-1]
            elif g.options[0] is None and rng.random() < 0.25:
                arch[g.name] = None
            else:
                arch[g.name] = [int(rng.choice(KERNELS)), SIZES[-1]]
        return arch

    def describe(self, arch: Arch) -> str:
        parts = []
        for g in self.genes:
            v = arch[g.name]
            if g.name in FIXED:
                parts.append(f"@{v}")
            else:
                parts.append("-" if v is None else f"k{v[0]}@{v[1]}")
        return " ".join(parts)

    def layer_graph(self, arch: Arch) -> LayerGraph:
        """The sub-net's MVM layers written down directly, in capture's order and naming."""
        b = _GraphBuilder(self.input_shape)
        b.conv("conv1", STEM, 3, 1)
        for prefix, cin, cout, stride in _blocks():
            k1, k2 = (_conv_choice(arch, f"{prefix}.conv{j}") for j in (1, 2))
            if k1 is None and k2 is None:
                continue
            if stride != 1 or cin != cout:
                b.conv(f"{prefix}.downsample.0", cout, 1, stride, shape=b.shape)
            if k1 is not None:
                b.conv(f"{prefix}.conv1", cout, k1[0], stride)
            if k2 is not None:
                b.conv(f"{prefix}.conv2", cout, k2[0], 1)
        b.shape = (b.shape[0],)
        b.linear("fc", self.num_classes)
        return b.graph(f"nax-resnet20[{self.describe(arch)}]")

    def init_from(self, state: Mapping[str, torch.Tensor], path: str | Path) -> Callable[[nn.Module], None]:
        """Weights of a trained ResNet-20 (`state`, the state dict of model file `path`, named in
        errors) for a new supernet: 3x3 kernels at the centre of the 7x7 ones (ring zero), everything
        else copied."""

        def apply(net: nn.Module) -> None:
            target = net.net.state_dict()  # type: ignore[union-attr]
            missing, extra = sorted(set(target) - set(state)), sorted(set(state) - set(target))
            if missing or extra:
                what = f"no '{missing[0]}'" if missing else f"has '{extra[0]}'"
                raise XbarforgeError(f"--init {path}: not a ResNet-20 ({what})")
            new = {}
            for k, t in target.items():
                w = state[k]
                if t.dim() == 4 and w.dim() == 4 and t.shape[:2] == w.shape[:2] and w.shape[-1] <= t.shape[-1]:
                    off = (t.shape[-1] - w.shape[-1]) // 2
                    padded = torch.zeros_like(t)
                    padded[:, :, off : off + w.shape[-2], off : off + w.shape[-1]] = w
                    new[k] = padded
                elif w.shape == t.shape:
                    new[k] = w
                else:
                    raise XbarforgeError(f"--init {path}: '{k}' has shape {tuple(w.shape)}, the supernet"
                                         f" {tuple(t.shape)} (not a ResNet-20 for this data)")
            net.net.load_state_dict(new)  # type: ignore[union-attr]

        return apply


def nax_resnet20_space(resolution: int = 32, num_classes: int = 10, in_channels: int = 3) -> NAXSpace:
    return NAXSpace(resolution=resolution, num_classes=num_classes, in_channels=in_channels)

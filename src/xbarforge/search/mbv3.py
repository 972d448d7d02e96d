"""The RNC search space: a MobileNetV3-small supernet with elastic kernel, expand ratio and depth.

Layout (Howard et al. 2019, Table 2, width 1.0): a 3x3 stride-2 stem (16), the fixed first bneck
(3x3 depthwise, SE, stride 2), four elastic stages and the fixed head (1x1 conv to 576, pool,
1024, classes). Each stage keeps MobileNetV3-small's width, stride, activation and SE use and
elastic depth {2, 3, 4}; every block picks a depthwise kernel {3, 5, 7} and an expand ratio
{3, 4, 6} (as in once-for-all, Cai et al. ICLR 2020, which RNC searches).

Encoding without dead genes: each stage has four slots; slots 1-2 choose (kernel, expand) and
slots 3-4 choose (kernel, expand) or "skip". The stage runs its non-skipped slots in order, so
depth = 2 + the slots 3-4 not skipped, and every gene always changes the network (in once-for-all's
encoding the kernel and expand genes of blocks beyond the depth are dead, which wastes NSGA-II's
mutations).

Weight sharing as in once-for-all: a sub-net uses a stage's first `depth` blocks, a block's first
`expand` channels, and the centre `k x k` of its 7x7 depthwise kernels (OFA adds a learned kernel
transform; the centre crop is its simpler form). Batch norms keep the statistics of the largest
channels and are recalibrated per sub-net before it is scored (see `supernet.subnet_accuracy`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.search.space import Arch, Gene, SearchSpace, SpaceError
from xbarforge.zoo._common import init_weights, make_divisible, out_size
from xbarforge.zoo.mobilenet import V3_SMALL, MobileNetV3, V3Block, conv_bn

KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
BLOCK_CHOICES = tuple((k, e) for k in KERNELS for e in EXPANDS)  # ordered small to large
SLOTS = 4
MIN_DEPTH = 2
# (output channels, stride of the first block, activation, SE) -- MobileNetV3-small's stages after
# its first bneck (Table 2 rows 2-3, 4-6, 7-8, 9-11)
STAGES: tuple[tuple[int, int, str, bool], ...] = ((24, 2, "RE", False), (40, 2, "HS", True),
                                                  (48, 1, "HS", True), (96, 2, "HS", True))
STEM = 16
FIRST_BLOCK = V3_SMALL[0]  # (3, 16, 16, SE, RE, stride 2)
LAST_CONV = 576
HEAD = 1024
_ACTS: dict[str, type[nn.Module]] = {"RE": nn.ReLU, "HS": nn.Hardswish}


def gene_name(stage: int, slot: int) -> str:
    return f"stage{stage + 1}.block{slot + 1}"


def stage_blocks(arch: Arch) -> list[list[tuple[int, int]]]:
    """Per stage, the (kernel, expand) of the blocks that run, in order."""
    out = []
    for s in range(len(STAGES)):
        blocks = [arch[gene_name(s, j)] for j in range(SLOTS)]
        out.append([(int(b[0]), int(b[1])) for b in blocks if b is not None])
    return out


def v3_config(arch: Arch) -> tuple[tuple[int, int, int, bool, str, int], ...]:
    """The zoo MobileNetV3 rows (kernel, expansion size, out, SE, act, stride) of a sub-net."""
    rows = [FIRST_BLOCK]
    c = FIRST_BLOCK[2]
    for (out, stride, act, se), blocks in zip(STAGES, stage_blocks(arch), strict=True):
        for i, (k, e) in enumerate(blocks):
            rows.append((k, c * e, out, se, act, stride if i == 0 else 1))
            c = out
    return tuple(rows)


class ElasticBlock(nn.Module):
    """A MobileNetV3 bneck at its largest (7x7, expand 6) that runs any smaller (kernel, expand).

    Its submodules mirror the zoo's `V3Block` (block.0 expand, block.1 depthwise, [block.2 SE],
    last project), so a sub-net's weights are slices of these under the same names.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str, se: bool) -> None:
        super().__init__()
        mid = in_channels * max(EXPANDS)
        self.in_channels, self.out_channels, self.stride, self.se = in_channels, out_channels, stride, se
        self.block = V3Block(in_channels, max(KERNELS), mid, out_channels, se, _ACTS[act], stride).block
        self.use_residual = stride == 1 and in_channels == out_channels
        self.active: tuple[int, int] = (max(KERNELS), max(EXPANDS))

    @staticmethod
    def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, c: int, training: bool) -> torch.Tensor:
        assert bn.running_mean is not None and bn.running_var is not None
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            training, bn.momentum if bn.momentum is not None else 0.0, bn.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, e = self.active
        mid = self.in_channels * e
        expand, dw = self.block[0], self.block[1]
        project = self.block[-1]
        y = F.conv2d(x, expand[0].weight[:mid, : self.in_channels])
        y = expand[2](self._bn(y, expand[1], mid, self.training))
        off = (max(KERNELS) - k) // 2
        w = dw[0].weight[:mid, :, off : off + k, off : off + k]
        y = F.conv2d(y, w, stride=self.stride, padding=k // 2, groups=mid)
        y = dw[2](self._bn(y, dw[1], mid, self.training))
        if self.se:
            se = self.block[2]
            sq = make_divisible(mid // 4)
            s = F.adaptive_avg_pool2d(y, 1)
            s = F.relu(F.conv2d(s, se.fc1.weight[:sq, :mid], se.fc1.bias[:sq]))
            s = F.hardsigmoid(F.conv2d(s, se.fc2.weight[:mid, :sq], se.fc2.bias[:mid]))
            y = y * s
        y = F.conv2d(y, project[0].weight[:, :mid])
        y = self._bn(y, project[1], self.out_channels, self.training)
        return x + y if self.use_residual else y


class MBV3Supernet(nn.Module):
    """Every sub-net of `MBV3Space` in one module; `set_active(arch)` picks which one runs."""

    def __init__(self, space: MBV3Space) -> None:
        super().__init__()
        self.space = space
        layers: list[nn.Module] = [conv_bn(space.input_shape[0], STEM, 3, stride=2, act=nn.Hardswish)]
        k, exp, out, se, act, stride = FIRST_BLOCK
        layers.append(V3Block(STEM, k, exp, out, se, _ACTS[act], stride))
        c = out
        self.stage_index: list[list[int]] = []  # features index of each stage's blocks
        for out, stride, act, se in STAGES:
            idx = []
            for j in range(SLOTS):
                idx.append(len(layers))
                layers.append(ElasticBlock(c, out, stride if j == 0 else 1, act, se))
                c = out
            self.stage_index.append(idx)
        layers.append(conv_bn(c, LAST_CONV, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(LAST_CONV, HEAD), nn.Hardswish(), nn.Dropout(p=0.2),
                                        nn.Linear(HEAD, space.num_classes))
        init_weights(self)
        self.depths = [SLOTS] * len(STAGES)

    def set_active(self, arch: Arch) -> None:
        blocks = stage_blocks(arch)
        self.depths = [len(b) for b in blocks]
        for idx, chosen in zip(self.stage_index, blocks, strict=True):
            for i, ke in zip(idx, chosen, strict=False):
                self.features[i].active = ke

    def active_features(self) -> list[int]:
        """Indices into `features` that the active sub-net runs, in order."""
        run = [0, 1]
        for idx, d in zip(self.stage_index, self.depths, strict=True):
            run.extend(idx[:d])
        run.append(len(self.features) - 1)
        return run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in self.active_features():
            x = self.features[i](x)
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def export(self, arch: Arch) -> nn.Module:
        """The sub-net as a standalone zoo MobileNetV3 holding copies of its shared weights."""
        self.set_active(arch)
        net = self.space.build(arch)
        order = self.active_features()
        source = self.state_dict()
        state = {}
        for key, target in net.state_dict().items():
            parts = key.split(".")
            if parts[0] == "features":
                parts[1] = str(order[int(parts[1])])
            state[key] = _fit(source[".".join(parts)], target.shape)
        net.load_state_dict(state)
        return net


def _fit(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The leading slice of `t` with `shape`, kernels cropped at their centre."""
    if t.shape == shape:
        return t.detach().clone()
    index: list[slice] = []
    for d, (have, want) in enumerate(zip(t.shape, shape, strict=True)):
        if d >= 2 and t.dim() == 4:
            off = (have - want) // 2
            index.append(slice(off, off + want))
        else:
            index.append(slice(0, want))
    return t[tuple(index)].detach().clone()


class MBV3Space(SearchSpace):
    """MobileNetV3-small with elastic kernel {3,5,7}, expand {3,4,6}, depth {2,3,4} per stage."""

    def __init__(self, resolution: int = 64, num_classes: int = 10, in_channels: int = 3) -> None:
        if resolution < 32:
            raise SpaceError(f"mbv3-small: resolution {resolution} is below 32 (the net strides by 32)")
        self.name = "mbv3-small"
        self.input_shape = (in_channels, resolution, resolution)
        self.num_classes = num_classes
        genes = []
        for s in range(len(STAGES)):
            for j in range(SLOTS):
                opts: tuple[Any, ...] = BLOCK_CHOICES if j < MIN_DEPTH else (None, *BLOCK_CHOICES)
                genes.append(Gene(gene_name(s, j), opts))
        self.genes = tuple(genes)

    def sample_training(self, rng: np.random.Generator) -> Arch:
        """A random sub-net with depth, kernel and expand uniform per stage and block (sampling
        genomes uniformly would make depth 4 five times likelier than depth 2)."""
        arch: Arch = {}
        for s in range(len(STAGES)):
            depth = int(rng.integers(MIN_DEPTH, SLOTS + 1))
            for j in range(SLOTS):
                choice = BLOCK_CHOICES[int(rng.integers(len(BLOCK_CHOICES)))]
                arch[gene_name(s, j)] = list(choice) if j < depth else None
        return arch

    def features(self, arch: Arch) -> list[float]:
        """Predictor features: per stage and block position, present, kernel and expand one-hot (the
        decoded network, so the two genomes of one network look the same)."""
        out: list[float] = []
        for blocks in stage_blocks(arch):
            for p in range(SLOTS):
                k, e = blocks[p] if p < len(blocks) else (0, 0)
                out += [float(p < len(blocks)), *(float(k == v) for v in KERNELS), *(float(e == v) for v in EXPANDS)]
        return out

    def build(self, arch: Arch) -> nn.Module:
        return MobileNetV3(v3_config(arch), HEAD, num_classes=self.num_classes, in_channels=self.input_shape[0])

    def baseline(self) -> tuple[str, LayerGraph, None]:
        """The network the search is compared with: MobileNetV3-small itself (zoo), mapped isaac-like."""
        from xbarforge.graph.capture import capture
        from xbarforge.zoo import create_model

        c, h, w = self.input_shape
        model = create_model("mobilenetv3_small", num_classes=self.num_classes, in_channels=c, input_size=(h, w))
        return "mobilenetv3_small", capture(model, self.input_shape), None

    def supernet(self) -> MBV3Supernet:
        return MBV3Supernet(self)

    def describe(self, arch: Arch) -> str:
        return " | ".join(" ".join(f"k{k}e{e}" for k, e in blocks) for blocks in stage_blocks(arch))

    def layer_graph(self, arch: Arch) -> LayerGraph:
        """The sub-net's MVM layers written down directly (what `capture` would find, in
        milliseconds: NSGA-II asks for thousands); tests check it against capture."""
        b = _GraphBuilder(self.input_shape)
        b.conv("features.0.0", STEM, 3, 2)
        for i, (k, exp, out, se, _act, stride) in enumerate(v3_config(arch)):
            b.bneck(f"features.{i + 1}.block", k, exp, out, se, stride)
        n = len(v3_config(arch)) + 1
        b.conv(f"features.{n}.0", LAST_CONV, 1, 1)
        b.linear("classifier.0", HEAD)
        b.linear("classifier.3", self.num_classes)
        return b.graph(f"mbv3-small[{self.describe(arch)}]")


class _GraphBuilder:
    """Writes MVM `Layer` records in capture's order and naming, each fed by the one before."""

    def __init__(self, input_shape: tuple[int, int, int]) -> None:
        self.shape = tuple(input_shape)
        self.input_shape = tuple(input_shape)
        self.layers: list[Layer] = [Layer("x", "input", [], (), self.shape)]
        self.last = "x"

    def _add(self, layer: Layer) -> None:
        self.layers.append(layer)
        self.last = layer.name

    def conv(self, name: str, out: int, k: int, stride: int, groups: int = 1, shape: tuple[int, ...] | None = None,
             bias: bool = False) -> None:
        c, h, w = shape or self.shape
        ho, wo = out_size(h, k, stride, k // 2), out_size(w, k, stride, k // 2)
        self._add(Layer(name, "conv", [self.last], (c, h, w), (out, ho, wo), in_channels=c, out_channels=out,
                        kernel=(k, k), stride=(stride, stride), padding=(k // 2, k // 2), groups=groups,
                        attrs={"bias": bias}))
        if shape is None:
            self.shape = (out, ho, wo)

    def bneck(self, prefix: str, k: int, exp: int, out: int, se: bool, stride: int) -> None:
        c = self.shape[0]
        i = 0
        if exp != c:
            self.conv(f"{prefix}.0.0", exp, 1, 1)
            i = 1
        self.conv(f"{prefix}.{i}.0", exp, k, stride, groups=exp)
        if se:
            sq = make_divisible(exp // 4)
            _, h, w = self.shape
            self.conv(f"{prefix}.{i + 1}.fc1", sq, 1, 1, shape=(exp, 1, 1), bias=True)
            self.conv(f"{prefix}.{i + 1}.fc2", exp, 1, 1, shape=(sq, 1, 1), bias=True)
            i += 1
        self.conv(f"{prefix}.{i + 1}.0", out, 1, 1)

    def linear(self, name: str, out: int) -> None:
        features = self.shape[0] if len(self.shape) == 1 else self.shape[0]
        self._add(Layer(name, "linear", [self.last], (features,), (out,), in_channels=features, out_channels=out,
                        attrs={"bias": True}))
        self.shape = (out,)

    def graph(self, name: str) -> LayerGraph:
        out = Layer("output", "output", [self.last], self.shape, self.shape)
        return LayerGraph(name=name, input_shape=self.input_shape, layers=[*self.layers, out])


def mbv3_small_space(resolution: int = 64, num_classes: int = 10, in_channels: int = 3) -> MBV3Space:
    return MBV3Space(resolution=resolution, num_classes=num_classes, in_channels=in_channels)

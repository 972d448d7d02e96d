"""What a mixed-precision policy decides: bits per layer (stage 1), then per weight group (stage 2).

The unit of a policy is `ChannelBits` (layer name -> weight bits of every output channel), which
the compiler turns into crossbar columns and the accuracy check into quantized weights. A stage
is a list of `Decision`s, each a run of output channels of one layer that share one bit width:
in stage 1 a whole layer, in stage 2 an *array-aware group*. Groups are cut where the stage-1
policy's columns cut crossbar column blocks: at the layer's stage-1 bits, `usable_cols //
cols_per_weight` channels fill one column block, so each group is a whole number of column blocks
and the last group is the tail that spills into a partly empty block. Lowering the tail's bits
(or a full group's) frees whole arrays when the freed columns make a block empty; raising a
group's bits fills columns that would otherwise stay empty. Grouped (depthwise) layers keep one
decision, since their blocks are laid out per group, not per channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xbarforge.errors import XbarforgeError
from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec

ChannelBits = dict[str, np.ndarray]  # layer name -> int bits of each output channel
MAX_GROUPS = 4  # decisions per layer in stage 2: up to 3 groups of whole column blocks + the tail


@dataclass(frozen=True)
class Decision:
    """Output channels [start, end) of one layer that get one bit width."""

    layer: int  # index into the space's layers
    start: int
    end: int

    @property
    def channels(self) -> int:
        return self.end - self.start


def parse_bits(text: str) -> tuple[int, ...]:
    """'2-8' -> (2, ..., 8); '4,6,8' -> (4, 6, 8). Raises one XbarforgeError line."""
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
            choices = tuple(range(lo, hi + 1))
        else:
            choices = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise XbarforgeError(f"--bits: expected a range like 2-8 or a list like 4,6,8, got {text!r}") from None
    if not choices or min(choices) < 2 or max(choices) > 16:
        raise XbarforgeError(f"--bits: bit widths must lie in 2..16 (symmetric quantization needs 2), got {text!r}")
    return choices


def out_channels(layer: Layer) -> int:
    return layer.cols_per_group * layer.groups


@dataclass
class QuantSpace:
    """The quantizable layers of a model on a chip and the bit widths a policy may use."""

    graph: LayerGraph
    hw: HardwareSpec
    bits: tuple[int, ...]  # allowed weight bits, ascending

    def __post_init__(self) -> None:
        self.bits = tuple(sorted(set(self.bits)))
        self.layers: list[Layer] = list(self.graph.mvm_layers)
        if not self.layers:
            raise XbarforgeError(f"{self.graph.name}: no conv or linear layers to quantize")
        # group alignment uses the narrowest crossbar on the chip, so groups stay whole column
        # blocks on every pool whose width is a multiple of it
        widths = [p.cols for p in self.hw.chip.pools] or [self.hw.crossbar.cols]
        self.align_cols = min(widths) - (1 if self.hw.crossbar.encoding == "offset" else 0)

    # ---- decisions ----

    def layer_decisions(self) -> list[Decision]:
        """Stage 1: one decision per layer."""
        return [Decision(i, 0, out_channels(layer)) for i, layer in enumerate(self.layers)]

    def group_decisions(self, layer_bits: Sequence[int], max_groups: int = MAX_GROUPS) -> list[Decision]:
        """Stage 2: array-aware groups of each layer at its stage-1 bits (see module doc)."""
        out: list[Decision] = []
        for i, layer in enumerate(self.layers):
            n = out_channels(layer)
            per_block = max(1, self.align_cols // self.hw.cols_for_bits(int(layer_bits[i])))
            if layer.groups > 1 or n <= per_block:
                out.append(Decision(i, 0, n))
                continue
            full_blocks, tail = divmod(n, per_block)
            runs = min(full_blocks, max_groups - (1 if tail else 0))
            bounds = [round(full_blocks * k / runs) * per_block for k in range(runs + 1)]
            out.extend(Decision(i, a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a)
            if tail:
                out.append(Decision(i, n - tail, n))
        return out

    # ---- policies ----

    def channel_bits(self, decisions: Sequence[Decision], bits: Sequence[int]) -> ChannelBits:
        """ChannelBits of a stage's decisions and their widths."""
        out = {layer.name: np.zeros(out_channels(layer), dtype=np.int64) for layer in self.layers}
        for d, b in zip(decisions, bits, strict=True):
            out[self.layers[d.layer].name][d.start:d.end] = int(b)
        missing = [name for name, v in out.items() if (v == 0).any()]
        if missing:
            raise XbarforgeError(f"decisions leave channels of {missing[0]} without bits")
        return out

    def mean_bits(self, policy: ChannelBits) -> float:
        """Weight bits averaged over every weight of the model (each output channel has rows_per_group)."""
        total = sum(layer.rows_per_group * int(policy[layer.name].sum()) for layer in self.layers)
        weights = sum(layer.rows_per_group * len(policy[layer.name]) for layer in self.layers)
        return total / weights

    def uniform(self, bits: int) -> ChannelBits:
        return {layer.name: np.full(out_channels(layer), int(bits), dtype=np.int64) for layer in self.layers}

    # ---- what agents see ----

    def features(self, decisions: Sequence[Decision], layer_bits: Sequence[int] | None = None) -> np.ndarray:
        """HAQ's layer embedding (index, channels, kernel, stride, weights, pixels, depthwise) plus
        the crossbar view at each layer's reference width (`layer_bits`, stage 1's result in stage 2;
        default the widest allowed): row tiles, the share of a column block the decision's channels
        take, whether it is the tail that spills into a partly filled column block, and how full that
        last block is. Every column is scaled to [0, 1]."""
        rows_x = min([p.rows for p in self.hw.chip.pools] or [self.hw.crossbar.rows])
        ref = list(layer_bits) if layer_bits is not None else [max(self.bits)] * len(self.layers)
        last = {d.layer: i for i, d in enumerate(decisions)}
        raw = []
        for i, d in enumerate(decisions):
            layer = self.layers[d.layer]
            width = self.hw.cols_for_bits(int(ref[d.layer]))
            spill = (out_channels(layer) * width) % self.align_cols
            raw.append([
                d.layer,
                layer.in_channels,
                layer.out_channels,
                d.start / max(1, out_channels(layer)),
                d.channels,
                layer.kernel[0] * layer.kernel[1],
                layer.stride[0],
                layer.rows_per_group * d.channels,
                layer.output_pixels,
                float(layer.groups > 1),
                math.ceil(layer.rows_per_group / rows_x),
                d.channels * width / self.align_cols,
                float(last[d.layer] == i and spill > 0),
                spill / self.align_cols,
            ])
        arr = np.asarray(raw, dtype=np.float64)
        lo, hi = arr.min(0), arr.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return (arr - lo) / span


def policy_runs(bits: Mapping[str, np.ndarray]) -> dict[str, list[list[int]]]:
    """Bits per layer as runs [start, end, bits] of equal widths (the compact form files store)."""
    out: dict[str, list[list[int]]] = {}
    for name, arr in bits.items():
        runs: list[list[int]] = []
        for c, b in enumerate(np.asarray(arr).tolist()):
            if runs and runs[-1][2] == b:
                runs[-1][1] = c + 1
            else:
                runs.append([c, c + 1, int(b)])
        out[name] = runs
    return out


def policy_record(space: QuantSpace, policy: ChannelBits) -> dict[str, Any]:
    """Bits per layer as runs of equal widths, in the model's layer order: {layer: [[start, end, bits], ...]}."""
    return policy_runs({layer.name: policy[layer.name] for layer in space.layers})


def policy_from_record(space: QuantSpace, record: dict[str, Any]) -> ChannelBits:
    policy: ChannelBits = {}
    for layer in space.layers:
        runs = record.get(layer.name)
        if runs is None:
            raise XbarforgeError(f"policy file has no bits for layer {layer.name}")
        bits = np.zeros(layer.cols_per_group * layer.groups, dtype=np.int64)
        for start, end, b in runs:
            bits[start:end] = b
        policy[layer.name] = bits
    return policy

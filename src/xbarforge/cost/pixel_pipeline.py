"""Single-inference latency of a line-buffer pipeline with per-pixel data movement (MNSIM 2.0's model).

Used where the preset has a `dataflow` section (`hardware.spec.DataflowSpec`). Every conv, pooling and
residual-add layer produces its output pixels one after another; a pixel starts when the previous one
of the same layer has finished and the input pixels its receptive field needs exist (for an fc layer:
the whole input). Its time is the data movement and compute of MNSIM's PE, tile and layer models:

    pe      = buf(in bytes) + buf(read bytes) + steps x (dac + cell read + adc) + digital(steps)
    tile    = pe + adder tree (log2 PEs cycles) + intra-tile transfer + buf(tile output write)
    pixel   = tile + buf(tile output read) + hops_in x (cycle + partial sums / link bandwidth)
              + hops_out x (pixel bits / link bandwidth)

with steps = input cycles x ceil(rows used / rows_per_step) x ceil(columns used / cols_per_step) and
buf(n bytes) = ceil(8 n / port bits) accesses. The hop counts come from placing the layers' tiles along
MNSIM's spiral on the tile grid (`tile_hops`). The wavefront is one cumulative maximum per layer:
finish(p) = C(p) + max_{q <= p} (ready(q) - C(q - 1)), with C the running sum of pixel times, so a
network of millions of pixels takes milliseconds. A duplicated layer's copies compute segments of each
output row side by side, each segment in turn.

Written here because no library models crossbar dataflow; the equations follow MNSIM 2.0 (thu-nics,
commit ca39ccb) as docs/cost_model.md lists them, line by line against its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xbarforge.compiler.flow import FlowNode
from xbarforge.cost.area import layer_tiles
from xbarforge.hardware.spec import DataflowSpec, HardwareSpec


@dataclass(frozen=True)
class LayerTiming:
    """One flow node's pixels in the pipeline."""

    name: str
    kind: str
    tiles: int
    hops_in: int
    hops_out: int
    begin_ns: float
    finish_ns: float
    busy_ns: float  # sum of its pixel times, per copy (its share of a steady-state period)


@dataclass(frozen=True)
class PixelPipeline:
    latency_ns: float  # one inference: the last pixel of any layer
    period_ns: float  # between inferences in a steady stream: the busiest layer
    layers: list[LayerTiming]
    energy_pj: dict[str, dict[str, float]]  # per flow node, by component (power x busy time)
    pixel_ns: dict[str, np.ndarray]  # per flow node, each output pixel's time (row-major)
    segments: dict[str, list[np.ndarray]]  # per flow node, the pixels each copy computes in turn

    def latency(self, samples: int) -> float:
        """k inferences streamed: the first, then one period each."""
        return self.latency_ns + (samples - 1) * self.period_ns


def _spiral(n: int, grid: int) -> list[tuple[int, int]]:
    """Grid cells of the first n tiles in MNSIM's placement order ("hui", Tile_Connection 2): square
    shells around the corner, odd shells top-down then right-to-left, even shells left-to-right then
    bottom-up."""
    out: list[tuple[int, int]] = []
    s = 0
    while len(out) < n:  # past the grid (a model larger than the chip) the shells go on
        if s == 0:
            shell = [(0, 0)]
        elif s % 2:
            shell = [(i, s) for i in range(s + 1)] + [(s, j) for j in range(s - 1, -1, -1)]
        else:
            shell = [(s, j) for j in range(s + 1)] + [(i, s) for i in range(s - 1, -1, -1)]
        out.extend(shell)
        s += 1
    return out[:n]


def _farthest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Manhattan distance from each point to the farthest target, in O(points + targets):
    |dx| + |dy| = max over the four sign patterns of +-(x - x') +- (y - y')."""
    s, d = targets.sum(1), targets[:, 0] - targets[:, 1]
    ps, pd = points.sum(1), points[:, 0] - points[:, 1]
    return np.maximum.reduce([ps - s.min(), s.max() - ps, pd - d.min(), d.max() - pd])


def tile_hops(nodes: list[FlowNode], tiles: dict[str, int], grid: int) -> dict[str, tuple[int, int]]:
    """(hops within the layer, hops to its consumers) per node, as MNSIM's TCG places and measures them.

    Tiles are numbered layer after layer and laid along the spiral; each layer gathers its partial sums
    on the tile that minimises (farthest own tile + farthest consumer tile); a layer that feeds only
    residual additions sends to the accumulator at (grid / 2, 0) instead.
    """
    cells = _spiral(sum(tiles.values()), grid)
    where: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for n in nodes:
        where[n.name] = sorted(cells[start:start + tiles[n.name]])  # row-major, as np.argwhere lists them
        start += tiles[n.name]
    kinds = {n.name: n.kind for n in nodes}
    acc = np.array([grid / 2, 0.0])
    out: dict[str, tuple[int, int]] = {}
    for idx, n in enumerate(nodes):
        if n.kind == "add":  # the accumulator sends to each consumer's first tile
            far = [abs(where[c][0][0] - acc[0]) + where[c][0][1] for c in n.consumers if where[c]]
            out[n.name] = (0, int(max(far, default=0)))
            continue
        if not where[n.name]:
            out[n.name] = (0, 0)
            continue
        mine = np.array(where[n.name], dtype=float)
        inner = _farthest(mine, mine)
        dst = [t for c in n.consumers for t in where[c]]
        if idx == len(nodes) - 1:
            outer = np.zeros(len(mine))
        elif n.consumers and all(kinds[c] == "add" for c in n.consumers):
            outer = np.abs(mine[:, 0] - acc[0]) + mine[:, 1]
        elif dst:
            outer = _farthest(mine, np.array(dst, dtype=float))
        else:
            outer = np.zeros(len(mine))
        best = int(np.argmin(inner + outer))  # the first of equals, in row-major order as MNSIM scans
        out[n.name] = (int(inner[best]), int(outer[best]))
    return out


def _buf(df: DataflowSpec, nbytes: float) -> float:
    return math.ceil(nbytes * 8 / df.buffer_port_bits) * df.buffer_access_ns


def _ready(prev: np.ndarray, n: FlowNode) -> np.ndarray:
    """Finish time of the input pixel each output pixel waits for (the last one its window needs)."""
    h, w = n.out_hw
    hin, win = n.in_hw
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    if n.kind == "add":
        pos = (i * w + j).ravel()
    elif n.kernel > 1:
        reach = max(n.kernel - n.padding, 1)
        pos = ((np.minimum(reach + n.stride * i, hin) - 1) * win + np.minimum(reach + n.stride * j, win) - 1).ravel()
    else:
        pos = (i * n.stride * win + j * n.stride).ravel()
    return prev[np.minimum(pos, prev.size - 1)]


def _classes(n: FlowNode) -> np.ndarray:
    """Pixel class: 0 the first, 1 the first of a later row, 2 the rest of the first row, 3 the others."""
    h, w = n.out_hw
    cls = np.full((h, w), 3, dtype=np.int64)
    cls[0, :] = 2
    cls[:, 0] = 1
    cls[0, 0] = 0
    return cls.ravel()


def _mvm_energy(hw: HardwareSpec, tiles: int, max_pe: int, rows: int, cols: int, busy: dict[str, float],
                buffers_mw: tuple[float, float, float, float]) -> dict[str, float]:
    """Energy (pJ) of a conv/fc layer: each part's power (mW, over the layer's PE slots) x its busy time (ns).

    As MNSIM's power model: a PE reads rows / demux rows and converts columns / mux columns at a time.
    """
    df = hw.dataflow
    assert df is not None
    demux = math.ceil(hw.crossbar.rows / df.rows_per_step)
    mux = math.ceil(hw.crossbar.cols / df.cols_per_step)
    units = tiles * max_pe
    act_rows, act_cols = math.ceil(rows / demux), math.ceil(cols / mux)
    in_r, in_w, out_r, out_w = buffers_mw
    crossbar = units * hw.chip.crossbars_per_pe * rows * cols * df.cell_mw / demux / mux
    per_col = df.mux_mw * busy["mux"] + df.shift_add_mw * busy["shift"] + df.reg_mw * busy["oreg"]
    digital = (units * act_rows * (df.reg_mw * busy["ireg"] + df.decoder_mw * busy["demux"])
               + units * act_cols * per_col + tiles * (max_pe - 1) * act_cols * df.adder_tree_mw * busy["tree"])
    return {
        "crossbar": crossbar * busy["xbar"],
        "dac": units * act_rows * df.dac_mw * busy["dac"],
        "adc": units * act_cols * df.adc_mw * busy["adc"],
        "shift_add": digital,
        "buffer": tiles * ((max_pe * in_r + out_r) * busy["buf_r"] + (max_pe * in_w + out_w) * busy["buf_w"]),
    }


def _segments(n: FlowNode, copies: int) -> list[np.ndarray]:
    """Pixel indices each copy computes in turn: copies split every output row into side-by-side
    segments (MNSIM's `multiple`); one copy computes the whole map row by row."""
    h, w = n.out_hw
    if copies <= 1 or n.kind == "fc" or w == 1:
        return [np.arange(n.positions)]
    grid = np.arange(h * w).reshape(h, w)
    return [part.ravel() for part in np.array_split(grid, min(copies, w), axis=1)]


def _wavefront(t: np.ndarray, ready: np.ndarray, segments: list[np.ndarray]) -> np.ndarray:
    """finish(p) = max(finish(previous pixel of its segment), ready(p)) + t(p), as cumulative maxima."""
    done = np.empty_like(t)
    for idx in segments:
        tt = t[idx]
        total = np.cumsum(tt)
        done[idx] = total + np.maximum.accumulate(ready[idx] - (total - tt))
    return done


def pixel_pipeline(nodes: list[FlowNode], hw: HardwareSpec, shapes: dict[str, tuple[int, int]],
                   layer_crossbars: dict[str, int], buffer_kb: tuple[float, float] = (0.0, 0.0),
                   copies: dict[str, int] | None = None) -> PixelPipeline:
    """The line-buffer pipeline of one inference.

    `shapes`: rows and columns used in one crossbar per MVM layer (its largest block); `layer_crossbars`:
    crossbars holding each MVM layer (all copies); `buffer_kb`: PE input and tile output buffer sizes
    (their power); `copies`: duplicated layers, whose copies compute segments of each output row side by
    side (a segment's first pixel is priced as an interior one: MNSIM's main flow never duplicates, so
    this part is not checked against it).
    """
    copies = copies or {}
    df = hw.dataflow
    if df is None:
        raise ValueError("pixel_pipeline needs a preset with a dataflow section")
    obits = hw.precision.activation_bits
    b = obits / 8  # bytes per activation
    per_tile = hw.chip.pes_per_tile
    adc_bits = hw.precision.adc_bits
    tiles: dict[str, int] = {}
    pes: dict[str, int] = {}
    for n in nodes:
        if n.kind in ("conv", "fc"):
            pes[n.name] = math.ceil(layer_crossbars.get(n.name, 0) / hw.chip.crossbars_per_pe)
            tiles[n.name] = layer_tiles(hw, layer_crossbars.get(n.name, 0))
        else:
            tiles[n.name] = 1 if n.kind == "pool" else 0
    hops = tile_hops(nodes, tiles, df.tile_grid)
    levels = math.ceil(math.log2(per_tile)) if per_tile > 1 else 0
    in_mw = hw.buffers.sram_mw(buffer_kb[0]) if hw.buffers is not None else (0.0, 0.0)
    out_mw = hw.buffers.sram_mw(buffer_kb[1]) if hw.buffers is not None else (0.0, 0.0)
    buffers_mw = (in_mw[0], in_mw[1], out_mw[0], out_mw[1])
    finish: dict[str, np.ndarray] = {}
    out: list[LayerTiming] = []
    energy: dict[str, dict[str, float]] = {}
    times: dict[str, np.ndarray] = {}
    segs: dict[str, list[np.ndarray]] = {}
    for n in nodes:
        h_in, h_out = hops[n.name]
        transfer = h_out * n.out_channels * obits / df.inter_tile_gbps
        if n.kind in ("conv", "fc"):
            rows, cols = shapes[n.name]
            max_pe = min(pes[n.name], per_tile) or 1
            rp, cp = math.ceil(rows / df.rows_per_step), math.ceil(cols / df.cols_per_step)
            steps = hw.input_cycles * rp * cp
            compute = steps * (df.dac_ns + df.cell_read_ns + hw.latency.adc_ns)
            digital = (rp * cp + 2 * steps) * df.digital_ns + steps * (df.decoder_ns + df.mux_ns) + cp * df.digital_ns
            merge_bits = math.ceil(math.log2(max_pe)) if max_pe > 1 else 0
            tree = merge_bits * df.digital_ns
            intra = (levels * (adc_bits + merge_bits) - merge_bits * (merge_bits + 1) / 2) * cols / df.intra_tile_gbps
            tile_w = _buf(df, (adc_bits + merge_bits) * cols * max_pe / 8)
            tile_r = _buf(df, cols * obits * max_pe / 8)
            merge = tile_r + h_in * (df.digital_ns + cols * max_pe * obits / df.inter_tile_gbps)
            fixed = compute + digital + tree + intra + tile_w + merge + transfer
            if n.kind == "fc":
                counts = np.ones(1)
                bw = br = np.array([_buf(df, rows * b)])
                t = bw + br + fixed
            else:
                k, s, p = n.kernel, n.stride, n.padding
                c = rows / (k * k)
                reach = max(k - p, 0)
                bw = np.array([_buf(df, x) for x in (c * reach * reach * b, c * s * reach * b, c * s * k * b,
                                                     c * s * s * b)])
                br = np.array([_buf(df, x) for x in (rows * b, rows * b, s * k * c * b, s * k * c * b)])
                cls = _classes(n)
                counts = np.bincount(cls, minlength=4)
                t = (bw + br + fixed)[cls]
            px = float(counts.sum())
            busy = {"xbar": px * steps * df.cell_read_ns, "dac": px * steps * df.dac_ns,
                    "adc": px * steps * hw.latency.adc_ns, "ireg": px * (rp * cp + steps) * df.digital_ns,
                    "shift": px * steps * df.digital_ns, "demux": px * steps * df.decoder_ns,
                    "mux": px * steps * df.mux_ns, "oreg": px * cp * df.digital_ns, "tree": px * tree,
                    "buf_r": float(counts @ br) + px * tile_r, "buf_w": float(counts @ bw) + px * tile_w}
            # copies split the pixels, so each part is busy for 1 / copies of them (MNSIM, which never
            # duplicates in its main flow, would charge every copy's power for all of them)
            share = 1 / max(1, copies.get(n.name, 1))
            energy[n.name] = {k: v * share for k, v in
                              _mvm_energy(hw, tiles[n.name], max_pe, rows, cols, busy, buffers_mw).items()}
        elif n.kind == "pool":
            k, s, p, cin = n.kernel, n.stride, n.padding, n.in_channels
            reach = max(k - p, 0)
            ins = [cin * reach * reach * b, cin * s * reach * b, cin * s * s * b, cin * s * s * b]
            reads = [cin * k * k * b, cin * k * k * b, s * k * cin * b, s * k * cin * b]
            unit = df.pool_ns * math.ceil(cin / df.pool_channels) * math.ceil(k * k / df.pool_window)
            outbuf = _buf(df, cin * obits / 8)
            bw = np.array([_buf(df, x) for x in ins])
            br = np.array([_buf(df, x) for x in reads])
            cls = _classes(n)
            counts = np.bincount(cls, minlength=4)
            t = (bw + br + unit + 3 * outbuf + transfer)[cls]
            px = float(counts.sum())
            energy[n.name] = {"digital": df.pool_mw * unit * px,
                              "buffer": out_mw[0] * (float(counts @ br) + px * outbuf)
                              + out_mw[1] * (float(counts @ bw) + px * outbuf)}
        else:  # residual addition in the accumulator: read and write its operands' pixel
            gbuf = _buf(df, len(n.inputs) * n.out_channels * obits / 8)
            t = np.full(n.positions, df.add_ns + transfer + 2 * gbuf)
            energy[n.name] = {}  # MNSIM leaves the accumulator out of the total
        if not n.inputs:
            ready = np.zeros(t.size)
        elif n.kind == "fc":
            ready = np.full(1, max(float(finish[i][-1]) for i in n.inputs))
        else:
            ready = np.max([_ready(finish[i], n) for i in n.inputs], axis=0)
        segments = _segments(n, copies.get(n.name, 1))
        times[n.name], segs[n.name] = t, segments
        done = _wavefront(t, ready, segments)
        finish[n.name] = done
        busy = max(float(t[idx].sum()) for idx in segments)
        out.append(LayerTiming(n.name, n.kind, tiles[n.name], h_in, h_out, float(done[0] - t[0]), float(done.max()),
                               busy))
    latency = max((lt.finish_ns for lt in out), default=0.0)
    period = max((lt.busy_ns for lt in out), default=0.0)
    return PixelPipeline(latency, period, out, energy, times, segs)

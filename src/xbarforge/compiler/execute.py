"""Run a Mapping on ideal crossbars: the proof that the compiler put every weight where it belongs.

The cost model trusts the Mapping's block list; nothing there would notice a block placed on top
of another one, a weight tile left out, or a depthwise slot wired to the wrong group. This module
writes every layer's quantized weights into crossbar cell levels exactly as the Mapping places
them (`program_crossbars`) and then computes each layer's output *only* from those cells
(`execute_layer`): unfold the input per group, drive the rows of each block as its form says, read
its columns, shift-add the bit slices and remove the polarity or reference digitally, sum the row
tiles, rescale and add the bias. On ideal devices the result must equal a float convolution with
the dequantized weights; any misplacement shows up as a wrong output.

Weight encoding (per layer, symmetric, `b = precision.weight_bits`, `c = crossbar.cell_bits`,
`S = ceil(b / c)` slices, least significant slice first):

* ``q = round(w / scale)`` with ``scale = max|w| / (2**(b-1) - 1)``, ``|q| <= 2**(b-1) - 1``;
* differential: ``2*S`` columns per weight, **interleaved pairs**: column ``2*s`` is slice ``s``
  of ``max(q, 0)`` (G+), column ``2*s + 1`` slice ``s`` of ``max(-q, 0)`` (G-);
* offset: ``S`` columns holding the slices of ``q + 2**(b-1)`` (never negative). The crossbar's last
  column (outside ``usable_cols``) is the reference column, every cell at level 1, so reading it
  over the driven rows gives ``sum(x)``; ``2**(b-1) * sum(x)`` is subtracted digitally. A
  diagonal (diag > 1) block drives several slots at once, so its reference is read per slot (one
  reference read per slot and MVM, over that slot's rows);
* signed (one idealized cell per weight slice, `rnc-paper`): ``S`` columns holding
  ``sign(q) * slice_s(|q|)``; with ``S == 1`` the cell holds ``q`` itself.

Column ``j`` of a group's physical matrix is output channel ``j // cols_per_weight`` and slice /
polarity ``j % cols_per_weight`` of that weight; row ``r`` follows `F.unfold` (input channel
major, then kh, kw). Activations are not quantized (ideal DACs and ADCs).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from xbarforge.graph.layer_graph import Layer, LayerGraph
from xbarforge.hardware.spec import HardwareSpec

if TYPE_CHECKING:  # annotations only: Mapping.execute imports this module, so no import back at run time
    from xbarforge.compiler.mapping import LayerPlan, Mapping, PlacedBlock

__all__ = [
    "CrossbarKey",
    "apply_layer",
    "block_cells",
    "check_coverage",
    "dequantized_weight",
    "execute_layer",
    "execute_mapping",
    "execute_model",
    "group_levels",
    "program_crossbars",
    "quantize_weight",
    "reference_forward",
    "reference_layer",
    "slice_coefficients",
]

CrossbarKey = tuple[int, int]  # (reprogramming round, crossbar id)
_CHUNK_ELEMS = 1 << 23  # bound on one batched MVM result (elements) for stacked blocks

# ------------------------------------------------------------------------------------------------
# weight encoding
# ------------------------------------------------------------------------------------------------


def _qmax(hw: HardwareSpec) -> int:
    b = hw.precision.weight_bits
    if b < 2:
        raise ValueError(f"weight_bits={b}: symmetric quantization needs at least 2 bits")
    return 2 ** (b - 1) - 1


def _slices(hw: HardwareSpec) -> int:
    return math.ceil(hw.precision.weight_bits / hw.crossbar.cell_bits)


def quantize_weight(weight: torch.Tensor, hw: HardwareSpec) -> tuple[torch.Tensor, float]:
    """Symmetric per-layer quantization: integer levels (int64) and the scale back to floats."""
    qmax = _qmax(hw)
    wmax = float(weight.detach().abs().max()) if weight.numel() else 0.0
    scale = wmax / qmax if wmax > 0 else 1.0
    q = torch.round(weight.detach().to(torch.float64) / scale).clamp_(-qmax, qmax).to(torch.int64)
    return q, scale


def dequantized_weight(layer: Layer, hw: HardwareSpec) -> torch.Tensor:
    """The float weight the crossbars represent (q * scale), in the layer's own weight shape."""
    assert layer.weight is not None, f"layer {layer.name} has no weight"
    q, scale = quantize_weight(layer.weight, hw)
    return (q.to(torch.float64) * scale).to(layer.weight.dtype)


def _split(values: torch.Tensor, hw: HardwareSpec) -> torch.Tensor:
    """Non-negative integers -> (..., S) cell_bits-wide slices, least significant first."""
    c = hw.crossbar.cell_bits
    shifts = torch.arange(_slices(hw), dtype=torch.int64) * c
    return (values.unsqueeze(-1) >> shifts) & (2**c - 1)


def encode(q: torch.Tensor, hw: HardwareSpec) -> torch.Tensor:
    """Integer weights (...) -> cell levels (..., cols_per_weight) in the module's column order."""
    enc = hw.crossbar.encoding
    if enc == "differential":
        pos, neg = _split(q.clamp(min=0), hw), _split((-q).clamp(min=0), hw)
        return torch.stack((pos, neg), dim=-1).flatten(-2)  # G+ s0, G- s0, G+ s1, G- s1, ...
    if enc == "offset":
        return _split(q + 2 ** (hw.precision.weight_bits - 1), hw)
    return _split(q.abs(), hw) * torch.sign(q).unsqueeze(-1)


def slice_coefficients(hw: HardwareSpec) -> torch.Tensor:
    """Digital shift-add weights of a weight's cols_per_weight column reads (float64)."""
    c = hw.crossbar.cell_bits
    powers = torch.tensor([2.0 ** (s * c) for s in range(_slices(hw))], dtype=torch.float64)
    if hw.crossbar.encoding == "differential":
        return torch.stack((powers, -powers), dim=-1).flatten()
    return powers


def _level_bounds(hw: HardwareSpec) -> tuple[int, int]:
    top = 2**hw.crossbar.cell_bits - 1
    if hw.crossbar.encoding == "signed":
        top = min(top, _qmax(hw))
        return -top, top
    return 0, top


def group_levels(layer: Layer, hw: HardwareSpec) -> torch.Tensor:
    """(G, rows_g, cols_g) cell levels of every group's physical weight matrix (float32)."""
    assert layer.weight is not None, f"layer {layer.name} has no weight"
    q, _ = quantize_weight(layer.weight, hw)
    g = layer.groups
    cog = layer.cols_per_group
    mat = q.reshape(g, cog, -1).transpose(1, 2)  # (G, rows_g, C_out/G), rows in F.unfold order
    levels = encode(mat, hw).flatten(-2)  # (G, rows_g, C_out/G * cols_per_weight)
    lo, hi = _level_bounds(hw)
    if levels.numel() and (int(levels.min()) < lo or int(levels.max()) > hi):
        raise ValueError(f"layer {layer.name}: cell level outside [{lo}, {hi}]")
    return levels.to(torch.float32)


# ------------------------------------------------------------------------------------------------
# block geometry
# ------------------------------------------------------------------------------------------------


def _expected_geometry(plan: LayerPlan, b: PlacedBlock) -> tuple[int, int, int]:
    """(height, width, weight cells) a block must have under its layer's form (lower.py)."""
    rows_g, cols_g = plan.rows_per_group, plan.cols_per_group
    if plan.form.tiled:
        if b.group1 != b.group0 + 1:
            raise ValueError(f"{plan.name}: tiled block spans groups {b.group0}..{b.group1}")
        if not (0 <= b.row0 < b.row1 <= rows_g and 0 <= b.col0 < b.col1 <= cols_g):
            raise ValueError(f"{plan.name}: block rows/cols outside the group matrix: {b}")
        h, w = b.row1 - b.row0, b.col1 - b.col0
        return h, w, h * w
    if (b.row0, b.row1, b.col0, b.col1) != (0, rows_g, 0, cols_g):
        raise ValueError(f"{plan.name}: a {plan.form.label()} block must hold whole group matrices: {b}")
    n = b.group1 - b.group0
    if not (0 <= b.group0 < b.group1 <= plan.groups) or n > plan.form.diag * plan.form.stack:
        raise ValueError(f"{plan.name}: block groups {b.group0}..{b.group1} do not fit {plan.form.label()}")
    slots = math.ceil(n / plan.form.stack)
    return slots * rows_g, n * cols_g, n * rows_g * cols_g


def block_cells(plan: LayerPlan, b: PlacedBlock, levels: torch.Tensor) -> torch.Tensor:
    """The (height, width) cell levels of one placed block, laid out as lower.py describes.

    Diag x stack: group ``g0 + i`` goes to slot ``i // stack`` (rows ``[slot*rows_g, +rows_g)``)
    and columns ``[i*cols_g, (i+1)*cols_g)``; every other cell of the rectangle stays empty.
    """
    if plan.form.tiled:
        return levels[b.group0, b.row0 : b.row1, b.col0 : b.col1]
    rows_g, cols_g, stack = plan.rows_per_group, plan.cols_per_group, plan.form.stack
    n = b.group1 - b.group0
    slots = math.ceil(n / stack)
    cells = torch.zeros(slots * rows_g, n * cols_g, dtype=levels.dtype)
    for s in range(slots):
        i0, i1 = s * stack, min((s + 1) * stack, n)
        part = levels[b.group0 + i0 : b.group0 + i1]  # (k, rows_g, cols_g)
        cells[s * rows_g : (s + 1) * rows_g, i0 * cols_g : i1 * cols_g] = part.permute(1, 0, 2).flatten(1)
    return cells


def _check_plan(plan: LayerPlan, layer: Layer, hw: HardwareSpec) -> None:
    rows_g, cols_g = layer.rows_per_group, layer.cols_per_group * hw.cols_per_weight
    if (plan.rows_per_group, plan.cols_per_group, plan.groups) != (rows_g, cols_g, layer.groups):
        raise ValueError(
            f"{plan.name}: mapping says group matrix {plan.rows_per_group}x{plan.cols_per_group}"
            f" in {plan.groups} groups, graph and hardware say {rows_g}x{cols_g} in {layer.groups}"
        )


def _cover_count(spans: list[tuple[int, int, int, int]], rows: int, cols: int) -> torch.Tensor:
    """How often each cell of a rows x cols matrix is covered by the (r0, r1, c0, c1) spans.

    Coordinate-compressed, so the cost is in the number of spans, not the matrix size.
    """
    rcuts = sorted({0, rows, *(s[0] for s in spans), *(s[1] for s in spans)})
    ccuts = sorted({0, cols, *(s[2] for s in spans), *(s[3] for s in spans)})
    ri = {v: i for i, v in enumerate(rcuts)}
    ci = {v: i for i, v in enumerate(ccuts)}
    count = torch.zeros(len(rcuts) - 1, len(ccuts) - 1, dtype=torch.int32)
    for r0, r1, c0, c1 in spans:
        count[ri[r0] : ri[r1], ci[c0] : ci[c1]] += 1
    return count


def check_coverage(mapping: Mapping, graph: LayerGraph, hw: HardwareSpec) -> None:
    """Raise ValueError unless every weight cell of every copy of every layer is placed exactly once."""
    by_layer: dict[str, list[PlacedBlock]] = defaultdict(list)
    for b in mapping.blocks:
        by_layer[b.layer].append(b)
    names = {layer.name for layer in graph.mvm_layers}
    unknown = set(by_layer) - names
    if unknown:
        raise ValueError(f"blocks of layers not in the graph: {sorted(unknown)}")
    for layer in graph.mvm_layers:
        plan = mapping.layer(layer.name)
        _check_plan(plan, layer, hw)
        copies: dict[int, list[PlacedBlock]] = defaultdict(list)
        for b in by_layer[layer.name]:
            copies[b.copy].append(b)
        if sorted(copies) != list(range(plan.copies)):
            raise ValueError(f"{layer.name}: copies placed {sorted(copies)}, plan says {plan.copies}")
        for c, blocks in copies.items():
            spans: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
            for b in blocks:
                _expected_geometry(plan, b)
                for g in range(b.group0, b.group1):
                    spans[g].append((b.row0, b.row1, b.col0, b.col1))
            for g in range(layer.groups):
                count = _cover_count(spans[g], plan.rows_per_group, plan.cols_per_group)
                if not bool((count == 1).all()):
                    state = "missing" if int(count.min()) == 0 else "placed twice"
                    raise ValueError(f"{layer.name} copy {c} group {g}: weights {state}")


# ------------------------------------------------------------------------------------------------
# programming
# ------------------------------------------------------------------------------------------------


def program_crossbars(mapping: Mapping, graph: LayerGraph, hw: HardwareSpec) -> dict[CrossbarKey, torch.Tensor]:
    """Cell levels (rows x cols, float32 holding integers) of every crossbar the Mapping uses.

    Raises ValueError when the Mapping does not match the graph/hardware, a block leaves its
    crossbar, two blocks of one round share a cell, a weight is missing or placed twice, or a
    level is out of the cell's range.
    """
    rows, cols, usable = hw.crossbar.rows, hw.crossbar.cols, hw.usable_cols
    if mapping.weight_bits:
        raise ValueError("mixed-precision mappings (weight_bits) are costed, not programmed: cells hold uniform bits")
    mnsim = [lp.name for lp in mapping.layers if lp.layout != "dense"]
    if mnsim:
        raise ValueError(f"layer {mnsim[0]} uses MNSIM's layout (bit slices on separate crossbars), which is costed, "
                         "not programmed: compile with chip.layout dense to run it")
    if (mapping.crossbar_rows, mapping.crossbar_cols) != (rows, cols):
        raise ValueError(
            f"mapping is for {mapping.crossbar_rows}x{mapping.crossbar_cols} crossbars, hardware has {rows}x{cols}"
        )
    check_coverage(mapping, graph, hw)
    levels = {layer.name: group_levels(layer, hw) for layer in graph.mvm_layers}
    plans = {p.name: p for p in mapping.layers}
    xbars: dict[CrossbarKey, torch.Tensor] = {}
    owner: dict[CrossbarKey, torch.Tensor] = {}
    for idx, b in enumerate(mapping.blocks):
        plan = plans[b.layer]
        h, w, weights = _expected_geometry(plan, b)
        if (b.height, b.width, b.weights) != (h, w, weights):
            raise ValueError(f"block {idx} of {b.layer}: size {b.height}x{b.width}/{b.weights}, form implies "
                             f"{h}x{w}/{weights}")
        if b.row_offset < 0 or b.col_offset < 0 or b.row_offset + h > rows or b.col_offset + w > usable:
            raise ValueError(f"block {idx} of {b.layer} leaves its {rows}x{usable} crossbar: {b}")
        key = (b.round, b.crossbar)
        if key not in xbars:
            xbars[key] = torch.zeros(rows, cols, dtype=torch.float32)
            if hw.crossbar.encoding == "offset":
                xbars[key][:, cols - 1] = 1.0  # reference column: reads sum(x) of the driven rows
            owner[key] = torch.full((rows, cols), -1, dtype=torch.int64)
        region = owner[key][b.row_offset : b.row_offset + h, b.col_offset : b.col_offset + w]
        if bool((region >= 0).any()):
            other = mapping.blocks[int(region[region >= 0][0])]
            raise ValueError(f"round {b.round} crossbar {b.crossbar}: block {b} overlaps {other}")
        region.fill_(idx)
        xbars[key][b.row_offset : b.row_offset + h, b.col_offset : b.col_offset + w] = block_cells(
            plan, b, levels[b.layer]
        )
    return xbars


# ------------------------------------------------------------------------------------------------
# execution of one layer
# ------------------------------------------------------------------------------------------------


def unfold_input(layer: Layer, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Input -> (G, M, rows_g) row vectors per group, and a function folding (M, C_out) back."""
    if layer.kind == "linear":
        lead = x.shape[:-1]
        flat = x.reshape(1, -1, x.shape[-1])
        return flat, lambda y: y.reshape(*lead, y.shape[-1])
    one_d = bool(layer.attrs.get("conv1d")) or x.dim() == 3
    if one_d:
        x = x.unsqueeze(2)
    pads = layer.attrs.get("pads")
    if pads is not None:
        top, left, bottom, right = pads
        x = F.pad(x, (left, right, top, bottom))
        padding: tuple[int, int] = (0, 0)
    else:
        padding = layer.padding
    n, _, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    h_out = (h + 2 * padding[0] - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * padding[1] - dw * (kw - 1) - 1) // sw + 1
    cols = F.unfold(x, layer.kernel, dilation=layer.dilation, padding=padding, stride=layer.stride)
    g = layer.groups
    xg = cols.reshape(n, g, layer.rows_per_group, -1).permute(1, 0, 3, 2).reshape(g, -1, layer.rows_per_group)

    def fold(y: torch.Tensor) -> torch.Tensor:
        out = y.reshape(n, h_out, w_out, -1).permute(0, 3, 1, 2)
        return out.squeeze(2) if one_d else out

    return xg, fold


def _read(xbar: torch.Tensor, b: PlacedBlock) -> torch.Tensor:
    return xbar[b.row_offset : b.row_offset + b.height, b.col_offset : b.col_offset + b.width].to(torch.float64)


def _ref_column(xbar: torch.Tensor, b: PlacedBlock) -> torch.Tensor:
    return xbar[b.row_offset : b.row_offset + b.height, -1].to(torch.float64)


def _run_tiled(xg: torch.Tensor, b: PlacedBlock, xbar: torch.Tensor, hw: HardwareSpec,
               coef: torch.Tensor, offset: float) -> torch.Tensor:
    """One MVM per pixel: rows [row0, row1) of group g0 driven, columns decoded to outputs."""
    cpw = hw.cols_per_weight
    if b.col0 % cpw or (b.col1 - b.col0) % cpw:
        raise ValueError(f"{b.layer}: block splits a weight's slices ({b.col0}..{b.col1}, {cpw} per weight)")
    x = xg[b.group0, :, b.row0 : b.row1]  # (M, h)
    reads = x @ _read(xbar, b)  # (M, w)
    out = reads.reshape(x.shape[0], -1, cpw) @ coef  # (M, w / cpw)
    if offset:
        out = out - offset * (x @ _ref_column(xbar, b)).unsqueeze(-1)
    return out


def _run_stacked(xg: torch.Tensor, b: PlacedBlock, plan: LayerPlan, xbar: torch.Tensor, hw: HardwareSpec,
                 coef: torch.Tensor, offset: float) -> torch.Tensor:
    """`stack` MVMs per pixel; MVM m drives slot s with group g0 + s*stack + m and reads its columns.

    Returns (n, M, C_out/G) outputs for the block's n groups.
    """
    rows_g, cols_g, stack = plan.rows_per_group, plan.cols_per_group, plan.form.stack
    cpw = hw.cols_per_weight
    n = b.group1 - b.group0
    slots = math.ceil(n / stack)
    m_px = xg.shape[1]
    x = xg[b.group0 : b.group1]
    if slots * stack > n:
        x = torch.cat((x, x.new_zeros(slots * stack - n, m_px, rows_g)))
    x = x.reshape(slots, stack, m_px, rows_g)  # [s, m] = input patch of group g0 + s*stack + m
    cells = _read(xbar, b)  # (slots*rows_g, n*cols_g)
    cells = F.pad(cells, (0, (slots * stack - n) * cols_g))  # empty columns of a partial last slot
    ref = _ref_column(xbar, b).reshape(slots, rows_g) if offset else None
    out = torch.empty(slots, stack, m_px, cols_g // cpw, dtype=torch.float64)
    chunk = max(1, _CHUNK_ELEMS // max(1, m_px * cells.shape[1]))
    for m0 in range(0, stack, chunk):
        m1 = min(stack, m0 + chunk)
        drive = x[:, m0:m1].permute(1, 2, 0, 3).reshape(m1 - m0, m_px, slots * rows_g)  # one row vector per MVM
        reads = (drive @ cells).reshape(m1 - m0, m_px, slots, stack, cols_g)
        # MVM m keeps the columns of the group it drove in each slot: column group (s, m)
        mine = torch.diagonal(reads[:, :, :, m0:m1], dim1=0, dim2=3)  # (M, slots, cols_g, k)
        mine = mine.permute(1, 3, 0, 2)  # (slots, k, M, cols_g)
        vals = mine.reshape(slots, m1 - m0, m_px, cols_g // cpw, cpw) @ coef
        if ref is not None:  # one reference read per slot: sum of that slot's driven inputs
            sums = torch.einsum("skpr,sr->skp", x[:, m0:m1], ref)
            vals = vals - offset * sums.unsqueeze(-1)
        out[:, m0:m1] = vals
    return out.reshape(slots * stack, m_px, -1)[:n]


def execute_layer(
    mapping: Mapping,
    graph: LayerGraph,
    hw: HardwareSpec,
    layer_name: str,
    x: torch.Tensor,
    crossbars: dict[CrossbarKey, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The layer's output for input `x`, computed only from the programmed crossbar cells.

    `x` is (N, C, H, W) for a conv ((N, C, L) for a conv1d) and (..., F) for a linear layer.
    Copy 0's blocks give the values; every other copy must hold the same cells. Equals
    `reference_layer(layer, x, hw)` up to float rounding.
    """
    layer = graph[layer_name]
    plan = mapping.layer(layer_name)
    _check_plan(plan, layer, hw)
    if crossbars is None:
        crossbars = program_crossbars(mapping, graph, hw)
    blocks = mapping.blocks_of(layer_name)
    first = {_block_key(b): b for b in blocks if b.copy == 0}
    for b in blocks:
        ref = first.get(_block_key(b))
        if ref is None:
            raise ValueError(f"{layer_name}: copy {b.copy} has block {_block_key(b)} that copy 0 lacks")
        if b.copy and not torch.equal(_cells(crossbars, b), _cells(crossbars, ref)):
            raise ValueError(f"{layer_name}: copy {b.copy} differs from copy 0 at {_block_key(b)}")
    _, scale = quantize_weight(layer.weight, hw)  # type: ignore[arg-type]
    coef = slice_coefficients(hw)
    offset = float(2 ** (hw.precision.weight_bits - 1)) if hw.crossbar.encoding == "offset" else 0.0
    xg, fold = unfold_input(layer, x.to(torch.float64))
    cog = layer.cols_per_group
    acc = torch.zeros(layer.groups, xg.shape[1], cog, dtype=torch.float64)
    cpw = hw.cols_per_weight
    for b in first.values():
        xbar = crossbars[(b.round, b.crossbar)]
        if plan.form.tiled:
            acc[b.group0, :, b.col0 // cpw : b.col1 // cpw] += _run_tiled(xg, b, xbar, hw, coef, offset)
        else:
            acc[b.group0 : b.group1] += _run_stacked(xg, b, plan, xbar, hw, coef, offset)
    y = acc.permute(1, 0, 2).reshape(xg.shape[1], layer.out_channels) * scale
    if layer.bias is not None:
        y = y + layer.bias.to(torch.float64)
    return fold(y).to(x.dtype)


def _block_key(b: PlacedBlock) -> tuple[int, int, int, int, int, int]:
    return (b.group0, b.group1, b.row0, b.row1, b.col0, b.col1)


def _cells(crossbars: dict[CrossbarKey, torch.Tensor], b: PlacedBlock) -> torch.Tensor:
    xbar = crossbars[(b.round, b.crossbar)]
    return xbar[b.row_offset : b.row_offset + b.height, b.col_offset : b.col_offset + b.width]


def reference_layer(layer: Layer, x: torch.Tensor, hw: HardwareSpec | None = None) -> torch.Tensor:
    """The layer in plain torch (dequantized weights when `hw` is given, float weights otherwise)."""
    assert layer.weight is not None, f"layer {layer.name} has no weight"
    w = layer.weight if hw is None else dequantized_weight(layer, hw)
    return apply_layer(layer, x, w, layer.bias)


def apply_layer(layer: Layer, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The layer's own linear map (conv geometry from capture: pads, stride, groups, 1-d) with `weight`."""
    if layer.kind == "linear":
        return F.linear(x, weight, bias)
    one_d = bool(layer.attrs.get("conv1d")) or x.dim() == 3
    if one_d:
        x = x.unsqueeze(2)
    padding: tuple[int, int] = layer.padding
    pads = layer.attrs.get("pads")
    if pads is not None:
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        padding = (0, 0)
    y = F.conv2d(x, weight, bias, layer.stride, padding, layer.dilation, layer.groups)
    return y.squeeze(2) if one_d else y


# ------------------------------------------------------------------------------------------------
# whole mappings and models
# ------------------------------------------------------------------------------------------------


def execute_mapping(
    mapping: Mapping,
    graph: LayerGraph,
    hw: HardwareSpec,
    x: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Every MVM layer run on its own input: {layer name: input} -> {layer name: output}.

    The layers are run independently (a LayerGraph holds no code for the digital ops between
    them; `execute_model` runs a whole torch model). With `x=None` each layer gets a random input
    of its captured shape (batch 2, seeded by `seed`), which is enough to prove the placement.
    """
    crossbars = program_crossbars(mapping, graph, hw)
    if x is None:
        gen = torch.Generator().manual_seed(seed)
        x = {layer.name: torch.randn((2, *layer.in_shape), generator=gen) for layer in graph.mvm_layers}
    elif not isinstance(x, dict):
        raise TypeError("execute_mapping takes {layer name: input tensor}; use execute_model for a whole model")
    return {name: execute_layer(mapping, graph, hw, name, inp, crossbars) for name, inp in x.items()}


_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
_MVM_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


class LayerInterpreter(torch.fx.Interpreter):
    """Runs an fx-traced model, sending every captured conv/linear module to `layer_fn`.

    Layer names follow capture: a module's qualified name, with `_1`, `_2`, ... for later calls
    of the same module. A batch norm that capture folded into that layer becomes the identity.
    """

    def __init__(self, gm: torch.fx.GraphModule, graph: LayerGraph,
                 layer_fn: Callable[[Layer, torch.Tensor], torch.Tensor]) -> None:
        super().__init__(gm)
        self.layer_graph = graph
        self.mvm_names = {layer.name for layer in graph.mvm_layers}
        self.layer_fn = layer_fn
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: Counter[str] = Counter()
        self.node_layer: dict[torch.fx.Node, str] = {}
        self.current: torch.fx.Node | None = None

    def run_node(self, n: torch.fx.Node) -> Any:
        self.current = n
        return super().run_node(n)

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        mod = self.fetch_attr(str(target))
        node = self.current
        assert node is not None
        if isinstance(mod, nn.MultiheadAttention):
            k = self.calls[str(target)]
            self.calls[str(target)] += 1
            suffix = f"_{k}" if k else ""
            if any(f"{target}.{p}{suffix}" in self.mvm_names for p in ("in_proj", "q_proj")):
                def project(part: str, x: torch.Tensor) -> torch.Tensor:
                    name = f"{target}.{part}{suffix}"
                    out = self.layer_fn(self.layer_graph[name], x)
                    self.outputs[name] = out
                    return out

                return multihead_attention(mod, args, kwargs, project)
        if isinstance(mod, _MVM_TYPES):
            k = self.calls[str(target)]
            self.calls[str(target)] += 1
            name = str(target) if k == 0 else f"{target}_{k}"
            if name in self.mvm_names:
                x = args[0]
                if isinstance(mod, nn.Conv1d | nn.Conv2d) and mod.padding_mode != "zeros":
                    x = F.pad(x, mod._reversed_padding_repeated_twice, mode=mod.padding_mode)
                out = self.layer_fn(self.layer_graph[name], x)
                self.outputs[name] = out
                self.node_layer[node] = name
                return out
        if isinstance(mod, _BN_TYPES) and node.args and node.args[0] in self.node_layer:
            layer = self.layer_graph[self.node_layer[node.args[0]]]
            if layer.attrs.get("folded_bn") == str(target):
                self.node_layer[node] = layer.name
                self.outputs[layer.name] = args[0]
                return args[0]  # already folded into the layer's weight and bias
        return super().call_module(target, args, kwargs)


_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
             "is_causal")


def multihead_attention(mod: nn.MultiheadAttention, args: tuple, kwargs: dict,
                        project: Callable[[str, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """nn.MultiheadAttention (eval mode) with its projections computed by `project(part, x)`.

    `part` is "in_proj" for packed self-attention (one E -> 3E layer, as capture records it) or
    "q_proj"/"k_proj"/"v_proj", and "out_proj"; the attention itself runs in float, as the digital
    unit would. Masks follow torch: a boolean True masks a position out, a float mask is added.
    """
    a = dict(zip(_MHA_ARGS, args, strict=False)) | dict(kwargs)
    q, k, v = a["query"], a["key"], a["value"]
    heads, e = mod.num_heads, mod.embed_dim
    unbatched = q.dim() == 2
    if unbatched:
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
    if not mod.batch_first or unbatched:  # the projections see (batch, tokens, features)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    if a["query"] is a["key"] is a["value"] and mod._qkv_same_embed_dim:
        q, k, v = project("in_proj", q).chunk(3, dim=-1)
    else:
        q, k, v = project("q_proj", q), project("k_proj", k), project("v_proj", v)
    b, n, s = q.shape[0], q.shape[1], k.shape[1]
    q, k, v = (t.reshape(b, -1, heads, e // heads).transpose(1, 2) for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) * (e // heads) ** -0.5
    mask = a.get("attn_mask")
    if a.get("is_causal") and mask is None:
        mask = torch.ones(n, s, dtype=torch.bool, device=q.device).triu(1)
    if mask is not None:
        mask = mask.reshape(-1, heads, n, s) if mask.dim() == 3 else mask
        scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    pad = a.get("key_padding_mask")
    if pad is not None:
        pad = pad.reshape(b, 1, 1, s)
        scores = scores.masked_fill(pad, float("-inf")) if pad.dtype == torch.bool else scores + pad
    weights = scores.softmax(-1)
    out = project("out_proj", (weights @ v).transpose(1, 2).reshape(b, n, e))
    if not mod.batch_first or unbatched:
        out = out.transpose(0, 1)
    if unbatched:
        out = out.squeeze(1)
    if not a.get("need_weights", True):
        return out, None
    w = weights.mean(1) if a.get("average_attn_weights", True) else weights
    return out, (w.squeeze(0) if unbatched else w)


def _run_model(model: nn.Module, x: torch.Tensor, graph: LayerGraph | None,
               layer_fn_of: Callable[[LayerGraph], Callable[[Layer, torch.Tensor], torch.Tensor]],
               expect: Iterable[str] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from xbarforge.graph.capture import capture
    from xbarforge.graph.fx_capture import trace_module

    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        graph = graph if graph is not None else capture(model, tuple(x.shape[1:]))
        gm = trace_module(model)
        interp = LayerInterpreter(gm, graph, layer_fn_of(graph))
        with torch.no_grad():
            out = interp.run(x)
    finally:
        for m, training in flags:
            m.training = training
    missing = sorted(set(expect if expect is not None else interp.mvm_names) - set(interp.outputs))
    if missing:
        raise NotImplementedError(f"MVM layers not reached as conv/linear modules (functional forms?): {missing}")
    return out, interp.outputs


def execute_model(
    mapping: Mapping,
    model: nn.Module,
    x: torch.Tensor,
    hw: HardwareSpec,
    graph: LayerGraph | None = None,
    crossbars: dict[CrossbarKey, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run `model` on `x` with every mapped conv/linear computed from the crossbars.

    The model is fx-traced in eval mode; batch norms that capture folded are skipped (their
    effect is in the folded weights the crossbars hold). Returns the model output and each MVM
    layer's output by name. `graph` defaults to `capture(model, x.shape[1:])`.
    """

    def layer_fn_of(g: LayerGraph) -> Callable[[Layer, torch.Tensor], torch.Tensor]:
        mapped = {p.name for p in mapping.layers}
        if mapped != {layer.name for layer in g.mvm_layers}:
            raise ValueError("the mapping's layers are not the model's MVM layers")
        xbars = crossbars if crossbars is not None else program_crossbars(mapping, g, hw)
        return lambda layer, inp: execute_layer(mapping, g, hw, layer.name, inp, xbars)

    return _run_model(model, x, graph, layer_fn_of, [p.name for p in mapping.layers])


def reference_forward(
    model: nn.Module, x: torch.Tensor, hw: HardwareSpec | None = None, graph: LayerGraph | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model with folded (and, given `hw`, quantized) weights in plain torch: what
    `execute_model` must reproduce on ideal crossbars."""
    return _run_model(model, x, graph, lambda g: lambda layer, inp: reference_layer(layer, inp, hw))

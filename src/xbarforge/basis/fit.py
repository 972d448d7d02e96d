"""Initialize a basis and its coefficients from a trained network's kernels.

Every layer's kernel segments (normalized by the layer's RMS weight, so small layers count as much
as large ones) are pooled per crossbar group; the group's basis vectors are either the top right
singular vectors of its pool (`svd`: the best subspace of that size in the least-squares sense) or
k-means centroids of it (`kmeans`, scikit-learn, normalized to unit length). Coefficients are then
the least-squares combination of the group's vectors for each segment. With `refine` > 0 the units
of each layer are moved between groups to the group whose subspace fits them best (a capacity-bounded
assignment per layer, scipy's Hungarian solver, so no layer gets slower) and the bases are refit.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from xbarforge.basis.layout import BasisError, BasisLayout, LayerSegments
from xbarforge.basis.model import BasisNetwork

__all__ = ["FitReport", "fit_basis", "layer_segments"]

Init = Literal["svd", "kmeans"]
INITS = ("svd", "kmeans")


@dataclass
class FitReport:
    """How well the fitted basis reproduces the original kernels (relative Frobenius errors)."""

    init: str
    refine: int
    error: float  # float coefficients and basis
    error_quantized: float  # basis at weight_bits, coefficients at coeff_bits
    layers: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"init": self.init, "refine": self.refine, "error": self.error,
                "error_quantized": self.error_quantized, "layers": self.layers}


def layer_segments(weight: torch.Tensor, seg: LayerSegments, rows: int) -> torch.Tensor:
    """(conv_groups, out, segments, R) view of a layer's weight, the last segment zero-padded."""
    w = weight.detach().float().reshape(seg.conv_groups, seg.out_per_group, seg.rows)
    pad = seg.segments * rows - seg.rows
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(seg.conv_groups, seg.out_per_group, seg.segments, rows)


def _units(segs: torch.Tensor) -> torch.Tensor:
    """(units, out, R): the segment vectors of each (conv group, segment) unit, conv-group major."""
    cg, out, s, r = segs.shape
    return segs.permute(0, 2, 1, 3).reshape(cg * s, out, r)


def _fit_group(pool: torch.Tensor, k: int, init: Init, seed: int) -> torch.Tensor:
    """(k, R) basis vectors for the pooled segment vectors (n, R)."""
    r = pool.shape[1]
    gen = torch.Generator().manual_seed(seed)
    if pool.shape[0] == 0:
        return torch.nn.functional.normalize(torch.randn(k, r, generator=gen), dim=1)
    if init == "svd":
        _, _, vh = torch.linalg.svd(pool.double(), full_matrices=False)
        basis = vh[:k].float()
    else:
        from sklearn.cluster import KMeans

        n = min(k, pool.shape[0])
        km = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(pool.numpy().astype(np.float64))
        basis = torch.nn.functional.normalize(torch.from_numpy(km.cluster_centers_).float(), dim=1)
    if basis.shape[0] < k:  # fewer independent directions than vectors: the rest stay random, unused by lstsq
        extra = torch.nn.functional.normalize(torch.randn(k - basis.shape[0], r, generator=gen), dim=1)
        basis = torch.cat([basis, extra])
    return basis


def _projector(basis: torch.Tensor) -> torch.Tensor:
    """(k, R) -> (R, R') orthonormal columns spanning the vectors (for residuals)."""
    q, rr = torch.linalg.qr(basis.double().T)
    keep = rr.diagonal().abs() > 1e-9 * max(1.0, float(rr.diagonal().abs().max()))
    return q[:, keep]


def _assign(err: torch.Tensor, capacity: int) -> tuple[int, ...]:
    """Units to groups minimizing the total residual, each group taking at most `capacity` units."""
    units, groups = err.shape
    cost = err.repeat_interleave(capacity, dim=1).numpy()  # (units, groups * capacity) slots
    rows, cols = linear_sum_assignment(cost)
    out = [0] * units
    for u, c in zip(rows, cols, strict=True):
        out[int(u)] = int(c) // capacity
    return tuple(out)


def fit_basis(model: nn.Module, layout: BasisLayout, *, weight_bits: int, coeff_bits: int, init: Init = "svd",
              refine: int = 2, seed: int = 0) -> tuple[BasisNetwork, FitReport]:
    """A BasisNetwork for `model` (its own weights untouched) and how well it reproduces them."""
    if init not in INITS:
        raise BasisError(f"init '{init}' is not one of {', '.join(INITS)}")
    if not 1 <= coeff_bits <= 16:
        raise BasisError(f"coeff bits: must be between 1 and 16 (got {coeff_bits})")
    if refine < 0:
        raise BasisError(f"refine: must be at least 0 (got {refine})")
    modules = dict(model.named_modules())
    r, k = layout.rows, layout.vectors_per_group
    units: dict[str, torch.Tensor] = {}
    scales: dict[str, float] = {}
    for seg in layout.layers:
        if seg.name not in modules:
            raise BasisError(f"layer '{seg.name}' of the layout is not a module of this model")
        w = modules[seg.name].weight
        if w.numel() != seg.num_weights:
            raise BasisError(f"layer '{seg.name}': {w.numel()} weights, the layout expects {seg.num_weights}")
        segs = layer_segments(w, seg, r)
        scales[seg.name] = float(w.detach().float().pow(2).mean().sqrt().clamp_min(1e-12))
        units[seg.name] = _units(segs) / scales[seg.name]
    assignment = {seg.name: seg.group_of_unit for seg in layout.layers}

    def bases_for(assign: dict[str, tuple[int, ...]]) -> list[torch.Tensor]:
        out = []
        for g in range(layout.groups):
            parts = [units[name][u] for name, groups in assign.items() for u, gg in enumerate(groups) if gg == g]
            pool = torch.cat(parts) if parts else torch.zeros(0, r)
            out.append(_fit_group(pool, k, init, seed + g))
        return out

    bases = bases_for(assignment)
    if layout.groups > 1:
        for _ in range(refine):
            projs = [_projector(b) for b in bases]
            for seg in layout.layers:
                u = units[seg.name].double()  # (units, out, R)
                total = u.pow(2).sum((1, 2))
                err = torch.stack([total - (u @ p).pow(2).sum((1, 2)) for p in projs], dim=1)
                assignment[seg.name] = _assign(err.float(), layout.capacity(seg))
            bases = bases_for(assignment)
    layout = layout.with_assignment(assignment)
    basis = torch.cat(bases)  # group g's vectors are rows g*k .. (g+1)*k, its crossbars in order
    pinvs = [torch.linalg.pinv(b.double()) for b in bases]  # (R, k)
    coeffs: dict[str, torch.Tensor] = {}
    for seg in layout.layers:
        u = units[seg.name].double()
        c = torch.stack([u[i] @ pinvs[g] for i, g in enumerate(seg.group_of_unit)])  # (units, out, k)
        c = c.float().view(seg.conv_groups, seg.segments, seg.out_per_group, k).permute(0, 2, 1, 3)
        coeffs[seg.name] = (c * scales[seg.name]).contiguous()
    # the basis network wraps its own copy: the caller's model keeps its trainable weights
    net = BasisNetwork(copy.deepcopy(model), layout, basis, coeffs, weight_bits=weight_bits, coeff_bits=coeff_bits)
    return net, reconstruction_report(net, model, init, refine)


def reconstruction_report(net: BasisNetwork, model: nn.Module, init: str = "", refine: int = 0) -> FitReport:
    """Relative errors of the rebuilt kernels against `model`'s, float and quantized."""
    modules = dict(model.named_modules())
    layers: dict[str, dict[str, float]] = {}
    sums = {"float": [0.0, 0.0], "quantized": [0.0, 0.0]}
    with torch.no_grad():
        quant = net.quantize
        for mode in ("float", "quantized"):
            net.quantize = mode == "quantized"
            for name, w in net.weights().items():
                layer = name.rsplit(".", 1)[0]
                ref = modules[layer].weight.detach().float()
                num = float((w - ref).pow(2).sum())
                den = float(ref.pow(2).sum())
                # each layer counts by its relative error (a small layer matters as much as a large one)
                rel = math.sqrt(num / den) if den else 0.0
                layers.setdefault(layer, {})[mode] = rel
                sums[mode][0] += rel**2
                sums[mode][1] += 1
        net.quantize = quant
    rms = {m: math.sqrt(s / n) if n else 0.0 for m, (s, n) in sums.items()}
    return FitReport(init, refine, rms["float"], rms["quantized"], layers)


def quantized_coefficients(net: BasisNetwork) -> dict[str, torch.Tensor]:
    """Each layer's coefficients as the digital unit holds them (for export and tests)."""
    with torch.no_grad():
        return {seg.name: net.layer_coeffs(seg.name).detach().clone() for seg in net.layout.layers}


"""A network whose conv/linear kernels are built from one global basis (BasisN).

`BasisNetwork` wraps an ordinary torch model: the basis bank (M vectors of R values, as the chip's
crossbars hold them) and one coefficient tensor per MVM layer are the trainable parameters; every
forward pass rebuilds each layer's weight from them and runs the wrapped model with those weights
(`torch.func.functional_call`, so any model that `capture` accepts works unchanged). Batch norms,
biases and everything digital stay the wrapped model's own parameters.

Quantization follows the hardware: the basis is rounded to `weight_bits` with one scale (it is one
programmed weight matrix), coefficients to `coeff_bits` with one scale per output channel (the
digital unit's fixed-point format, which also absorbs batch-norm folding). Rounding uses a straight-
through estimator, so the same module trains jointly, trains coefficients alone (`freeze_basis`),
and evaluates exactly what the chip computes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from xbarforge.basis.layout import BasisLayout, LayerSegments
from xbarforge.sim.hwa import RoundSTE

__all__ = ["BasisNetwork", "quantize_ste", "reconstruct"]


def quantize_ste(x: torch.Tensor, bits: int, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """Symmetric fixed point with 2**(bits-1)-1 levels a side; one scale over `dims` (None: whole tensor)."""
    qmax = 2 ** (bits - 1) - 1
    top = x.detach().abs().amax() if dims is None else x.detach().abs().amax(dim=dims, keepdim=True)
    scale = top.clamp_min(1e-12) / qmax
    return RoundSTE.apply(x / scale).clamp(-qmax, qmax) * scale


def unit_index(layout: BasisLayout, seg: LayerSegments, groups: tuple[int, ...] | None = None) -> torch.Tensor:
    """(conv_groups, segments, P*V) indices of the basis vectors each unit of `seg` may use."""
    groups = seg.group_of_unit if groups is None else groups
    rows = [list(layout.group_vectors(g)) for g in groups]
    return torch.tensor(rows, dtype=torch.long).view(seg.conv_groups, seg.segments, layout.vectors_per_group)


def reconstruct(basis: torch.Tensor, coeffs: torch.Tensor, index: torch.Tensor, seg: LayerSegments,
                shape: torch.Size) -> torch.Tensor:
    """A layer's weight from basis (M, R), coefficients (conv_groups, out, segments, P*V) and unit index.

    Segment s of output channel o is sum_v coeffs[., o, s, v] * basis[index[., s, v]]; segments are
    concatenated along the row axis and the zero padding of the last one is cut off.
    """
    vectors = basis[index]  # (cg, S, PV, R)
    segs = torch.einsum("cosv,csvr->cosr", coeffs, vectors)  # (cg, out, S, R)
    cg, out, s, r = segs.shape
    rows = segs.reshape(cg, out, s * r)[..., : seg.rows]
    return rows.reshape(shape)


class BasisNetwork(nn.Module):
    """`model` with every conv/linear weight rebuilt from a shared basis and per-layer coefficients."""

    def __init__(self, model: nn.Module, layout: BasisLayout, basis: torch.Tensor,
                 coeffs: dict[str, torch.Tensor], *, weight_bits: int, coeff_bits: int,
                 quantize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.weight_bits = int(weight_bits)
        self.coeff_bits = int(coeff_bits)
        self.quantize = quantize
        self.basis = nn.Parameter(basis.detach().clone().float())
        self.coeffs = nn.ParameterDict()
        self._keys: dict[str, str] = {}  # layer name -> parameter-dict key (dots are not allowed there)
        modules = dict(model.named_modules())
        for seg in layout.layers:
            if seg.name not in modules or not isinstance(getattr(modules[seg.name], "weight", None), torch.Tensor):
                raise KeyError(f"layer '{seg.name}' is not a module with a weight in this model")
            key = seg.name.replace(".", "__")
            self._keys[seg.name] = key
            self.coeffs[key] = nn.Parameter(coeffs[seg.name].detach().clone().float())
            self.register_buffer(f"index__{key}", unit_index(layout, seg), persistent=True)
            modules[seg.name].weight.requires_grad_(False)  # replaced on every forward pass

    # ---- weights ----

    def index(self, name: str) -> torch.Tensor:
        return getattr(self, f"index__{self._keys[name]}")

    def set_assignment(self, name: str, groups: tuple[int, ...]) -> None:
        """Move a layer's units to other groups (within its capacity); the layout follows."""
        self.layout = self.layout.with_assignment({name: tuple(groups)})
        self.index(name).copy_(unit_index(self.layout, self.layout.layer(name)))

    def programmed_basis(self) -> torch.Tensor:
        """The basis as the crossbars hold it: `weight_bits` fixed point with one scale."""
        return quantize_ste(self.basis, self.weight_bits) if self.quantize else self.basis

    def layer_coeffs(self, name: str) -> torch.Tensor:
        """A layer's coefficients as the digital unit holds them (`coeff_bits`, one scale per output channel)."""
        c = self.coeffs[self._keys[name]]
        return quantize_ste(c, self.coeff_bits, dims=(2, 3)) if self.quantize else c

    def weights(self) -> dict[str, torch.Tensor]:
        """Every replaced weight, keyed by its parameter name in the wrapped model."""
        basis = self.programmed_basis()
        modules = dict(self.model.named_modules())
        out = {}
        for seg in self.layout.layers:
            shape = modules[seg.name].weight.shape
            out[f"{seg.name}.weight"] = reconstruct(basis, self.layer_coeffs(seg.name), self.index(seg.name),
                                                    seg, shape)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.weights(), (x,), strict=False)

    # ---- stages ----

    def freeze_basis(self, frozen: bool = True) -> BasisNetwork:
        """Train coefficients only: the basis is what the crossbars were programmed with."""
        self.basis.requires_grad_(not frozen)
        return self

    def materialize(self) -> nn.Module:
        """A plain copy of the wrapped model holding the rebuilt (quantized) weights."""
        import copy

        plain = copy.deepcopy(self.model)
        with torch.no_grad():
            params = dict(plain.named_parameters())
            for name, w in self.weights().items():
                params[name].copy_(w)
                params[name].requires_grad_(True)
        return plain

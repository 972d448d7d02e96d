"""IR drop in an RRAM crossbar: an exact nodal solve and a fast static model of the same circuit.

Geometry (docs/ir_drop.md has the derivations and the measured accuracy). A crossbar has R rows
(word lines) and C columns (bit lines); cell (i, j) is a conductance ``g[i, j]`` between row node
(i, j) and column node (i, j). Row i is driven at its left end by an ideal source ``v[i]`` through
one wire segment; column j ends at its bottom in a virtual-ground (0 V) sense amplifier, also
through one segment; every segment between neighbouring nodes is ``r`` ohm. Column j's output is
the current into its sense amplifier; ideally ``I[j] = sum_i v[i] g[i, j]``.

Exact (`nodal_solve`): Kirchhoff's current law at all 2RC nodes,

    row node    (Vr[i,j-1] - 2 Vr[i,j] + Vr[i,j+1]) / r = g[i,j] (Vr[i,j] - Vc[i,j])
    column node (Vc[i-1,j] - 2 Vc[i,j] + Vc[i+1,j]) / r = g[i,j] (Vc[i,j] - Vr[i,j])

with ``Vr[i,-1] = v[i]``, ``Vc[R,j] = 0`` and no segment past the open ends; ``I[j] = Vc[R-1,j] / r``.
The matrix is sparse and symmetric positive definite: one LU factorization serves any number
of input vectors.

Why a static factor can be exact: the circuit is linear, so ``I = v @ G_eff`` for one (R, C)
matrix ``G_eff`` (`effective_conductance`) whatever the inputs are. Input statistics such as the
fraction of active rows change how much current a column loses, never ``G_eff``: a row driven at
0 V is still connected, and the column voltage that other rows raise pushes current back into it:
the share of the column-wire drop that a factor scaled by the fraction of active rows leaves out.
``G_eff`` costs R solves; `ir_drop_factors` approximates it at the cost of a few sweeps.

Fast model (`ir_drop_factors`): the factor of cell (i, j) is the voltage it sees when every row is
driven at the same voltage V, relative to V,

    f[i,j] = (Vr[i,j] - Vc[i,j]) / V        (all v[i] = V),     G_eff ~ g * f.

To first order in r this *is* ``G_eff / g``, cell by cell (by reciprocity, the column rise row m
causes at cell (i, j) equals the one row i causes at (m, j)):

    f[i,j] ~ 1 - r sum_m g[i,m] (min(j,m) + 1) - r sum_m g[m,j] (R - max(i,m))    (`first_order_factors`)

(row segment k carries the current of the cells right of it; column segment k the current of the
cells above it). Beyond first order the all-rows-driven solution reproduces ``v @ G_eff`` exactly
for uniform inputs, and errs only on an input's deviation from uniform, by a term of second
order in the drop. The first-order expansion itself, and the fixed point that re-evaluates the
currents with the dropped voltages, fail once ``r * g * N**2`` nears 1 (128x128 at 2.8 ohm): the
fixed point then diverges. So the all-rows-driven solution is computed exactly instead, by
preconditioned conjugate gradients on the row voltages (the column voltages eliminated), with the
exact solve of every row wire alone as preconditioner; that leaves 1 to 5 iterations. A single
wire with shunts ``y[k]`` to fixed potentials is solved by one backward recurrence of the
admittance seen past node k, ``rho[k] = y[k] + rho[k+1] / (1 + r rho[k+1])``, and cumulative
sums and products for any right-hand side.

Limits: ideal drivers and sense amplifiers, linear cells, every row connected to its driver (an
undriven row at 0 V, not floating), quasi-static (no wire capacitance), no driver or ADC input
resistance. Factors are computed without gradient: they are a property of the programmed chip.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F

__all__ = [
    "IRDropError",
    "effective_conductance",
    "first_order_factors",
    "ir_drop_error",
    "ir_drop_factors",
    "nodal_solve",
    "random_conductances",
    "random_inputs",
]


def _check_wire(r_wire: float) -> float:
    r = float(r_wire)
    if not np.isfinite(r) or r < 0:
        raise ValueError(f"r_wire must be a finite resistance >= 0 ohm, got {r_wire!r}")
    return r


# ---- exact: modified nodal analysis ----


def _nodal_system(g: np.ndarray, r: float) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    """Nodal matrix multiplied by r (wire conductance 1, cells r*g), row and column node indices.

    Row and column nodes of a cell are numbered next to each other: the ordering then keeps the
    LU factors of this grid-like graph about half as large as with all row nodes first.
    """
    rows, cols = g.shape
    n = rows * cols
    row_node = 2 * np.arange(n).reshape(rows, cols)
    col_node = row_node + 1
    src = np.concatenate([row_node[:, :-1].ravel(), col_node[:-1, :].ravel(), row_node.ravel()])
    dst = np.concatenate([row_node[:, 1:].ravel(), col_node[1:, :].ravel(), col_node.ravel()])
    w = np.concatenate([np.ones(rows * (cols - 1) + (rows - 1) * cols), r * g.ravel()])
    diag = np.bincount(src, w, 2 * n) + np.bincount(dst, w, 2 * n)
    diag[row_node[:, 0]] += 1.0  # segment to the row driver
    diag[col_node[-1, :]] += 1.0  # segment to the sense amplifier
    idx = np.arange(2 * n)
    a = sp.coo_matrix(
        (np.concatenate([-w, -w, diag]), (np.concatenate([src, dst, idx]), np.concatenate([dst, src, idx]))),
        shape=(2 * n, 2 * n),
    ).tocsc()
    return a, row_node, col_node


def nodal_solve(g: np.ndarray, v: np.ndarray, r_wire: float) -> np.ndarray:
    """Exact column currents (A), shape (C,) for v of shape (R,), (C, B) for v of shape (R, B).

    `g` (R, C) in siemens, `v` in volts, `r_wire` ohm per segment. One sparse LU factorization
    for all B input vectors (128x128: about 0.1 s plus 5 to 15 ms per vector on one core).
    """
    g = np.asarray(g, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    r = _check_wire(r_wire)
    if g.ndim != 2 or v.ndim not in (1, 2) or v.shape[0] != g.shape[0]:
        raise ValueError(f"g must be (R, C) and v (R,) or (R, B); got g {g.shape}, v {v.shape}")
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError("g must hold finite conductances >= 0 S")
    if r == 0.0:
        return g.T @ v
    a, row_node, col_node = _nodal_system(g, r)
    rhs = np.zeros((a.shape[0],) + v.shape[1:])
    rhs[row_node[:, 0]] = v  # source v through a segment of conductance 1 (the system is scaled by r)
    lu = spla.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    x = lu.solve(rhs)
    return x[col_node[-1, :]] / r


def effective_conductance(g: np.ndarray, r_wire: float) -> np.ndarray:
    """Exact G_eff (R, C): column currents are ``v @ G_eff`` for every input v (the circuit is linear).

    Costs one factorization and R solves (128x128: 2 to 5 s), once per programmed crossbar.
    """
    g = np.asarray(g, dtype=np.float64)
    return nodal_solve(g, np.eye(g.shape[0]), r_wire).T


# ---- fast model ----


def _rcumsum(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(torch.cumsum(torch.flip(x, (-1,)), -1), (-1,))


class _Wires:
    """A batch of wires along the last dim: segment r, node k shunted to a potential by y[..., k].

    Index 0 is the driven end (one segment to the source), the last index is open. Precomputes
    ``a[k] = 1 / (1 + r rho[k])`` with ``rho[k]`` the admittance from segment k onward, so that
    every later solve is a few cumulative sums (the Thomas algorithm written as scans).
    """

    def __init__(self, y: torch.Tensor, r: float) -> None:
        self.y, self.r = y, r
        a = 1 / (1 + r * _admittances(y, r))
        self.p = torch.cumprod(a, -1)  # voltage profile of the wire driven at 1 V with shunts to 0 V
        self.p_prev = F.pad(self.p[..., :-1], (1, 0), value=1.0)

    def solve(self, s: torch.Tensor, source: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Node voltages for injected currents `s` (A) and driver voltage `source` (shape (...,) or scalar)."""
        if isinstance(source, torch.Tensor):
            source = source.unsqueeze(-1)
        beta = _rcumsum(s * self.p) / self.p  # injections from node k on, as they reach segment k
        return self.p * (source + self.r * torch.cumsum(beta / self.p_prev, -1))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The wire's nodal matrix times x, driver at 0 V (inverse of `solve` with source 0)."""
        d = x - F.pad(x[..., :-1], (1, 0))  # r * current of segment k
        return (d - F.pad(d[..., 1:], (0, 1))) / self.r + self.y * x


def _admittances(y: torch.Tensor, r: float) -> torch.Tensor:
    """rho[k] = y[k] + rho[k+1] / (1 + r rho[k+1]) along the last dim, from the open end back.

    A sequential recurrence of one small step per node: on the CPU it runs in numpy, whose
    per-call cost is a fifth of torch's (the same IEEE operations in the same order, so the same
    numbers).
    """
    if y.device.type != "cpu":
        ys = y.unbind(-1)
        rho = [ys[-1]]
        for yk in reversed(ys[:-1]):
            rho.append(yk + rho[-1] / (1 + r * rho[-1]))
        return torch.stack(rho[::-1], -1)
    yn = y.movedim(-1, 0).contiguous().numpy()
    rho = np.empty_like(yn)
    rho[-1] = yn[-1]
    for k in range(len(yn) - 2, -1, -1):
        rho[k] = yn[k] + rho[k + 1] / (1 + r * rho[k + 1])
    return torch.from_numpy(rho).movedim(0, -1)


def _to_cols(x: torch.Tensor) -> torch.Tensor:
    """(..., R, C) -> (..., C, R) with index 0 at the sense amplifier (bottom row)."""
    return x.flip(-2).transpose(-1, -2)


def _from_cols(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2).flip(-2)


def _check_g(g: torch.Tensor) -> None:
    if g.ndim < 2:
        raise ValueError(f"g must be (..., R, C), got shape {tuple(g.shape)}")
    if not torch.isfinite(g).all() or (g < 0).any():
        raise ValueError("g must hold finite conductances >= 0 S")


def ir_drop_factors(
    g: torch.Tensor,
    r_wire: float,
    activity: float = 0.5,
    *,
    tol: float = 1e-6,
    max_iter: int = 50,
    min_factor: float = 1e-4,
) -> torch.Tensor:
    """Factors in [min_factor, 1] with ``v @ (g * factors)`` ~ the exact column currents.

    `g` (..., R, C) in siemens (leading dims: independent crossbars), `r_wire` ohm per segment.
    The factor is the voltage a cell sees, relative to the drive, with every row driven equally
    (module docstring). `activity` (mean drive of a row relative to full scale) is accepted for
    callers that know it, but it does not change the factors: the circuit is linear, so scaling
    the drive scales every voltage. Solved to relative residual `tol` without gradient, in float64
    for float64 `g` and otherwise in float32 (2 to 3 times faster; the factors differ from the
    float64 solve by about 1e-6, below a float32 cell's resolution), falling back to float64 where
    float32 does not converge; returned in g's dtype. 256x256: about 5 ms on one CPU core.
    """
    r = _check_wire(r_wire)
    if not 0 < activity <= 1:
        raise ValueError(f"activity must be in (0, 1], got {activity}")
    _check_g(g)
    out_dtype = g.dtype if g.is_floating_point() else torch.float64
    if r == 0.0:
        return torch.ones_like(g, dtype=out_dtype)
    with torch.no_grad():
        if g.dtype != torch.float64:
            x, converged = _row_voltages(g.to(torch.float32), r, tol, max_iter)
            if converged:
                return x.clamp_(min_factor, 1.0).to(out_dtype)
        x, converged = _row_voltages(g.to(torch.float64), r, tol, max_iter)
        if not converged:
            warnings.warn(f"ir_drop_factors: not converged to tol={tol} in {max_iter} iterations", stacklevel=2)
    return x.clamp_(min_factor, 1.0).to(out_dtype)


def _row_voltages(g: torch.Tensor, r: float, tol: float, max_iter: int) -> tuple[torch.Tensor, bool]:
    """Cell voltages (row node minus column node) with every row driven at 1 V, in g's dtype, and
    whether conjugate gradients reached relative residual `tol` (module docstring)."""
    rows, cols = _Wires(g, r), _Wires(_to_cols(g), r)

    def col_voltages(vr: torch.Tensor) -> torch.Tensor:
        return _from_cols(cols.solve(_to_cols(g * vr)))

    def schur(x: torch.Tensor) -> torch.Tensor:  # row-node system with the column nodes eliminated
        return rows.apply(x) - g * col_voltages(x)

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum((-2, -1), keepdim=True)

    tiny = torch.finfo(g.dtype).tiny
    b = torch.zeros_like(g)
    b[..., 0] = 1.0 / r  # every row driven at 1 V
    x = rows.solve(torch.zeros_like(g), 1.0)  # start: each row wire alone over grounded columns
    res = b - schur(x)
    z = rows.solve(res)
    p, rz = z, dot(res, z)
    threshold = tol**2 * dot(b, rows.solve(b))
    for _ in range(max_iter):
        done = rz <= threshold
        if bool(done.all()):
            break
        q = schur(p)
        alpha = torch.where(done, 0.0, rz / dot(p, q).clamp_min(tiny))
        x, res = x + alpha * p, res - alpha * q
        z = rows.solve(res)
        rz_new = dot(res, z)
        p = z + torch.where(done, 0.0, rz_new / rz.clamp_min(tiny)) * p
        rz = rz_new
    converged = bool((rz <= threshold).all()) and bool(torch.isfinite(x).all())
    return x - col_voltages(x), converged


def first_order_factors(g: torch.Tensor, r_wire: float, min_factor: float = 1e-4) -> torch.Tensor:
    """First-order (small-drop) factors, ``1 - r (row path + column path)``, clamped to [min_factor, 1].

    Exact to first order in r_wire, two cumulative sums per wire; kept as the textbook baseline:
    it overestimates the drop badly once the drop passes ~10% (docs/ir_drop.md).
    """
    r = _check_wire(r_wire)
    _check_g(g)
    row_seg = _rcumsum(g)  # row segment k carries the cells at columns >= k
    col_seg = torch.cumsum(g, -2)  # column segment below row k carries the cells at rows <= k
    row_drop = torch.cumsum(row_seg, -1)
    col_rise = torch.flip(torch.cumsum(torch.flip(col_seg, (-2,)), -2), (-2,))
    return (1 - r * (row_drop + col_rise)).clamp(min_factor, 1.0)


# ---- accuracy of the fast model against the exact solve ----


def random_conductances(
    rows: int,
    cols: int,
    g_on: float,
    g_off: float,
    density: float,
    rng: np.random.Generator,
    levels: int | None = None,
) -> np.ndarray:
    """A programmed crossbar (S): each cell off (g_off) or, with probability `density`, a level in [g_off, g_on].

    Levels are uniform in [g_off, g_on], or uniform over `levels` evenly spaced values from g_off to
    g_on (e.g. 4 for 2-bit cells; the lowest is off) when `levels` is given.
    """
    if levels is None:
        level = rng.uniform(0.0, 1.0, (rows, cols))
    else:
        level = rng.integers(0, levels, (rows, cols)) / max(levels - 1, 1)
    on = rng.random((rows, cols)) < density
    return np.where(on, g_off + level * (g_on - g_off), g_off)


def random_inputs(rows: int, n: int, activity: float, rng: np.random.Generator, kind: str = "binary") -> np.ndarray:
    """`n` input vectors (rows, n), in units of full scale, with mean `activity`.

    binary: each row on with probability `activity` (one bit of a bit-serial input, 1-bit DAC);
    multilevel: 8-bit levels shaped like ReLU outputs, for a <= 0.5 zero with probability 1 - 2a and
    otherwise uniform on [0, 1]; for a > 0.5 uniform on [2a - 1, 1].
    """
    if not 0 < activity <= 1:
        raise ValueError(f"activity must be in (0, 1], got {activity}")
    if kind == "binary":
        return (rng.random((rows, n)) < activity).astype(np.float64)
    if kind == "multilevel":
        lo = max(0.0, 2 * activity - 1)
        level = np.round(rng.uniform(lo, 1.0, (rows, n)) * 255) / 255
        return np.where(rng.random((rows, n)) < min(1.0, 2 * activity), level, 0.0)
    raise ValueError(f"kind must be 'binary' or 'multilevel', got {kind!r}")


@dataclass(frozen=True)
class IRDropError:
    """How far `ir_drop_factors`, the first-order model and the ideal model are from the exact currents.

    Currents are compared per column and input vector; `*_signal` fields divide by the mean ideal
    current, `*_drop` fields by the mean true drop |I_ideal - I_exact|; losses are means of
    1 - I / I_ideal over columns with a nonzero ideal current.
    """

    rows: int
    cols: int
    r_wire: float
    loss_exact: float  # mean of 1 - I_exact / I_ideal
    loss_model: float  # mean of 1 - I_model / I_ideal
    err_signal: float  # mean |I_model - I_exact| / mean I_ideal
    err_signal_max: float  # max |I_model - I_exact| / mean I_ideal
    err_drop: float  # mean |I_model - I_exact| / mean |I_ideal - I_exact|
    bias_signal: float  # mean (I_model - I_exact) / mean I_ideal (< 0: the model loses too much)
    ideal_err_signal: float  # mean |I_ideal - I_exact| / mean I_ideal: what ignoring IR drop costs
    first_order_loss: float  # loss_model of `first_order_factors`
    first_order_err_signal: float  # err_signal of `first_order_factors`
    model_s: float  # seconds per crossbar for `ir_drop_factors`
    nodal_s: float  # seconds per crossbar for the exact solve of all its input vectors

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def ir_drop_error(
    rows: int,
    cols: int,
    r_wire: float,
    g_on: float = 100e-6,
    g_off: float = 1e-6,
    density: float = 0.5,
    activity: float = 0.5,
    trials: int = 4,
    seed: int = 0,
    n_inputs: int = 64,
    input_kind: str = "binary",
    levels: int | None = None,
) -> IRDropError:
    """Compare `ir_drop_factors` (and the first-order and ideal models) with `nodal_solve`.

    `trials` random crossbars (`random_conductances`), `n_inputs` input vectors each
    (`random_inputs`, full scale 1 V; the relative errors do not depend on the voltage scale).
    """
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {}
    t_model = t_nodal = 0.0

    def add(name: str, value: float) -> None:
        stats.setdefault(name, []).append(float(value))

    for _ in range(trials):
        g = random_conductances(rows, cols, g_on, g_off, density, rng, levels)
        v = random_inputs(rows, n_inputs, activity, rng, input_kind)
        t0 = time.perf_counter()
        i_exact = nodal_solve(g, v, r_wire)
        t1 = time.perf_counter()
        f = ir_drop_factors(torch.from_numpy(g), r_wire, activity).numpy()
        t2 = time.perf_counter()
        t_nodal, t_model = t_nodal + t1 - t0, t_model + t2 - t1
        i_model = (g * f).T @ v
        i_first = (g * first_order_factors(torch.from_numpy(g), r_wire).numpy()).T @ v
        i_ideal = g.T @ v
        scale = np.abs(i_ideal).mean()
        live = i_ideal > 0
        add("loss_exact", np.mean(1 - i_exact[live] / i_ideal[live]))
        add("loss_model", np.mean(1 - i_model[live] / i_ideal[live]))
        add("err_signal", np.abs(i_model - i_exact).mean() / scale)
        add("err_signal_max", np.abs(i_model - i_exact).max() / scale)
        add("bias_signal", (i_model - i_exact).mean() / scale)
        add("ideal_err_signal", np.abs(i_ideal - i_exact).mean() / scale)
        add("first_order_loss", np.mean(1 - i_first[live] / i_ideal[live]))
        add("first_order_err_signal", np.abs(i_first - i_exact).mean() / scale)
    mean = {k: float(np.mean(x)) for k, x in stats.items()}
    drop = mean["ideal_err_signal"]
    return IRDropError(
        rows=rows,
        cols=cols,
        r_wire=float(r_wire),
        loss_exact=mean["loss_exact"],
        loss_model=mean["loss_model"],
        err_signal=mean["err_signal"],
        err_signal_max=float(np.max(stats["err_signal_max"])),
        err_drop=mean["err_signal"] / drop if drop > 0 else 0.0,
        bias_signal=mean["bias_signal"],
        ideal_err_signal=drop,
        first_order_loss=mean["first_order_loss"],
        first_order_err_signal=mean["first_order_err_signal"],
        model_s=t_model / trials,
        nodal_s=t_nodal / trials,
    )

"""IR drop: the exact nodal solve against closed forms and an independent dense solve; the fast
factors' properties and their error against the exact solve (docs/ir_drop.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xbarforge.sim.ir_drop import (
    effective_conductance,
    first_order_factors,
    ir_drop_error,
    ir_drop_factors,
    nodal_solve,
    random_conductances,
    random_inputs,
)

G_ON, G_OFF = 100e-6, 1e-6  # the presets' g_on_us / g_off_us


def dense_currents(g: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Independent reference: the circuit as an edge list, Laplacian of all nodes, dense solve."""
    rows, cols = g.shape
    row_node = {(i, j): i * cols + j for i in range(rows) for j in range(cols)}
    col_node = {(i, j): rows * cols + i * cols + j for i in range(rows) for j in range(cols)}
    sources = [2 * rows * cols + i for i in range(rows)]
    ground = 2 * rows * cols + rows
    n = ground + 1
    edges = []  # (a, b, conductance)
    for i in range(rows):
        edges.append((sources[i], row_node[i, 0], 1 / r))
        edges += [(row_node[i, j], row_node[i, j + 1], 1 / r) for j in range(cols - 1)]
    for j in range(cols):
        edges.append((col_node[rows - 1, j], ground, 1 / r))
        edges += [(col_node[i, j], col_node[i + 1, j], 1 / r) for i in range(rows - 1)]
    edges += [(row_node[i, j], col_node[i, j], g[i, j]) for i in range(rows) for j in range(cols)]
    lap = np.zeros((n, n))
    for a, b, w in edges:
        lap[a, a] += w
        lap[b, b] += w
        lap[a, b] -= w
        lap[b, a] -= w
    known = sources + [ground]
    free = [k for k in range(n) if k not in known]
    x_known = np.concatenate([v, [0.0]])
    x = np.linalg.solve(lap[np.ix_(free, free)], -lap[np.ix_(free, known)] @ x_known)
    volt = np.zeros(n)
    volt[free], volt[known] = x, x_known
    return np.array([volt[col_node[rows - 1, j]] / r for j in range(cols)])  # into the sense amplifier


# ---- exact solve ----


def test_zero_wire_resistance_is_ideal():
    rng = np.random.default_rng(0)
    g = random_conductances(8, 5, G_ON, G_OFF, 0.5, rng)
    v = rng.uniform(0, 0.2, (8, 3))
    np.testing.assert_allclose(nodal_solve(g, v, 0.0), g.T @ v)
    np.testing.assert_allclose(nodal_solve(g, v[:, 0], 0.0), v[:, 0] @ g)


@pytest.mark.parametrize("r", [0.5, 2.82, 1e4])
def test_single_cell_closed_form(r):
    g, v = 100e-6, 0.2
    assert nodal_solve(np.array([[g]]), np.array([v]), r)[0] == pytest.approx(v * g / (1 + 2 * r * g), rel=1e-12)


@pytest.mark.parametrize("shape", [(1, 4), (4, 1), (3, 3), (2, 5)])
def test_matches_independent_dense_solve(shape):
    rng = np.random.default_rng(sum(shape))
    g = rng.uniform(G_OFF, G_ON, shape)
    v = rng.uniform(0, 0.3, shape[0])
    for r in (2.5, 300.0):  # 300 ohm: a drop large enough that a wrong stamp would show
        np.testing.assert_allclose(nodal_solve(g, v, r), dense_currents(g, v, r), rtol=1e-10)


def test_one_row_by_hand():
    """1x2 by hand: source -r- n0 -r- n1, cell g at each node into its own column, column -r- ground."""
    g0, g1, r, v = 1e-3, 2e-3, 50.0, 1.0
    y0, y1 = g0 / (1 + r * g0), g1 / (1 + r * g1)  # cell in series with its column segment
    y_right = 1 / (r + 1 / y1)  # n0 looking right
    v0 = v * (1 / r) / (1 / r + y0 + y_right)
    v1 = v0 * (1 / y1) / (r + 1 / y1)
    np.testing.assert_allclose(nodal_solve(np.array([[g0, g1]]), np.array([v]), r), [v0 * y0, v1 * y1], rtol=1e-12)


def test_batch_of_inputs_and_linearity():
    rng = np.random.default_rng(1)
    g = random_conductances(12, 9, G_ON, G_OFF, 0.5, rng)
    v = random_inputs(12, 6, 0.5, rng)
    batch = nodal_solve(g, v, 2.5)
    assert batch.shape == (9, 6)
    np.testing.assert_allclose(batch[:, 2], nodal_solve(g, v[:, 2], 2.5), rtol=1e-12)
    np.testing.assert_allclose(batch, (v.T @ effective_conductance(g, 2.5)).T, rtol=1e-10)


def test_currents_fall_as_wire_resistance_grows():
    rng = np.random.default_rng(2)
    g = random_conductances(16, 16, G_ON, G_OFF, 0.7, rng)
    v = np.ones(16)
    currents = np.array([nodal_solve(g, v, r) for r in (0.0, 0.5, 1.0, 2.5, 10.0)])
    assert np.all(np.diff(currents, axis=0) < 0)


def test_larger_crossbars_lose_more():
    loss = {}
    for n in (16, 32, 64):
        g = np.full((n, n), 50e-6)
        ideal = g.sum(0)
        loss[n] = 1 - nodal_solve(g, np.ones(n), 2.5).sum() / ideal.sum()
    assert 0 < loss[16] < loss[32] < loss[64] < 1


def test_input_validation():
    g = np.full((3, 2), G_ON)
    with pytest.raises(ValueError):
        nodal_solve(g, np.ones(2), 1.0)
    with pytest.raises(ValueError):
        nodal_solve(g, np.ones(3), -1.0)
    with pytest.raises(ValueError):
        nodal_solve(-g, np.ones(3), 1.0)
    with pytest.raises(ValueError):
        ir_drop_factors(torch.from_numpy(g), 1.0, activity=0.0)


# ---- fast factors ----


def test_factors_bounded_and_one_without_wire():
    rng = np.random.default_rng(3)
    g = torch.from_numpy(random_conductances(32, 32, G_ON, G_OFF, 0.5, rng))
    f = ir_drop_factors(g, 2.82)
    assert f.shape == g.shape and f.dtype == g.dtype
    assert bool(((f > 0) & (f <= 1)).all()) and float(f.min()) < 0.99
    assert bool((ir_drop_factors(g, 0.0) == 1).all())
    assert bool((first_order_factors(g, 0.0) == 1).all())


def test_factors_fall_with_distance_from_driver_and_sense_amp():
    f = ir_drop_factors(torch.full((24, 24), 60e-6, dtype=torch.float64), 2.5)
    assert bool((f.diff(dim=1) < 0).all())  # away from the driver (left)
    assert bool((f.diff(dim=0) > 0).all())  # toward the sense amplifier (bottom)
    assert float(f[0, -1]) == float(f.min())  # far corner: top right
    assert float(f[-1, 0]) == float(f.max())


def test_factors_fall_with_crossbar_size():
    means, corners = [], []
    for n in (16, 32, 64):
        f = ir_drop_factors(torch.full((n, n), 50e-6, dtype=torch.float64), 2.5)
        means.append(float(f.mean()))
        corners.append(float(f[0, -1]))
    assert means[0] > means[1] > means[2]
    assert corners[0] > corners[1] > corners[2]


def test_factors_solve_the_all_rows_driven_circuit():
    """The model's definition: exact when every row is driven at the same voltage."""
    rng = np.random.default_rng(4)
    for n, r in ((8, 2.5), (48, 2.82), (64, 10.0)):  # 64 at 10 ohm: a 45% drop
        g = random_conductances(n, n, G_ON, G_OFF, 0.6, rng)
        f = ir_drop_factors(torch.from_numpy(g), r, tol=1e-9).numpy()
        exact = nodal_solve(g, np.full(n, 0.3), r)
        np.testing.assert_allclose(0.3 * (g * f).sum(0), exact, rtol=1e-7)


def test_factors_do_not_depend_on_activity_or_drive():
    rng = np.random.default_rng(5)
    g = torch.from_numpy(random_conductances(20, 20, G_ON, G_OFF, 0.5, rng))
    torch.testing.assert_close(ir_drop_factors(g, 2.5, 0.1), ir_drop_factors(g, 2.5, 0.9))


def test_factors_batched_and_float32():
    rng = np.random.default_rng(6)
    gs = torch.from_numpy(np.stack([random_conductances(16, 12, G_ON, G_OFF, d, rng) for d in (0.2, 0.9)]))
    batched = ir_drop_factors(gs, 2.5)
    for k in range(2):
        torch.testing.assert_close(batched[k], ir_drop_factors(gs[k], 2.5))
    f32 = ir_drop_factors(gs[0].float(), 2.5)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32, batched[0].float())


def test_first_order_agrees_for_small_drops():
    rng = np.random.default_rng(7)
    g = torch.from_numpy(random_conductances(16, 16, G_ON, G_OFF, 0.5, rng))
    exact = ir_drop_factors(g, 0.1)
    drop = float((1 - exact).max())
    assert 0 < drop < 1e-3
    assert float((first_order_factors(g, 0.1) - exact).abs().max()) < 0.01 * drop


@pytest.mark.parametrize("n", [16, 32, 64])
@pytest.mark.parametrize("r", [1.0, 2.5])
def test_error_against_exact_solve(n, r):
    """Bound: within 1% of the drop itself on average, 1% of the signal for any one column."""
    err = ir_drop_error(n, n, r, G_ON, G_OFF, density=0.5, activity=0.5, trials=2, n_inputs=32, seed=n)
    assert err.ideal_err_signal > 0.004  # there is a drop to model
    assert err.err_drop < 0.01
    assert err.err_signal_max < 0.01
    assert abs(err.loss_model - err.loss_exact) < 0.01 * err.loss_exact


@pytest.mark.parametrize(
    "kwargs", [{"activity": 0.1}, {"activity": 0.9}, {"input_kind": "multilevel"}, {"density": 1.0, "levels": 4}]
)
def test_error_other_inputs_and_cells(kwargs):
    err = ir_drop_error(64, 64, 2.5, G_ON, G_OFF, trials=2, n_inputs=32, seed=1, **kwargs)
    assert err.err_drop < 0.03
    assert err.err_signal_max < 0.03


def test_first_order_fails_where_the_model_holds():
    err = ir_drop_error(64, 64, 2.82, trials=1, n_inputs=16, seed=3)
    assert err.err_signal < err.first_order_err_signal / 10 < err.ideal_err_signal / 10


def test_random_inputs_have_the_asked_activity():
    rng = np.random.default_rng(8)
    for kind in ("binary", "multilevel"):
        for a in (0.1, 0.5, 0.8):
            v = random_inputs(64, 400, a, rng, kind)
            assert v.min() >= 0 and v.max() <= 1
            assert v.mean() == pytest.approx(a, abs=0.01)

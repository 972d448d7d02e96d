"""Mixed precision in the compiler, heterogeneous pools, the policy space, its cost and one stage's problem."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from xbarforge.compiler.compile import isaac_like
from xbarforge.compiler.execute import program_crossbars
from xbarforge.compiler.lower import lower
from xbarforge.compiler.pools import LayerOnPool, assign_pools, solve_assignment
from xbarforge.cost.model import evaluate
from xbarforge.errors import CompileError, XbarforgeError
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware
from xbarforge.hardware.spec import CrossbarPool
from xbarforge.quant.config import QuantConfig
from xbarforge.quant.cost import PolicyCoster
from xbarforge.quant.env import BudgetTooSmall, StageProblem, refine_choices
from xbarforge.quant.space import QuantSpace, parse_bits, policy_from_record, policy_record
from xbarforge.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def r20():
    return capture(create_model("resnet20"), input_shape=(3, 32, 32))


@pytest.fixture(scope="module")
def isaac8():
    return load_hardware("isaac", **{"precision.weight_bits": 8})


def _layer(graph, out_channels):
    return next(layer for layer in graph.mvm_layers if layer.out_channels == out_channels and layer.groups == 1
                and layer.kernel == (3, 3))


# ---- compiler ----

def test_uniform_channel_bits_equal_layer_bits(r20, isaac8):
    for layer in r20.mvm_layers:
        n = layer.out_channels
        a, b = lower(layer, isaac8, bits=8), lower(layer, isaac8, bits=[8] * n)
        c = lower(layer, isaac8)
        assert [(x.row0, x.row1, x.col0, x.col1) for x in a.blocks] == [(x.row0, x.row1, x.col0, x.col1)
                                                                       for x in b.blocks]
        assert len(a.blocks) == len(c.blocks) and a.weight_cells == c.weight_cells


def test_channel_bits_fill_columns_without_splitting_a_weight(r20, isaac8):
    layer = _layer(r20, 64)
    rng = np.random.default_rng(0)
    bits = rng.integers(2, 9, size=64).tolist()
    low = lower(layer, isaac8, bits=bits)
    widths = [isaac8.cols_for_bits(b) for b in bits]
    edges = set(itertools.accumulate(widths))
    assert sum(b.weights for b in low.blocks) == layer.rows_per_group * sum(widths)
    for blk in low.blocks:
        assert blk.width <= isaac8.usable_cols
        assert blk.col1 in edges  # every block ends on a weight boundary
    # no column block could have taken the next channel
    starts = sorted({(b.col0, b.col1) for b in low.blocks})
    for (c0, c1), (n0, _) in zip(starts, starts[1:], strict=False):
        nxt = next(w for w, e in zip(widths, itertools.accumulate(widths), strict=True) if e - w == n0)
        assert c1 - c0 + nxt > isaac8.usable_cols


def test_spilled_channel_costs_whole_arrays(r20, isaac8):
    # isaac has 127 usable columns: 32 channels x 4 columns (8 bits on 2-bit cells) spill one channel
    layer = _layer(r20, 32)
    full = lower(layer, isaac8, bits=8)
    tail = lower(layer, isaac8, bits=[8] * 31 + [6])
    assert len(full.blocks) == 2 * len(tail.blocks)


def test_bad_channel_bits_are_one_line(r20, isaac8):
    with pytest.raises(CompileError, match="channel bit widths"):
        isaac_like(r20, isaac8, weight_bits={r20.mvm_layers[0].name: [8, 8]})
    with pytest.raises(CompileError, match="does not have"):
        isaac_like(r20, isaac8, weight_bits={"nope": 8})


def test_mixed_mapping_is_costed_not_programmed(r20, isaac8):
    bits = {layer.name: 6 for layer in r20.mvm_layers}
    mixed = isaac_like(r20, isaac8, weight_bits=bits)
    hw6 = load_hardware("isaac", **{"precision.weight_bits": 6})
    uniform6 = isaac_like(r20, hw6)
    assert mixed.crossbars_used == uniform6.crossbars_used
    assert mixed.weight_cells == uniform6.weight_cells
    a, b = evaluate(mixed, isaac8), evaluate(uniform6, hw6)
    assert a["energy_pj"] == pytest.approx(b["energy_pj"], rel=1e-9)
    assert type(mixed).from_dict(mixed.to_dict()).weight_bits == mixed.weight_bits
    with pytest.raises(ValueError, match="mixed-precision"):
        program_crossbars(mixed, r20, isaac8)


# ---- pools ----

def _brute(options, pools):
    best = None
    for choice in itertools.product(range(len(pools)), repeat=len(options)):
        used = [0] * len(pools)
        for li, p in enumerate(choice):
            used[p] += options[li][p].crossbars
        if any(u > p.count for u, p in zip(used, pools, strict=True)):
            continue
        waste = sum(options[li][p].waste for li, p in enumerate(choice))
        if best is None or waste < best:
            best = waste
    return best


@pytest.mark.parametrize("seed", range(6))
def test_pool_assignment_is_exact_and_within_counts(seed):
    rng = np.random.default_rng(seed)
    pools = [CrossbarPool(rows=r, cols=r, count=int(c)) for r, c in ((64, rng.integers(2, 8)),
                                                                    (128, rng.integers(1, 5)),
                                                                    (256, rng.integers(1, 3)))]
    options = []
    for _ in range(6):
        w = int(rng.integers(500, 60000))
        row = []
        for p in pools:
            n = max(1, int(np.ceil(w / (p.rows * p.cols * rng.uniform(0.4, 1.0)))))
            row.append(LayerOnPool(n, w, n * p.rows * p.cols))
        options.append(row)
    best = _brute(options, pools)
    plan = solve_assignment([f"l{i}" for i in range(6)], options, pools)
    if best is None:
        assert not plan.fits and sum(plan.overflow) > 0
    else:
        assert plan.fits
        assert plan.cells_used - plan.weight_cells == best
        assert all(u <= p.count for u, p in zip(plan.used, pools, strict=True))


def test_hetero_chip_puts_layers_on_least_waste_sizes(r20):
    hw = load_hardware("hetero-example")
    plan = assign_pools(r20, hw)
    assert plan.fits
    for layer in r20.mvm_layers:
        # each layer's chosen size wastes no more than the reference 128x128 placement would
        ref = lower(layer, hw)
        assert plan.footprint[layer.name].waste <= len(ref.blocks) * 128 * 128 - ref.weight_cells


def test_pool_shortfall_is_reported_not_raised(r20):
    hw = load_hardware("hetero-example", **{"chip.pools": [{"rows": 64, "cols": 64, "count": 10},
                                                           {"rows": 128, "cols": 128, "count": 5}]})
    plan = assign_pools(r20, hw)
    assert not plan.fits and sum(plan.overflow) > 0


# ---- space and cost ----

def test_parse_bits():
    assert parse_bits("2-8") == (2, 3, 4, 5, 6, 7, 8)
    assert parse_bits("8,4,6") == (4, 6, 8)
    for bad in ("x", "0-4", "", "3-1"):
        with pytest.raises(XbarforgeError):
            parse_bits(bad)


def test_groups_are_whole_column_blocks_plus_tail(r20, isaac8):
    space = QuantSpace(r20, isaac8, (2, 4, 6, 8))
    layer_bits = [8] * len(space.layers)
    decisions = space.group_decisions(layer_bits, max_groups=4)
    per_block = isaac8.usable_cols // isaac8.cols_for_bits(8)  # 31 channels
    for i, layer in enumerate(space.layers):
        mine = [d for d in decisions if d.layer == i]
        assert mine[0].start == 0 and mine[-1].end == layer.out_channels
        assert all(a.end == b.start for a, b in zip(mine, mine[1:], strict=False))
        assert len(mine) <= 4
        assert all(d.channels % per_block == 0 for d in mine[:-1])
        if layer.out_channels % per_block:
            assert mine[-1].channels == layer.out_channels % per_block
    assert space.features(decisions).shape[0] == len(decisions)
    assert 0 <= space.features(decisions).min() and space.features(decisions).max() <= 1


def test_depthwise_layers_keep_one_decision():
    graph = capture(create_model("mobilenetv2_cifar"), input_shape=(3, 32, 32))
    space = QuantSpace(graph, load_hardware("isaac"), (4, 8))
    decisions = space.group_decisions([8] * len(space.layers))
    for i, layer in enumerate(space.layers):
        if layer.groups > 1:
            assert len([d for d in decisions if d.layer == i]) == 1


def test_policy_cost_matches_the_compiler(r20, isaac8):
    space = QuantSpace(r20, isaac8, tuple(range(2, 9)))
    coster = PolicyCoster(space, 120)
    rng = np.random.default_rng(1)
    for _ in range(3):
        decisions = space.group_decisions([8] * len(space.layers))
        policy = space.channel_bits(decisions, rng.integers(2, 9, size=len(decisions)).tolist())
        cost = coster(policy)
        mapping = coster.mapping(policy)
        assert cost.crossbars == mapping.crossbars_used
        assert cost.weight_cells == mapping.weight_cells
        assert cost.utilization == pytest.approx(evaluate(mapping, isaac8)["utilization_used"])
        assert cost.fits == (cost.crossbars <= 120)


def test_policy_record_round_trip(r20, isaac8):
    space = QuantSpace(r20, isaac8, (2, 4, 8))
    decisions = space.group_decisions([8] * len(space.layers))
    policy = space.channel_bits(decisions, [2, 4, 8] * (len(decisions) // 3) + [8] * (len(decisions) % 3))
    back = policy_from_record(space, policy_record(space, policy))
    assert all((back[k] == v).all() for k, v in policy.items())


def test_config_splits_episodes():
    assert QuantConfig(episodes=300).stage_episodes() == (150, 150)
    assert QuantConfig(episodes=10, stages="layer").stage_episodes() == (10, 0)
    assert QuantConfig(episodes=10, stages="group").stage_episodes() == (0, 10)


# ---- one stage as a problem ----

def _problem(r20, hw, budget, weight=0.0, accuracy=None, choices=None, stage=1):
    space = QuantSpace(r20, hw, (2, 4, 6, 8))
    decisions = space.layer_decisions() if stage == 1 else space.group_decisions([8] * len(space.layers))
    acc = accuracy or (lambda p: float(np.mean([v.mean() for v in p.values()])) / 8)
    return StageProblem(space, decisions, PolicyCoster(space, budget), acc, utilization_weight=weight,
                        choices=choices)


def test_budget_is_enforced_widest_first(r20, isaac8):
    prob = _problem(r20, isaac8, 100)
    ev = prob.evaluate(np.ones(prob.n_steps))
    assert ev.info["fits"] and ev.info["crossbars"] <= 100
    assert prob.actions_to_bits(ev.actions) == ev.info["bits"]  # repaired actions are what was scored
    # lowering stopped as soon as it fit: raising the last lowered decision back would not fit
    bits = ev.info["bits"]
    assert max(bits) - min(bits) <= 2  # widest-first keeps widths level


def test_budget_too_small_is_one_clear_error(r20, isaac8):
    with pytest.raises(BudgetTooSmall, match="budget is 10"):
        _problem(r20, isaac8, 10)


def test_reward_counts_utilization_only_when_asked(r20, isaac8):
    a = _problem(r20, isaac8, 200, weight=0.0)
    b = _problem(r20, isaac8, 200, weight=0.5)
    acts = np.full(a.n_steps, 0.99)
    ea, eb = a.evaluate(acts), b.evaluate(acts)
    assert eb.reward - ea.reward == pytest.approx(0.5 * ea.info["utilization"])


def test_accuracy_is_measured_once_per_policy(r20, isaac8):
    calls = []
    prob = _problem(r20, isaac8, 200, accuracy=lambda p: calls.append(1) or 0.5)
    acts = np.full(prob.n_steps, 0.3)
    prob.evaluate(acts)
    prob.evaluate(acts + 0.01)  # same widths
    assert len(calls) == 1 and prob.evaluations == 1


def test_refine_choices_stay_near_stage_one(r20, isaac8):
    space = QuantSpace(r20, isaac8, tuple(range(2, 9)))
    layer_bits = [4] * len(space.layers)
    decisions = space.group_decisions(layer_bits)
    choices = refine_choices(space, decisions, layer_bits, steps=1)
    assert all(c == (3, 4, 5) for c in choices)


def test_tail_groups_free_arrays(r20, isaac8):
    space = QuantSpace(r20, isaac8, (2, 4, 6, 8))
    coster = PolicyCoster(space, None)
    decisions = space.group_decisions([8] * len(space.layers))
    full = coster(space.uniform(8))
    tails = [6 if d.end % 31 and d.channels < 31 else 8 for d in decisions]
    lowered = coster(space.channel_bits(decisions, tails))
    assert lowered.crossbars < full.crossbars and lowered.utilization > full.utilization


def test_tiny_model_without_mvm_layers_is_refused():
    class Id(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.relu()

    graph = capture(Id(), input_shape=(3, 8, 8))
    with pytest.raises(XbarforgeError, match="no conv or linear"):
        QuantSpace(graph, load_hardware("isaac"), (4, 8))


def test_mean_bits_weighs_channels_by_their_weights(r20, isaac8):
    space = QuantSpace(r20, isaac8, (2, 4, 8))
    assert space.mean_bits(space.uniform(4)) == 4.0
    policy = space.uniform(8)
    fc = space.layers[-1]  # 64 rows x 10 channels
    policy[fc.name][:] = 2
    weights = sum(layer.rows_per_group * layer.out_channels for layer in space.layers)
    assert space.mean_bits(policy) == pytest.approx(8 - 6 * fc.rows_per_group * 10 / weights)

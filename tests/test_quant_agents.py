"""The quantization search agents (DDPG, evolution) on toy problems: they learn, they are deterministic,
they resume bit-identically, they store what was scored, and they call `evaluate` once per episode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from xbarforge.errors import XbarforgeError
from xbarforge.quant.agents import AGENTS, AgentResult, DDPGAgent, EvolutionAgent, make_agent
from xbarforge.quant.problem import Evaluation

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"ddpg": {"hidden": 32, "warmup": 3}, "evolution": {"population": 4}}


class Target:
    """reward = -mean((a - target)^2) with a target that is a linear function of the feature, so a policy
    that reads the state can hit it; counts its evaluations."""

    def __init__(self, n: int = 8) -> None:
        self.n_steps = n
        self.features = np.linspace(0.0, 1.0, n)[:, None]
        self.target = 0.2 + 0.6 * self.features[:, 0]
        self.calls = 0

    def evaluate(self, actions: np.ndarray) -> Evaluation:
        self.calls += 1
        err = float(np.mean((actions - self.target) ** 2))
        info = {"err": err, "bits": np.round(actions * 8).astype(np.int64), "tensor": torch.zeros(2),
                "mean": np.float32(actions.mean())}
        return Evaluation(-err, actions.copy(), info)


class Budget(Target):
    """Wants every action at 0.9 but may spend at most `limit` in total: over-budget episodes are scaled
    down (the repair) before they are scored."""

    def __init__(self, n: int = 6, limit: float = 2.0) -> None:
        super().__init__(n)
        self.limit = limit
        self.target = np.full(n, 0.9)

    def evaluate(self, actions: np.ndarray) -> Evaluation:
        total = float(actions.sum())
        repaired = actions * (self.limit / total) if total > self.limit else actions.copy()
        return super().evaluate(repaired)


def rewards(result: AgentResult) -> list[float]:
    return [r["reward"] for r in result.history]


def test_ddpg_learns() -> None:
    problem = Target()
    result = DDPGAgent(problem, seed=2, sigma_decay=0.9, lr_actor=1e-3).run(60)
    r = rewards(result)
    warm_best, warm_mean = max(r[:20]), float(np.mean(r[:20]))
    assert result.best_reward == max(r)
    assert -result.best_reward < 0.5 * -warm_best  # the best error at least halves after warmup
    assert float(np.mean(r[-10:])) > warm_mean / 3  # and the policy itself got much better than random
    assert problem.calls == 60 and len(result.history) == 60
    assert [h["episode"] for h in result.history] == list(range(60))
    assert all(h["warmup"] for h in result.history[:20]) and not any(h["warmup"] for h in result.history[20:])


def test_evolution_learns() -> None:
    problem = Target()
    result = EvolutionAgent(problem, seed=1, population=10).run(100)
    r = rewards(result)
    assert -result.best_reward < 0.5 * -max(r[:10])  # best error at least halves over the first generation's
    assert float(np.mean(r[-10:])) > 2 * float(np.mean(r[:10]))
    assert problem.calls == 100 and len(result.history) == 100
    assert [h["generation"] for h in result.history] == [i // 10 for i in range(100)]


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_deterministic_and_seed_matters(name: str) -> None:
    runs = [make_agent(name, Target(), seed=s, **FAST[name]).run(9) for s in (5, 5, 6)]
    assert runs[0].history == runs[1].history
    np.testing.assert_array_equal(runs[0].best_actions, runs[1].best_actions)
    assert runs[0].history != runs[2].history


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_resume_is_exact(name: str, tmp_path: Path) -> None:
    full = make_agent(name, Target(), seed=3, **FAST[name]).run(11)
    ck = tmp_path / "agent.ckpt"
    done = 0
    for stop in (3, 6, 11):  # 3 and 6 end mid-generation for the evolution agent (population 4)
        problem = Target()
        part = make_agent(name, problem, seed=3, **FAST[name]).run(stop, checkpoint=ck)
        assert problem.calls == stop - done  # resumed episodes are not evaluated again
        done = stop
    assert part.history == full.history
    assert part.best_reward == full.best_reward and part.best_info == full.best_info
    np.testing.assert_array_equal(part.best_actions, full.best_actions)

    problem = Target()  # asking for no more than is done only reads the checkpoint
    again = make_agent(name, problem, seed=3, **FAST[name]).run(5, checkpoint=ck)
    assert problem.calls == 0 and again.history == full.history


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_resume_refuses_other_settings(name: str, tmp_path: Path) -> None:
    ck = tmp_path / "agent.ckpt"
    make_agent(name, Target(), seed=0, **FAST[name]).run(2, checkpoint=ck)
    with pytest.raises(XbarforgeError, match=r"other settings \(seed: "):
        make_agent(name, Target(), seed=1, **FAST[name]).run(4, checkpoint=ck)
    other = "evolution" if name == "ddpg" else "ddpg"
    with pytest.raises(XbarforgeError, match="not an? .* agent checkpoint"):
        make_agent(other, Target(), seed=0, **FAST[other]).run(4, checkpoint=ck)


def test_ddpg_stores_repaired_actions() -> None:
    problem = Budget()
    agent = DDPGAgent(problem, seed=0, hidden=32, warmup=3)
    result = agent.run(8)
    for h in result.history:
        assert sum(h["actions"]) <= problem.limit + 1e-9
    assert result.best_actions.sum() <= problem.limit + 1e-9
    # the replay buffer holds the repaired actions, and states built from them
    last = torch.tensor(result.history[-1]["actions"], dtype=torch.float32)
    n = problem.n_steps
    np.testing.assert_array_equal(agent._buf_a[8 * n - n:8 * n, 0], last)
    np.testing.assert_array_equal(agent._buf_s[8 * n - n + 1:8 * n, -1], last[:-1])


def test_evolution_population_carries_repaired_actions() -> None:
    problem = Budget()
    agent = EvolutionAgent(problem, seed=0, population=6)
    result = agent.run(30)
    assert problem.calls == 30
    assert all(sum(h["actions"]) <= problem.limit + 1e-9 for h in result.history)
    X = agent._alg.pop.get("X")
    assert np.all(X.sum(axis=1) <= problem.limit + 1e-9)
    assert -agent._alg.pop.get("F").min() == result.best_reward


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_callback_progress_and_json_history(name: str) -> None:
    seen: list[dict[str, Any]] = []
    result = make_agent(name, Target(), seed=0, **FAST[name]).run(5, callback=seen.append, progress=True)
    assert seen == result.history
    rec = json.loads(json.dumps(result.history[0]))
    assert {"episode", "reward", "err", "bits", "mean", "actions"} <= set(rec) and "tensor" not in rec
    assert isinstance(rec["bits"], list) and len(rec["actions"]) == 8
    assert set(result.best_info) == {"err", "bits", "mean"}


def test_agents_leave_global_rngs_alone() -> None:
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    for name in AGENTS:
        make_agent(name, Target(), seed=0, **FAST[name]).run(6)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_make_agent_errors() -> None:
    with pytest.raises(XbarforgeError, match="unknown agent 'haq'.*ddpg, evolution"):
        make_agent("haq", Target())
    with pytest.raises(XbarforgeError, match="no setting population"):
        make_agent("ddpg", Target(), population=3)
    assert isinstance(make_agent("evolution", Target(), population=3), EvolutionAgent)


def test_evolution_stops_when_pymoo_breeds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck = tmp_path / "agent.ckpt"
    agent = EvolutionAgent(Target(), seed=0, population=4)
    agent.run(4, checkpoint=ck)
    monkeypatch.setattr(agent._alg, "ask", lambda: None)  # as when duplicate elimination leaves no offspring
    assert len(agent.run(8, checkpoint=ck).history) == 4
    problem = Target()
    resumed = EvolutionAgent(problem, seed=0, population=4).run(8, checkpoint=ck)
    assert len(resumed.history) == 4 and problem.calls == 0


class Credited(Target):
    """Target's problem, but each decision is also credited with its own error (Evaluation.step_rewards):
    the episode reward is unchanged, so only the agent's learning signal differs."""

    def __init__(self, n: int = 24) -> None:
        super().__init__(n)
        rng = np.random.default_rng(0)
        self.target = rng.uniform(0.1, 0.9, n)  # no structure to share between steps: credit must be per step
        self.features = np.eye(n)

    def evaluate(self, actions: np.ndarray) -> Evaluation:
        ev = super().evaluate(actions)
        ev.step_rewards = -((actions - self.target) ** 2)
        return ev


def test_ddpg_uses_per_step_credit() -> None:
    """With per-step credit DDPG ends far closer to the per-step targets than with the episode reward
    alone, and a run with credit still resumes bit-identically."""
    kw = {"seed": 0, "sigma_decay": 0.95, "lr_actor": 1e-3, "warmup": 10, "hidden": 64}
    credited = DDPGAgent(Credited(), **kw).run(80)

    class Sparse(Credited):
        def evaluate(self, actions: np.ndarray) -> Evaluation:
            ev = super().evaluate(actions)
            ev.step_rewards = None
            return ev

    sparse = DDPGAgent(Sparse(), **kw).run(80)
    late = lambda res: float(np.mean(rewards(res)[-10:]))  # noqa: E731
    assert late(credited) > late(sparse)
    assert credited.best_reward > sparse.best_reward


def test_ddpg_resumes_with_per_step_credit(tmp_path: Path) -> None:
    kw = {"seed": 3, "warmup": 3, "hidden": 16}
    whole = DDPGAgent(Credited(8), **kw).run(8)
    ck = tmp_path / "a.ckpt"
    DDPGAgent(Credited(8), **kw).run(4, checkpoint=ck)
    resumed = DDPGAgent(Credited(8), **kw).run(8, checkpoint=ck)
    assert rewards(resumed) == rewards(whole)
    assert [h["actions"] for h in resumed.history] == [h["actions"] for h in whole.history]

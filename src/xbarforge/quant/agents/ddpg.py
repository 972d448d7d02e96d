"""DDPG search agent in the style of HAQ (Wang et al., CVPR 2019).

One episode walks the problem's decisions in order; at step t the state is the decision's static
features plus the previous action (0 at t=0), and the actor's sigmoid output in [0, 1] is the action.
Exploration is HAQ's: `warmup` episodes of uniformly random actions, then truncated-normal noise
around the actor's action whose sigma decays every episode. The problem scores the whole episode once;
that single reward is given to every step of the episode (HAQ's sparse reward), and the transitions
stored for learning are rebuilt from the actions the problem actually scored (after its budget
enforcement), as HAQ does. A problem that credits each decision separately (`Evaluation.step_rewards`,
RaQu's per-layer utilization) gives each step its own reward instead, with a moving-average baseline
per step; the best episode is still chosen by the episode reward.

All randomness comes from the agent's own numpy and torch generators, and a checkpoint after every
episode holds everything that changes during a run, so an interrupted run resumes bit-identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xbarforge.errors import XbarforgeError
from xbarforge.quant.agents.base import (
    AgentResult,
    Best,
    Callback,
    Progress,
    check_problem,
    checked,
    load_checkpoint,
    make_record,
    save_checkpoint,
)
from xbarforge.quant.problem import Problem


def _mlp(n_in: int, hidden: int, final: nn.Module | None, gen: torch.Generator) -> nn.Sequential:
    """n_in -> hidden -> hidden -> 1, initialized as in the DDPG paper (and HAQ): fan-in uniform for the
    hidden layers, +-3e-3 for the output layer so that early outputs (and actor gradients) are small."""
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG: keep it untouched
        layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                   nn.Linear(hidden, 1)]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, lin in enumerate(linears):
            bound = 3e-3 if i == len(linears) - 1 else 1.0 / np.sqrt(lin.in_features)
            nn.init.uniform_(lin.weight, -bound, bound, generator=gen)
            nn.init.uniform_(lin.bias, -bound, bound, generator=gen)
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class DDPGAgent:
    """HAQ's DDPG agent over a `Problem` (defaults are HAQ's settings)."""

    name = "ddpg"

    def __init__(
        self,
        problem: Problem,
        *,
        seed: int = 0,
        warmup: int = 20,
        hidden: int = 300,
        buffer_size: int = 2000,
        batch_size: int = 64,
        updates_per_episode: int | None = None,
        lr_actor: float = 1e-4,
        lr_critic: float = 1e-3,
        sigma: float = 0.5,
        sigma_decay: float = 0.99,
        baseline_decay: float = 0.95,
    ) -> None:
        self.problem = problem
        self.n_steps, self._features = check_problem(problem)
        if warmup < 0 or hidden < 1 or buffer_size < 1 or batch_size < 1:
            raise XbarforgeError("ddpg: warmup must be >= 0 and hidden, buffer_size, batch_size >= 1")
        if updates_per_episode is not None and updates_per_episode < 0:
            raise XbarforgeError("ddpg: updates_per_episode must be >= 0")
        if lr_actor <= 0 or lr_critic <= 0 or sigma < 0 or not (0 < sigma_decay <= 1) or not (0 <= baseline_decay < 1):
            raise XbarforgeError("ddpg: learning rates must be > 0, sigma >= 0, 0 < sigma_decay <= 1 and"
                                 " 0 <= baseline_decay < 1")
        self.seed = int(seed)
        self.warmup = int(warmup)
        self.hidden = int(hidden)
        self.buffer_size = int(buffer_size)
        self.batch_size = int(batch_size)
        self.updates_per_episode = self.n_steps if updates_per_episode is None else int(updates_per_episode)
        self.lr_actor, self.lr_critic = float(lr_actor), float(lr_critic)
        self.sigma0, self.sigma_decay, self.baseline_decay = float(sigma), float(sigma_decay), float(baseline_decay)

        self._rng = np.random.default_rng(self.seed)  # actions, noise and minibatches
        self._gen = torch.Generator().manual_seed(self.seed)  # network initialization
        state_dim = self._features.shape[1] + 1
        self._feat_t = torch.as_tensor(self._features, dtype=torch.float32)
        self.actor = _mlp(state_dim, self.hidden, nn.Sigmoid(), self._gen)
        self.critic = _mlp(state_dim + 1, self.hidden, None, self._gen)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.lr_actor)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.lr_critic)

        # replay buffer: a ring of (state, action, episode reward) transitions
        self._buf_s = torch.zeros(self.buffer_size, state_dim, dtype=torch.float32)
        self._buf_a = torch.zeros(self.buffer_size, 1, dtype=torch.float32)
        self._buf_r = torch.zeros(self.buffer_size, dtype=torch.float64)
        self._buf_pos = 0
        self._buf_len = 0

        self._sigma = self.sigma0
        self._baseline: float | None = None  # moving average of episode rewards
        self._step_baseline: np.ndarray | None = None  # per-step moving averages (problems with step_rewards)
        self._episode = 0
        self._history: list[dict[str, Any]] = []
        self._best = Best()

    # ---- public ----

    @property
    def episodes_done(self) -> int:
        return self._episode

    def result(self) -> AgentResult:
        """The search so far."""
        return self._best.result(self._history)

    def run(self, episodes: int, *, checkpoint: str | Path | None = None, callback: Callback | None = None,
            progress: bool = False) -> AgentResult:
        """Run until `episodes` episodes are done in total (resuming from `checkpoint` when it exists and this
        agent has not run yet), checkpointing after every episode; `callback` gets each new history record."""
        if episodes < 0:
            raise XbarforgeError(f"episodes must be >= 0, got {episodes}")
        path = None if checkpoint is None else Path(checkpoint).expanduser()
        if path is not None and path.exists() and self._episode == 0:
            self._load(path)
        todo = episodes > self._episode
        with Progress(progress and todo, episodes, self._episode, self.name, self._best.reward) as bar:
            while self._episode < episodes:
                record = self._run_episode()
                if path is not None:
                    self._save(path)
                if callback is not None:
                    callback(dict(record))
                bar.advance(self._best.reward)
        return self.result()

    # ---- one episode ----

    def _state(self, t: int, prev: float) -> torch.Tensor:
        return torch.cat([self._feat_t[t], torch.tensor([prev], dtype=torch.float32)])

    def _noisy(self, mu: float) -> float:
        """A draw from the normal(mu, sigma) truncated to [0, 1] (HAQ's exploration), by rejection."""
        if self._sigma <= 0:
            return float(np.clip(mu, 0.0, 1.0))
        for _ in range(1000):
            x = float(self._rng.normal(mu, self._sigma))
            if 0.0 <= x <= 1.0:
                return x
        return float(np.clip(mu, 0.0, 1.0))  # unreachable in practice: mu is in [0, 1]

    def _run_episode(self) -> dict[str, Any]:
        episode = self._episode
        warm = episode < self.warmup
        actions = np.empty(self.n_steps, dtype=np.float64)
        prev = 0.0
        for t in range(self.n_steps):
            if warm:
                a = float(self._rng.uniform())
            else:
                with torch.no_grad():
                    mu = float(self.actor(self._state(t, prev)).item())
                a = self._noisy(mu)
            actions[t] = a
            prev = a
        evaluation = self.problem.evaluate(actions.copy())
        reward, scored = checked(evaluation, self.n_steps, episode)

        prev_scored = np.concatenate([[0.0], scored[:-1]])
        states = torch.cat([self._feat_t, torch.as_tensor(prev_scored, dtype=torch.float32)[:, None]], dim=1)
        d = self.baseline_decay
        if evaluation.step_rewards is None:
            self._remember(states, torch.as_tensor(scored, dtype=torch.float32)[:, None], np.full(self.n_steps, reward))
        else:
            # per-step credit: store each step's advantage over its own running baseline
            steps = np.asarray(evaluation.step_rewards, dtype=np.float64).reshape(-1)
            if steps.shape != (self.n_steps,) or not np.all(np.isfinite(steps)):
                raise ValueError(f"episode {episode}: Evaluation.step_rewards must be {self.n_steps} finite values")
            base = steps if self._step_baseline is None else self._step_baseline
            self._remember(states, torch.as_tensor(scored, dtype=torch.float32)[:, None], steps - base)
            self._step_baseline = steps if self._step_baseline is None else d * self._step_baseline + (1 - d) * steps
        self._baseline = reward if self._baseline is None else d * self._baseline + (1 - d) * reward

        sigma = None if warm else self._sigma
        if not warm:
            for _ in range(self.updates_per_episode):
                self._update()
            self._sigma *= self.sigma_decay

        record = make_record(episode, reward, scored, evaluation.info, warmup=warm, sigma=sigma)
        self._history.append(record)
        self._best.update(record, evaluation.info)
        self._episode += 1
        return record

    def _remember(self, states: torch.Tensor, actions: torch.Tensor, rewards: np.ndarray) -> None:
        for s, a, r in zip(states, actions, rewards, strict=True):
            self._buf_s[self._buf_pos] = s
            self._buf_a[self._buf_pos] = a
            self._buf_r[self._buf_pos] = float(r)
            self._buf_pos = (self._buf_pos + 1) % self.buffer_size
            self._buf_len = min(self._buf_len + 1, self.buffer_size)

    def _update(self) -> None:
        """One critic and one actor step on a minibatch drawn (with replacement) from the buffer.

        Discount is 1 and every step of an episode carries the episode's reward, so, as HAQ does in practice,
        the critic's target is simply the reward minus the moving-average baseline: each step is a contextual
        bandit and no bootstrapped Q'(s', mu'(s')) term (hence no target networks) is needed.
        """
        assert self._baseline is not None
        idx = torch.as_tensor(self._rng.integers(0, self._buf_len, size=self.batch_size))
        s, a = self._buf_s[idx], self._buf_a[idx]
        # sparse rewards are baselined here (HAQ); step rewards were stored as advantages already
        shift = 0.0 if self._step_baseline is not None else self._baseline
        target = (self._buf_r[idx] - shift).to(torch.float32)[:, None]

        q = self.critic(torch.cat([s, a], dim=1))
        critic_loss = nn.functional.mse_loss(q, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        actor_loss = -self.critic(torch.cat([s, self.actor(s)], dim=1)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

    # ---- checkpoints ----

    def _config(self) -> dict[str, Any]:
        """What must match for a checkpoint to continue this very run."""
        return {
            "agent": self.name, "seed": self.seed, "warmup": self.warmup, "hidden": self.hidden,
            "buffer_size": self.buffer_size, "batch_size": self.batch_size,
            "updates_per_episode": self.updates_per_episode, "lr_actor": self.lr_actor, "lr_critic": self.lr_critic,
            "sigma": self.sigma0, "sigma_decay": self.sigma_decay, "baseline_decay": self.baseline_decay,
            "n_steps": self.n_steps, "features": torch.as_tensor(self._features),
        }

    def _save(self, path: Path) -> None:
        save_checkpoint(path, self._config(), {
            "episode": self._episode,
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "buffer": {"states": self._buf_s, "actions": self._buf_a, "rewards": self._buf_r,
                       "pos": self._buf_pos, "len": self._buf_len},
            "rng": self._rng.bit_generator.state, "torch_rng": self._gen.get_state(),
            "sigma": self._sigma, "baseline": self._baseline,
            "step_baseline": None if self._step_baseline is None else torch.from_numpy(self._step_baseline),
            "history": self._history, "best": self._best.state(),
        })

    def _load(self, path: Path) -> None:
        ck = load_checkpoint(path, self.name, self._config())
        self.actor.load_state_dict(ck["actor"])
        self.critic.load_state_dict(ck["critic"])
        self.actor_opt.load_state_dict(ck["actor_opt"])
        self.critic_opt.load_state_dict(ck["critic_opt"])
        buf = ck["buffer"]
        self._buf_s.copy_(buf["states"])
        self._buf_a.copy_(buf["actions"])
        self._buf_r.copy_(buf["rewards"])
        self._buf_pos, self._buf_len = int(buf["pos"]), int(buf["len"])
        self._rng.bit_generator.state = ck["rng"]
        self._gen.set_state(ck["torch_rng"])
        self._sigma = float(ck["sigma"])
        self._baseline = None if ck["baseline"] is None else float(ck["baseline"])
        sb = ck.get("step_baseline")
        self._step_baseline = None if sb is None else sb.numpy().astype(np.float64)
        self._episode = int(ck["episode"])
        self._history = [dict(r) for r in ck["history"]]
        self._best.load(ck["best"])

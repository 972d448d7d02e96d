"""The contract between a quantization problem and the agents that search it.

An episode is a sequence of `n_steps` decisions (one per layer in stage 1, one per weight group in
stage 2); each decision is an action in [0, 1] that the problem maps to a bit width. Agents see
each decision's static, normalized `features` and, like HAQ's DDPG, the previous action; the
problem scores a whole episode at once (`evaluate`), because the budget can only be enforced and
the accuracy only measured once every bit width is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class Evaluation:
    """The score of one episode: the reward agents maximize and what it was made of."""

    reward: float
    actions: np.ndarray  # the actions after budget enforcement (what was actually scored), in [0, 1]
    info: dict[str, Any] = field(default_factory=dict)  # accuracy, utilization, crossbars, bits, ...
    # optional credit of each decision (length n_steps): the shared part of the reward plus what the
    # decision's own layer earned; agents that learn per step (DDPG) use it instead of `reward`
    step_rewards: np.ndarray | None = None


class Problem(Protocol):
    """What an agent needs to know about a quantization problem."""

    @property
    def n_steps(self) -> int:
        """Decisions per episode."""
        ...

    @property
    def features(self) -> np.ndarray:
        """(n_steps, d) static description of each decision, every column scaled to [0, 1]."""
        ...

    def evaluate(self, actions: np.ndarray) -> Evaluation:
        """Score one episode's actions (length n_steps, each in [0, 1]); deterministic."""
        ...

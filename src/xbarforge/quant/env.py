"""One stage of the mixed-precision search as a `Problem` the agents can solve.

An episode picks a width for every decision of the stage; `evaluate` then (1) enforces the crossbar
budget as HAQ does, lowering widths until the policy fits — the widest decision first, the one
holding the most weight cells among equals, so the cuts land where they free most cells — (2)
measures the policy's accuracy after post-training quantization, and (3) rewards

    reward = accuracy - reference accuracy + utilization_weight * utilization

`utilization_weight = 0` is the array-unaware (coarse-grained, HAQ-like) agent; RaQu's array-aware
agent also earns for every cell its arrays put to use. Accuracies are cached by policy, since
agents revisit the same widths late in a run.

With a utilization weight the problem also credits each decision (`Evaluation.step_rewards`):
the shared accuracy term plus `utilization_weight` times the utilization of the decision's own
layer. A layer's crossbars depend only on its own widths, so this is the part of the utilization a
decision can change; without it, an agent that learns per step (DDPG) must untangle one tail group's
freed arrays from the noise of dozens of other decisions in a single episode reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xbarforge.errors import XbarforgeError
from xbarforge.quant.cost import PolicyCost, PolicyCoster
from xbarforge.quant.problem import Evaluation
from xbarforge.quant.space import ChannelBits, Decision, QuantSpace

AccuracyFn = Callable[[ChannelBits], float]


class BudgetTooSmall(XbarforgeError):
    """Even the narrowest widths do not fit the crossbar budget."""


class StageProblem:
    """Decisions of one stage, each with its own allowed widths (see module doc); `layer_bits`: the widths
    the decisions' features describe the crossbars at (stage 1's result, in stage 2)."""

    def __init__(
        self,
        space: QuantSpace,
        decisions: Sequence[Decision],
        coster: PolicyCoster,
        accuracy: AccuracyFn,
        *,
        choices: Sequence[Sequence[int]] | None = None,
        reference_accuracy: float = 0.0,
        utilization_weight: float = 0.0,
        layer_bits: Sequence[int] | None = None,
    ) -> None:
        self.space = space
        self.decisions = list(decisions)
        self.coster = coster
        self.accuracy_fn = accuracy
        self.choices = [tuple(sorted(c)) for c in (choices or [space.bits] * len(self.decisions))]
        self.reference_accuracy = reference_accuracy
        self.utilization_weight = utilization_weight
        self._features = space.features(self.decisions, layer_bits)
        self._cells = self._decision_cells()
        self._decision_layer = np.array([d.layer for d in self.decisions], dtype=np.int64)
        self._accuracy_cache: dict[bytes, float] = {}
        self.evaluations = 0
        narrowest = [c[0] for c in self.choices]
        low = self.coster(self.channel_bits(narrowest))
        if not low.fits:
            raise BudgetTooSmall(
                f"crossbar budget too small: even at the narrowest widths the model needs {low.crossbars}"
                f" crossbars{self._budget_text(low)}"
            )

    def _budget_text(self, cost: PolicyCost) -> str:
        if self.coster.pools:
            need = ", ".join(f"{n} of {p.rows}x{p.cols}" for n, p in zip(cost.pool_crossbars or [], self.coster.pools,
                                                                           strict=True))
            have = ", ".join(f"{p.count} of {p.rows}x{p.cols}" for p in self.coster.pools)
            return f" ({need}) but the chip's pools hold {have}"
        return f" but the budget is {self.coster.budget}"

    def _decision_cells(self) -> np.ndarray:
        """Weights of each decision (its share of the layer's cells)."""
        layers = self.space.layers
        return np.array([layers[d.layer].rows_per_group * d.channels for d in self.decisions], dtype=np.float64)

    # ---- Problem protocol ----

    @property
    def n_steps(self) -> int:
        return len(self.decisions)

    @property
    def features(self) -> np.ndarray:
        return self._features

    def evaluate(self, actions: np.ndarray) -> Evaluation:
        bits = self.actions_to_bits(actions)
        bits, cost = self.enforce_budget(bits)
        policy = self.channel_bits(bits)
        acc = self.accuracy(policy)
        reward = acc - self.reference_accuracy + self.utilization_weight * cost.utilization
        steps = None
        if self.utilization_weight:
            own = np.array([rec["utilization"] for rec in cost.layers])
            steps = acc - self.reference_accuracy + self.utilization_weight * own[self._decision_layer]
        info: dict[str, Any] = {
            "accuracy": acc,
            **{k: v for k, v in cost.summary().items() if k != "pool_crossbars"},
            "mean_bits": self.space.mean_bits(policy),
            "bits": [int(b) for b in bits],
        }
        return Evaluation(reward=float(reward), actions=self.bits_to_actions(bits), info=info, step_rewards=steps)

    # ---- pieces ----

    def actions_to_bits(self, actions: Sequence[float]) -> list[int]:
        out = []
        for a, choice in zip(np.asarray(actions, dtype=np.float64), self.choices, strict=True):
            k = min(len(choice) - 1, int(np.floor(float(np.clip(a, 0.0, 1.0)) * len(choice))))
            out.append(choice[k])
        return out

    def bits_to_actions(self, bits: Sequence[int]) -> np.ndarray:
        """The centre of each width's action interval (what the repaired policy would have chosen)."""
        return np.array([(c.index(b) + 0.5) / len(c) for b, c in zip(bits, self.choices, strict=True)])

    def channel_bits(self, bits: Sequence[int]) -> ChannelBits:
        return self.space.channel_bits(self.decisions, bits)

    def enforce_budget(self, bits: Sequence[int]) -> tuple[list[int], PolicyCost]:
        """Lower widths until the policy fits (see module doc); the budget was checked to be reachable."""
        bits = list(bits)
        cost = self.coster(self.channel_bits(bits))
        while not cost.fits:
            candidates = [i for i, b in enumerate(bits) if b > self.choices[i][0]]
            i = max(candidates, key=lambda j: (bits[j], self._cells[j], -j))
            choice = self.choices[i]
            bits[i] = choice[choice.index(bits[i]) - 1]
            cost = self.coster(self.channel_bits(bits))
        return bits, cost

    def accuracy(self, policy: ChannelBits) -> float:
        key = b"".join(policy[layer.name].astype(np.int8).tobytes() for layer in self.space.layers)
        hit = self._accuracy_cache.get(key)
        if hit is None:
            hit = self._accuracy_cache[key] = float(self.accuracy_fn(policy))
            self.evaluations += 1
        return hit


def refine_choices(space: QuantSpace, decisions: Sequence[Decision], layer_bits: Sequence[int],
                   steps: int = 2) -> list[tuple[int, ...]]:
    """Stage 2's widths per group: the allowed widths within `steps` places of its layer's stage-1 width."""
    out = []
    for d in decisions:
        k = space.bits.index(int(layer_bits[d.layer]))
        out.append(space.bits[max(0, k - steps): k + steps + 1])
    return out


def layer_bits_of(space: QuantSpace, policy: ChannelBits) -> list[int]:
    """The widest width of each layer (a stage-1 policy has one width per layer)."""
    return [int(policy[layer.name].max()) for layer in space.layers]


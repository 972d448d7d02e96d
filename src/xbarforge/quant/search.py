"""The RaQu run: stage 1 (bits per layer), stage 2 (bits per array-aware group), then fine-tuning.

`xbarforge.quant.pipeline.quantize` wraps it into the whole `xbarforge quantize` job. Each
stage is an agent (`xbarforge.quant.agents`) solving a `StageProblem`; stage 2 starts from stage
1's best policy: its groups are cut at stage 1's widths and each group may move at most
`config.refine_steps` widths away from its layer's. Stage 2's result is kept only if it earns more
reward than stage 1's best, so refining never loses. Every stage checkpoints after every episode
and a finished stage is read back, so an interrupted run resumes where it stopped. Accuracies that
steer the search come from a seeded subset of the validation split (carved from the training
data); the test split is used once, after fine-tuning.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from xbarforge.data.bundle import DataBundle
from xbarforge.graph.capture import capture
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.quant.accuracy import QuickAccuracy
from xbarforge.quant.agents import AgentResult, make_agent
from xbarforge.quant.config import QuantConfig
from xbarforge.quant.cost import PolicyCoster
from xbarforge.quant.env import StageProblem, layer_bits_of, refine_choices
from xbarforge.quant.space import ChannelBits, QuantSpace, policy_record

RESULT_FILE = "result.json"


class QuantRun:
    """Everything one run needs, built once: the space, the coster, the accuracy check."""

    def __init__(self, model: nn.Module, data: DataBundle, hw: HardwareSpec, config: QuantConfig,
                 input_shape: tuple[int, int, int], device: str | None = None) -> None:
        self.model = model
        self.data = data
        self.hw = hw
        self.config = config
        graph = capture(copy.deepcopy(model).cpu().eval(), input_shape)
        self.space = QuantSpace(graph, hw, config.bits)
        budget = config.crossbars if config.crossbars is not None else hw.chip.budget
        self.coster = PolicyCoster(self.space, budget)
        self.quick = QuickAccuracy.from_bundle(model, data, images=config.val_images, calibration=config.calibration,
                                               seed=config.seed, activation_bits=hw.precision.activation_bits,
                                               device=device)
        self.float_accuracy = self.quick.float_accuracy()

    def problem(self, stage: int, layer_bits: list[int] | None = None) -> StageProblem:
        if stage == 1:
            decisions = self.space.layer_decisions()
            choices = start = None
        else:
            start = layer_bits or [max(self.space.bits)] * len(self.space.layers)
            decisions = self.space.group_decisions(start, self.config.max_groups)
            choices = refine_choices(self.space, decisions, start, self.config.refine_steps)
        return StageProblem(self.space, decisions, self.coster, self.quick.accuracy, choices=choices,
                            reference_accuracy=self.float_accuracy,
                            utilization_weight=self.config.utilization_weight,
                            layer_bits=start)

    def describe(self, policy: ChannelBits) -> dict[str, Any]:
        """Cost and validation accuracy of a policy (the numbers every report shows)."""
        cost = self.coster(policy)
        mean = [float(policy[layer.name].mean()) for layer in self.space.layers]
        return {
            **cost.summary(),
            "val_accuracy": self.quick.accuracy(policy),
            "mean_bits": self.space.mean_bits(policy),
            "layers": [{**rec, "mean_bits": m, "min_bits": int(policy[rec["name"]].min()),
                        "max_bits": int(policy[rec["name"]].max())}
                       for rec, m in zip(cost.layers, mean, strict=True)],
        }


def run_stage(problem: StageProblem, agent: str, episodes: int, seed: int, out: Path, progress: bool) -> AgentResult:
    out.mkdir(parents=True, exist_ok=True)
    runner = make_agent(agent, problem, seed=seed)
    result = runner.run(episodes, checkpoint=out / "agent.ckpt", progress=progress)
    with (out / "history.jsonl").open("w") as fh:
        for rec in result.history:
            fh.write(json.dumps(rec) + "\n")
    return result


def search(run: QuantRun, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Stages 1 and 2 as configured; returns the search's part of result.json (policy included)."""
    cfg = run.config
    out = Path(out_dir)
    first, second = cfg.stage_episodes()
    doc: dict[str, Any] = {"float_val_accuracy": run.float_accuracy}
    layer_bits = [max(cfg.bits)] * len(run.space.layers)
    best_policy: ChannelBits | None = None
    best_reward = -np.inf
    if first:
        p1 = run.problem(1)
        r1 = run_stage(p1, cfg.agent, first, cfg.seed, out / "stage1", progress)
        bits1 = p1.actions_to_bits(r1.best_actions)
        best_policy = p1.channel_bits(bits1)
        best_reward = r1.best_reward
        layer_bits = layer_bits_of(run.space, best_policy)
        doc["stage1"] = {"episodes": first, "best_reward": r1.best_reward, "best": r1.best_info,
                         "accuracy_evaluations": p1.evaluations}
    if second:
        p2 = run.problem(2, layer_bits)
        r2 = run_stage(p2, cfg.agent, second, cfg.seed + 1, out / "stage2", progress)
        kept = r2.best_reward > best_reward
        if kept or best_policy is None:
            best_policy = p2.channel_bits(p2.actions_to_bits(r2.best_actions))
            best_reward = r2.best_reward
        doc["stage2"] = {"episodes": second, "groups": p2.n_steps, "best_reward": r2.best_reward,
                         "best": r2.best_info, "improved_on_stage1": kept, "accuracy_evaluations": p2.evaluations}
    assert best_policy is not None
    doc["reward"] = best_reward
    doc["policy"] = policy_record(run.space, best_policy)
    return doc

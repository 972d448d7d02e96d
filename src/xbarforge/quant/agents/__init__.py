"""Search agents that pick an action in [0, 1] per decision of a quantization `Problem`.

`ddpg` is HAQ's reinforcement-learning agent; `evolution` is a genetic algorithm (pymoo) over the whole
action vector. Both share one API: `run(episodes, checkpoint=..., callback=..., progress=...)` returns
an `AgentResult`, checkpoints after every episode and resumes a checkpoint bit-identically.
"""

from __future__ import annotations

import inspect
from typing import Any

from xbarforge.errors import XbarforgeError
from xbarforge.quant.agents.base import AgentResult
from xbarforge.quant.agents.ddpg import DDPGAgent
from xbarforge.quant.agents.evolution import EvolutionAgent
from xbarforge.quant.problem import Problem

AGENTS: dict[str, type[DDPGAgent] | type[EvolutionAgent]] = {"ddpg": DDPGAgent, "evolution": EvolutionAgent}


def make_agent(name: str, problem: Problem, seed: int = 0, **kwargs: Any) -> DDPGAgent | EvolutionAgent:
    """The agent called `name` (a key of AGENTS) for `problem`; kwargs are the agent's own settings."""
    try:
        cls = AGENTS[name]
    except (KeyError, TypeError):
        raise XbarforgeError(f"unknown agent '{name}' (choose from: {', '.join(AGENTS)})") from None
    known = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "problem", "seed")]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise XbarforgeError(f"agent '{name}' has no setting {', '.join(unknown)} (it has: {', '.join(known)})")
    return cls(problem, seed=seed, **kwargs)


__all__ = ["AGENTS", "AgentResult", "DDPGAgent", "EvolutionAgent", "make_agent"]

"""Array-aware mixed-precision quantization that fills crossbars (RaQu, DAC 2020 / TCAD 2022).

`space` says what a policy decides (bits per layer, then per array-aware group of output channels),
`cost` prices a policy with the compiler's own blocks (crossbars, utilization, heterogeneous pools),
`accuracy` scores it by post-training quantization on a validation subset, `env` turns one stage
into a problem for the `agents` (DDPG as in HAQ, or a pymoo genetic algorithm), `search` runs the
stages, `finetune` trains the chosen policy, and `pipeline` is the whole `xbarforge quantize` job.

    >>> from xbarforge.quant import QuantConfig, quantize
    >>> result = quantize(model, data, load_hardware("isaac"), QuantConfig(crossbars=120), (3, 32, 32), "runs/q")
"""

from xbarforge.quant.accuracy import QuickAccuracy
from xbarforge.quant.agents import AgentResult, make_agent
from xbarforge.quant.config import QuantConfig
from xbarforge.quant.cost import PolicyCost, PolicyCoster
from xbarforge.quant.env import BudgetTooSmall, StageProblem
from xbarforge.quant.pipeline import quantize
from xbarforge.quant.space import ChannelBits, Decision, QuantSpace, parse_bits, policy_from_record, policy_record

__all__ = [
    "AgentResult",
    "BudgetTooSmall",
    "ChannelBits",
    "Decision",
    "PolicyCost",
    "PolicyCoster",
    "QuantConfig",
    "QuantSpace",
    "QuickAccuracy",
    "StageProblem",
    "make_agent",
    "parse_bits",
    "policy_from_record",
    "policy_record",
    "quantize",
]

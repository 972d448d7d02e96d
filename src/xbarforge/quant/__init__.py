"""Array-aware mixed-precision quantization that fills crossbars (RaQu, DAC 2020 / TCAD 2022).

`space` says what a policy decides (bits per layer, then per array-aware group of output channels),
`cost` prices a policy with the compiler's own blocks (crossbars, utilization, heterogeneous pools),
`accuracy` scores it by post-training quantization on a validation subset, `env` turns one stage
into a problem for the `agents` (DDPG as in HAQ, or a pymoo genetic algorithm), `search` runs the
stages, `finetune` trains the chosen policy, and `pipeline` is the whole `xbarforge quantize` job.
"""

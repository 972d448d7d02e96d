"""Accuracy on non-ideal RRAM crossbars: the functional simulator and hardware-aware training.

    from xbarforge.sim import Simulator, simulate_accuracy, sweep, hardware_aware
    sim = Simulator(model, hw, (3, 32, 32), calibration=x_val[:256]).program(seed=0)
    logits = sim(x)

Two fidelity levels (`Simulator.mode`): "exact" (bit-serial inputs, every partial sum through
the ADC) and "fast" (decoded programmed weights plus the noise read noise and ADC rounding add),
besides "quantized" and "float" references. See docs/simulator.md.
"""

from xbarforge.sim.hwa import hardware_aware, remove_hardware_aware
from xbarforge.sim.monte_carlo import SWEEP_ALIASES, AccuracyReport, apply_setting, simulate_accuracy, sweep
from xbarforge.sim.simulator import Mode, SimulationError, Simulator

__all__ = [
    "SWEEP_ALIASES",
    "AccuracyReport",
    "Mode",
    "SimulationError",
    "Simulator",
    "apply_setting",
    "hardware_aware",
    "remove_hardware_aware",
    "simulate_accuracy",
    "sweep",
]

"""BasisN: networks larger than the chip, without reprogramming.

Every conv/linear kernel is cut into crossbar-row segments, each a quantized combination of global
basis vectors written to the crossbars once; a digital unit combines the crossbar read-outs.

    >>> from xbarforge.basis import plan_basis, fit_basis, compare
    >>> layout = plan_basis(graph, hw, crossbars=32, group_crossbars=8)
    >>> net, report = fit_basis(model, layout, weight_bits=hw.precision.weight_bits, coeff_bits=4)
    >>> compare(layout, graph, hw, coeff_bits=4, batches=(1, 64))
"""

from xbarforge.basis.cost import basis_cost, compare, reprogram_cost
from xbarforge.basis.fit import FitReport, fit_basis
from xbarforge.basis.layout import BasisError, BasisLayout, LayerSegments, default_group_crossbars, plan_basis
from xbarforge.basis.model import BasisNetwork
from xbarforge.basis.run import BasisRun, load_run, save_run
from xbarforge.basis.simulate import BasisChip, simulate_basis_accuracy
from xbarforge.basis.train import train_run

__all__ = [
    "BasisChip",
    "BasisError",
    "BasisLayout",
    "BasisNetwork",
    "BasisRun",
    "FitReport",
    "LayerSegments",
    "basis_cost",
    "compare",
    "default_group_crossbars",
    "fit_basis",
    "load_run",
    "plan_basis",
    "reprogram_cost",
    "save_run",
    "simulate_basis_accuracy",
    "train_run",
]

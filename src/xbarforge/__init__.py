"""xbarforge: compile, simulate, search and quantize DNNs for RRAM crossbar accelerators.

    >>> import xbarforge
    >>> m = xbarforge.compile("squeezenet1_1", "rnc-paper", crossbars=80, input_shape=(3, 64, 64))
    >>> m.report["speedup"]["8"]
"""

from xbarforge.api import compile  # noqa: A004
from xbarforge.compiler.mapping import Mapping
from xbarforge.hardware import HardwareSpec, load_hardware

__all__ = ["HardwareSpec", "Mapping", "compile", "load_hardware"]
__version__ = "0.1.0"

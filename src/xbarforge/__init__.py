"""xbarforge: compile, simulate, search and quantize DNNs for RRAM crossbar accelerators.

    >>> import xbarforge
    >>> m = xbarforge.compile("squeezenet1_1", "rnc-paper", crossbars=80, input_shape=(3, 64, 64))
    >>> m.report["speedup"]["8"]

The names below load on first use (PEP 562): `import xbarforge` stays light, so the command line
starts without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["HardwareSpec", "Mapping", "compile", "load_hardware"]
__version__ = "0.1.0"

_LAZY = {
    "compile": "xbarforge.api",
    "Mapping": "xbarforge.compiler.mapping",
    "HardwareSpec": "xbarforge.hardware",
    "load_hardware": "xbarforge.hardware",
}

if TYPE_CHECKING:
    from xbarforge.api import compile  # noqa: A004
    from xbarforge.compiler.mapping import Mapping
    from xbarforge.hardware import HardwareSpec, load_hardware


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xbarforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

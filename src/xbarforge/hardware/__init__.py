"""Hardware descriptions: the HardwareSpec schema, bundled presets and the loader.

Use `load_hardware("isaac")`, `load_hardware("chip.yaml", **{"crossbar.rows": 64})` or
`override(spec, "crossbar.rows", 64)`; every failure is a one-line HardwareError.
"""

from xbarforge.hardware.loader import (
    dump_hardware,
    list_presets,
    load_hardware,
    override,
    parse_overrides,
    preset_path,
    save_hardware,
    with_overrides,
)
from xbarforge.hardware.spec import HardwareSpec, NonIdealSpec

__all__ = [
    "HardwareSpec",
    "NonIdealSpec",
    "dump_hardware",
    "list_presets",
    "load_hardware",
    "override",
    "parse_overrides",
    "preset_path",
    "save_hardware",
    "with_overrides",
]

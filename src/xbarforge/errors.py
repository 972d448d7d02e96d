"""Errors a user can cause. The CLI prints them as one line, never a traceback."""


class XbarforgeError(Exception):
    """Base class: bad input that the user can fix (message names what is wrong)."""


class HardwareError(XbarforgeError):
    """A hardware file or preset is missing, malformed or inconsistent."""


class CaptureError(XbarforgeError):
    """A model could not be turned into a LayerGraph (unsupported operator, untraceable code)."""


class ModelNotFoundError(XbarforgeError):
    """A zoo name or model path that does not exist."""


class CompileError(XbarforgeError):
    """A compile request that cannot be satisfied as asked (for example a layer wider than any pool)."""

"""The one error a dataset problem raises, so the CLI prints it as a single line."""

from __future__ import annotations

from xbarforge.errors import XbarforgeError


class DataError(XbarforgeError):
    """A dataset that is unknown, missing or malformed; the message names the path and the problem."""

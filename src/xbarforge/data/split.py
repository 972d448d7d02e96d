"""One split of a data set, and input resolutions: what both `bundle` and `batching` read.

Kept apart from `bundle` so that `batching` (which `DataBundle.batches` calls) does not import
the module that imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xbarforge.data.errors import DataError

__all__ = ["Split", "as_resolution"]


@dataclass(frozen=True)
class Split:
    """One split: images `x` (N, C, H, W) and integer labels `y` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"a split needs x of shape (N, C, H, W) and y of shape (N,), got "
                            f"{tuple(self.x.shape)} and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.y.shape[0])


def as_resolution(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    """None, N or (H, W) -> None or (H, W); rejects sizes below 1."""
    if value is None:
        return None
    dims = (int(value), int(value)) if isinstance(value, int | np.integer) else tuple(int(v) for v in value)
    if len(dims) == 3:  # (C, H, W) given: keep H, W
        dims = dims[1:]
    if len(dims) != 2 or min(dims) < 1:
        raise DataError(f"resolution must be N or (H, W) with positive sizes, got {value!r}")
    return dims[0], dims[1]

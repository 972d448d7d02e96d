"""Datasets for training and accuracy checks: CIFAR-10/100 (python batches, JPEG tarballs or image
folders), generic image-folder trees, and scikit-learn's 8x8 digits; batching and augmentation in torch.

    >>> from xbarforge.data import load_dataset
    >>> data = load_dataset("cifar10", "../shared/data/cifar10")        # 45000 / 5000 / 10000
    >>> for x, y in data.batches("train", 128, shuffle=True, augment=True):
    ...     ...

Every problem with a dataset raises DataError (an XbarforgeError) naming the path and what is wrong.
The names below load on first use (PEP 562), so `xbarforge.data.names` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "augment_batch": "batching", "batches": "batching", "random_crop": "batching", "random_flip": "batching",
    "resize": "batching", "to_float": "batching", "DataBundle": "bundle", "channel_stats": "bundle",
    "stratified_holdout": "bundle", "Split": "split", "cache_dir": "cache", "CIFAR10_CLASSES": "cifar",
    "DataError": "errors", "DATASETS": "names", "list_datasets": "loader", "load_dataset": "loader",
}
__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DataBundle",
    "DataError",
    "Split",
    "augment_batch",
    "batches",
    "cache_dir",
    "channel_stats",
    "list_datasets",
    "load_dataset",
    "random_crop",
    "random_flip",
    "resize",
    "stratified_holdout",
    "to_float",
]

if TYPE_CHECKING:
    from xbarforge.data.batching import augment_batch, batches, random_crop, random_flip, resize, to_float
    from xbarforge.data.bundle import DataBundle, channel_stats, stratified_holdout
    from xbarforge.data.cache import cache_dir
    from xbarforge.data.cifar import CIFAR10_CLASSES
    from xbarforge.data.errors import DataError
    from xbarforge.data.loader import list_datasets, load_dataset
    from xbarforge.data.names import DATASETS
    from xbarforge.data.split import Split


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xbarforge.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"xbarforge.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

"""Datasets for training and accuracy checks: CIFAR-10/100 (python batches, JPEG tarballs or image
folders), generic image-folder trees, and scikit-learn's 8x8 digits; batching and augmentation in torch.

    >>> from xbarforge.data import load_dataset
    >>> data = load_dataset("cifar10", "../shared/data/cifar10")        # 45000 / 5000 / 10000
    >>> for x, y in data.batches("train", 128, shuffle=True, augment=True):
    ...     ...

Every problem with a dataset raises DataError (an XbarforgeError) naming the path and what is wrong.
"""

from xbarforge.data.batching import augment_batch, batches, random_crop, random_flip, resize, to_float
from xbarforge.data.bundle import DataBundle, Split, channel_stats, stratified_holdout
from xbarforge.data.cache import cache_dir
from xbarforge.data.cifar import CIFAR10_CLASSES
from xbarforge.data.errors import DataError
from xbarforge.data.loader import DATASETS, list_datasets, load_dataset

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

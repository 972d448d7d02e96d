"""CIFAR-10/100 in the original "python version" layout (pickled batches).

`cifar-10-batches-py/`: data_batch_1..5, test_batch, batches.meta; `cifar-100-python/`: train, test,
meta. Each batch is a dict with b"data" (N x 3072 uint8, channel-major 32x32) and b"labels"
(CIFAR-10) or b"fine_labels" (CIFAR-100). The pickles are read with an unpickler that only admits
numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xbarforge.data.errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class CifarLayout:
    """File names of one CIFAR variant's python-batches release."""

    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str
    num_classes: int


LAYOUTS = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                           "batches.meta", "labels", "label_names", 10),
    "cifar100": CifarLayout("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names", 100),
}

_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the few globals a pickled numpy array needs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        if module.startswith("numpy.core."):  # pickles from numpy 1.x; numpy 2 moved it to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core"):]), name)
            except ImportError:
                pass
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR batch file as a dict with str keys."""
    if not path.is_file():
        raise DataError(f"{path}: missing file (the CIFAR python-batches folder is incomplete)")
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DataError(f"{path}: corrupt or not a CIFAR batch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR batch file (holds a {type(obj).__name__}, expected a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels of one batch file, checked."""
    batch = _load_pickle(path)
    for key in ("data", layout.label_key):
        if key not in batch:
            raise DataError(f"{path}: no '{key}' entry (keys: {', '.join(sorted(batch)) or 'none'})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[layout.label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be N x 3072 uint8, got {data.shape} {data.dtype}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{layout.label_key}' must hold {data.shape[0]} integer labels, got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise DataError(f"{path}: labels must lie in 0..{layout.num_classes - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def find_cifar_batches(root: Path, name: str) -> Path | None:
    """The python-batches folder for `name` at `root` (the folder itself or its parent), else None."""
    layout = LAYOUTS[name]
    markers = (*layout.train, layout.test, layout.meta)
    for folder in (root / layout.folder, root):
        if folder.is_dir() and any((folder / m).is_file() for m in markers):
            return folder
    return None


def _class_names(folder: Path, layout: CifarLayout) -> list[str]:
    path = folder / layout.meta
    if not path.exists():
        if layout.num_classes == 10:
            return list(CIFAR10_CLASSES)
        return [f"class_{i}" for i in range(layout.num_classes)]
    meta = _load_pickle(path)
    names = meta.get(layout.names_key)
    if not isinstance(names, list | tuple) or len(names) != layout.num_classes:
        raise DataError(f"{path}: expected {layout.num_classes} names under '{layout.names_key}'")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar_batches(folder: Path, name: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays train_x/train_y/test_x/test_y and class names from a python-batches folder."""
    layout = LAYOUTS[name]
    parts = [_read_batch(folder / f, layout) for f in layout.train]
    test_x, test_y = _read_batch(folder / layout.test, layout)
    arrays = {
        "train_x": np.concatenate([p[0] for p in parts]), "train_y": np.concatenate([p[1] for p in parts]),
        "test_x": test_x, "test_y": test_y,
    }
    return arrays, _class_names(folder, layout)

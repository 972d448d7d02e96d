"""`load_dataset`: one entry point for every dataset format xbarforge reads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xbarforge.data.bundle import DataBundle, as_resolution, make_bundle
from xbarforge.data.cifar import LAYOUTS, find_cifar_batches, load_cifar_batches
from xbarforge.data.digits import load_digits_arrays
from xbarforge.data.errors import DataError
from xbarforge.data.images import has_image_tree, load_image_folder, tarballs_in
from xbarforge.data.names import DATASETS


def list_datasets() -> list[str]:
    """Names `load_dataset` accepts."""
    return list(DATASETS)


def _cifar_arrays(name: str, root: Path, resolution: tuple[int, int] | None) -> tuple[dict[str, np.ndarray], list[str]]:
    layout = LAYOUTS[name]
    folder = find_cifar_batches(root, name)
    if folder is not None:
        return load_cifar_batches(folder, name)
    if has_image_tree(root) or tarballs_in(root):
        arrays, classes = load_image_folder(root, resolution)
        if len(classes) != layout.num_classes:
            raise DataError(f"{root}: {name} needs {layout.num_classes} class folders, found {len(classes)}"
                            f" ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
        return arrays, classes
    raise DataError(
        f"{root}: no {name} data found; expected the python batches ({layout.folder}/ with "
        f"{layout.train[0]}, ..., {layout.test}), a train/ + test/ image-folder tree, or image tarballs"
    )


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    resolution: int | Sequence[int] | None = None,
) -> DataBundle:
    """Load dataset `name` (cifar10, cifar100, digits, folder) from `root` with whole splits in memory.

    The val split is a stratified `val_fraction` of the training set chosen by `seed`; the test split
    is the dataset's own. `resolution` (N or (H, W)) makes `batches` resize on the fly (and resizes
    at decode time an image folder whose sizes differ). Any problem raises DataError.
    """
    key = str(name).strip().lower().replace("-", "")
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}': choose {', '.join(DATASETS)}")
    if not isinstance(val_fraction, int | float) or not math.isfinite(val_fraction) or not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    res = as_resolution(resolution)
    root_path: Path | None = None
    if key == "digits":
        arrays, classes = load_digits_arrays()
    else:
        if root is None or not str(root).strip():
            raise DataError(f"dataset '{key}' needs a root folder (root=... or --data-root DIR)")
        root_path = Path(root).expanduser()
        if not root_path.exists():
            raise DataError(f"{root_path}: no such file or folder (dataset '{key}')")
        if key == "folder":
            if not (root_path.is_dir() and has_image_tree(root_path)) and not tarballs_in(root_path):
                raise DataError(f"{root_path}: expected train/ and test/ folders with one folder per class,"
                                " or tarballs holding such trees")
            arrays, classes = load_image_folder(root_path, res)
        else:
            if not root_path.is_dir() and not tarballs_in(root_path):
                raise DataError(f"{root_path}: not a folder (dataset '{key}')")
            arrays, classes = _cifar_arrays(key, root_path, res)
    return make_bundle(
        key, str(root_path.resolve()) if root_path is not None else None,
        torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"]),
        torch.from_numpy(arrays["test_x"]), torch.from_numpy(arrays["test_y"]), classes,
        val_fraction=float(val_fraction), seed=int(seed), resolution=res, augment=key != "digits",
    )

"""The data a trained model belongs to: its dataset, split and normalized as when it was trained.

Model files record the dataset, its root, the validation fraction and seed, and the normalization
(`xbarforge.train.save_model`). Simulation, fine-tuning, quantization and BasisN evaluate a model
on exactly that data; these helpers rebuild it, and draw evaluation and calibration tensors.
"""

from __future__ import annotations

from typing import Any

import torch

from xbarforge.data.bundle import DataBundle
from xbarforge.data.errors import DataError

__all__ = ["evaluation_tensors", "model_dataset", "sample_tensors"]


def model_dataset(meta: dict[str, Any], data: str | None, data_root: str | None, source: str) -> DataBundle:
    """The dataset a model was trained on (or `data`/`data_root` instead), split and normalized as then."""
    from xbarforge.data.loader import load_dataset

    name = data or meta.get("dataset")
    if not name:
        raise DataError(f"{source}: the model file names no dataset; add --data NAME (and --data-root DIR)")
    root = data_root if data_root is not None else (meta.get("data_root") if name == meta.get("dataset") else None)
    shape = meta.get("input_shape")
    resolution = tuple(shape[1:]) if shape else None
    bundle = load_dataset(name, root, val_fraction=meta.get("val_fraction", 0.1) or 0.1,
                          seed=meta.get("seed", 0) or 0, resolution=resolution)
    if meta.get("mean") and meta.get("std"):
        bundle = bundle.with_stats(meta["mean"], meta["std"])
    return bundle


def sample_tensors(data: DataBundle, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `limit` images of `split` (all when None) as normalized tensors (x, y).

    Splits are stored class by class, so a subset is drawn at random with seed 0 (every run and
    every command sees the same images), never the first N, which would be one or two classes.
    """
    from xbarforge.data.batching import batches

    part = data.split(split)
    src: Any = part
    if limit is not None and limit < len(part):
        idx = torch.randperm(len(part), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        src = (part.x[idx], part.y[idx])
    xs, ys = [], []
    for xb, yb in batches(src, 1000, mean=data.mean, std=data.std, resolution=data.resolution):
        xs.append(xb)
        ys.append(yb)
    return torch.cat(xs), torch.cat(ys)


def evaluation_tensors(data: DataBundle, split: str, limit: int | None, calibration: int | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y) of the split evaluated and calibration images from the validation split (the training
    split when there is none): what fixes input and ADC ranges is never what is scored."""
    x, y = sample_tensors(data, split, limit)
    calib, _ = sample_tensors(data, "val" if len(data.val) else "train", calibration)
    return x, y, calib

"""DataBundle: whole splits in memory plus what training needs to know about them.

Images stay in their compact stored form (uint8 for image files and CIFAR, float32 in [0, 1] for the
8x8 digits) so CIFAR costs 150 MB; `batches` turns them into normalized float batches on demand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xbarforge.data.errors import DataError
from xbarforge.data.split import Split, as_resolution

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataBundle:
    """Train/val/test splits of one dataset, its classes and the normalization of its train split.

    `mean`/`std` are per channel, on the [0, 1] scale, computed on the train split (after the val
    split was carved out). `input_shape` is what `batches` yields (after `resolution`), `native_shape`
    what is stored. `augment` says whether random crop + flip suits the data (not for digits).
    """

    name: str
    root: str | None
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resolution: tuple[int, int] | None = None
    augment: bool = True
    seed: int = 0
    val_fraction: float = 0.1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def native_shape(self) -> tuple[int, int, int]:
        c, h, w = (int(v) for v in self.train.x.shape[1:])
        return c, h, w

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.native_shape
        return (c, *self.resolution) if self.resolution is not None else (c, h, w)

    def split(self, name: str) -> Split:
        """The split called `name` (train, val or test)."""
        if name not in SPLITS:
            raise DataError(f"unknown split '{name}': choose train, val or test")
        return getattr(self, name)

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> DataBundle:
        """This bundle normalized with other statistics (e.g. those stored with a trained model)."""
        c = self.native_shape[0]
        if len(mean) != c or len(std) != c:
            raise DataError(f"{self.name}: mean/std need {c} values each, got {len(mean)} and {len(std)}")
        return dataclasses.replace(self, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))

    def with_resolution(self, resolution: int | Sequence[int] | None) -> DataBundle:
        """This bundle resized on the fly to `resolution` (None: native size)."""
        res = as_resolution(resolution)
        if res is not None and res == self.native_shape[1:]:
            res = None
        return dataclasses.replace(self, resolution=res)

    def limited(self, limit: int | None, seed: int = 0) -> DataBundle:
        """At most `limit` images of each split, drawn at random (seeded) and kept in their order.

        For quick runs (`--limit`): the splits are stored class by class, so a random draw, not the
        first N, keeps every class in. Normalization statistics stay those of the whole train split.
        """
        if limit is None:
            return self
        if limit < 1:
            raise DataError(f"limit must be at least 1, got {limit}")
        gen = torch.Generator().manual_seed(int(seed))

        def cut(part: Split) -> Split:
            if len(part) <= limit:
                return part
            idx = torch.randperm(len(part), generator=gen)[:limit].sort().values
            return Split(part.x[idx], part.y[idx])

        return dataclasses.replace(self, train=cut(self.train), val=cut(self.val), test=cut(self.test))

    def batches(self, split: str, batch_size: int, **kwargs: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`xbarforge.data.batches` over split `split`, with this bundle's normalization and resolution."""
        from xbarforge.data.batching import batches  # batching reads Split from data.split, not from here

        kwargs.setdefault("mean", self.mean)
        kwargs.setdefault("std", self.std)
        kwargs.setdefault("resolution", self.resolution)
        return batches(self.split(split), batch_size, **kwargs)

    def summary(self) -> dict[str, Any]:
        """Plain description for result files (sizes, shape, normalization, split seed)."""
        return {
            "name": self.name, "root": self.root, "num_classes": self.num_classes,
            "input_shape": list(self.input_shape), "native_shape": list(self.native_shape),
            "train": len(self.train), "val": len(self.val), "test": len(self.test),
            "val_fraction": self.val_fraction, "split_seed": self.seed,
            "mean": list(self.mean), "std": list(self.std),
        }


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): `fraction` of every class held out, chosen by `seed`; both sorted.

    Per-class rounding keeps class balance exact (45000/5000 for CIFAR-10 at 0.1); a class with more
    than one sample always keeps at least one in the kept part.
    """
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(fraction * len(idx)))
        if len(idx) > 1:
            k = min(k, len(idx) - 1)
        held.append(idx[:k])
    out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), out, assume_unique=True)
    return keep.astype(np.int64), out.astype(np.int64)


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale, without a float copy of the whole split.

    uint8 images go through a 256-bin histogram per channel (exact and fast); floats in chunks.
    """
    c = x.shape[1]
    if x.shape[0] == 0:
        return (0.0,) * c, (1.0,) * c
    if x.dtype == torch.uint8:
        levels = torch.arange(256, dtype=torch.float64) / 255.0
        means, stds = [], []
        for ch in range(c):
            hist = torch.bincount(x[:, ch].reshape(-1), minlength=256).to(torch.float64)
            p = hist / hist.sum()
            m = float((p * levels).sum())
            var = float((p * (levels - m) ** 2).sum())
            means.append(m)
            stds.append(max(var, 0.0) ** 0.5)
        return tuple(means), tuple(max(s, 1e-6) for s in stds)
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    count = 0
    for part in x.split(chunk):
        f = part.to(torch.float64)
        total += f.sum(dim=(0, 2, 3))
        squares += (f * f).sum(dim=(0, 2, 3))
        count += part.shape[0] * part.shape[2] * part.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def make_bundle(
    name: str,
    root: str | None,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: Sequence[str],
    *,
    val_fraction: float,
    seed: int,
    resolution: tuple[int, int] | None,
    augment: bool,
) -> DataBundle:
    """Carve the val split out of train (stratified, seeded), compute train statistics, build the bundle."""
    keep, held = stratified_holdout(train_y.numpy(), val_fraction, seed)
    keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
    train = Split(train_x[keep_t], train_y[keep_t])
    val = Split(train_x[held_t], train_y[held_t])
    mean, std = channel_stats(train.x)
    if resolution is not None and resolution == tuple(train_x.shape[2:]):
        resolution = None
    return DataBundle(
        name=name, root=root, train=train, val=val, test=Split(test_x, test_y), classes=tuple(classes),
        mean=mean, std=std, resolution=resolution, augment=augment, seed=seed, val_fraction=val_fraction,
    )

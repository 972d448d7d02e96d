"""Batches as normalized float tensors, with augmentation done in torch on whole batches.

No torchvision: random crop (zero padding) and horizontal flip are a gather and a `where` over the
batch, with all randomness drawn on the CPU from one `torch.Generator`, so a seed gives the same
batches on any device. Augmentation runs on the stored uint8 images (cheap), before normalization,
so the padding is black as in the usual CIFAR recipe.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from xbarforge.data.errors import DataError
from xbarforge.data.split import Split, as_resolution


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Every image cropped back to its size at a random offset from its `pad`-pixel zero-padded copy."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    mask = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def augment_batch(
    x: torch.Tensor, generator: torch.Generator | None = None, *, pad: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop with `pad`-pixel zero padding, then random horizontal flip (the CIFAR recipe)."""
    x = random_crop(x, pad, generator)
    return random_flip(x, generator) if flip else x


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Stored images as float32 on the [0, 1] scale (uint8 / 255; floats as they are)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a float batch (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def batches(
    split: Split | tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: bool = False,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resolution: int | Sequence[int] | None = None,
    drop_last: bool = False,
    channels_last: bool = False,
    pad: int = 4,
    flip: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) batches: float32 images normalized with `mean`/`std`, int64 labels.

    `shuffle` and `augment` draw from `generator` (the global RNG when None). `resolution` (N or
    (H, W)) resizes after augmentation. `device` is where the batches go (default: CPU).
    """
    x, y = (split.x, split.y) if isinstance(split, Split) else split
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    size = as_resolution(resolution)
    n = int(x.shape[0])
    c = int(x.shape[1])
    if mean is not None and std is not None:
        if len(mean) != c or len(std) != c:
            raise DataError(f"mean/std need {c} values each (one per channel), got {len(mean)} and {len(std)}")
        mean_t = torch.tensor(list(mean), dtype=torch.float32, device=dev).view(1, c, 1, 1)
        inv_std_t = 1.0 / torch.tensor(list(std), dtype=torch.float32, device=dev).view(1, c, 1, 1)
    else:
        mean_t = inv_std_t = None
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        if drop_last and end - start < batch_size:
            break
        if order is None:
            xb, yb = x[start:end], y[start:end]
        else:
            idx = order[start:end].to(x.device)
            xb, yb = x[idx], y[idx]
        if augment:
            xb = augment_batch(xb, generator, pad=pad, flip=flip)
        xb = to_float(xb.to(dev, non_blocking=True))
        if size is not None:
            xb = resize(xb, size)
        if mean_t is not None and inv_std_t is not None:
            xb = (xb - mean_t) * inv_std_t
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yield xb, yb.to(dev, non_blocking=True)

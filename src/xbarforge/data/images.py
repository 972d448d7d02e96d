"""Image-folder datasets: an extracted `train/<class>/*.jpg` + `test/<class>/*.jpg` tree, or tarballs
holding such trees (one per split, as the shared CIFAR-10 JPEG copy, or one with both).

Labels follow the sorted class-folder names (for CIFAR-10 that is airplane..truck = 0..9, the original
order). Images are decoded once with Pillow and cached (see `xbarforge.data.cache`).
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from xbarforge.data.cache import read_cache, source_key, stat_entry, write_cache
from xbarforge.data.errors import DataError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
SPLIT_DIRS = ("train", "test")
GRAY_MODES = frozenset({"1", "L", "I", "I;16", "F", "LA"})

Arrays = dict[str, np.ndarray]


def is_tarball(path: Path) -> bool:
    """Whether `path` is named like a tar archive."""
    return path.is_file() and path.name.lower().endswith(TAR_SUFFIXES)


def has_image_tree(root: Path) -> bool:
    """Whether `root` holds `train/` (an extracted image-folder tree)."""
    return (root / "train").is_dir()


def tarballs_in(root: Path) -> list[Path]:
    """The tar archives directly inside `root`, sorted by name."""
    if root.is_file():
        return [root] if is_tarball(root) else []
    return sorted(p for p in root.iterdir() if is_tarball(p))


@dataclass
class _Collected:
    """Decoded images of one split, grouped by class name, plus class folders seen (even empty ones)."""

    images: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)


def _decode(data: bytes | Path, label: str) -> np.ndarray:
    """One image as an (H, W) gray or (H, W, 3) RGB uint8 array."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            img.load()
            mode = "L" if img.mode in GRAY_MODES else "RGB"
            return np.asarray(img.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{label}: cannot decode image ({type(exc).__name__}: {exc})") from None


def _list_tree(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: [image files, sorted]}} of an extracted tree; checks the layout."""
    out: dict[str, dict[str, list[Path]]] = {}
    for split in SPLIT_DIRS:
        sdir = root / split
        if not sdir.is_dir():
            raise DataError(f"{root}: no {split}/ folder (expected train/ and test/, each with one folder per class)")
        classes: dict[str, list[Path]] = {}
        for cdir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(p for p in cdir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise DataError(f"{cdir}: class folder has no images ({', '.join(sorted(IMAGE_EXTS))})")
            classes[cdir.name] = files
        if not classes:
            raise DataError(f"{sdir}: no class folders (expected {split}/<class>/<image>)")
        out[split] = classes
    return out


def _tree_sources(tree: dict[str, dict[str, list[Path]]], root: Path) -> list[tuple[str, int, int]]:
    entries = []
    for classes in tree.values():
        for files in classes.values():
            for p in files:
                entries.append(stat_entry(p, os.path.relpath(p, root)))
    return entries


def _read_tree(tree: dict[str, dict[str, list[Path]]]) -> dict[str, _Collected]:
    out: dict[str, _Collected] = {}
    for split, classes in tree.items():
        col = _Collected(folders=set(classes))
        for cls, files in classes.items():
            col.images[cls] = [(p.name, _decode(p, str(p))) for p in files]
        out[split] = col
    return out


def _member_place(name: str) -> tuple[str, str, str] | None:
    """(split, class, file) for a tar member path `.../train/<class>/<file>`, else None."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "/")]
    if len(parts) >= 3 and parts[-3] in SPLIT_DIRS:
        return parts[-3], parts[-2], parts[-1]
    return None


def _read_tarballs(tarballs: list[Path]) -> dict[str, _Collected]:
    out = {split: _Collected() for split in SPLIT_DIRS}
    for tar_path in tarballs:
        try:
            with tarfile.open(tar_path, "r:*") as tf:
                for member in tf:
                    parts = [p for p in PurePosixPath(member.name).parts if p not in (".", "/")]
                    if member.isdir():
                        if len(parts) >= 2 and parts[-2] in SPLIT_DIRS:
                            out[parts[-2]].folders.add(parts[-1])
                        continue
                    place = _member_place(member.name)
                    if not member.isfile() or place is None:
                        continue
                    split, cls, fname = place
                    if fname.startswith(".") or PurePosixPath(fname).suffix.lower() not in IMAGE_EXTS:
                        continue
                    f = tf.extractfile(member)
                    if f is None:
                        continue
                    img = _decode(f.read(), f"{tar_path}:{member.name}")
                    out[split].folders.add(cls)
                    out[split].images.setdefault(cls, []).append((fname, img))
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"{tar_path}: corrupt or unreadable archive ({type(exc).__name__}: {exc})") from None
    label = ", ".join(p.name for p in tarballs)
    for split, col in out.items():
        if not col.images:
            raise DataError(f"{label}: no {split} images (expected members {split}/<class>/<image>)")
        empty = sorted(col.folders - set(col.images))
        if empty:
            raise DataError(f"{label}: class folder {split}/{empty[0]} has no images")
        for items in col.images.values():
            items.sort(key=lambda item: item[0])
    return out


def _check_sizes(collected: dict[str, _Collected], label: str,
                 resolution: tuple[int, int] | None) -> tuple[int, int] | None:
    """The size to resize every image to: None when all images share one size."""
    sizes = Counter(a.shape[:2] for col in collected.values() for items in col.images.values() for _, a in items)
    if len(sizes) <= 1:
        return None
    if resolution is None:
        (a, _), (b, _) = sizes.most_common(2)
        raise DataError(f"{label}: images have different sizes ({a[0]}x{a[1]} and {b[0]}x{b[1]});"
                        " pass a resolution (--resolution) to resize them all")
    return resolution


def _stack(col: _Collected, classes: list[str], label: str, split: str, rgb: bool,
           target: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) uint8 images and (N,) labels of one split, in (class, file name) order."""
    imgs: list[np.ndarray] = []
    labels: list[int] = []
    for cls in sorted(col.images):
        if cls not in classes:
            raise DataError(f"{label}: {split}/{cls} is not a class of the train split")
        for _, arr in col.images[cls]:
            if rgb and arr.ndim == 2:
                arr = np.repeat(arr[:, :, None], 3, axis=2)
            if target is not None and arr.shape[:2] != target:
                arr = np.asarray(Image.fromarray(arr).resize((target[1], target[0]), Image.Resampling.BILINEAR))
            imgs.append(arr)
            labels.append(classes.index(cls))
    x = np.stack(imgs)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64)


def load_image_folder(root: Path, resolution: tuple[int, int] | None = None) -> tuple[Arrays, list[str]]:
    """Arrays train_x/train_y/test_x/test_y (uint8 NCHW, int64) and class names from a tree or tarballs.

    Decoded once, then read from the cache. `resolution` is used only when image sizes differ.
    """
    if root.is_dir() and has_image_tree(root):
        tree = _list_tree(root)
        kind, sources, label = "tree", _tree_sources(tree, root), str(root)
        tarballs: list[Path] = []
    else:
        tarballs = tarballs_in(root)
        if not tarballs:
            raise DataError(f"{root}: no train/ and test/ image folders and no tarballs (*.tar, *.tar.gz)")
        tree = {}
        kind, sources, label = "tar", [stat_entry(p) for p in tarballs], ", ".join(str(p) for p in tarballs)
    keys = [source_key(kind, sources)]
    if resolution is not None:
        keys.append(source_key(kind, sources, list(resolution)))
    for key in keys:
        cached = read_cache(key)
        if cached is not None and {"train_x", "train_y", "test_x", "test_y", "classes"} <= set(cached):
            classes = [str(c) for c in cached.pop("classes")]
            return cached, classes
    collected = _read_tree(tree) if kind == "tree" else _read_tarballs(tarballs)
    classes = sorted(collected["train"].images)
    target = _check_sizes(collected, label, resolution)
    rgb = any(a.ndim == 3 for col in collected.values() for items in col.images.values() for _, a in items)
    train_x, train_y = _stack(collected["train"], classes, label, "train", rgb, target)
    test_x, test_y = _stack(collected["test"], classes, label, "test", rgb, target)
    arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    key = keys[-1] if target is not None else keys[0]
    write_cache(key, {**arrays, "classes": np.asarray(classes)})
    return arrays, classes

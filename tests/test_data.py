"""xbarforge.data: CIFAR python batches, image folders and tarballs, digits, cache, batching, errors."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xbarforge.data.images as images_mod
from xbarforge.data import (
    CIFAR10_CLASSES,
    DataError,
    augment_batch,
    batches,
    cache_dir,
    channel_stats,
    load_dataset,
    random_crop,
    stratified_holdout,
)
from xbarforge.errors import XbarforgeError

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10"
PER_BATCH = 20  # images per synthetic CIFAR batch file
USER_CACHE = os.environ.get("XBARFORGE_CACHE")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own decoded-image cache (the real-data test puts the user's back)."""
    monkeypatch.setenv("XBARFORGE_CACHE", str(tmp_path / "cache"))


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)


def write_cifar10(root: Path, seed: int = 0) -> Path:
    """A tiny cifar-10-batches-py folder: 5 x 20 train images, 20 test images, labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        batch = {b"data": _images(rng, PER_BATCH), b"labels": [(j + i) % 10 for j in range(PER_BATCH)],
                 b"batch_label": f"training batch {i} of 5".encode()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"data": _images(rng, PER_BATCH), b"labels": [j % 10 for j in range(PER_BATCH)]}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": PER_BATCH}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_cifar100(root: Path) -> Path:
    """A tiny cifar-100-python folder: 200 train images (2 per class), 100 test images."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 200), ("test", 100)):
        doc = {b"data": _images(rng, n), b"fine_labels": [j % 100 for j in range(n)],
               b"coarse_labels": [j % 20 for j in range(n)]}
        (folder / name).write_bytes(pickle.dumps(doc, protocol=4))
    meta = {b"fine_label_names": [f"c{i:03d}".encode() for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=4))
    return folder


def _image_bytes(seed: int, fmt: str, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(buf, format=fmt)
    return buf.getvalue()


def write_tree(root: Path, classes: list[str], per_class: dict[str, int], fmt: str = "PNG") -> Path:
    """An extracted image-folder tree root/{train,test}/<class>/NNNN.<ext>."""
    ext = ".png" if fmt == "PNG" else ".jpg"
    for split, n in per_class.items():
        for ci, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                (d / f"{k:04d}{ext}").write_bytes(_image_bytes(1000 * ci + 10 * k + len(split), fmt))
    return root


def write_tarballs(tree: Path, out: Path, prefix: str = "cifar10-jpeg") -> Path:
    """Tar up tree/train and tree/test into out/<prefix>-train.tar.gz and -test.tar.gz (as the shared copy)."""
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with tarfile.open(out / f"{prefix}-{split}.tar.gz", "w:gz") as tf:
            tf.add(tree / split, arcname=split)
    return out


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r) for r in x.reshape(x.shape[0], -1).numpy()}


# ---------------------------------------------------------------------------------------------
# CIFAR python batches


def test_cifar10_batches_sizes_content_and_split(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    data = load_dataset("cifar10", folder, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 20)
    assert data.classes == CIFAR10_CLASSES and data.num_classes == 10
    assert data.input_shape == (3, 32, 32) and data.train.x.dtype == torch.uint8
    assert torch.equal(data.val.y.sort().values, torch.arange(10))  # stratified: one per class
    # train and val are disjoint and together are exactly the five batch files
    raw = np.concatenate([pickle.loads((folder / f"data_batch_{i}").read_bytes())[b"data"] for i in range(1, 6)])
    everything = _rows(torch.from_numpy(raw.reshape(-1, 3, 32, 32)))
    assert _rows(data.train.x) | _rows(data.val.x) == everything
    assert not _rows(data.train.x) & _rows(data.val.x)
    test_raw = pickle.loads((folder / "test_batch").read_bytes())[b"data"].reshape(-1, 3, 32, 32)
    assert np.array_equal(data.test.x.numpy(), test_raw)
    # mean/std come from the train split, on the [0, 1] scale
    f = data.train.x.double() / 255
    assert np.allclose(data.mean, f.mean(dim=(0, 2, 3)).numpy()) and np.allclose(
        data.std, f.std(dim=(0, 2, 3), unbiased=False).numpy())


def test_cifar10_parent_folder_and_seeded_val(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "c10")
    a = load_dataset("cifar10", tmp_path / "c10", seed=0)  # the parent of cifar-10-batches-py
    b = load_dataset("cifar10", tmp_path / "c10" / "cifar-10-batches-py", seed=0)
    c = load_dataset("cifar10", tmp_path / "c10", seed=1)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    assert torch.equal(a.test.x, c.test.x)  # the test split never depends on the seed


def test_cifar100_batches(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    data = load_dataset("cifar100", tmp_path, val_fraction=0.5)
    assert data.num_classes == 100 and data.classes[:2] == ("c000", "c001")
    assert (len(data.train), len(data.val), len(data.test)) == (100, 100, 100)
    assert set(data.val.y.tolist()) == set(range(100))


def test_val_fraction_zero(tmp_path: Path) -> None:
    data = load_dataset("cifar10", write_cifar10(tmp_path), val_fraction=0.0)
    assert len(data.val) == 0 and len(data.train) == 100


def test_stratified_holdout_balanced() -> None:
    y = np.repeat(np.arange(10), 5000)
    keep, held = stratified_holdout(y, 0.1, seed=7)
    assert len(keep) == 45000 and len(held) == 5000
    assert np.all(np.bincount(y[held]) == 500)
    assert not set(keep) & set(held)


# ---------------------------------------------------------------------------------------------
# image folders and tarballs


def test_tree_and_tarball_agree_and_labels_follow_sorted_classes(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", ["zebra", "apple", "mango"], {"train": 4, "test": 2})
    tars = write_tarballs(tree, tmp_path / "tars", prefix="fruit")
    a = load_dataset("folder", tree, val_fraction=0.25)
    b = load_dataset("folder", tars, val_fraction=0.25)
    assert a.classes == ("apple", "mango", "zebra")
    assert (len(a.train), len(a.val), len(a.test)) == (9, 3, 6)
    for part in ("train", "val", "test"):
        assert torch.equal(a.split(part).x, b.split(part).x) and torch.equal(a.split(part).y, b.split(part).y)
    # PNG is lossless: the first test image of class "apple" is exactly what was written
    img = np.asarray(Image.open(tree / "test" / "apple" / "0000.png"))
    assert np.array_equal(a.test.x[0].permute(1, 2, 0).numpy(), img)
    assert a.test.y.tolist() == [0, 0, 1, 1, 2, 2]


def test_cifar10_from_jpeg_tarballs(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", list(CIFAR10_CLASSES), {"train": 3, "test": 1}, fmt="JPEG")
    tars = write_tarballs(tree, tmp_path / "cifar10")
    data = load_dataset("cifar10", tars, val_fraction=0.0)
    assert data.classes == CIFAR10_CLASSES
    assert (len(data.train), len(data.test)) == (30, 10)
    assert data.test.y.tolist() == list(range(10))
    img = np.asarray(Image.open(tree / "test" / "bird" / "0000.jpg").convert("RGB"))
    assert np.array_equal(data.test.x[2].permute(1, 2, 0).numpy(), img)  # same decoder, same pixels


def test_grayscale_folder_and_single_tarball(tmp_path: Path) -> None:
    root = tmp_path / "gray"
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("a", "b"):
            d = root / "data" / split / cls
            d.mkdir(parents=True)
            for k in range(n):
                (d / f"{k}.png").write_bytes(_image_bytes(k, "PNG", (8, 8), mode="L"))
    tar = tmp_path / "all.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(root / "data", arcname="data")  # one archive holding data/train/... and data/test/...
    data = load_dataset("folder", tar, val_fraction=0.0)
    assert data.input_shape == (1, 8, 8) and (len(data.train), len(data.test)) == (6, 2)


def test_mixed_sizes_need_a_resolution(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", ["a", "b"], {"train": 2, "test": 1})
    (tree / "train" / "a" / "big.png").write_bytes(_image_bytes(5, "PNG", (40, 36)))
    with pytest.raises(DataError, match="different sizes.*resolution"):
        load_dataset("folder", tree)
    data = load_dataset("folder", tree, resolution=32, val_fraction=0.0)
    assert data.native_shape == (3, 32, 32) and len(data.train) == 5


def test_cache_hit_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = write_tree(tmp_path / "t", ["a", "b"], {"train": 3, "test": 1})
    tars = write_tarballs(tree, tmp_path / "tars")
    first = load_dataset("folder", tars)
    cached = list(cache_dir().glob("images-*.npz"))
    assert len(cached) == 1 and cache_dir() == tmp_path / "cache"
    assert not list(cache_dir().glob("*.tmp"))  # written atomically

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(images_mod, "_decode", no_decoding)
    second = load_dataset("folder", tars)
    assert torch.equal(first.train.x, second.train.x) and first.classes == second.classes
    # touching a source file changes the key: decoded again
    tarball = tars / "cifar10-jpeg-test.tar.gz"
    os.utime(tarball, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("folder", tars)


def test_unreadable_cache_is_rebuilt(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", ["a", "b"], {"train": 2, "test": 1})
    load_dataset("folder", tree)
    (path,) = cache_dir().glob("images-*.npz")
    path.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="unreadable dataset cache"):
        data = load_dataset("folder", tree)
    assert len(data.test) == 2


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_splits() -> None:
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=1)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert len(a.test) == 359 and len(a.val) == 143
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10 and a.train.x.dtype == torch.float32
    assert float(a.train.x.min()) >= 0 and float(a.train.x.max()) <= 1
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.val.x, b.val.x)
    assert not a.augment  # crops and flips would change what a digit means


# ---------------------------------------------------------------------------------------------
# batching and augmentation


def test_batches_normalize_resize_and_order() -> None:
    data = load_dataset("digits")
    xs, ys = zip(*data.batches("train", 100), strict=True)
    x = torch.cat(xs)
    assert x.shape == (len(data.train), 1, 8, 8) and torch.equal(torch.cat(ys), data.train.y)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1) < 1e-3
    assert [len(b[1]) for b in data.batches("train", 500, drop_last=True)] == [500, 500]
    big = next(data.with_resolution(32).batches("test", 7, channels_last=True))[0]
    assert big.shape == (7, 1, 32, 32) and big.is_contiguous(memory_format=torch.channels_last)
    assert data.with_resolution(32).input_shape == (1, 32, 32)


def test_shuffle_and_augment_seeded(tmp_path: Path) -> None:
    data = load_dataset("cifar10", write_cifar10(tmp_path))

    def run(seed: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return [x for x, _ in data.batches("train", 32, shuffle=True, augment=True, generator=g)]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    assert a[0].dtype == torch.float32 and a[0].shape == (32, 3, 32, 32)


def test_random_crop_matches_reference() -> None:
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = random_crop(x, 4, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    oy, ox = torch.randint(0, 9, (6,), generator=g), torch.randint(0, 9, (6,), generator=g)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8])
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_flip_is_a_mirror_or_identity() -> None:
    x = torch.arange(64 * 3 * 4 * 5, dtype=torch.float32).reshape(64, 3, 4, 5)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=0)
    flipped = [bool(torch.equal(o, xi.flip(2))) for o, xi in zip(out, x, strict=True)]
    same = [bool(torch.equal(o, xi)) for o, xi in zip(out, x, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 10 < sum(flipped) < 54  # about half


def test_channel_stats_float_and_uint8_agree() -> None:
    x = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    m8, s8 = channel_stats(x)
    mf, sf = channel_stats(x.float() / 255)
    assert np.allclose(m8, mf, atol=1e-6) and np.allclose(s8, sf, atol=1e-6)


def test_batches_rejects_wrong_stats() -> None:
    data = load_dataset("digits")
    with pytest.raises(DataError, match="one per channel"):
        next(batches(data.train, 8, mean=(0.5, 0.5, 0.5), std=(1, 1, 1)))


# ---------------------------------------------------------------------------------------------
# errors: one DataError naming the path and the problem


def _corrupt_pickle(folder: Path) -> None:
    (folder / "data_batch_2").write_bytes(b"\x80\x04 this is not a pickle")


def _evil_pickle(folder: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))


def _bad_shape(folder: Path) -> None:
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))


def _bad_labels(folder: Path) -> None:
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))


@pytest.mark.parametrize(("damage", "match"), [
    (lambda f: (f / "data_batch_3").unlink(), r"data_batch_3: missing file"),
    (_corrupt_pickle, r"data_batch_2: corrupt"),
    (_evil_pickle, r"data_batch_2: corrupt.*refusing to load posix.system"),
    (_bad_shape, r"data_batch_2: 'data' must be N x 3072"),
    (_bad_labels, r"test_batch: labels must lie in 0..9"),
])
def test_broken_cifar_batches(tmp_path: Path, damage: object, match: str) -> None:
    folder = write_cifar10(tmp_path)
    damage(folder)  # type: ignore[operator]
    with pytest.raises(DataError, match=match) as info:
        load_dataset("cifar10", folder)
    assert isinstance(info.value, XbarforgeError) and "\n" not in str(info.value)


def test_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="needs a root folder"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        load_dataset("cifar10", tmp_path / "nowhere")
    with pytest.raises(DataError, match="no cifar10 data found"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match=r"val_fraction must be in \[0, 1\)"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(DataError, match="expected train/ and test/"):
        load_dataset("folder", tmp_path)


def test_folder_errors(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", ["a", "b", "c"], {"train": 2, "test": 1})
    with pytest.raises(DataError, match="cifar10 needs 10 class folders, found 3"):
        load_dataset("cifar10", tree)
    (tree / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"train/empty: class folder has no images"):
        load_dataset("folder", tree)
    (tree / "train" / "empty").rmdir()
    (tree / "test" / "d").mkdir()
    (tree / "test" / "d" / "x.png").write_bytes(_image_bytes(0, "PNG"))
    with pytest.raises(DataError, match="test/d is not a class of the train split"):
        load_dataset("folder", tree)
    (tree / "test" / "d" / "x.png").write_bytes(b"garbage")
    (tree / "test" / "d").rename(tree / "test" / "a2")
    (tree / "train" / "a").rename(tree / "train" / "a2")
    with pytest.raises(DataError, match=r"x.png: cannot decode image"):
        load_dataset("folder", tree)
    notest = write_tree(tmp_path / "n", ["a"], {"train": 1})
    with pytest.raises(DataError, match="no test/ folder"):
        load_dataset("folder", notest)


def test_tarball_errors(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", ["a", "b"], {"train": 2, "test": 1})
    tars = write_tarballs(tree, tmp_path / "tars")
    blob = (tars / "cifar10-jpeg-train.tar.gz").read_bytes()
    (tars / "cifar10-jpeg-train.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cifar10-jpeg-train.tar.gz: corrupt or unreadable archive"):
        load_dataset("folder", tars)
    (tree / "train" / "c").mkdir()
    tars2 = write_tarballs(tree, tmp_path / "tars2")
    with pytest.raises(DataError, match=r"class folder train/c has no images"):
        load_dataset("folder", tars2)
    only = tmp_path / "only"
    only.mkdir()
    with tarfile.open(only / "x-train.tar.gz", "w:gz") as tf:
        tf.add(tree / "train" / "a", arcname="train/a")
    with pytest.raises(DataError, match="no test images"):
        load_dataset("folder", only)


# ---------------------------------------------------------------------------------------------
# the real CIFAR-10 JPEG copy


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="../shared/data/cifar10 not present")
def test_real_cifar10_jpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    if USER_CACHE is None:  # decode once per machine, not once per test run
        monkeypatch.delenv("XBARFORGE_CACHE")
    else:
        monkeypatch.setenv("XBARFORGE_CACHE", USER_CACHE)
    data = load_dataset("cifar10", SHARED_CIFAR)
    assert (len(data.train), len(data.val), len(data.test)) == (45000, 5000, 10000)
    assert data.classes == CIFAR10_CLASSES
    assert sorted(set(data.train.y.tolist())) == list(range(10))
    assert torch.bincount(data.test.y).tolist() == [1000] * 10
    assert 0.4 < data.mean[0] < 0.55 and 0.2 < data.std[0] < 0.3
    start = time.perf_counter()
    load_dataset("cifar10", SHARED_CIFAR)
    assert time.perf_counter() - start < 5  # the second load comes from the cache


def test_limited_bundle_draws_a_seeded_random_subset_of_every_split() -> None:
    from xbarforge.data import load_dataset

    data = load_dataset("digits")
    small = data.limited(50)
    assert (len(small.train), len(small.val), len(small.test)) == (50, min(50, len(data.val)), 50)
    assert len(set(small.train.y.tolist())) == 10  # a random draw keeps every class (the first 50 would not)
    again = data.limited(50)
    assert torch.equal(small.train.x, again.train.x) and small.mean == data.mean
    assert data.limited(None) is data and data.limited(10**9).train is data.train
    with pytest.raises(DataError):
        data.limited(0)

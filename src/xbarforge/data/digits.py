"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): a dataset that needs no files,
for quick checks and tests."""

from __future__ import annotations

import numpy as np

from xbarforge.data.bundle import stratified_holdout

TEST_FRACTION = 0.2
TEST_SEED = 0  # fixed, so the test split never depends on the run's seed


def load_digits_arrays() -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays train_x/train_y/test_x/test_y (float32 1x8x8 in [0, 1], int64), 80/20 stratified, fixed seed."""
    from sklearn.datasets import load_digits

    ds = load_digits()
    x = (np.asarray(ds.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(ds.target, dtype=np.int64)
    train, test = stratified_holdout(y, TEST_FRACTION, TEST_SEED)
    arrays = {"train_x": x[train], "train_y": y[train], "test_x": x[test], "test_y": y[test]}
    return arrays, [str(i) for i in range(10)]

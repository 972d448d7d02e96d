"""Supernet training (sandwich rule, resume), sub-net scoring and the accuracy predictor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from xbarforge.data import load_dataset
from xbarforge.errors import XbarforgeError
from xbarforge.search.predictor import AccuracyPredictor, arch_features
from xbarforge.search.registry import create_space
from xbarforge.search.space import declare_space
from xbarforge.search.supernet import head, load_supernet, recalibrate_bn, subnet_accuracy, train_supernet


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits").with_resolution(32)
    return head(head(data, "train", 320), "val", 100)


@pytest.fixture(scope="module")
def space():
    return create_space("mbv3-small", resolution=32, num_classes=10, in_channels=1)


def test_head_draws_every_class(digits):
    assert len(digits.train) == 320 and len(torch.unique(digits.train.y)) == 10
    assert len(torch.unique(digits.val.y)) == 10


def test_train_resume_equals_uninterrupted(tmp_path, digits, space, one_thread):
    kw = dict(epochs=2, batch_size=32, random_subnets=1, seed=3, progress=False)
    full = train_supernet(space, digits, out_dir=tmp_path / "full", **kw)
    part = tmp_path / "part"
    assert torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["epoch"] == 2
    # emulate the interruption by training one epoch of the 2-epoch schedule, then resuming
    import xbarforge.search.supernet as sn

    calls = {"n": 0}
    orig = sn.epoch_generator

    def stop_after_one(seed, epoch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return orig(seed, epoch)

    sn.epoch_generator = stop_after_one
    try:
        with pytest.raises(KeyboardInterrupt):
            train_supernet(space, digits, out_dir=part, **kw)
    finally:
        sn.epoch_generator = orig
    resumed = train_supernet(space, digits, out_dir=part, **kw)
    assert len(resumed.history) == 2
    for (k, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    sp, net, info = load_supernet(part)
    assert sp.to_dict() == space.to_dict() and info["meta"]["dataset"] == "digits"
    with pytest.raises(XbarforgeError, match="holds a run with other settings"):
        train_supernet(space, digits, out_dir=part, **{**kw, "lr": 0.05})


def test_training_improves_largest_and_smallest(tmp_path, digits, space, one_thread):
    res = train_supernet(space, digits, epochs=3, batch_size=32, random_subnets=1, progress=False)
    first, last = res.history[0], res.history[-1]
    assert last["val_accuracy_largest"] > 0.3 and last["val_accuracy_smallest"] > 0.2
    assert last["train_loss_largest"] < first["train_loss_largest"]


def test_wrong_data_shape_is_one_line(digits):
    sp = create_space("mbv3-small", resolution=64, in_channels=1)
    with pytest.raises(XbarforgeError, match="expects"):
        train_supernet(sp, digits, epochs=1, progress=False)


def test_recalibration_uses_the_subnets_own_statistics(digits, space):
    torch.manual_seed(0)
    net = space.supernet()
    arch = space.decode(space.smallest())
    sub = recalibrate_bn(net.export(arch), digits, images=200)
    bn = sub.features[0][1]
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    acc = subnet_accuracy(net, space, arch, digits, calibration_images=200)
    assert 0.0 <= acc["accuracy"] <= 1.0 and acc["n"] == len(digits.val)


def test_predictor_ranks_a_known_function():
    sp = declare_space("toy", {f"g{i}": list(range(4)) for i in range(6)}, lambda a: torch.nn.Linear(1, 1),
                       input_shape=(1, 1, 1))
    rng = np.random.default_rng(0)
    weights = rng.normal(size=6)
    archs = [sp.decode(sp.sample(rng)) for _ in range(120)]

    def truth(a):
        return float(sum(w * a[f"g{i}"] for i, w in enumerate(weights)) + 0.05 * rng.normal())

    pred = AccuracyPredictor(sp).fit(archs, [truth(a) for a in archs])
    assert pred.report["holdout_spearman"] > 0.9
    assert pred.report["model"] in ("ridge", "kernel-ridge")
    assert len(arch_features(sp, archs[0])) == 24
    with pytest.raises(XbarforgeError, match="at least 10"):
        AccuracyPredictor(sp).fit(archs[:5], [0.1] * 5)


def test_predictor_uses_space_features(space):
    a = space.decode(space.largest())
    assert len(arch_features(space, a)) == 4 * 4 * 7
    assert dataclasses.is_dataclass(AccuracyPredictor)

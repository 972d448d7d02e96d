"""Search spaces: genome encoding, the MobileNetV3 supernet, its fast LayerGraph, user spaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xbarforge.graph.capture import capture
from xbarforge.search.mbv3 import BLOCK_CHOICES, MBV3Space, stage_blocks
from xbarforge.search.registry import create_space, list_spaces
from xbarforge.search.space import SpaceError, declare_space


def _mvm(graph):
    return [(x.name, x.kind, x.in_shape, x.out_shape, x.in_channels, x.out_channels, x.kernel, x.stride, x.padding,
             x.groups) for x in graph.mvm_layers]


@pytest.fixture(scope="module")
def space() -> MBV3Space:
    return create_space("mbv3-small", resolution=32)


def test_registry_lists_builtin_spaces():
    assert {"mbv3-small", "nax-resnet20"} <= set(list_spaces())
    with pytest.raises(SpaceError, match="unknown search space 'nope'"):
        create_space("nope")


def test_genes_cover_kernel_expand_depth(space):
    assert len(space.genes) == 16
    assert space.cardinalities == [9, 9, 10, 10] * 4
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    assert all(b == [(7, 6)] * 4 for b in stage_blocks(largest))
    assert all(b == [(3, 3)] * 2 for b in stage_blocks(smallest))


def test_encode_decode_round_trip_and_bad_genomes(space):
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = space.sample(rng)
        assert space.encode(space.decode(g)) == g
    with pytest.raises(SpaceError, match="genome has 3 genes"):
        space.decode([0, 0, 0])
    with pytest.raises(SpaceError, match="index 9 not in 0..8"):
        space.decode([9] + [0] * 15)
    with pytest.raises(SpaceError, match="lacks gene"):
        space.encode({})


def test_no_dead_genes(space):
    """Every single-gene change of any genome changes the network that runs."""
    rng = np.random.default_rng(1)
    for _ in range(10):
        g = space.sample(rng)
        base = stage_blocks(space.decode(g))
        for i, card in enumerate(space.cardinalities):
            for v in range(card):
                if v == g[i]:
                    continue
                h = list(g)
                h[i] = v
                assert stage_blocks(space.decode(h)) != base, (i, v)


def test_depth_is_two_to_four(space):
    rng = np.random.default_rng(2)
    depths = set()
    for _ in range(200):
        depths.update(len(b) for b in stage_blocks(space.decode(space.sample(rng))))
    assert depths == {2, 3, 4}


def test_layer_graph_equals_capture(space):
    rng = np.random.default_rng(3)
    genomes = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(6)]
    for g in genomes:
        arch = space.decode(g)
        assert _mvm(space.layer_graph(arch)) == _mvm(capture(space.build(arch), space.input_shape))


@pytest.mark.parametrize("name", ["mbv3-small", "nax-resnet20"])
def test_export_equals_supernet_forward(name):
    space = create_space(name, resolution=32)
    torch.manual_seed(0)
    net = space.supernet().eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32)
    rng = np.random.default_rng(4)
    for g in [space.largest(), space.smallest(), space.sample(rng), space.sample(rng)]:
        arch = space.decode(g)
        sub = net.export(arch).eval()
        net.set_active(arch)
        with torch.no_grad():
            assert torch.allclose(net(x), sub(x), atol=1e-5)


def test_export_shares_weights_by_slicing(space):
    net = space.supernet()
    arch = space.decode(space.smallest())
    sub = net.export(arch)
    big = net.features[2].block[1][0].weight  # first elastic block's 7x7 depthwise weights
    small = sub.features[2].block[1][0].weight
    assert small.shape[-1] == 3 and torch.equal(small, big[: small.shape[0], :, 2:5, 2:5])


def test_training_sampler_spreads_depth(space):
    rng = np.random.default_rng(5)
    depths = [len(b) for _ in range(300) for b in stage_blocks(space.sample_training(rng))]
    counts = np.bincount(depths)[2:]
    assert counts.min() > 0.25 * len(depths)  # each depth about a third, not 1:2:... as genomes give


def test_features_ignore_which_slot_skips(space):
    a = space.decode(space.smallest())
    a["stage1.block3"], a["stage1.block4"] = list(BLOCK_CHOICES[4]), None
    b = dict(a)
    b["stage1.block3"], b["stage1.block4"] = None, list(BLOCK_CHOICES[4])
    assert space.features(a) == space.features(b)
    assert space.encode(a) != space.encode(b)


def test_resolution_below_32_is_refused():
    with pytest.raises(SpaceError, match="resolution 16"):
        create_space("mbv3-small", resolution=16)


def test_user_declared_space():
    def build(arch):
        layers = [nn.Flatten(), nn.Linear(64, arch["width"]), nn.ReLU()]
        for _ in range(arch["depth"] - 1):
            layers += [nn.Linear(arch["width"], arch["width"]), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(arch["width"], 10))

    sp = declare_space("mlp", {"width": [16, 32, 64], "depth": [1, 2, 3]}, build, input_shape=(1, 8, 8))
    assert sp.cardinalities == [3, 3]
    arch = sp.decode([2, 1])
    assert arch == {"width": 64, "depth": 2}
    assert len(sp.layer_graph(arch).mvm_layers) == 3
    assert sp.crossbar_sizes(arch) is None
    with pytest.raises(SpaceError, match="declared twice"):
        from xbarforge.search.space import FunctionSpace, Gene

        FunctionSpace("x", [Gene("a", (1,)), Gene("a", (2,))], build, (1, 8, 8))
    with pytest.raises(SpaceError, match="not an nn.Module"):
        declare_space("bad", {"w": [1]}, lambda a: 3).build({"w": 1})

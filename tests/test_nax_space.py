"""The NAX space: kernel x crossbar size (or skip) per conv, its supernet and ResNet-20 initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xbarforge.errors import XbarforgeError
from xbarforge.graph.capture import capture
from xbarforge.search.registry import create_space
from xbarforge.search.space import SpaceError
from xbarforge.train.modelio import read_model_file, save_model
from xbarforge.zoo import create_model


def _mvm(graph):
    return [(x.name, x.kind, x.in_shape, x.out_shape, x.in_channels, x.out_channels, x.kernel, x.stride, x.padding,
             x.groups) for x in graph.mvm_layers]


@pytest.fixture(scope="module")
def space():
    return create_space("nax-resnet20")


def test_genes(space):
    assert len(space.genes) == 22  # 18 convs + stem, 2 projections, classifier
    cards = dict(zip([g.name for g in space.genes], space.cardinalities, strict=True))
    assert cards["layer1.0.conv1"] == 13 and cards["layer2.0.conv1"] == 12 and cards["fc"] == 4
    assert sum(1 for g in space.genes if g.options[0] is None) == 14  # the convs whose block keeps its shape


def test_no_dead_genes(space):
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = space.sample(rng)
        base = space.decode(g)
        view = (_mvm(space.layer_graph(base)), space.crossbar_sizes(base))
        for i, card in enumerate(space.cardinalities):
            for v in range(card):
                if v != g[i]:
                    h = list(g)
                    h[i] = v
                    arch = space.decode(h)
                    assert (_mvm(space.layer_graph(arch)), space.crossbar_sizes(arch)) != view, (i, v)


def test_layer_graph_equals_capture_and_sizes_cover_it(space):
    rng = np.random.default_rng(1)
    archs = [space.decode(space.largest()), space.decode(space.smallest()), space.baseline_arch(32)]
    archs += [space.decode(space.sample(rng)) for _ in range(6)]
    for arch in archs:
        graph = space.layer_graph(arch)
        assert _mvm(graph) == _mvm(capture(space.build(arch), space.input_shape))
        assert set(space.crossbar_sizes(arch)) == {layer.name for layer in graph.mvm_layers}


def test_smallest_skips_every_skippable_block(space):
    graph = space.layer_graph(space.decode(space.smallest()))
    names = [layer.name for layer in graph.mvm_layers]
    assert names == ["conv1", "layer2.0.downsample.0", "layer2.0.conv1", "layer2.0.conv2", "layer3.0.downsample.0",
                     "layer3.0.conv1", "layer3.0.conv2", "fc"]


def test_init_from_a_trained_resnet20(tmp_path, space):
    torch.manual_seed(1)
    r20 = create_model("resnet20").eval()
    for m in r20.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
    path = save_model(tmp_path / "r20.pt", r20, arch={"zoo": "resnet20", "kwargs": {}})
    net = space.supernet()
    space.init_from(read_model_file(path)["state_dict"], path)(net)
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = r20(x)
        for size in (16, 128):
            assert torch.allclose(net.export(space.baseline_arch(size)).eval()(x), ref, atol=1e-5)
        net.set_active(space.decode(space.largest()))  # 7x7 kernels with a zero ring: the same network
        assert torch.allclose(net(x), ref, atol=1e-5)
    other = save_model(tmp_path / "r32.pt", create_model("resnet32"), arch={"zoo": "resnet32", "kwargs": {}})
    with pytest.raises(XbarforgeError, match="not a ResNet-20 \\(has 'layer1.3"):
        space.init_from(read_model_file(other)["state_dict"], other)(space.supernet())


def test_baselines_and_bad_sizes(space):
    name, graph, sizes = space.baseline()
    assert name == "resnet20" and set(sizes) == {f"homogeneous-{s}" for s in (16, 32, 64, 128)}
    assert all(set(v.values()) == {int(k.split("-")[1])} for k, v in sizes.items())
    assert len(graph.mvm_layers) == 22
    with pytest.raises(SpaceError, match="crossbar size 48"):
        space.baseline_arch(48)


def test_seeds_are_the_extremes_and_the_homogeneous_baselines(space):
    seeds = space.seeds()
    assert seeds[:2] == [space.largest(), space.smallest()]
    assert [space.decode(g) for g in seeds[2:]] == [space.baseline_arch(s) for s in (16, 32, 64, 128)]

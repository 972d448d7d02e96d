"""Tests for the model zoo: every model builds, runs, traces with torch.fx, and has the right size."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from xbarforge.errors import ModelNotFoundError, XbarforgeError
from xbarforge.zoo import create_model, default_input_shape, list_models, register_model

ALL_MODELS = list_models()
IMAGENET_STYLE = [n for n in ALL_MODELS if default_input_shape(n) == (3, 224, 224)]

EXPECTED = {
    "hybrid_vit",
    "vit_cifar",
    "vit_tiny",
    "densenet121",
    "densenet40",
    "lenet5",
    "mnsim_alexnet",
    "mnsim_lenet",
    "mnsim_resnet18",
    "mnsim_vgg16",
    "mnsim_vgg8",
    "mobilenetv2",
    "mobilenetv2_cifar",
    "mobilenetv3_large",
    "mobilenetv3_small",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet50",
    "resnet56",
    "squeezenet1_0",
    "squeezenet1_1",
    "vgg11",
    "vgg16",
    "vgg8",
}

# Reference parameter counts with 1000 classes (the standard ImageNet definitions).
PARAMS_1000 = {
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenetv2": 3_504_872,
    "mobilenetv3_small": 2_542_856,
    "mobilenetv3_large": 5_483_032,
    "densenet121": 7_978_856,
    "vgg11": 132_868_840,
    "vgg16": 138_365_992,
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(name: str, **kwargs: object) -> nn.Module:
    """Build on the meta device: shapes only, no memory or init cost (for parameter counting)."""
    with torch.device("meta"):
        return create_model(name, **kwargs)  # type: ignore[arg-type]


def _check_forward_and_trace(model: nn.Module, shape: tuple[int, int, int]) -> None:
    model.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        eager = model(x)
        assert eager.shape == (2, 10)
        assert torch.isfinite(eager).all()
        traced = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(traced(x), eager)


def test_registry_lists_all_models() -> None:
    assert set(ALL_MODELS) == EXPECTED
    assert ALL_MODELS == sorted(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_size_forward_and_trace(name: str) -> None:
    torch.manual_seed(0)
    shape = default_input_shape(name)
    model = create_model(name, num_classes=10)
    assert model.input_shape == shape
    assert model.zoo_name == name
    _check_forward_and_trace(model, shape)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_64x64_forward_and_trace(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, input_size=(3, 64, 64))
    assert model.input_shape == (3, 64, 64)
    _check_forward_and_trace(model, (3, 64, 64))


@pytest.mark.parametrize("name", IMAGENET_STYLE)
def test_imagenet_models_run_at_32x32(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_default_input_shapes() -> None:
    for name in ("resnet20", "resnet32", "resnet56", "vgg8", "densenet40"):
        assert default_input_shape(name) == (3, 32, 32)
    assert default_input_shape("lenet5") == (1, 32, 32)
    for name in ("squeezenet1_0", "squeezenet1_1", "mobilenetv2", "resnet18", "resnet50", "vgg16"):
        assert default_input_shape(name) == (3, 224, 224)


@pytest.mark.parametrize(("name", "expected"), sorted(PARAMS_1000.items()))
def test_reference_parameter_counts(name: str, expected: int) -> None:
    assert _n_params(_meta_model(name, num_classes=1000, input_size=224)) == expected


def test_cifar_parameter_counts() -> None:
    # Option-A ResNet-20 has 0.27M parameters; the two projection shortcuts add 2,752.
    assert 260_000 <= _n_params(_meta_model("resnet20")) <= 300_000
    assert _n_params(_meta_model("resnet20")) == 272_474
    assert _n_params(_meta_model("resnet56")) == 855_770
    # DenseNet (L=40, k=12) is 1.0M in Huang et al. 2017, Table 2.
    assert _n_params(_meta_model("densenet40")) == 1_019_722
    # LeNet-5 at 1x32x32: C1 156, C3 2,416, C5 48,120, F6 10,164, output 850.
    assert _n_params(_meta_model("lenet5")) == 61_706


def test_squeezenet1_1_layout() -> None:
    model = create_model("squeezenet1_1", input_size=64)
    stem = model.features[0]
    assert isinstance(stem, nn.Conv2d) and stem.out_channels == 64 and stem.kernel_size == (3, 3)
    assert stem(torch.randn(1, 3, 64, 64)).shape[-2:] == (31, 31)
    fire = model.features[3]
    assert [n for n, _ in fire.named_children() if not n.endswith("activation")] == [
        "squeeze",
        "expand1x1",
        "expand3x3",
    ]
    convs = [n.target for n in torch.fx.symbolic_trace(fire).graph.nodes if n.op == "call_module"]
    assert [c for c in convs if not c.endswith("activation")] == ["squeeze", "expand1x1", "expand3x3"]
    assert model.classifier[1].in_channels == 512


def test_squeezenet1_0_stem() -> None:
    stem = _meta_model("squeezenet1_0").features[0]
    assert (stem.out_channels, stem.kernel_size, stem.stride) == (96, (7, 7), (2, 2))


def test_mobilenet_last_convs_and_heads() -> None:
    small = _meta_model("mobilenetv3_small")
    large = _meta_model("mobilenetv3_large")
    assert small.features[-1][0].out_channels == 576 and small.classifier[0].out_features == 1024
    assert large.features[-1][0].out_channels == 960 and large.classifier[0].out_features == 1280
    assert any(isinstance(m, nn.Hardsigmoid) for m in small.modules())
    assert _meta_model("mobilenetv2").classifier[-1].in_features == 1280


def test_mobilenetv2_cifar_stem() -> None:
    default = _meta_model("mobilenetv2")
    cifar = _meta_model("mobilenetv2", cifar_stem=True)
    assert default.features[0][0].stride == (2, 2)
    assert cifar.features[0][0].stride == (1, 1)
    assert _n_params(default) == _n_params(cifar)
    registered = _meta_model("mobilenetv2_cifar")
    assert registered.features[0][0].stride == (1, 1)
    assert _n_params(registered) == _n_params(cifar)


def test_vgg_heads() -> None:
    assert _meta_model("vgg16").classifier[0].in_features == 512 * 7 * 7
    assert _meta_model("vgg16", input_size=32).classifier[0].in_features == 512
    assert _meta_model("vgg11", input_size=32, head="imagenet").classifier[0].in_features == 25088
    with pytest.raises(XbarforgeError):
        create_model("vgg11", input_size=32, head="huge")
    vgg8 = _meta_model("vgg8")
    widths = [m.out_channels for m in vgg8.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [128, 128, 256, 256, 512, 512]
    assert [m.out_features for m in vgg8.modules() if isinstance(m, nn.Linear)] == [1024, 10]
    assert vgg8.classifier[0].in_features == 8192


def test_densenet_structure() -> None:
    d121 = _meta_model("densenet121")
    assert d121.classifier.in_features == 1024
    d40 = _meta_model("densenet40")
    assert d40.classifier.in_features == 448
    convs = [m for m in d40.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 36 + 2  # stem, 3 blocks x 12 layers, 2 transitions (+ FC = depth 40)


def test_lenet5_channels_and_sizes() -> None:
    torch.manual_seed(0)
    mnist = create_model("lenet5", input_size=28).eval()
    assert mnist.input_shape == (1, 28, 28) and mnist.classifier[0].in_features == 256
    rgb = create_model("lenet5", in_channels=3).eval()
    assert rgb.input_shape == (3, 32, 32)
    with torch.no_grad():
        assert mnist(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(XbarforgeError, match="too small"):
        create_model("lenet5", input_size=8)


def test_num_classes_and_input_size_forms() -> None:
    model = _meta_model("resnet20", num_classes=100)
    assert model.fc.out_features == 100
    assert _meta_model("resnet18", input_size=(48, 64)).input_shape == (3, 48, 64)
    assert _meta_model("resnet18", input_size=(1, 64, 64)).conv1.in_channels == 1
    with pytest.raises(XbarforgeError):
        create_model("resnet18", input_size=(1, 64, 64), in_channels=3)
    with pytest.raises(XbarforgeError):
        create_model("resnet20", num_classes=0)
    with pytest.raises(TypeError):
        create_model("resnet20", no_such_option=True)


def test_unknown_model_raises_with_suggestions() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        create_model("resnet19")
    message = str(info.value)
    assert "\n" not in message
    assert "resnet18" in message
    with pytest.raises(ModelNotFoundError):
        default_input_shape("not_a_model")
    assert isinstance(info.value, XbarforgeError)


def test_names_are_case_insensitive() -> None:
    assert _meta_model("ResNet20").zoo_name == "resnet20"


def test_duplicate_registration_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model
        def resnet18() -> nn.Module:  # pragma: no cover - never called
            return nn.Identity()


def test_weight_init() -> None:
    model = create_model("resnet20")
    bn = model.bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    w = model.conv1.weight
    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
    assert abs(w.std().item() - (2.0 / fan_out) ** 0.5) < 0.05

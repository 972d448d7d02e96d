"""xbarforge.quant fake quantization, QuickAccuracy (post-training) and finetune (quantization-aware)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import xbarforge.quant.finetune as ft
from xbarforge.data import DataBundle, load_dataset
from xbarforge.errors import XbarforgeError
from xbarforge.quant.accuracy import QuickAccuracy, sample_split
from xbarforge.quant.fakequant import (
    ChannelQuant,
    attach,
    calibrate_inputs,
    detach,
    input_quantizers,
    quantize_weight,
)
from xbarforge.train import MODEL_FILE, load_model, train
from xbarforge.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net() -> nn.Module:
    """A small BN conv net for 1x8x8 digits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


LAYERS = ("0", "3", "8")  # the conv/linear layers of tiny_net


def uniform(model: nn.Module, bits: int) -> dict[str, np.ndarray]:
    layers = (m for m in model.named_modules() if isinstance(m[1], nn.Conv2d | nn.Linear))
    return {n: np.full(m.weight.shape[0], bits) for n, m in layers}


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits: DataBundle) -> nn.Module:
    torch.manual_seed(0)
    return train(tiny_net(), digits, epochs=4, seed=0, progress=False, device="cpu").model.eval()


@pytest.fixture(scope="module")
def test_tensors(digits: DataBundle) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = sample_split(digits, "test", None)
    calib, _ = sample_split(digits, "val", 64)
    return x, y, calib


# fake quantization


@pytest.mark.parametrize("clip", ["max", "mse"])
def test_error_halves_per_bit(clip: str) -> None:
    w = torch.randn(32, 300, generator=torch.Generator().manual_seed(0))
    rms = [float((quantize_weight(w, b, clip) - w).square().mean().sqrt()) for b in range(3, 10)]  # type: ignore[arg-type]
    ratios = np.array(rms[:-1]) / np.array(rms[1:])
    assert np.all((ratios > 1.7) & (ratios < 2.6)), ratios


def test_per_channel_bits_honored() -> None:
    w = torch.randn(6, 200, generator=torch.Generator().manual_seed(1))
    bits = np.array([2, 3, 4, 8, 2, 5])
    q = quantize_weight(w, bits)
    for c, b in enumerate(bits):
        values = torch.unique(q[c])
        assert len(values) <= 2 ** int(b) - 1
        step = values.abs().max() / (2 ** (int(b) - 1) - 1)
        assert torch.allclose(values / step, torch.round(values / step), atol=1e-4)
    assert len(torch.unique(q[3])) > 50  # 8 bits: many levels
    assert set(torch.sign(torch.unique(q[0])).tolist()) == {-1.0, 0.0, 1.0}  # 2 bits: ternary
    assert torch.equal(quantize_weight(q, bits), q)  # quantized weights are a fixed point
    with pytest.raises(XbarforgeError, match="at least 2 bits"):
        quantize_weight(w, 1)
    with pytest.raises(XbarforgeError, match="one width per output channel"):
        quantize_weight(w, [4, 4])


def test_channel_quant_parametrization_straight_through() -> None:
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    bits = np.array([2, 4, 6, 8])
    out = ChannelQuant(bits, clip="max")(w)
    assert torch.allclose(out, quantize_weight(w, bits, "max"))
    g = torch.randn_like(w)
    (out * g).sum().backward()
    assert torch.allclose(w.grad, g)  # max clip: nothing saturates, the gradient passes unchanged


def test_attach_detach_and_state_dict() -> None:
    torch.manual_seed(0)
    net = tiny_net()
    float_weights = {n: net.get_submodule(n).weight.detach().clone() for n in LAYERS}
    bits = {"0": np.full(16, 3), "3": np.arange(32) % 7 + 2, "8": np.full(10, 8)}
    attach(net, bits, activation_bits=8)
    keys = set(net.state_dict())
    assert "0.parametrizations.weight.original" in keys and not any("qmax" in k for k in keys)
    assert set(input_quantizers(net)) == set(LAYERS)
    calibrate_inputs(net, torch.rand(20, 1, 8, 8))
    quants = input_quantizers(net)
    assert not quants["0"].signed and quants["0"].top is not None  # images in [0, 1]: unsigned
    assert quants["3"].top is not None and not quants["3"].signed  # after ReLU
    out = net(torch.rand(3, 1, 8, 8))
    assert out.shape == (3, 10)
    detach(net, bake=False)
    assert not input_quantizers(net)
    for n in LAYERS:
        assert torch.equal(net.get_submodule(n).weight, float_weights[n])
    attach(net, bits)
    detach(net, bake=True)
    for n in LAYERS:
        assert torch.allclose(net.get_submodule(n).weight, quantize_weight(float_weights[n], bits[n]))
    with pytest.raises(XbarforgeError, match="not a conv/linear"):
        attach(net, {"1": np.full(16, 4)})
    with pytest.raises(XbarforgeError, match="output channels"):
        attach(net, {"0": np.full(15, 4)})


def test_input_quant_levels() -> None:
    lin = nn.Linear(50, 2)
    attach(lin, {"": np.full(2, 8)}, activation_bits=3)
    seen: list[torch.Tensor] = []
    lin.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    calibrate_inputs(lin, torch.randn(10, 50))  # negative inputs: signed, 2**2 - 1 = 3 magnitudes
    seen.clear()
    lin(torch.randn(10, 50))
    assert input_quantizers(lin)[""].signed and len(torch.unique(seen[-1])) <= 7


# QuickAccuracy


def test_ptq_8bit_equals_float_2bit_worse(trained: nn.Module, test_tensors: tuple[torch.Tensor, ...]) -> None:
    x, y, calib = test_tensors
    qa = QuickAccuracy(trained, x, y, calib, activation_bits=8, device="cpu")
    fa = qa.float_accuracy()
    assert fa > 0.85
    assert abs(qa.accuracy(uniform(trained, 8)) - fa) <= 0.01
    assert qa.accuracy(uniform(trained, 2)) < fa - 0.1
    assert set(qa.ranges) == set(LAYERS)
    assert qa.ranges["0"][1] and not qa.ranges["3"][1]  # normalized images are signed, ReLU outputs not


def test_quick_accuracy_keeps_float_weights(trained: nn.Module, test_tensors: tuple[torch.Tensor, ...]) -> None:
    x, y, calib = test_tensors
    before = copy.deepcopy(trained.state_dict())
    qa = QuickAccuracy(trained, x, y, calib, device="cpu", batch_size=100)
    fa = qa.float_accuracy()
    rng = np.random.default_rng(0)
    mixed = {n: rng.integers(2, 9, size=len(b)) for n, b in uniform(trained, 4).items()}
    a1 = qa.accuracy(mixed)
    qa.accuracy(uniform(trained, 2))
    assert qa.accuracy(mixed) == a1  # cached clips and weight reloads give the same answer
    assert qa.accuracy({}) == fa  # nothing quantized: the float model again
    for n in LAYERS:
        assert torch.equal(qa.model.get_submodule(n).weight, trained.get_submodule(n).weight)
        assert torch.allclose(qa.quantized_weight(n, mixed[n]), quantize_weight(trained.get_submodule(n).weight,
                                                                                 mixed[n]), atol=1e-6)
    after = trained.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(XbarforgeError, match="not a conv/linear"):
        qa.accuracy({"nope": np.full(3, 4)})


def test_from_bundle_resnet20_shapes(digits: DataBundle) -> None:
    model = create_model("resnet20", num_classes=10, input_size=(8, 8), in_channels=1)
    qa = QuickAccuracy.from_bundle(model, digits, images=60, calibration=20, device="cpu")
    assert len(qa.x) == 60 and len(set(qa.y.tolist())) > 5  # a random draw, not the first class
    assert 0.0 <= qa.accuracy(qa.uniform(4)) <= 1.0
    assert len(qa.uniform(4)) == sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules())


# fine-tuning


def test_finetune_3bit_and_resume(trained: nn.Module, digits: DataBundle, test_tensors: tuple[torch.Tensor, ...],
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, calib = test_tensors
    bits = uniform(trained, 3)
    ptq = QuickAccuracy(trained, x, y, sample_split(digits, "val", 256)[0], device="cpu").accuracy(bits)
    out = tmp_path / "ft"
    net, metrics = ft.finetune(trained, digits, bits, 8, epochs=1, out_dir=out, progress=False, device="cpu")
    assert metrics["test_accuracy"] >= ptq - 0.01, (metrics, ptq)
    assert metrics["val_accuracy"] >= metrics["val_accuracy_ptq"] - 0.01
    assert not metrics["resumed"] and len(metrics["history"]) == 1
    # the saved model is the plain network with quantized weights
    loaded, meta = load_model(out / MODEL_FILE, device="cpu", model=tiny_net())
    assert meta["quantization"]["bits"]["3"] == [[0, 32, 3]]
    for n in LAYERS:
        w = loaded.get_submodule(n).weight.detach()
        assert torch.equal(w, net.get_submodule(n).weight.detach().contiguous())
        assert max(len(torch.unique(row)) for row in w.reshape(w.shape[0], -1)) <= 7
        assert torch.allclose(quantize_weight(w, 3), w, atol=1e-6)
    assert not any(k.endswith("original") for k in loaded.state_dict())
    # a finished run returns at once, without training
    monkeypatch.setattr(ft, "train", lambda *a, **k: pytest.fail("trained again"))
    again, m2 = ft.finetune(trained, digits, bits, 8, epochs=1, out_dir=out, progress=False, device="cpu")
    assert m2["resumed"] and m2["test_accuracy"] == metrics["test_accuracy"]
    assert torch.equal(again.get_submodule("3").weight, loaded.get_submodule("3").weight)
    with pytest.raises(XbarforgeError, match=r"holds a run with other settings \(policy_sha256: "):
        ft.finetune(trained, digits, uniform(trained, 4), 8, epochs=1, out_dir=out, progress=False, device="cpu")
    monkeypatch.undo()
    # interrupted after training (no finetune.json): train resumes from its checkpoint, no epoch more
    (out / ft.RESULT_FILE).unlink()
    third, m3 = ft.finetune(trained, digits, bits, 8, epochs=1, out_dir=out, progress=False, device="cpu")
    assert m3["resumed_from"] == 1 and m3["test_accuracy"] == metrics["test_accuracy"]
    assert torch.equal(third.get_submodule("0").weight, net.get_submodule("0").weight)


def test_finetune_recovers_2bit(trained: nn.Module, digits: DataBundle) -> None:
    _, metrics = ft.finetune(trained, digits, uniform(trained, 2), 8, epochs=1, progress=False, device="cpu")
    assert metrics["val_accuracy"] > metrics["val_accuracy_ptq"] + 0.2  # measured: 52 % -> 90 %


def test_finetune_zero_epochs_is_ptq(trained: nn.Module, digits: DataBundle) -> None:
    net, metrics = ft.finetune(trained, digits, uniform(trained, 8), None, epochs=0, progress=False, device="cpu")
    assert metrics["val_accuracy"] == metrics["val_accuracy_ptq"] and metrics["history"] == []
    assert torch.allclose(net.get_submodule("8").weight, quantize_weight(trained.get_submodule("8").weight, 8))

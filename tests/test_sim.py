"""The crossbar simulator: ideal chips reproduce the quantized model, each non-ideality moves the
output in the direction and by the amount its model says, fast and exact modes agree."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xbarforge.compiler.compile import compile_graph, min_crossbars
from xbarforge.compiler.execute import encode, quantize_weight, slice_coefficients
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware import load_hardware, override
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim import Simulator, apply_setting, hardware_aware, remove_hardware_aware, simulate_accuracy, sweep
from xbarforge.sim.analog import digit_square_sum
from xbarforge.sim.device import off_level, program_cells
from xbarforge.zoo import create_model, default_input_shape, list_models

pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
    return model.eval()


def ideal(preset: str, **extra: object) -> HardwareSpec:
    """A preset with ideal devices and a lossless fixed-point ADC (enough bits, one-level step)."""
    hw = load_hardware(preset)
    settings = {"crossbar.g_off_us": 1e-7, "nonideal.adc_range": "full_scale", "precision.adc_bits": 16}
    settings.update(extra)  # type: ignore[arg-type]
    for k, v in settings.items():
        hw = override(hw, k, v)
    return hw


def with_settings(hw: HardwareSpec, **settings: object) -> HardwareSpec:
    for k, v in settings.items():
        hw = override(hw, k.replace("__", "."), v)
    return hw


class Small(nn.Module):
    """Conv (signed input), depthwise, pointwise, linear: every form and input sign."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.pw = nn.Conv2d(12, 150, 1)
        self.fc = nn.Linear(150, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.c1(x)))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.fc(x.mean((2, 3)))


def per_layer_errors(sim: Simulator, x: torch.Tensor, modes: tuple[str, ...] = ("fast", "exact")) -> dict[str, float]:
    """Largest |mode - quantized| / max|quantized| over layers, each layer fed the same input."""
    worst = dict.fromkeys(modes, 0.0)

    def fn(layer: Layer, inp: torch.Tensor) -> torch.Tensor:
        a = sim.layers[layer.name]
        want = a.forward_quantized(inp)
        scale = float(want.abs().max()) or 1.0
        for mode in modes:
            got = a.forward_exact(inp) if mode == "exact" else a.forward_fast(inp)
            worst[mode] = max(worst[mode], float((got - want).abs().max()) / scale)
        return want

    sim.run_layers(x, fn)
    return worst


# ---- ideal chips equal the quantized model ----------------------------------------------------


@pytest.mark.parametrize("preset", ["isaac", "mnsim-default", "rnc-paper", "edge", "puma"])
def test_ideal_chip_is_the_quantized_model_every_encoding(preset: str) -> None:
    torch.manual_seed(0)
    model = randomize_bn(Small())
    hw = ideal(preset)
    x = torch.randn(2, 3, 10, 10)
    graph = capture(model, (3, 10, 10))
    dense = hw.with_layout("dense")  # mnsim-default's own layout is costed, not programmed (test below)
    packed = compile_graph(graph, dense, crossbars=2 * min_crossbars(graph, dense), samples=[1])
    for mapping in (None, packed):
        sim = Simulator(model, hw, (3, 10, 10), mapping=mapping, calibration=x)
        errs = per_layer_errors(sim, x)
        assert errs["fast"] < 1e-5 and errs["exact"] < 1e-5, errs
        sim.mode = "quantized"
        q = sim(x)
        for mode in ("fast", "exact"):
            sim.mode = mode
            assert float((sim(x) - q).abs().max()) <= 2e-3 * float(q.abs().max())  # a rare one-LSB flip


@pytest.mark.parametrize("name", list_models())
def test_ideal_chip_is_the_quantized_model_every_zoo_model(name: str) -> None:
    torch.manual_seed(1)
    c = default_input_shape(name)[0]
    side = 16 if default_input_shape(name)[1] == 32 and not name.startswith("mnsim_") else 32  # quick exact mode
    model = randomize_bn(create_model(name, num_classes=10, input_size=(side, side)))
    big = sum(p.numel() for p in model.parameters()) > 2_000_000
    hw = ideal("rnc-paper" if big else "isaac")  # one cell per weight keeps the big ones small
    x = torch.randn(1, c, side, side)
    sim = Simulator(model, hw, (c, side, side), calibration=x)
    errs = per_layer_errors(sim, x, ("fast", "exact") if not big else ("fast",))
    assert max(errs.values()) < 1e-5, errs


def test_dac_bits_do_not_change_an_exact_readout() -> None:
    torch.manual_seed(2)
    model = randomize_bn(Small())
    x = torch.randn(2, 3, 8, 8)
    outs = []
    for dac in (1, 2, 4):
        sim = Simulator(model, ideal("mnsim-default", **{"precision.dac_bits": dac}), (3, 8, 8), calibration=x)
        sim.mode = "exact"
        outs.append(sim(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-5, atol=1e-5)


def test_float_mode_is_the_model() -> None:
    model = randomize_bn(Small())
    x = torch.randn(2, 3, 8, 8)
    sim = Simulator(model, load_hardware("isaac"), (3, 8, 8), calibration=x)
    sim.mode = "float"
    torch.testing.assert_close(sim(x), model(x), rtol=1e-4, atol=1e-5)


# ---- device model -----------------------------------------------------------------------------


def test_stuck_at_rates_and_levels() -> None:
    hw = with_settings(load_hardware("mnsim-default"), nonideal__stuck_on_rate=0.1, nonideal__stuck_off_rate=0.2)
    levels = torch.zeros(256, 256)
    g = program_cells(levels, hw, torch.Generator().manual_seed(0))
    eps, top = off_level(hw), 2**hw.crossbar.cell_bits - 1
    assert abs(float((g == top + eps).float().mean()) - 0.1) < 0.01
    levels = torch.ones(256, 256)
    g = program_cells(levels, hw, torch.Generator().manual_seed(0))
    assert abs(float((g == eps).float().mean()) - 0.2) < 0.01


@pytest.mark.parametrize("model_name", ["gaussian", "lognormal"])
def test_variation_has_the_stated_sigma(model_name: str) -> None:
    hw = with_settings(load_hardware("isaac"), nonideal__variation=0.1, nonideal__variation_model=model_name)
    levels = torch.full((300, 300), 2.0)
    g = program_cells(levels, hw, torch.Generator().manual_seed(1))
    nominal = 2.0 + off_level(hw)
    rel = torch.log(g / nominal) if model_name == "lognormal" else g / nominal - 1
    assert abs(float(rel.std()) - 0.1) < 0.005 and abs(float(rel.mean())) < 0.005


def test_drift_scales_a_differential_layer_exactly() -> None:
    """Drift multiplies every conductance by (t/t0)^-nu; the off-state terms of a pair cancel."""
    torch.manual_seed(3)
    model = randomize_bn(Small())
    x = torch.randn(2, 3, 8, 8)
    base = ideal("mnsim-default", **{"nonideal.adc": False})
    drifted = with_settings(base, nonideal__drift_nu=0.05, nonideal__drift_time_s=1000.0)
    factor = 1000.0**-0.05
    sim0 = Simulator(model, base, (3, 8, 8), calibration=x)
    sim1 = Simulator(model, drifted, (3, 8, 8), calibration=x)
    name = sim0.graph.mvm_layers[0].name
    y0 = sim0.layer_outputs(x)[name] - sim0.graph[name].bias.view(1, -1, 1, 1)
    y1 = sim1.layer_outputs(x)[name] - sim1.graph[name].bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y1, factor * y0, rtol=1e-4, atol=1e-5)


def _single_linear(inputs: int = 64, outputs: int = 16) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(inputs, outputs))
    return model.eval(), torch.rand(32, inputs)


def _predicted_weight_sigma(hw: HardwareSpec, weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-weight sigma of the decoded weight from relative cell noise (the documented formula)."""
    q, scale = quantize_weight(weight, hw)
    levels = encode(q, hw).to(torch.float64).abs() + off_level(hw)
    coef = slice_coefficients(hw)
    var = (levels**2 * coef**2).sum(-1)
    if hw.crossbar.encoding == "offset":
        var = var + 2.0 ** (2 * (hw.precision.weight_bits - 1)) * (1 + off_level(hw)) ** 2
    return scale * sigma * var.sqrt()


@pytest.mark.parametrize("preset", ["isaac", "mnsim-default"])
def test_variation_moves_outputs_by_the_predicted_amount(preset: str) -> None:
    model, x = _single_linear()
    hw = with_settings(ideal(preset), nonideal__adc=False, nonideal__variation=0.05)
    sim = Simulator(model, hw, (64,), calibration=x)
    sim.mode = "quantized"
    want = sim(x)
    sim.mode = "fast"
    errs = torch.stack([sim.program(s)(x) - want for s in range(200)])
    xq = sim.layers[sim.graph.mvm_layers[0].name]
    xin = torch.round(x / xq.input.scale).clamp(0, xq.input.levels) * xq.input.scale  # type: ignore[union-attr]
    w_sigma = _predicted_weight_sigma(hw, model[0].weight.detach(), 0.05).float()  # (out, in)
    predicted = ((xin**2) @ (w_sigma**2).T).sqrt()
    ratio = errs.std(0) / predicted
    assert abs(float(ratio.mean()) - 1) < 0.05
    assert abs(float(errs.mean(0).abs().mean() / predicted.mean())) < 0.1  # gaussian variation is unbiased


def test_read_noise_exact_and_fast_agree_with_the_bit_serial_prediction() -> None:
    model, x = _single_linear()
    hw = with_settings(ideal("mnsim-default"), nonideal__adc=False, nonideal__read_noise=0.05)
    sim = Simulator(model, hw, (64,), calibration=x)
    sim.mode = "quantized"
    want = sim(x)
    a = sim.layers[sim.graph.mvm_layers[0].name]
    xi = torch.round(x / a.input.scale).clamp(0, a.input.levels)  # type: ignore[union-attr]
    sq = digit_square_sum(xi, hw.precision.dac_bits, a.cycles)
    w_sigma = _predicted_weight_sigma(hw, model[0].weight.detach(), 0.05).float() * a.input.scale  # type: ignore[union-attr]
    predicted = (sq @ (w_sigma**2).T).sqrt()
    for mode in ("fast", "exact"):
        sim.mode = mode
        gen = torch.Generator().manual_seed(0)
        errs = torch.stack([sim(x, gen) - want for _ in range(150)])
        assert abs(float((errs.std(0) / predicted).mean()) - 1) < 0.06, mode
    # no read noise when nothing is read: an all-zero input row gives exactly the bias
    sim.mode = "exact"
    zero = torch.zeros(1, 64)
    torch.testing.assert_close(sim(zero), model[0].bias.view(1, -1).detach())


def test_adc_error_shrinks_about_twofold_per_bit_in_both_modes() -> None:
    model, x = _single_linear(128, 16)
    base = with_settings(load_hardware("mnsim-default"), crossbar__g_off_us=1e-7)
    rms = {}
    for mode in ("exact", "fast"):
        for bits in (4, 5, 6, 7):
            hw = with_settings(base, precision__adc_bits=bits)
            sim = Simulator(model, hw, (128,), calibration=x)
            sim.mode = "quantized"
            want = sim(x)
            sim.mode = mode
            gen = torch.Generator().manual_seed(0)
            rms[mode, bits] = float(torch.stack([sim(x, gen) - want for _ in range(4)]).pow(2).mean().sqrt())
    for mode in ("exact", "fast"):
        for bits in (4, 5, 6):
            assert 1.4 < rms[mode, bits] / rms[mode, bits + 1] < 2.8, (mode, bits, rms)
    assert 0.5 < rms["fast", 5] / rms["exact", 5] < 2.0


def test_adc_saturation_clips_large_reads() -> None:
    model, x = _single_linear()
    hw = with_settings(ideal("mnsim-default"), nonideal__adc_range="column", nonideal__adc_percentile=50.0,
                       precision__adc_bits=8)
    sim = Simulator(model, hw, (64,), calibration=x)
    sim.mode = "exact"
    a = sim.layers[sim.graph.mvm_layers[0].name]
    full = Simulator(model, with_settings(hw, nonideal__adc_percentile=100.0), (64,), calibration=x)
    assert bool((a.adc_step < full.layers[a.layer.name].adc_step).all())  # type: ignore[operator]
    sim.mode = full.mode = "exact"
    assert float((sim(x) - full(x)).abs().mean()) > 0.01  # half the reads clip


def test_finite_on_off_ratio_costs_adc_range() -> None:
    """The off-state current is read with the signal, so the ADC step (and its error) grows with it."""
    model, x = _single_linear(128, 16)
    errs, steps = [], []
    for ratio in (1e6, 2.0):
        hw = with_settings(load_hardware("isaac"), crossbar__g_off_us=100.0 / ratio, precision__adc_bits=6)
        sim = Simulator(model, hw, (128,), calibration=x)
        sim.mode = "quantized"
        want = sim(x)
        sim.mode = "exact"
        errs.append(float(torch.stack([sim(x) - want for _ in range(3)]).pow(2).mean().sqrt()))
        steps.append(float(sim.layers[sim.graph.mvm_layers[0].name].adc_step.pow(2).mean().sqrt()))  # type: ignore[union-attr]
    assert steps[1] > 2 * steps[0]
    assert 0.75 < (errs[1] / errs[0]) / (steps[1] / steps[0]) < 1.25


def test_ir_drop_lowers_outputs_more_on_larger_crossbars() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(256, 64)).eval()
    with torch.no_grad():
        model[0].weight.abs_()
    x = torch.rand(16, 256)
    loss = {}
    for size in (32, 256):
        hw = with_settings(ideal("mnsim-default", **{"nonideal.adc": False}), crossbar__rows=size,
                           crossbar__cols=size, crossbar__wire_ohm=2.5)
        ref = Simulator(model, hw, (256,), calibration=x)
        ref.mode = "fast"
        drop = Simulator(model, with_settings(hw, nonideal__ir_drop=True), (256,), calibration=x)
        drop.mode = "fast"
        b = model[0].bias.detach()
        y0, y1 = ref(x) - b, drop(x) - b
        loss[size] = float(1 - (y1 * y0).sum() / (y0 * y0).sum())
    assert 0 < loss[32] < loss[256]


# ---- chips, sweeps, calibration ---------------------------------------------------------------


def test_monte_carlo_is_reproducible_and_chips_differ() -> None:
    torch.manual_seed(6)
    model = randomize_bn(Small())
    x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 7, (40,))
    hw = with_settings(load_hardware("edge"), nonideal__variation=0.2)
    a = simulate_accuracy(model, hw, x, y, calibration=x[:8], chips=3, seed=5)
    b = simulate_accuracy(model, hw, x, y, calibration=x[:8], chips=3, seed=5)
    assert a.chip_accuracies == b.chip_accuracies and a.chip_seeds == [5, 6, 7]
    sim = Simulator(model, hw, (3, 8, 8), calibration=x[:8])
    sim.mode = "fast"
    assert not torch.equal(sim.program(0)(x), sim.program(1)(x))
    d = a.to_dict()
    assert d["chips"] == 3 and d["chip_min"] - 1e-12 <= d["chip_mean"] <= d["chip_max"] + 1e-12


def test_sweep_covers_the_grid_and_crossbar_size_remaps() -> None:
    torch.manual_seed(7)
    model = randomize_bn(Small())
    x, y = torch.randn(20, 3, 8, 8), torch.randint(0, 7, (20,))
    reports = sweep(model, load_hardware("mnsim-default"), x, y, {"crossbar": [64, 128], "variation": [0.0, 0.1]},
                    calibration=x[:4], chips=2)
    assert [r.setting for r in reports] == [
        {"crossbar": 64, "variation": 0.0}, {"crossbar": 64, "variation": 0.1},
        {"crossbar": 128, "variation": 0.0}, {"crossbar": 128, "variation": 0.1},
    ]
    assert apply_setting(load_hardware("isaac"), "adc-bits", 5).precision.adc_bits == 5


def test_crossbar_range_shares_one_step_per_crossbar() -> None:
    model, x = _single_linear(64, 40)
    hw = with_settings(load_hardware("mnsim-default"), nonideal__adc_range="crossbar")
    sim = Simulator(model, hw, (64,), calibration=x)
    a = sim.layers[sim.graph.mvm_layers[0].name]
    cuts = a.layout.col_cuts
    for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True):
        assert torch.unique(a.adc_step[..., c0:c1]).numel() == 1  # type: ignore[index]


# ---- hardware-aware training ------------------------------------------------------------------


def test_hardware_aware_quantizes_adds_the_chip_noise_and_comes_off() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(32, 8))
    before = model[0].weight.detach().clone()
    hw = with_settings(load_hardware("isaac"), nonideal__variation=0.05)
    hardware_aware(model, hw)
    model.eval()
    q, scale = quantize_weight(before, hw)
    torch.testing.assert_close(model[0].weight, (q.double() * scale).float())
    model.train()
    draws = torch.stack([model[0].weight.detach() for _ in range(300)])
    predicted = _predicted_weight_sigma(hw, before, 0.05).float()
    assert abs(float((draws.std(0) / predicted).mean()) - 1) < 0.06
    loss = model(torch.randn(4, 32)).sum()
    loss.backward()
    assert model[0].parametrizations.weight.original.grad is not None
    remove_hardware_aware(model)
    assert isinstance(model[0].weight, nn.Parameter)
    assert set(model.state_dict()) == {"0.weight", "0.bias"}


def test_signed_inputs_use_two_passes() -> None:
    model, _ = _single_linear()
    x = torch.randn(8, 64)  # negative inputs: sign-magnitude, two passes
    sim = Simulator(model, ideal("isaac"), (64,), calibration=x)
    a = sim.layers[sim.graph.mvm_layers[0].name]
    assert a.input is not None and a.input.signed and a.input.levels == 2**15 - 1
    assert max(per_layer_errors(sim, x).values()) < 1e-5


def test_missing_input_shape_is_one_line() -> None:
    from xbarforge.sim import SimulationError

    with pytest.raises(SimulationError, match="input_shape"):
        Simulator(nn.Linear(3, 2), load_hardware("isaac"))
    assert math.isfinite(1.0)

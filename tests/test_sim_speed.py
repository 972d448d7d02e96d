"""The simulator's speed paths change no result: skipped all-zero reads, shared calibrations and
chips across sweep points, float32 IR-drop solves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xbarforge.sim.analog as analog
import xbarforge.sim.calibrate as calibrate
from xbarforge.hardware import load_hardware, override
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim import Simulator, simulate_accuracy, sweep
from xbarforge.sim.ir_drop import ir_drop_factors, random_conductances

pytestmark = pytest.mark.usefixtures("one_thread")


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 5)).eval()


def _chip(**settings: object) -> HardwareSpec:
    hw = override(load_hardware("isaac"), "crossbar.rows", 32)
    hw = override(hw, "crossbar.cols", 32)
    for k, v in settings.items():
        hw = override(hw, k, v)
    return hw


def _sparse_inputs(n: int) -> torch.Tensor:
    """ReLU-like inputs with many small values, so that high input digits are often all zero."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 6, 6, generator=gen).clamp(min=0) ** 3
    return x * (torch.rand(n, 1, 6, 6, generator=gen) < 0.5)


def _no_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analog, "live_reads", lambda *args: None)
    monkeypatch.setattr(calibrate, "live_reads", lambda *args: None)


def test_skipping_zero_reads_changes_no_exact_output(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _sparse_inputs(6)
    hw = _chip(**{"nonideal.variation": 0.05, "precision.adc_bits": 6})  # no read noise: outputs are deterministic
    kept: list[float] = []
    original = analog.live_reads

    def counting(x: torch.Tensor, dac_bits: int, cycles: int) -> torch.Tensor | None:
        live = original(x, dac_bits, cycles)
        kept.append(1.0 if live is None else live.numel() / (cycles * x.shape[1]))
        return live

    monkeypatch.setattr(analog, "live_reads", counting)
    fast = Simulator(_net(), hw, (3, 6, 6), calibration=x, mode="exact").program(1)
    skipped = fast(x)
    assert min(kept) < 0.75  # these inputs do leave reads out
    _no_skipping(monkeypatch)
    full = Simulator(_net(), hw, (3, 6, 6), calibration=x, mode="exact").program(1)
    for name, a in fast.layers.items():
        assert a.adc_step is not None
        torch.testing.assert_close(a.adc_step, full.layers[name].adc_step)
        torch.testing.assert_close(a.adc_error, full.layers[name].adc_error, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(skipped, full(x), rtol=1e-5, atol=1e-5)


def test_live_reads_keeps_every_read_that_drives_a_row() -> None:
    x = torch.tensor([[[0, 1, 0], [0, 0, 0], [5, 0, 2]]], dtype=torch.int32)  # (G=1, m=3 pixels, rows=3)
    live = analog.live_reads(x, 1, 3)  # 1-bit digits, 3 cycles: pixel 0 has 1 live read, pixel 2 three
    assert live is not None
    assert sorted(live.tolist()) == [0, 2, 5, 8]  # cycle-major: cycle * m + pixel
    digits = analog.read_digits(x, 1, 3, live)
    full = analog.read_digits(x, 1, 3, None)
    torch.testing.assert_close(digits, full.index_select(1, live))
    assert float(full.sum()) == float(digits.sum())  # the reads left out are all zero


def test_sweep_sharing_gives_the_results_of_separate_runs() -> None:
    x, y = _sparse_inputs(12), torch.randint(0, 5, (12,), generator=torch.Generator().manual_seed(1))
    hw = _chip(**{"nonideal.ir_drop": True, "nonideal.read_noise": 0.02})
    vary = {"adc_bits": [5, 8], "variation": [0.0, 0.05]}
    shared = sweep(_net(), hw, x, y, vary, calibration=x, chips=2, seed=4)
    for report in shared:
        point = override(override(hw, "precision.adc_bits", report.setting["adc_bits"]),
                         "nonideal.variation", report.setting["variation"])
        alone = simulate_accuracy(_net(), point, x, y, calibration=x, chips=2, seed=4)
        assert report.chip_accuracies == alone.chip_accuracies, report.setting


def test_float32_ir_drop_matches_float64() -> None:
    rng = np.random.default_rng(9)
    g = torch.from_numpy(np.stack([random_conductances(128, 128, 1e-4, 1e-6, 0.6, rng, levels=4) for _ in range(3)]))
    f64 = ir_drop_factors(g, 2.82)
    f32 = ir_drop_factors(g.float(), 2.82)
    assert f32.dtype == torch.float32 and float(1 - f64.min()) > 0.1  # a drop worth modelling
    assert float((f32.double() - f64).abs().max()) < 1e-5


def test_cached_calibration_and_chips_give_the_outputs_of_a_fresh_simulator() -> None:
    from xbarforge.sim.simulator import SimulatorCache

    x = _sparse_inputs(8)
    base = _chip(**{"nonideal.ir_drop": True, "nonideal.read_noise": 0.02, "nonideal.variation": 0.05})
    cache = SimulatorCache()
    for hw in (base, override(base, "precision.adc_bits", 5), override(base, "nonideal.variation", 0.1)):
        cached = Simulator(_net(), hw, (3, 6, 6), cache=cache).program(2).calibrate(x)
        fresh = Simulator(_net(), hw, (3, 6, 6)).program(2).calibrate(x)
        for mode in ("fast", "exact"):
            cached.mode = fresh.mode = mode
            torch.testing.assert_close(cached(x, generator=torch.Generator().manual_seed(0)),
                                       fresh(x, generator=torch.Generator().manual_seed(0)), rtol=0, atol=0)
    assert len(cache.adc) and len(cache.chips) >= 2

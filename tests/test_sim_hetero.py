"""Heterogeneous chips in the simulator (NAX): each layer on its own HardwareSpec (crossbar size).

What must hold: naming the chip's own spec for every layer changes nothing (bit for bit); a layer
moved to other crossbars changes only that layer, by what its size implies (IR drop grows with the
crossbar); a layer on 16x16 crossbars computes exactly what a 16x16 chip computes; groups draw
reproducible, distinct random streams; bad input is one line.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xbarforge.graph.layer_graph import Layer
from xbarforge.hardware import load_hardware
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.sim import AccuracyReport, SimulationError, Simulator, simulate_accuracy, sweep
from xbarforge.sim.simulator import stream_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(seed: int = 0) -> nn.Module:
    """Three linears; the first has 256 rows, enough to fill a 128-row crossbar twice."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        model[0].weight.abs_()  # positive weights: IR drop lowers every output the same way
    return model


def convnet(seed: int = 0) -> nn.Module:
    """Conv (signed input), conv, linear: layers '0', '2', '5'."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 6 * 6, 10)).eval()


def per_layer(sim: Simulator, x: torch.Tensor, exact: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(chip output, quantized output) of every layer, each fed the float model's input to it and
    read with the same noise draws (a generator seeded alike per layer)."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def fn(layer: Layer, inp: torch.Tensor) -> torch.Tensor:
        a = sim.layers[layer.name]
        gen = torch.Generator().manual_seed(0)
        chip = a.forward_exact(inp, gen) if exact else a.forward_fast(inp, gen)
        out[layer.name] = (chip, a.forward_quantized(inp))
        return a.forward_float(inp)

    sim.run_layers(x, fn)
    return out


def noisy_edge(**extra: object) -> HardwareSpec:
    settings = {"nonideal.variation": 0.1, "nonideal.read_noise": 0.05, "nonideal.stuck_off_rate": 0.01,
                "crossbar.rows": 64, "crossbar.cols": 64}
    settings.update(extra)  # type: ignore[arg-type]
    return load_hardware("edge", **settings)


# ---- the chip's own spec everywhere is the homogeneous chip ----------------------------------


def test_own_spec_for_every_layer_is_bit_identical() -> None:
    model, x = convnet(), torch.randn(6, 3, 6, 6)
    hw = noisy_edge()
    names = ["0", "2", "5"]
    copy = noisy_edge()
    assert copy == hw and copy is not hw
    sims = [Simulator(model, hw, (3, 6, 6), calibration=x, device="cpu", layer_hardware=layer_hw)
            for layer_hw in (None, dict.fromkeys(names, hw), dict.fromkeys(names, copy),
                             {"2": hw.model_copy(update={"name": "renamed", "description": "same cells"})})]
    assert all(len(s.groups) == 1 and s.groups[0].stream == 0 for s in sims)
    for mode in ("fast", "exact"):
        outs = []
        for s in sims:
            s.mode = mode  # type: ignore[assignment]
            outs.append(s.program(3)(x, s.generator(11)))
        assert all(torch.equal(outs[0], out) for out in outs[1:])
    assert not torch.equal(sims[0].program(4)(x, sims[0].generator(11)), outs[0])  # noise is on


# ---- a layer on other crossbars changes that layer only, as its size says ----------------------


def test_larger_crossbar_changes_only_its_layer_and_ir_drop_grows_with_size() -> None:
    model, x = mlp(), torch.rand(8, 256)
    hw = load_hardware("edge", **{"nonideal.ir_drop": True, "nonideal.adc": False,
                                  "crossbar.rows": 32, "crossbar.cols": 32})
    assert not hw.nonideal.device_noise and not hw.nonideal.read_noise
    base = per_layer(Simulator(model, hw, (256,), calibration=x, device="cpu"), x)
    errors = {}
    for size in (16, 64, 128):
        bigger = {"0": hw.with_crossbar(size, size)}
        sim = Simulator(model, hw, (256,), calibration=x, device="cpu", layer_hardware=bigger)
        assert sim.layers["0"].hw.crossbar.rows == size and sim.layers["2"].hw is hw
        out = per_layer(sim, x)
        assert torch.equal(out["2"][0], base["2"][0]) and torch.equal(out["4"][0], base["4"][0])
        assert not torch.equal(out["0"][0], base["0"][0])
        chip, quantized = out["0"]
        errors[size] = float((chip - quantized).norm() / quantized.norm())
    chip, quantized = base["0"]
    errors[32] = float((chip - quantized).norm() / quantized.norm())
    assert 0 < errors[16] < errors[32] < errors[64] < errors[128]
    assert errors[128] > 4 * errors[16]
    # the model output moves only through the one changed layer
    sim = Simulator(model, hw, (256,), calibration=x, device="cpu", layer_hardware={"4": hw.with_crossbar(128, 128)})
    assert not torch.equal(sim(x), Simulator(model, hw, (256,), calibration=x, device="cpu")(x))


@pytest.mark.parametrize("preset", ["isaac", "edge"])
def test_layer_on_16x16_equals_the_16x16_chip(preset: str) -> None:
    model, x = convnet(1), torch.randn(4, 3, 6, 6)
    hw = load_hardware(preset, **{"crossbar.rows": 64, "crossbar.cols": 64})
    small = hw.with_crossbar(16, 16)
    hetero = Simulator(model, hw, (3, 6, 6), calibration=x, device="cpu", layer_hardware={"2": small})
    homo = Simulator(model, small, (3, 6, 6), calibration=x, device="cpu")
    layout = hetero.layers["2"].layout
    assert layout.row_cuts == tuple(range(0, 72, 16)) + (72,)  # 8*3*3 = 72 rows in 16-row tiles
    assert max(c1 - c0 for c0, c1 in zip(layout.col_cuts[:-1], layout.col_cuts[1:], strict=True)) <= 16
    assert hetero.layers["0"].layout.row_cuts == (0, 27)  # the other layers stay on 64x64
    for exact in (False, True):
        got, want = per_layer(hetero, x, exact)["2"], per_layer(homo, x, exact)["2"]
        assert torch.equal(got[0], want[0])
        assert float((got[0] - got[1]).abs().max()) < 0.05 * float(got[1].abs().max())  # near the quantized layer


def test_layers_on_different_encodings_and_bits_each_compute_their_quantized_layer() -> None:
    """Nothing in the simulator is chip-wide: offset 16-bit, differential 8-bit and signed 8-bit
    layers in one model each reproduce their own quantized layer on ideal devices."""
    ideal = {"crossbar.g_off_us": 1e-7, "nonideal.adc_range": "full_scale", "precision.adc_bits": 16}
    hw = load_hardware("edge", **ideal)
    layer_hw = {"0": load_hardware("isaac", **ideal, **{"crossbar.rows": 32, "crossbar.cols": 32}),
                "5": load_hardware("rnc-paper", **ideal)}
    model, x = convnet(4), torch.randn(4, 3, 6, 6)
    sim = Simulator(model, hw, (3, 6, 6), calibration=x, device="cpu", layer_hardware=layer_hw)
    assert [a.cpw for a in sim.layers.values()] == [8, 8, 1] and sim.layers["0"].has_ref
    for exact in (False, True):
        for chip, quantized in per_layer(sim, x, exact).values():
            assert float((chip - quantized).abs().max()) <= 1e-3 * float(quantized.abs().max())


def test_each_layer_calibrates_with_its_own_activation_bits() -> None:
    model, x = convnet(), torch.randn(4, 3, 6, 6)
    hw = load_hardware("edge")
    sim = Simulator(model, hw, (3, 6, 6), calibration=x, device="cpu",
                    layer_hardware={"2": load_hardware("edge", **{"precision.activation_bits": 4})})
    levels = {name: a.input.levels for name, a in sim.layers.items() if a.input is not None}
    assert levels == {"0": 127, "2": 15, "5": 255}  # '0' sees signed inputs: one bit for the sign


# ---- random streams ---------------------------------------------------------------------------


def test_groups_draw_distinct_reproducible_streams() -> None:
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32)).eval()
    x = torch.rand(4, 32)
    hw = load_hardware("edge", **{"nonideal.variation": 0.2, "crossbar.rows": 32, "crossbar.cols": 32})
    # same geometry, so equal streams would give both layers the same variation pattern
    a = load_hardware("edge", **{"nonideal.variation": 0.2, "crossbar.rows": 32, "crossbar.cols": 32,
                                 "precision.adc_bits": 7})
    b = load_hardware("edge", **{"nonideal.variation": 0.2, "crossbar.rows": 32, "crossbar.cols": 32,
                                 "precision.adc_bits": 6})
    sim = Simulator(model, hw, (32,), calibration=x, device="cpu", layer_hardware={"0": a, "2": b})
    assert [g.stream for g in sim.groups] == [1, 2]

    def ratios(seed: int) -> list[torch.Tensor]:
        sim.program(seed)
        return [sim.layers[n].cells / sim.layers[n].nominal for n in ("0", "2")]

    first, again, other = ratios(5), ratios(5), ratios(6)
    assert all(torch.equal(u, v) for u, v in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[0], other[0])
    assert stream_seed(5, 0) == 5 and len({stream_seed(5, k) for k in range(1, 4)} | {5}) == 4


# ---- Monte Carlo and sweeps -------------------------------------------------------------------


def test_simulate_accuracy_with_layer_hardware_is_reproducible() -> None:
    model = convnet(2)
    x, y = torch.randn(24, 3, 6, 6), torch.randint(0, 10, (24,))
    hw = noisy_edge()
    layer_hw = {"0": hw.with_crossbar(16, 16), "5": hw.with_crossbar(128, 128)}
    reports = [simulate_accuracy(model, hw, x, y, calibration=x[:6], chips=2, seed=9, device="cpu",
                                 layer_hardware=layer_hw) for _ in range(2)]
    assert all(isinstance(r, AccuracyReport) for r in reports)
    assert reports[0].chip_accuracies == reports[1].chip_accuracies and reports[0].chip_seeds == [9, 10]
    sim = Simulator(model, hw, (3, 6, 6), calibration=x[:6], device="cpu", layer_hardware=layer_hw)
    assert len(sim.groups) == 3
    assert not torch.equal(sim.program(9)(x, sim.generator(1)), sim.program(10)(x, sim.generator(1)))


def test_noise_on_one_layer_spec_programs_every_chip(monkeypatch: pytest.MonkeyPatch) -> None:
    model = convnet(2)
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 10, (8,))
    hw = load_hardware("edge")
    programmed: list[int] = []
    original = Simulator.program

    def counting(self: Simulator, seed: int = 0) -> Simulator:
        programmed.append(seed)
        return original(self, seed)

    monkeypatch.setattr(Simulator, "program", counting)
    simulate_accuracy(model, hw, x, y, calibration=x, chips=3, seed=4, device="cpu",
                      layer_hardware={"2": noisy_edge()})
    assert programmed[-3:] == [4, 5, 6]  # not programmed once, as a noise-free chip would be


def test_sweep_applies_each_setting_to_every_layer_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from xbarforge.sim import monte_carlo

    seen: list[tuple[HardwareSpec, dict[str, HardwareSpec] | None]] = []

    def fake(model: nn.Module, hw: HardwareSpec, *args: object, **kwargs: object) -> str:
        seen.append((hw, kwargs["layer_hardware"]))  # type: ignore[arg-type]
        return "report"

    monkeypatch.setattr(monte_carlo, "simulate_accuracy", fake)
    hw = load_hardware("edge")
    small = hw.with_crossbar(16, 16)
    x, y = torch.randn(2, 3, 6, 6), torch.zeros(2, dtype=torch.long)
    out = sweep(convnet(), hw, x, y, {"variation": [0.0, 0.2]}, calibration=x, layer_hardware={"0": hw, "2": small})
    assert out == ["report", "report"]
    for (point_hw, layers), v in zip(seen, (0.0, 0.2), strict=True):
        assert layers is not None and layers["0"] is point_hw and point_hw.nonideal.variation == v
        assert layers["2"].nonideal.variation == v and layers["2"].crossbar.rows == 16


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(("layer_hw", "words"), [
    ({"nope": None}, "no conv/linear layer 'nope'"),
    ({"1": None}, "no conv/linear layer '1'"),  # a ReLU is not an MVM layer
    ({"0": {"crossbar": {"rows": 16}}}, "layer_hardware['0']: expected a HardwareSpec, got dict"),
    ([("0", None)], "expected {layer name: HardwareSpec}, got list"),
])
def test_bad_layer_hardware_is_one_line(layer_hw: object, words: str) -> None:
    with pytest.raises(SimulationError, match=None) as err:
        Simulator(convnet(), load_hardware("edge"), (3, 6, 6), device="cpu", layer_hardware=layer_hw)  # type: ignore[arg-type]
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_mapping_with_other_hardware_is_one_line() -> None:
    from xbarforge.compiler.compile import isaac_like
    from xbarforge.graph.capture import capture

    model, hw = convnet(), load_hardware("edge")
    mapping = isaac_like(capture(model, (3, 6, 6)), hw)
    with pytest.raises(SimulationError) as err:
        Simulator(model, hw, (3, 6, 6), mapping=mapping, device="cpu", layer_hardware={"2": hw.with_crossbar(16, 16)})
    assert "mapping" in str(err.value) and "\n" not in str(err.value)
    same = Simulator(model, hw, (3, 6, 6), mapping=mapping, device="cpu", layer_hardware={"2": hw})
    assert same.mapping is mapping

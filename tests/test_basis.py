"""BasisN (xbarforge.basis): the segment layout, fitting a basis, the basis network, run files, the two
training steps and the chip simulator. The hardware cost model is covered by test_basis_cost.py."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from xbarforge.basis import (
    BasisChip,
    BasisError,
    BasisLayout,
    BasisNetwork,
    BasisRun,
    FitReport,
    default_group_crossbars,
    fit_basis,
    load_run,
    plan_basis,
    save_run,
    simulate_basis_accuracy,
    train_run,
)
from xbarforge.basis.fit import quantized_coefficients
from xbarforge.basis.run import BASIS_FILE, SUMMARY_FILE
from xbarforge.data import DataBundle, load_dataset
from xbarforge.errors import XbarforgeError
from xbarforge.graph.capture import capture
from xbarforge.hardware import load_hardware, override
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.model_spec import load_factory
from xbarforge.train import save_model, train

pytestmark = pytest.mark.usefixtures("one_thread")

# conv (BN, bias), depthwise conv (8 conv groups), conv without bias (BN), linear: every kind of unit.
# With 16-row crossbars: 9, 9, 72 and 48 rows -> 1, 1, 5 and 3 segments; 1, 8, 5 and 3 units.
NET = textwrap.dedent('''
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48, 10),
        )
''')
SHAPE = (1, 8, 8)
MVM = ("0", "3", "5", "10")


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A factory spec (`path/net.py:build`) for NET, so run files can rebuild the network."""
    root = tmp_path_factory.mktemp("basisnet")
    (root / "net.py").write_text(NET)
    return f"{root / 'net.py'}:build"


def make_model(spec: str, seed: int = 0) -> nn.Module:
    """NET with seeded weights and non-trivial batch norms (statistics and affine), in eval mode."""
    torch.manual_seed(seed)
    model = load_factory(spec)
    gen = torch.Generator().manual_seed(seed + 1)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model.eval()


@pytest.fixture
def model(factory: str) -> nn.Module:
    """A fresh NET with seeded weights and batch norms."""
    return make_model(factory)


def rnc(rows: int = 16, cols: int = 8, **extra: object) -> HardwareSpec:
    """rnc-paper (one signed 8-bit cell per weight): a crossbar of `cols` columns holds `cols` vectors."""
    return load_hardware("rnc-paper", **{"crossbar.rows": rows, "crossbar.cols": cols, **extra})


def isaac32() -> HardwareSpec:
    """isaac at 32x32: 8 columns per weight and a reference column, so 3 vectors per crossbar."""
    return load_hardware("isaac", **{"crossbar.rows": 32, "crossbar.cols": 32})


def ideal(hw: HardwareSpec) -> HardwareSpec:
    """`hw` with ideal devices and a lossless fixed-point ADC."""
    for key, value in (("crossbar.g_off_us", 1e-7), ("nonideal.adc_range", "full_scale"), ("precision.adc_bits", 16)):
        hw = override(hw, key, value)
    return hw


def layout_for(model: nn.Module, hw: HardwareSpec, crossbars: int, group: int) -> BasisLayout:
    """plan_basis for a NET-shaped model (1x8x8 inputs)."""
    return plan_basis(capture(model, SHAPE), hw, crossbars, group)


def fit(model: nn.Module, layout: BasisLayout, **kwargs: object) -> tuple[BasisNetwork, FitReport]:
    """fit_basis at 8-bit weights and 4-bit coefficients unless told otherwise."""
    opts: dict[str, object] = {"weight_bits": 8, "coeff_bits": 4, **kwargs}
    return fit_basis(model, layout, **opts)  # type: ignore[arg-type]


def weighted_residual(report: FitReport, layout: BasisLayout) -> float:
    """Sum over layers of (relative float error)^2 x weights: the pooled least-squares residual of the
    RMS-normalized segments, the quantity an SVD basis and the reassignment minimize."""
    return sum(report.layers[seg.name]["float"] ** 2 * seg.num_weights for seg in layout.layers)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| relative to max |b|."""
    return float((a - b).abs().max()) / float(b.abs().max())


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> bool:
    """Whether the raised error's message is a single line."""
    return len(str(exc.value).strip().splitlines()) == 1


# ---- layout --------------------------------------------------------------------------------------


def test_segments_units_and_weights(model: nn.Module) -> None:
    lay = layout_for(model, rnc(), 4, 2)
    assert [s.name for s in lay.layers] == list(MVM)
    assert [s.rows for s in lay.layers] == [9, 9, 72, 48]
    assert [s.segments for s in lay.layers] == [1, 1, 5, 3]
    assert [s.conv_groups for s in lay.layers] == [1, 8, 1, 1]
    assert [s.units for s in lay.layers] == [1, 8, 5, 3]
    assert [s.pixels for s in lay.layers] == [64, 64, 64, 1]
    modules = dict(model.named_modules())
    for seg in lay.layers:
        assert seg.num_weights == modules[seg.name].weight.numel()
        assert seg.out_channels == modules[seg.name].weight.shape[0]
        assert seg.segments == math.ceil(seg.rows / lay.rows)
    assert lay.model_weights == sum(modules[n].weight.numel() for n in MVM)


@pytest.mark.parametrize("hw_name", ["rnc", "isaac32"])
@pytest.mark.parametrize("crossbars, group", [(1, 1), (4, 1), (4, 2), (4, 4), (6, 2), (6, 3), (12, 1)])
def test_layout_counts_and_round_robin(model: nn.Module, hw_name: str, crossbars: int, group: int) -> None:
    hw = rnc() if hw_name == "rnc" else isaac32()
    lay = layout_for(model, hw, crossbars, group)
    v = hw.usable_cols // hw.cols_per_weight
    assert (lay.rows, lay.vectors_per_crossbar, lay.group_crossbars) == (hw.crossbar.rows, v, group)
    assert lay.groups == crossbars // group and lay.vectors == crossbars * v and lay.vectors_per_group == group * v
    # group g holds vectors g*P*V .. (g+1)*P*V - 1: the ranges partition 0..M-1
    held = [i for g in range(lay.groups) for i in lay.group_vectors(g)]
    assert held == list(range(lay.vectors))
    assert all(len(lay.group_vectors(g)) == lay.vectors_per_group for g in range(lay.groups))
    assert lay.basis_weights == crossbars * v * hw.crossbar.rows
    assert lay.basis_fraction == pytest.approx(crossbars * v * hw.crossbar.rows / lay.model_weights)
    start = 0
    for seg in lay.layers:
        assert len(seg.group_of_unit) == seg.units and all(0 <= g < lay.groups for g in seg.group_of_unit)
        # round robin from the running offset: as fast as the unit count allows
        assert seg.group_of_unit == tuple((start + u) % lay.groups for u in range(seg.units))
        assert lay.steps_per_pixel(seg) == math.ceil(seg.units / lay.groups) == lay.capacity(seg)
        assert lay.coefficients(seg) == seg.out_per_group * seg.units * lay.vectors_per_group
        start += seg.units
    assert lay.total_coefficients == sum(lay.coefficients(s) for s in lay.layers)
    assert lay.layer("5").units == math.ceil(72 / hw.crossbar.rows)
    with pytest.raises(KeyError):
        lay.layer("nope")


@pytest.mark.parametrize("crossbars, group, message", [
    (0, 1, "at least 1 crossbar"),
    (-3, 1, "at least 1 crossbar"),
    (4, 0, "must be between 1 and the 4 crossbars"),
    (4, 8, "must be between 1 and the 4 crossbars"),
    (6, 4, "4 does not divide the 6 crossbars"),
])
def test_plan_basis_errors_are_one_line(model: nn.Module, crossbars: int, group: int, message: str) -> None:
    with pytest.raises(BasisError, match=message) as exc:
        layout_for(model, rnc(), crossbars, group)
    assert one_line(exc)


def test_plan_basis_needs_an_mvm_layer() -> None:
    with pytest.raises(BasisError, match="no conv or linear layer") as exc:
        plan_basis(capture(nn.Sequential(nn.ReLU()), (4,)), rnc(), 4, 1)
    assert one_line(exc)


@pytest.mark.parametrize("hw_name", ["isaac", "isaac32", "rnc", "mnsim-default"])
def test_default_group_crossbars(hw_name: str) -> None:
    hw = {"isaac32": isaac32, "rnc": rnc}.get(hw_name, lambda: load_hardware(hw_name))()
    r, v = hw.crossbar.rows, hw.usable_cols // hw.cols_per_weight
    for c in range(1, 41):
        p = default_group_crossbars(hw, c)
        assert c % p == 0, (c, p)
        enough = [d for d in range(1, c + 1) if c % d == 0 and d * v >= r / 2]
        # the smallest divisor whose group holds half a crossbar's rows of vectors, else the whole chip
        assert p == (enough[0] if enough else c), (c, p, enough)
    # isaac: 15 vectors a crossbar, 64 wanted -> P >= 5, and 6 is the smallest such divisor of 36
    assert default_group_crossbars(load_hardware("isaac"), 36) == 6


def test_with_assignment(model: nn.Module) -> None:
    lay = layout_for(model, rnc(), 4, 2)  # G = 2; layer '5' has 5 units, capacity 3
    swapped = {"5": tuple(1 - g for g in lay.layer("5").group_of_unit)}
    other = lay.with_assignment(swapped)
    assert other.layer("5").group_of_unit == swapped["5"]
    assert other.layer("3").group_of_unit == lay.layer("3").group_of_unit  # layers not named keep theirs
    assert lay.layer("5").group_of_unit != swapped["5"]  # the original is untouched (frozen)
    assert other.steps_per_pixel(other.layer("5")) <= lay.capacity(lay.layer("5"))
    bad = {
        "over capacity": {"5": (0, 0, 0, 0, 1)},
        "too few": {"5": (0, 1, 0, 1)},
        "out of range": {"5": (0, 1, 2, 0, 1)},
        "negative": {"10": (0, -1, 1)},
    }
    for what, assignment in bad.items():
        with pytest.raises(BasisError, match="layer '(5|10)'") as exc:
            lay.with_assignment(assignment)
        assert one_line(exc), what


# ---- fit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw_name, crossbars, group", [("rnc16x8", 4, 2), ("rnc16x8", 2, 2), ("rnc16x16", 2, 1),
                                                       ("isaac32", 22, 11)])
def test_spanning_basis_reconstructs_exactly(model: nn.Module, hw_name: str, crossbars: int, group: int) -> None:
    """P*V >= R: every segment lies in its group's span, so float kernels and outputs are the model's."""
    hw = {"rnc16x8": rnc(16, 8), "rnc16x16": rnc(16, 16), "isaac32": isaac32()}[hw_name]
    lay = layout_for(model, hw, crossbars, group)
    assert lay.vectors_per_group >= lay.rows
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net, report = fit(model, lay, weight_bits=hw.precision.weight_bits)
    assert report.error < 1e-4 and report.init == "svd"
    assert set(report.layers) == set(MVM) and all(v["float"] < 1e-4 for v in report.layers.values())
    assert report.error < report.error_quantized < 0.5
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model's own weights are untouched
    net.quantize = False
    x = torch.rand(4, *SHAPE)
    with torch.no_grad():
        assert rel(net(x), model(x)) < 1e-4
        shapes = {k: v.shape for k, v in net.weights().items()}
    assert shapes == {f"{n}.weight": dict(model.named_modules())[n].weight.shape for n in MVM}


def grouped_model() -> nn.Module:
    """Grouped convs whose groups need several segments (36 and 36 rows per group at 16 rows: 3 each)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 12, 3, padding=1, groups=2), nn.BatchNorm2d(12), nn.ReLU(),
                          nn.Conv2d(12, 6, 3, padding=1, groups=3), nn.Flatten(), nn.Linear(6 * 6 * 6, 10))
    with torch.no_grad():
        model[3].running_var.uniform_(0.5, 1.5)
        model[3].weight.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("crossbars, group", [(4, 2), (4, 1)])
def test_grouped_conv_with_several_segments(crossbars: int, group: int) -> None:
    """Units are (conv group, segment) pairs, conv-group major, in the fit, the network and the chip."""
    model = grouped_model()
    lay = plan_basis(capture(model, (2, 6, 6)), rnc(), crossbars, group)
    assert [(s.conv_groups, s.segments, s.units) for s in lay.layers] == [(1, 2, 2), (2, 3, 6), (3, 3, 9), (1, 14, 14)]
    net, report = fit(model, lay)
    x = torch.randn(4, 2, 6, 6)
    with torch.no_grad():
        want = net.eval()(x)
        net.quantize = False
        if lay.vectors_per_group >= lay.rows:
            assert report.error < 1e-4 and rel(net(x), model(x)) < 1e-4
        net.quantize = True
    chip = BasisChip(net, rnc(), (2, 6, 6), x, mode="float", device="cpu")
    assert rel(chip(x), want) < 1e-4 and chip.basis_mapping.crossbars_used == crossbars


def test_svd_fits_at_least_as_well_as_kmeans(model: nn.Module) -> None:
    """Same assignment (no refinement): the SVD subspace is the least-squares optimum of each group's pool."""
    for crossbars, group in ((1, 1), (4, 1), (4, 2)):
        lay = layout_for(model, rnc(16, 4), crossbars, group)  # P*V < R: a real approximation
        assert lay.vectors_per_group < lay.rows
        _, svd = fit(model, lay, init="svd", refine=0)
        _, km = fit(model, lay, init="kmeans", refine=0)
        assert 0 < svd.error < 1 and 0 < km.error < 1 and math.isfinite(km.error_quantized)
        assert weighted_residual(svd, lay) <= weighted_residual(km, lay) * (1 + 1e-6), (crossbars, group)
        assert km.init == "kmeans"


def test_refine_keeps_speed_and_does_not_hurt_the_fit(model: nn.Module) -> None:
    lay = layout_for(model, rnc(), 4, 1)  # G = 4 groups of 8 vectors for 16-row segments
    assert lay.groups > 1
    plain_net, plain = fit(model, lay, refine=0)
    net, refined = fit(model, lay, refine=2)
    assert refined.refine == 2 and plain.refine == 0
    assert plain_net.layout == lay  # no refinement: the planned round robin
    for old, new in zip(lay.layers, net.layout.layers, strict=True):
        assert net.layout.steps_per_pixel(new) <= lay.steps_per_pixel(old), new.name
        assert len(new.group_of_unit) == new.units and all(0 <= g < lay.groups for g in new.group_of_unit)
    assert any(o.group_of_unit != n.group_of_unit for o, n in zip(lay.layers, net.layout.layers, strict=True))
    assert weighted_residual(refined, lay) <= weighted_residual(plain, lay) * (1 + 1e-6)
    # refinement ends by refitting the bases to the final assignment: a plain fit on that assignment agrees
    again, again_report = fit(model, net.layout, refine=0)
    assert torch.allclose(again.basis, net.basis, atol=1e-6) and again_report.error == pytest.approx(refined.error)
    # the network reads what its layout says: each unit's vectors are its group's
    for seg in net.layout.layers:
        idx = net.index(seg.name).reshape(seg.units, -1)
        for u, g in enumerate(seg.group_of_unit):
            assert idx[u].tolist() == list(net.layout.group_vectors(g))


def test_refine_on_one_group_changes_nothing(model: nn.Module) -> None:
    lay = layout_for(model, rnc(16, 4), 2, 2)  # G = 1
    a, ra = fit(model, lay, refine=0)
    b, rb = fit(model, lay, refine=3)
    assert b.layout == lay and torch.equal(a.basis, b.basis) and ra.error == rb.error


def test_quantized_coefficients_and_basis_levels(model: nn.Module) -> None:
    lay = layout_for(model, rnc(16, 4), 4, 2)
    net, report = fit(model, lay, weight_bits=4, coeff_bits=3)
    assert report.error_quantized > report.error
    qmax = 2 ** (3 - 1) - 1
    for name, c in quantized_coefficients(net).items():
        seg = lay.layer(name)
        assert c.shape == (seg.conv_groups, seg.out_per_group, seg.segments, lay.vectors_per_group)
        flat = c.reshape(seg.out_channels, -1)
        for row in flat:
            assert len(torch.unique(row)) <= 2**3 - 1
            # one scale per output channel: every value is an integer multiple of max/qmax, within +-qmax
            step = float(row.abs().max()) / qmax
            if step:
                k = row / step
                assert torch.allclose(k, k.round(), atol=1e-4) and float(k.abs().max()) <= qmax + 1e-4
    basis = net.programmed_basis().detach()
    assert basis.shape == (lay.vectors, lay.rows)
    assert len(torch.unique(basis)) <= 2**4 - 1
    assert float((basis - net.basis.detach()).abs().max()) > 0  # rounding really happened
    step = float(basis.abs().max()) / (2 ** (4 - 1) - 1)
    assert torch.allclose(basis / step, (basis / step).round(), atol=1e-4)
    net.quantize = False
    assert torch.equal(net.programmed_basis(), net.basis)


def test_fit_errors(model: nn.Module, factory: str) -> None:
    lay = layout_for(model, rnc(), 4, 2)
    for kwargs, message in (({"init": "pca"}, "init 'pca'"), ({"coeff_bits": 0}, "coeff bits"),
                            ({"coeff_bits": 17}, "coeff bits"), ({"refine": -1}, "refine")):
        with pytest.raises(BasisError, match=message) as exc:
            fit(model, lay, **kwargs)
        assert one_line(exc)
    # a layout planned for another network
    wider = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48, 10), nn.Linear(10, 10))
    with pytest.raises(BasisError, match="layer '0': 36 weights, the layout expects 72") as exc:
        fit(wider, lay)
    assert one_line(exc)
    shorter = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Flatten(), nn.Linear(512, 10))
    with pytest.raises(BasisError, match="layer '3' of the layout is not a module of this model") as exc:
        fit(shorter, lay)
    assert one_line(exc)


# ---- the basis network ---------------------------------------------------------------------------


def test_gradients_reach_basis_and_coefficients_not_the_replaced_weights(model: nn.Module) -> None:
    net, _ = fit(model, layout_for(model, rnc(16, 4), 4, 2))
    net.train()
    net(torch.rand(4, *SHAPE)).pow(2).sum().backward()
    assert net.basis.grad is not None and float(net.basis.grad.abs().sum()) > 0
    for name in MVM:
        c = net.coeffs[name.replace(".", "__")]
        assert c.grad is not None and float(c.grad.abs().sum()) > 0, name
        w = dict(net.model.named_modules())[name].weight
        assert w.grad is None and not w.requires_grad, name
    bn = net.model[1]
    assert bn.weight.grad is not None and net.model[10].bias.grad is not None  # digital parameters still train


def test_rounding_is_straight_through(model: nn.Module) -> None:
    """d(quantized)/d(float) is the identity: a linear loss's gradient arrives unchanged."""
    net, _ = fit(model, layout_for(model, rnc(16, 4), 4, 2), weight_bits=3, coeff_bits=2)
    gen = torch.Generator().manual_seed(3)
    t = torch.randn(net.basis.shape, generator=gen)
    (net.programmed_basis() * t).sum().backward()
    assert torch.allclose(net.basis.grad, t)
    c = net.coeffs["5"]
    tc = torch.randn(c.shape, generator=gen)
    (net.layer_coeffs("5") * tc).sum().backward()
    assert torch.allclose(c.grad, tc)


def test_freeze_basis(model: nn.Module) -> None:
    net, _ = fit(model, layout_for(model, rnc(16, 4), 4, 2))
    assert net.freeze_basis() is net and not net.basis.requires_grad
    net(torch.rand(2, *SHAPE)).sum().backward()
    assert net.basis.grad is None
    assert all(c.grad is not None and float(c.grad.abs().sum()) > 0 for c in net.coeffs.values())
    net.freeze_basis(False)
    assert net.basis.requires_grad


def test_materialize_is_a_plain_copy_with_the_rebuilt_weights(model: nn.Module) -> None:
    net, _ = fit(model, layout_for(model, rnc(16, 4), 4, 2), coeff_bits=3)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    plain = net.materialize()
    assert plain is not net.model and type(plain) is type(model) and not isinstance(plain, BasisNetwork)
    x = torch.rand(5, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(plain(x), net(x), rtol=1e-5, atol=1e-6)
        weights = net.weights()
    params = dict(plain.named_parameters())
    assert all(torch.equal(params[k], w) and params[k].requires_grad for k, w in weights.items())
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())  # the wrapped model untouched
    assert rel(weights["5.weight"], original["5.weight"]) > 1e-3  # a real approximation, not the model's weights


def test_set_assignment_changes_the_vectors_a_layer_reads(model: nn.Module) -> None:
    lay = layout_for(model, rnc(), 4, 2)
    net, _ = fit(model, lay, refine=0)
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        before, w_before = net(x), net.weights()
    old = lay.layer("5").group_of_unit
    new = tuple(1 - g for g in old)
    net.set_assignment("5", new)
    idx = net.index("5").reshape(5, -1)
    assert [idx[u].tolist() for u in range(5)] == [list(lay.group_vectors(g)) for g in new]
    with torch.no_grad():
        after, w_after = net(x), net.weights()
    assert not torch.allclose(w_after["5.weight"], w_before["5.weight"])
    assert all(torch.equal(w_after[k], w_before[k]) for k in w_before if k != "5.weight")
    assert not torch.allclose(after, before)
    net.set_assignment("5", old)
    with torch.no_grad():
        assert torch.equal(net(x), before)


def test_set_assignment_keeps_the_layout_in_step(model: nn.Module) -> None:
    net, _ = fit(model, layout_for(model, rnc(), 4, 2), refine=0)
    new = tuple(1 - g for g in net.layout.layer("5").group_of_unit)
    net.set_assignment("5", new)
    assert net.layout.layer("5").group_of_unit == new


# ---- run files -----------------------------------------------------------------------------------


def make_run(spec: str, hw: HardwareSpec, crossbars: int, group: int, refine: int = 2,
             meta: dict[str, object] | None = None) -> BasisRun:
    """A fitted BasisRun of NET whose source records the factory (so load_run can rebuild it)."""
    model = make_model(spec)
    lay = layout_for(model, hw, crossbars, group)
    net, report = fit_basis(model, lay, weight_bits=hw.precision.weight_bits, coeff_bits=4, refine=refine)
    source = {"path": None, "arch": {"factory": spec}, "meta": {"input_shape": list(SHAPE), **(meta or {})}}
    settings = {"crossbars": crossbars, "group_crossbars": group, "coeff_bits": 4, "init": "svd", "refine": refine,
                "seed": 0}
    return BasisRun(net.eval(), hw, source, settings, [{"step": "fit", "error": report.error}])


def test_save_and_load_run_round_trip(factory: str, tmp_path: Path) -> None:
    run = make_run(factory, rnc(), 4, 1)  # G = 4 and refinement: an assignment that is not the round robin
    planned = layout_for(run.net.model, rnc(), 4, 1)
    assert any(a.group_of_unit != b.group_of_unit for a, b in zip(planned.layers, run.net.layout.layers, strict=True))
    path = save_run(run, tmp_path / "b")
    assert path == tmp_path / "b" / BASIS_FILE and (tmp_path / "b" / SUMMARY_FILE).is_file()
    loaded = load_run(tmp_path / "b")
    assert loaded.net.layout == run.net.layout
    for name in MVM:
        assert torch.equal(loaded.net.index(name), run.net.index(name))
    x = torch.rand(6, *SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), run.net(x))
    assert not loaded.net.training and loaded.net.coeff_bits == 4 and loaded.net.weight_bits == 8
    assert loaded.settings == run.settings and loaded.history == run.history and loaded.hw == run.hw
    assert loaded.input_shape == SHAPE
    assert load_run(tmp_path / "b" / BASIS_FILE).net.layout == run.net.layout  # the file itself works too
    summary = json.loads((tmp_path / "b" / SUMMARY_FILE).read_text())
    lay = run.net.layout
    assert summary["vectors"] == lay.vectors == 32 and summary["groups"] == 4 and summary["rows"] == 16
    assert summary["basis_fraction"] == pytest.approx(lay.basis_fraction)
    assert summary["coefficients"] == lay.total_coefficients and summary["crossbars"] == 4
    assert summary["history"] == [{"step": "fit", "error": pytest.approx(run.history[0]["error"], rel=1e-6)}]


def test_load_run_errors(factory: str, tmp_path: Path) -> None:
    with pytest.raises(BasisError, match="no basis run at") as exc:
        load_run(tmp_path / "missing")
    assert one_line(exc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BasisError, match="no basis run at"):
        load_run(tmp_path / "empty")
    save_model(tmp_path / "model.pt", make_model(factory), arch={"factory": factory},
               meta={"input_shape": list(SHAPE)})
    with pytest.raises(BasisError, match="not an xbarforge basis file") as exc:
        load_run(tmp_path / "model.pt")
    assert one_line(exc)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BasisError, match="is a file"):
        save_run(make_run(factory, rnc(), 2, 2), tmp_path / "file")


def test_load_run_on_an_unreadable_file_is_a_basis_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(XbarforgeError) as exc:
        load_run(tmp_path / "junk.pt")
    assert one_line(exc)
    assert isinstance(exc.value, BasisError)


# ---- training ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    """sklearn digits (1x8x8), loaded once."""
    return load_dataset("digits")


def test_train_run_steps_history_and_resume(factory: str, digits: DataBundle, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = load_factory(factory)
    trained = train(source, digits, epochs=2, seed=0, progress=False)
    hw = rnc(16, 4)  # groups of 8 vectors for 16-row segments: the network has to be retrained
    lay = layout_for(source.eval(), hw, 2, 2)
    net, _ = fit_basis(source, lay, weight_bits=8, coeff_bits=4)
    source_meta = {"input_shape": list(SHAPE), "test_accuracy": trained.test_accuracy}
    run = BasisRun(net, hw, {"path": None, "arch": {"factory": factory}, "meta": source_meta},
                   {"crossbars": 2, "group_crossbars": 2, "coeff_bits": 4, "init": "svd", "refine": 2, "seed": 0},
                   [{"step": "fit"}])
    out = tmp_path / "b"
    fitted_basis = net.basis.detach().clone()

    # joint step alone: basis and coefficients both move
    record = train_run(run, digits, out, epochs=1, coeff_epochs=0, progress=False)
    assert [h["step"] for h in run.history] == ["fit", "joint", "final"]
    assert not torch.equal(run.net.basis.detach(), fitted_basis)
    assert (out / "step-joint" / "model.pt").is_file() and not (out / "step-coefficients").exists()
    assert record["unconstrained_test_accuracy"] == trained.test_accuracy

    # coefficient step: the programmed basis stays exactly as it is, the coefficients move
    basis = run.net.basis.detach().clone()
    coeffs = {k: v.detach().clone() for k, v in run.net.coeffs.items()}
    record = train_run(run, digits, out, epochs=1, coeff_epochs=1, progress=False)
    assert [h["step"] for h in run.history] == ["fit", "joint", "coefficients", "final"]
    assert torch.equal(run.net.basis.detach(), basis) and run.net.basis.requires_grad
    assert any(not torch.equal(run.net.coeffs[k].detach(), v) for k, v in coeffs.items())
    joint, coeff, final = run.history[1:]
    assert (joint["epochs"], joint["lr"], coeff["epochs"], coeff["lr"]) == (1, 0.02, 1, 0.005)
    for h in (joint, coeff):
        assert 0 <= h["val_accuracy"] <= 1 and h["time_s"] >= 0
    assert final == record and 0.8 < record["test_accuracy"] <= 1 and 0 <= record["val_accuracy"] <= 1

    # rerunning the finished command (from the saved run) trains nothing and duplicates nothing
    again = load_run(out)
    assert [h["step"] for h in again.history] == ["fit", "joint", "coefficients", "final"]
    state = {k: v.clone() for k, v in again.net.state_dict().items()}
    record2 = train_run(again, digits, out, epochs=1, coeff_epochs=1, progress=False)
    assert [h["step"] for h in again.history] == ["fit", "joint", "coefficients", "final"]
    assert all(torch.equal(state[k], v) for k, v in again.net.state_dict().items())
    assert record2["test_accuracy"] == pytest.approx(record["test_accuracy"])


# ---- the chip ------------------------------------------------------------------------------------


def test_chip_float_reads_are_the_basis_network_with_batch_norm_folded(model: nn.Module) -> None:
    for crossbars, group in ((4, 1), (4, 2), (2, 2)):
        lay = layout_for(model, rnc(16, 4), crossbars, group)
        net, _ = fit(model, lay, coeff_bits=3)
        x = torch.rand(6, *SHAPE)
        chip = BasisChip(net.eval(), rnc(16, 4), SHAPE, x, mode="float", device="cpu")
        with torch.no_grad():
            want = net(x)
        assert rel(chip(x), want) < 1e-4, (crossbars, group)


def test_chip_fast_mode_on_an_ideal_chip_is_close_to_float(model: nn.Module) -> None:
    hw = ideal(rnc(16, 4))
    net, _ = fit(model, layout_for(model, hw, 4, 2))
    x = torch.rand(8, *SHAPE)
    chip = BasisChip(net.eval(), hw, SHAPE, x, mode="fast", device="cpu")
    fast = chip(x)
    chip.sim.mode = "quantized"
    quant = chip(x)
    chip.sim.mode = "float"
    flt = chip(x)
    assert rel(fast, quant) < 1e-3 and rel(fast, flt) < 2e-2
    assert rel(fast, flt) > 0  # activation quantization does something


def test_chip_instances_differ_by_seed_and_repeat_with_it(model: nn.Module) -> None:
    hw = override(rnc(16, 4), "nonideal.variation", 0.05)
    net, _ = fit(model, layout_for(model, hw, 4, 2))
    x = torch.rand(8, *SHAPE)
    chip = BasisChip(net.eval(), hw, SHAPE, x, device="cpu")
    outs = [chip.program(s)(x, chip.sim.generator(s)) for s in (0, 1, 0)]
    assert rel(outs[0], outs[1]) > 1e-3
    assert torch.equal(outs[0], outs[2])
    other = BasisChip(net, hw, SHAPE, x, device="cpu").program(1)
    assert torch.equal(other(x, other.sim.generator(1)), outs[1])


@pytest.mark.parametrize("hw_name, crossbars, group", [("rnc", 4, 2), ("rnc", 3, 1), ("rnc", 6, 3),
                                                       ("isaac32", 6, 2), ("isaac32", 4, 4), ("isaac32", 3, 1)])
def test_chip_uses_exactly_the_basis_crossbars(model: nn.Module, hw_name: str, crossbars: int, group: int) -> None:
    hw = rnc(16, 4) if hw_name == "rnc" else isaac32()
    lay = layout_for(model, hw, crossbars, group)
    net, _ = fit(model, lay, weight_bits=hw.precision.weight_bits)
    chip = BasisChip(net.eval(), hw, SHAPE, torch.rand(4, *SHAPE), device="cpu")
    assert chip.basis_mapping.crossbars_used == crossbars
    assert len(chip.analogs) == lay.groups


def test_simulate_basis_accuracy(model: nn.Module) -> None:
    hw = override(rnc(16, 4), "nonideal.variation", 0.05)
    net, _ = fit(model, layout_for(model, hw, 4, 2))
    x = torch.rand(40, *SHAPE)
    with torch.no_grad():
        y = net.eval()(x).argmax(1)  # the basis network's own answers: ideal reads get all of them
    runs = [simulate_basis_accuracy(net, hw, x, y, calibration=x[:16], chips=3, seed=5, batch_size=16, device="cpu")
            for _ in range(2)]
    res = runs[0]
    assert res["float"] == 1.0 and 0 <= res["quantized"] <= 1
    assert len(res["chips"]) == 3 and res["seeds"] == [5, 6, 7] and res["n"] == 40 and res["crossbars"] == 4
    assert res["min"] <= res["mean"] <= res["max"] and res["mode"] == "fast"
    assert runs[1]["chips"] == res["chips"]

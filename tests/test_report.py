"""Report rendering: JSON writing, rich tables, PNG plots."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from rich.console import Console

import xbarforge
from xbarforge.compiler.mapping import Mapping, PlacedBlock
from xbarforge.report import plots
from xbarforge.report.jsonio import dumps, read_json, round_float, to_jsonable, write_json
from xbarforge.report.table import (
    auto_layer_table,
    fit_note,
    fmt_energy,
    fmt_pct,
    fmt_ratio,
    fmt_time,
    layer_table,
    list_table,
    render_report,
    summary_panel,
    utilization_note,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def render(renderable: object, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


@pytest.fixture(scope="module")
def fitted() -> Mapping:
    return xbarforge.compile("resnet20", "rnc-paper", crossbars=60, input_shape=(3, 32, 32),
                             samples=(1, 8, 64))


@pytest.fixture(scope="module")
def rounds() -> Mapping:
    return xbarforge.compile("resnet20", "rnc-paper", crossbars=4, input_shape=(3, 32, 32), samples=(1, 8))


# ---------------------------------------------------------------------------------------------
# JSON


@dataclasses.dataclass
class _Point:
    x: int
    y: tuple[float, float]


def test_to_jsonable_handles_numpy_torch_tuples_and_more() -> None:
    doc = {
        "np_int": np.int64(3),
        "np_float": np.float32(0.5),
        "np_bool": np.bool_(True),
        "array": np.arange(3),
        "tensor": torch.tensor([1.5, 2.5]),
        "tuple": (1, 2),
        "set": {3, 1, 2},
        "path": Path("a/b.json"),
        "point": _Point(1, (0.1, 0.2)),
        "nan": float("nan"),
        "inf": math.inf,
        "nested": {1: [np.float64(1 / 3)]},
    }
    out = to_jsonable(doc)
    assert out["np_int"] == 3 and isinstance(out["np_int"], int)
    assert out["np_float"] == 0.5
    assert out["np_bool"] is True
    assert out["array"] == [0, 1, 2]
    assert out["tensor"] == [1.5, 2.5]
    assert out["tuple"] == [1, 2]
    assert out["set"] == [1, 2, 3]
    assert out["path"] == "a/b.json"
    assert out["point"] == {"x": 1, "y": [0.1, 0.2]}
    assert out["nan"] is None and out["inf"] is None
    assert out["nested"] == {"1": [0.3333333333]}
    json.dumps(out, allow_nan=False)  # plain JSON


def test_floats_rounded_and_key_order_kept(tmp_path: Path) -> None:
    assert round_float(59887.015999999996) == 59887.016
    assert round_float(0.1 + 0.2) == 0.3
    assert round_float(1.23456789012345e-9) == 1.234567890e-9
    assert round_float(0.0) == 0.0
    doc = {"zeta": 1, "alpha": 2.000000000001, "mid": {"b": 1, "a": 2}}
    path = write_json(tmp_path / "d.json", doc)
    text = path.read_text()
    assert text.index("zeta") < text.index("alpha") < text.index("mid")
    assert read_json(path) == {"zeta": 1, "alpha": 2.0, "mid": {"b": 1, "a": 2}}
    assert text.endswith("\n")
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_report_json_keeps_the_report_order(fitted: Mapping, tmp_path: Path) -> None:
    path = write_json(tmp_path / "r.json", fitted.report)
    loaded = read_json(path)
    assert list(loaded) == list(fitted.report)
    assert loaded["crossbars_used"] == fitted.report["crossbars_used"]
    for k, v in fitted.report["latency_ns"].items():
        assert loaded["latency_ns"][k] == pytest.approx(v, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# tables


def test_formatters() -> None:
    assert fmt_time(415848.1) == "416 us"
    assert fmt_time(1443552.0) == "1.44 ms"
    assert fmt_time(152.773) == "153 ns"
    assert fmt_time(2.5e9) == "2.50 s"
    assert fmt_energy(52274126.5) == "52.3 uJ"
    assert fmt_energy(896.0) == "896 pJ"
    assert fmt_pct(0.55288) == "55.3%"
    assert fmt_ratio(6.9438) == "6.94x"
    assert fmt_time(None) == fmt_pct(None) == fmt_ratio(None) == "-"


def test_layer_table_has_a_row_per_layer(fitted: Mapping) -> None:
    text = render(layer_table(fitted.report))
    header = next(line for line in text.splitlines() if "layer" in line and "energy" in line)
    for column in ("op", "form", "blocks", "copies", "crossbars", "utilization", "cycles", "time"):
        assert column in header
    for layer in fitted.report["layers"]:
        assert layer["name"] in text
    assert "round" not in header  # one round: no round column

    compact = render(layer_table(fitted.report, compact=True), width=80)
    assert all(len(line) <= 80 for line in compact.splitlines())
    assert "util" in compact and " op " not in compact


def test_auto_layer_table_fits_the_console(fitted: Mapping) -> None:
    wide = Console(file=io.StringIO(), width=200)
    narrow = Console(file=io.StringIO(), width=80)
    full = auto_layer_table(fitted.report, wide)
    small = auto_layer_table(fitted.report, narrow)
    assert [c.header for c in full.columns][:3] == ["layer", "op", "form"]
    assert "op" not in [c.header for c in small.columns]
    text = render(small, width=80)
    assert any(line.rstrip().endswith("energy") for line in text.splitlines())


def test_summary_compares_with_the_baseline(fitted: Mapping) -> None:
    report = fitted.report
    text = render(summary_panel(report))
    assert "isaac-like" in text
    for k, s in report["speedup"].items():
        assert f"latency, k={k}" in text
        assert fmt_ratio(s) in text
    assert f"of {report['crossbars_budget']}" in text
    assert f"{report['crossbars_used']} used" in text
    assert f"{report['baseline']['crossbars_used']} used" in text
    assert "schedule: chain" in text and "compile time" in text
    assert "EDAP" in text and "mm2" in text and "throughput" in text
    assert fit_note(report) is None
    assert "of the 60-crossbar budget" in utilization_note(report)
    assert len(render_report(report)) == 2


def test_summary_of_a_model_that_does_not_fit(rounds: Mapping) -> None:
    report = rounds.report
    assert report["rounds"] > 1
    note = fit_note(report)
    assert note and f"{report['rounds']} reprogramming rounds" in note
    assert f"at least {report['min_crossbars']} crossbars" in note
    text = " ".join(render(summary_panel(report)).replace("│", " ").split())
    assert "fewest crossbars" in text and "reprogramming rounds" in text
    assert "round" in render(layer_table(report)).splitlines()[2]


def test_utilization_note_without_budget() -> None:
    report = {"utilization": 0.5, "utilization_used": 0.5, "crossbars_budget": None, "crossbars_used": 12}
    assert utilization_note(report) == "50.0% of the 12 crossbars used"


def test_list_table() -> None:
    text = render(list_table("things", ["name", "value"], [("a", 1), ("b", 2)]))
    assert "things" in text and "name" in text and "b" in text


# ---------------------------------------------------------------------------------------------
# plots


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def _titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Collect each figure's suptitle and axes titles as the plot functions close them."""
    seen: list[str] = []
    real_close = plots.plt.close

    def close(fig: object = None) -> None:
        if fig is not None and hasattr(fig, "axes"):
            sup = getattr(fig, "_suptitle", None)
            seen.append(" | ".join([sup.get_text() if sup else ""] + [ax.get_title() for ax in fig.axes]))
        real_close(fig)

    monkeypatch.setattr(plots.plt, "close", close)
    return seen


def test_plot_occupancy_and_layers(fitted: Mapping, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    titles = _titles(monkeypatch)
    occ = plots.plot_occupancy(fitted, tmp_path / "occ.png")
    lay = plots.plot_layers(fitted.report, tmp_path / "layers.png")
    assert _is_png(occ) and _is_png(lay)
    assert f"{fitted.crossbars_used} crossbars" in titles[0]
    assert "showing" not in titles[0]
    assert "resnet20" in titles[1]


def test_plot_occupancy_by_round(rounds: Mapping, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    titles = _titles(monkeypatch)
    assert _is_png(plots.plot_occupancy(rounds, tmp_path / "occ.png"))
    assert _is_png(plots.plot_layers(rounds.report, tmp_path / "layers.png"))
    assert f"{rounds.rounds} reprogramming rounds" in titles[0]
    assert "round 1:" in titles[0] and "round 2:" in titles[0]


def test_plot_occupancy_draws_every_crossbar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond MAX_CROSSBARS every crossbar is one pixel: all are drawn, the legend names drawn layers only."""
    blocks = [
        PlacedBlock(layer=f"layer{i % 7}", copy=0, group0=0, group1=1, row0=0, row1=64, col0=0, col1=32,
                    crossbar=i, row_offset=0, col_offset=0, height=64, width=32, weights=64 * 32)
        for i in range(300)
    ]
    mapping = Mapping(model="synthetic", input_shape=(3, 8, 8), hardware="x", crossbar_rows=128,
                      crossbar_cols=128, crossbars_budget=None, layers=[], placed=blocks, crossbars_used=300)
    titles = _titles(monkeypatch)
    assert _is_png(plots.plot_occupancy(mapping, tmp_path / "occ.png"))
    assert "all 300 crossbars" in titles[0] and "one pixel each" in titles[0] and "first" not in titles[0]
    images: list = []
    real_imshow = plt.Axes.imshow
    monkeypatch.setattr(plt.Axes, "imshow", lambda ax, img, **kw: images.append(img) or real_imshow(ax, img, **kw))
    plots.plot_occupancy(mapping, tmp_path / "occ2.png")
    grid = images[0]
    drawn = int((abs(grid - 0.95).sum(axis=-1) > 1e-9).sum())  # pixels that are not the empty background
    assert drawn == 300


def test_short_names_for_onnx_layers() -> None:
    from xbarforge.report.table import short_names

    names = ["/features/features.0/Conv", "/features/features.1/conv/conv.0/Conv", "/blocks.0/attn/MatMul",
             "/blocks.0/attn/MatMul_1", "/blocks.0/attn/qkv/MatMul", "/head/Gemm", "conv1", "/Softmax"]
    assert short_names(names) == {
        "/features/features.0/Conv": "features.0",
        "/features/features.1/conv/conv.0/Conv": "features.1.conv.0",
        "/blocks.0/attn/MatMul": "blocks.0.attn.MatMul",  # two products in one module keep their op names
        "/blocks.0/attn/MatMul_1": "blocks.0.attn.MatMul_1",
        "/blocks.0/attn/qkv/MatMul": "blocks.0.attn.qkv",
        "/head/Gemm": "head",
        "conv1": "conv1",  # fx names stay
        "/Softmax": "Softmax",
    }
    assert len(set(short_names(names).values())) == len(names)

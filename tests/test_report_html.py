"""`xbarforge report --html`: one self-contained page from compile, sweep, search, quantize and basis results.

The page for a 4500-crossbar compile (report + mapping) must list every crossbar once, load nothing
from the network, and run in a real browser (Debian's chromium, headless) without a console message.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import fails, ok

import xbarforge
from xbarforge.compiler.mapping import Mapping
from xbarforge.report.html import detect_kind, load_inputs
from xbarforge.report.occupancy import mapping_occupancy
from xbarforge.search.nsga import Objective
from xbarforge.search.run import picks
from xbarforge.sim.monte_carlo import AccuracyReport

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BIG = ["vit_cifar", "--hw", "edge", "--crossbars", "4500"]  # 4481 crossbars used, 37 digital stages
DIGITAL_STAGES = 37


# ---------------------------------------------------------------------------------------------
# inputs in the formats the commands write (the slow commands' files built by hand from their code)


def sweep_doc() -> dict[str, Any]:
    """What `xbarforge sweep --json` writes (cli/sim.py `_write`): context, then one result per point."""
    results = []
    for xbar in (64, 128):
        for var in (0.0, 0.05):
            accs = [0.91 - var - 0.0001 * xbar + 0.002 * k for k in range(3)]
            r = AccuracyReport(hardware="isaac", mode="fast", samples=500, float_accuracy=0.93,
                               quantized_accuracy=0.92 - 0.0001 * xbar, chip_accuracies=accs, chip_seeds=[0, 1, 2],
                               setting={"crossbar": xbar, "variation": var}, nonideal={"variation": var}, seconds=0.5)
            results.append(r.to_dict())
    return {"model": "runs/r20/model.pt", "dataset": {"name": "cifar10"}, "split": "test",
            "calibration": {"split": "val", "images": 256}, "hardware": {"name": "isaac"}, "seed": 0, "mode": "fast",
            "model_meta": {"test_accuracy": 0.93}, "vary": {"crossbar": [64, 128], "variation": [0.0, 0.05]},
            "seconds": 2.0, "results": results}


def write_sweep_csv(doc: dict[str, Any], path: Path) -> None:
    """What `xbarforge sweep --csv` writes (cli/sim.py `_row`)."""
    keys = ("hardware", "mode", "samples", "float_accuracy", "quantized_accuracy", "chip_mean", "chip_std",
            "chip_min", "chip_max", "chips", "seconds")
    rows = [{**{f"vary.{k}": v for k, v in r["setting"].items()}, **{k: r[k] for k in keys}} for r in doc["results"]]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def search_doc() -> dict[str, Any]:
    """What `xbarforge search` writes to OUT/front.json (search/run.py `finish_front`)."""
    objectives = [Objective("accuracy", "max"), Objective("latency", "min")]
    front = []
    for i in range(5):
        lat = {"1": 40_000.0 + 9_000 * i, "8": 90_000.0 + 20_000 * i}
        front.append({"genome": [i, 1, 0], "arch": {"ks": [3, 5][i % 2], "depth": 2 + i},
                      "describe": f"k{[3, 5][i % 2]} d{2 + i}", "search": {"accuracy": 0.80 + 0.02 * i,
                                                                            "latency": lat["8"]},
                      "val_accuracy": 0.79 + 0.021 * i,
                      "compiled": {"latency_ns": lat, "energy_pj": 5e6 + 1e6 * i, "area_mm2": 3.0,
                                   "edap": 1e12 * (i + 1), "crossbars_used": 280 + i, "utilization": 0.7,
                                   "rounds": 1, "throughput_per_s": 1e4},
                      "speedup": {"isaac-like": 400_000.0 / lat["8"]}})
    doc = {"config": {"source": "runs/ofa", "hw": "rnc-paper", "crossbars": 294, "samples": 8,
                      "objectives": ["accuracy", "latency"]},
           "space": {"name": "mbv3-small", "input_shape": [3, 64, 64], "num_classes": 10, "genes": []},
           "hardware": "rnc-paper", "objectives": [o.__dict__ for o in objectives], "generations": 2,
           "evaluated": 12, "search_seconds": 30.0, "predictor": {"samples": 10},
           "baseline": {"name": "mobilenetv3_small", "mappings": {"isaac-like": {
               "latency_ns": {"1": 100_000.0, "8": 400_000.0}, "energy_pj": 9e6, "area_mm2": 4.0, "edap": 9e12,
               "crossbars_used": 140, "utilization": 0.5}}},
           "front": front}
    doc["picks"] = picks(front, objectives)
    doc["infeasible"] = {"count": 0, "example_reason": None, "fewest_crossbars": None}
    return doc


def quant_doc() -> dict[str, Any]:
    """What `xbarforge quantize` writes to OUT/result.json (quant/pipeline.py `quantize`)."""
    names = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "fc"]

    def policy(bits: list[float], lo: list[int], hi: list[int], util: float, acc: float) -> dict[str, Any]:
        layers = [{"name": n, "crossbars": 2 + i, "weight_cells": 10_000 + i, "crossbar": "128x128",
                   "utilization": util - 0.05 * i, "mean_bits": b, "min_bits": a, "max_bits": c}
                  for i, (n, b, a, c) in enumerate(zip(names, bits, lo, hi, strict=True))]
        return {"crossbars": 14, "weight_cells": 40_006, "utilization": util, "utilization_budget": util * 0.9,
                "fits": True, "pool_crossbars": None, "val_accuracy": acc, "mean_bits": sum(bits) / len(bits),
                "layers": layers}

    return {"model": "resnet20", "hardware": "isaac", "crossbar": "128x128", "budget": 14, "pools": None,
            "config": {"bits": [2, 3, 4, 5, 6, 7, 8], "finetune_epochs": 1, "seed": 0}, "source": {"path": "m.pt"},
            "utilization_denominator": "cells of the crossbars used (utilization_budget: of the whole budget)",
            "baselines": {"uniform": {"bits": 8, **policy([8] * 4, [8] * 4, [8] * 4, 0.6, 0.92)},
                          "uniform_fitting": {"bits": 6, **policy([6] * 4, [6] * 4, [6] * 4, 0.55, 0.90)}},
            "float_val_accuracy": 0.925, "stage1": {"episodes": 4}, "reward": 0.8,
            "policy": {n: [[0, 16, 6]] for n in names},
            "final": policy([7.5, 5.0, 4.5, 8.0], [7, 4, 4, 8], [8, 6, 5, 8], 0.86, 0.915),
            "finetune": {"val_accuracy": 0.918, "test_accuracy": 0.911}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind of input: a 4500-crossbar compile (report + mapping) and the other commands' files."""
    d = tmp_path_factory.mktemp("inputs")
    ok(["compile", *BIG, "--json", d / "report.json", "--mapping", d / "mapping.json", "-q"])
    ok(["basis", "compare", "resnet20", "--hw", "isaac", "--crossbars", "8,16,32", "--json", d / "basis.json", "-q"])
    sweep = sweep_doc()
    (d / "sweep.json").write_text(json.dumps(sweep, indent=2))
    write_sweep_csv(sweep, d / "sweep.csv")
    run = d / "search_run"
    run.mkdir()
    (run / "front.json").write_text(json.dumps(search_doc()))
    (run / "search.json").write_text(json.dumps({"source": "runs/ofa", "generations": 2}))  # config: not a result
    (d / "quant.json").write_text(json.dumps(quant_doc()))
    return {p.name: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def page(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report.html"
    names = ["report.json", "mapping.json", "sweep.json", "search_run", "quant.json", "basis.json"]
    ok(["report", *(inputs[n] for n in names), "--html", out])
    return out


def occupancy_data(text: str) -> list[dict[str, Any]]:
    """The data of every occupancy map in a page."""
    found = re.findall(r'<script type="application/json" class="occ-data">(.*?)</script>', text, re.S)
    return [json.loads(s) for s in found]


# ---------------------------------------------------------------------------------------------
# the page


def test_every_crossbar_has_one_cell(page: Path, inputs: dict[str, Path]) -> None:
    report = json.loads(inputs["report.json"].read_text())
    (occ,) = occupancy_data(page.read_text())
    assert report["crossbars_used"] >= 4000
    comp = occ["rounds"][0]["comp"]
    assert len(occ["rounds"]) == 1 and len(comp) == report["crossbars_budget"] == 4500  # the budget, all of it
    assert sum(count for _, count in occ["rounds"][0]["ids"]) == len(comp)
    assert sum(1 for c in comp if c) == report["crossbars_used"]  # the rest are unused crossbars of the budget
    held = sum(w for c in comp for _, w in occ["comps"][c])
    assert held == report["weight_cells"]


def test_page_shows_every_input_and_loads_nothing(page: Path) -> None:
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", text, re.I)
    assert links and all(link.startswith("#") for link in links)  # only in-page links (#s1, ...)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    for kind in ("compile", "sweep", "search", "quant", "basis"):
        assert f'data-kind="{kind}"' in text
    assert "search.json" not in text  # the search config in the run folder is not a result
    assert text.count('<tr class="digital">') == DIGITAL_STAGES  # digital stages: '-' for blocks, copies, util
    row = re.search(r'<tr class="digital"><td>(.*?)</tr>', text).group(1)
    assert re.findall(r"<td class=n>(.*?)</td>", row)[:4] == ["-", "-", "-", "-"]
    assert "isaac-like" in text and "of the 4500-crossbar budget" in text  # utilization names its denominator
    size = page.stat().st_size
    print(f"page size for {BIG}: {size / 1024:.0f} KiB")
    assert size < 1_000_000


def test_page_has_the_users_file_mode(page: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(page.stat().st_mode) == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------
# occupancy from counts


@pytest.mark.parametrize("model, hw, budget", [("resnet20", "edge", 5000), ("resnet20", "rnc-paper", 8)])
def test_occupancy_from_counts_matches_the_expanded_blocks(model: str, hw: str, budget: int) -> None:
    """Runs, shared runs and reprogramming rounds: the same cells per crossbar as listing every block."""
    m = xbarforge.compile(model, hw, crossbars=budget)
    assert m.runs and (m.shared or m.rounds > 1)
    occ = mapping_occupancy(Mapping.from_dict(json.loads(json.dumps(m.to_dict()))))
    got = {(r, x): {occ.layers[li]: w for li, w in occ.comps[c]} for r, ids, comp in occ.rounds
           for x, c in zip(ids, comp, strict=True) if c}
    want: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for b in m.blocks:
        want[(b.round, b.crossbar)][b.layer] += b.weights
    assert got == {k: dict(v) for k, v in want.items()}
    assert len(occ.rounds) == m.rounds and all(len(comp) == budget for _, _, comp in occ.rounds)


# ---------------------------------------------------------------------------------------------
# inputs: kinds, folders, errors


def test_inputs_are_recognised_by_their_keys(inputs: dict[str, Path]) -> None:
    kinds = {s.path.name: s.kind for p in inputs.values() for s in load_inputs([p])}
    assert kinds == {"report.json": "compile", "mapping.json": "mapping", "sweep.json": "sweep",
                     "sweep.csv": "sweep", "front.json": "search", "quant.json": "quant", "basis.json": "basis"}
    assert detect_kind({"model": "x"}) is None and detect_kind([1, 2]) is None


def test_mapping_alone_uses_its_report_and_report_alone_a_rough_map(inputs: dict[str, Path], tmp_path: Path) -> None:
    ok(["report", inputs["mapping.json"], "--html", tmp_path / "m.html"])
    text = (tmp_path / "m.html").read_text()
    assert "Against the isaac-like baseline" in text and "exact, from the mapping" in text
    ok(["report", inputs["report.json"], inputs["sweep.json"], "--html", tmp_path / "r.html", "-q"])
    text = (tmp_path / "r.html").read_text()
    assert "rough, from the report alone" in text and len(occupancy_data(text)) == 1
    ok(["report", inputs["sweep.csv"], "--html", tmp_path / "c.html", "-q"])
    assert "chip mean ± std" in (tmp_path / "c.html").read_text()


def test_errors_are_one_line_naming_the_file(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.html"
    fails(["report", tmp_path / "missing.json", "--html", out], "missing.json: no such file or folder")
    (tmp_path / "other.json").write_text('{"loss": [1, 2]}')
    fails(["report", inputs["report.json"], tmp_path / "other.json", "--html", out], "other.json: not a result file")
    (tmp_path / "broken.json").write_text('{"front": ')
    fails(["report", tmp_path / "broken.json", "--html", out], "broken.json: not valid JSON")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    fails(["report", empty, "--html", out], "empty_run: no xbarforge result files")
    fails(["report", inputs["report.json"], "--html", tmp_path / "nowhere" / "p.html"], "does not exist")
    fails(["report", inputs["report.json"]], "--html")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# a real browser

# After the page's own script: hover a crossbar, zoom with ctrl+wheel, drag, highlight a layer,
# then write what the tooltip and the map say into the DOM for --dump-dom.
PROBE = """<script>
(function () {
  var occ = document.querySelector(".occ"), c = occ.querySelector("canvas"), b = c.getBoundingClientRect();
  function ev(type, x, y) {
    c.dispatchEvent(new PointerEvent(type, {clientX: b.left + x, clientY: b.top + y, bubbles: true, pointerId: 1}));
  }
  ev("pointermove", 2, 2);
  var first = occ.querySelector(".occ-tip").textContent;
  c.dispatchEvent(new WheelEvent("wheel", {clientX: b.left + 9, clientY: b.top + 9, deltaY: -100, ctrlKey: true,
                                           bubbles: true, cancelable: true}));
  ev("pointerdown", 60, 60); ev("pointermove", 20, 30); ev("pointerup", 20, 30);
  occ.querySelector(".occ-legend li").click();
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({tip: first, zoom: occ.querySelector(".occ-zoom").value,
                                    info: occ.querySelector(".occ-info").textContent});
  document.body.appendChild(pre);
})();
</script></body>"""


def chromium_dom(page: Path) -> tuple[str, list[str]]:
    """(the DOM after the scripts ran, the browser's console lines) from headless chromium."""
    cmd = [CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=5000", "--window-size=1400,1000", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # every console.log/warn/error and uncaught exception is a line `...:INFO:CONSOLE(1)] "message", source: ...`
    # (the level is not in it, so the page must log nothing at all)
    console = [line for line in done.stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]
    return done.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install chromium")
def test_page_runs_in_chromium_without_console_errors(page: Path, tmp_path: Path) -> None:
    dom, console = chromium_dom(page)
    assert not console, console
    assert 'data-drawn="4500"' in dom  # the map's script ran to the end and drew the 4500 crossbars

    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE))
    dom, console = chromium_dom(probe)
    assert not console, console
    found = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    assert found["tip"].startswith("crossbar 0") and "cells hold weights" in found["tip"]
    assert int(found["zoom"]) > 1 and "highlighted: " in found["info"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install chromium")
def test_console_errors_are_caught(tmp_path: Path) -> None:
    """The console check itself: a page with a script error must produce a console line."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, console = chromium_dom(bad)
    assert any("undefinedFunction" in line for line in console)

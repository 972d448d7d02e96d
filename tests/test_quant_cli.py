"""`xbarforge quantize` end to end on digits: search, fine-tuning, resume, pools and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import DIGITS_NET, fails, ok

from xbarforge.train import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

# isaac cells (2 bits, offset encoding) on 32x32 crossbars: 31 usable columns, so 8 channels of 8 bits
# (4 columns each) spill one channel into a second column block
SMALL = ["--hw", "isaac", "--set", "crossbar.rows=32", "crossbar.cols=32"]
FAST = ["--episodes", "8", "--val-images", "120", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    root = tmp_path_factory.mktemp("quantcli")
    (root / "net.py").write_text(DIGITS_NET)
    ok(["train", f"{root / 'net.py'}:build", "--data", "digits", "--epochs", "3", "--out", root / "run", "--quiet"])
    return root / "run" / "model.pt"


@pytest.fixture(scope="module")
def quantized(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    out = tmp_path_factory.mktemp("q") / "run"
    argv = ["quantize", trained, *SMALL, "--crossbars", "14", "--bits", "2-8", "--agent", "ddpg", *FAST,
            "--finetune-epochs", "1", "--out", out]
    ok(argv)
    return out, argv


def _result(out: Path) -> dict[str, Any]:
    return json.loads((out / "result.json").read_text())


def test_quantize_writes_a_fitting_policy_and_its_reports(quantized: tuple[Path, list[Any]]) -> None:
    out, _ = quantized
    res = _result(out)
    assert res["budget"] == 14
    assert res["baselines"]["uniform"]["bits"] == 8 and not res["baselines"]["uniform"]["fits"]
    fin = res["final"]
    assert fin["fits"] and fin["crossbars"] <= 14
    assert 0 < fin["utilization"] <= 1 and 2 <= fin["mean_bits"] <= 8
    for runs in res["policy"].values():
        assert runs[0][0] == 0 and all(2 <= b <= 8 for _, _, b in runs)
        assert all(a[1] == b[0] for a, b in zip(runs, runs[1:], strict=False))
    assert res["stage1"]["episodes"] + res["stage2"]["episodes"] == 8
    ft = res["finetune"]
    assert 0 <= ft["test_accuracy"] <= 1 and 0 <= ft["val_accuracy"] <= 1
    for name in ("policy.json", "policy.png", "learning.png", "config.json", "stage1/history.jsonl",
                 "stage2/history.jsonl"):
        assert (out / name).exists(), name


def test_finetuned_model_holds_the_policy(quantized: tuple[Path, list[Any]]) -> None:
    out, _ = quantized
    res = _result(out)
    model, _ = load_model(out / "finetune" / "model.pt", device="cpu")
    layers = dict(model.named_modules())
    for name, runs in res["policy"].items():
        w = layers[name].weight.detach().flatten(1).numpy()
        for start, end, bits in runs:
            for row in w[start:end]:
                assert len(np.unique(np.abs(row))) <= 2 ** (bits - 1), (name, bits)


def test_rerun_resumes_without_new_work(quantized: tuple[Path, list[Any]]) -> None:
    out, argv = quantized
    before = _result(out)
    lines = (out / "stage2" / "history.jsonl").read_text()
    ok(argv)
    after = _result(out)
    assert after["policy"] == before["policy"] and after["final"] == before["final"]
    assert (out / "stage2" / "history.jsonl").read_text() == lines


def test_resume_flag_continues_the_run(quantized: tuple[Path, list[Any]], tmp_path: Path) -> None:
    out, argv = quantized
    before = _result(out)
    again = [a for a in argv if a != out and a != "--out"] + ["--resume", out]
    ok(again)
    assert _result(out)["policy"] == before["policy"]
    fails([*again[:-1], tmp_path / "empty"], "no quantization run there")
    fails([*again, "--out", tmp_path / "other"], "different folders")


def test_other_settings_in_the_same_folder_are_refused(quantized: tuple[Path, list[Any]]) -> None:
    out, argv = quantized
    changed = [*argv]
    changed[changed.index("--crossbars") + 1] = "15"
    fails(changed, "other settings (crossbars")
    assert _result(out)["budget"] == 14


def test_same_seed_same_policy(trained: Path, tmp_path: Path) -> None:
    runs = []
    for tag in ("a", "b"):
        ok(["quantize", trained, *SMALL, "--crossbars", "14", "--agent", "evolution", *FAST, "--stages", "layer",
            "--finetune-epochs", "0", "--out", tmp_path / tag])
        runs.append(_result(tmp_path / tag))
    assert runs[0]["policy"] == runs[1]["policy"]
    assert "finetune" not in runs[0] and "stage2" not in runs[0]


def test_pools_chip_assigns_sizes(trained: Path, tmp_path: Path) -> None:
    chip = ["--hw", "hetero-example", "--set",
            "chip.pools=[{rows: 16, cols: 16, count: 30}, {rows: 32, cols: 32, count: 6},"
            " {rows: 64, cols: 64, count: 2}]"]
    ok(["quantize", trained, *chip, "--agent", "evolution", *FAST, "--finetune-epochs", "0", "--out", tmp_path / "q"])
    res = _result(tmp_path / "q")
    assert res["budget"] is None and len(res["pools"]) == 3
    fin = res["final"]
    assert fin["fits"] and sum(fin["pool_crossbars"]) == fin["crossbars"]
    assert all(u <= p["count"] for u, p in zip(fin["pool_crossbars"], res["pools"], strict=True))
    assert {rec["crossbar"] for rec in fin["layers"]} <= {"16x16", "32x32", "64x64"}
    fails(["quantize", trained, *chip, "--crossbars", "9", *FAST, "--out", tmp_path / "x"], "pools")


def test_budget_too_small_is_one_line(trained: Path, tmp_path: Path) -> None:
    fails(["quantize", trained, *SMALL, "--crossbars", "2", *FAST, "--out", tmp_path / "q"],
          "crossbar budget too small")


def test_bad_bits_are_one_line(trained: Path, tmp_path: Path) -> None:
    fails(["quantize", trained, *SMALL, "--bits", "8-2", *FAST, "--out", tmp_path / "q"], "--bits")
    fails(["quantize", trained, *SMALL, "--bits", "1-4", *FAST, "--out", tmp_path / "q"], "bit")


def test_missing_model_file_or_folder_is_one_line(trained: Path, tmp_path: Path) -> None:
    fails(["quantize", tmp_path / "nope.pt", *SMALL, *FAST, "--out", tmp_path / "q"], "nope.pt")
    fails(["quantize", trained, *SMALL, *FAST], "give --out")

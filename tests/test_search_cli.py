"""`xbarforge supernet train | search | export | finetune` end to end on the digits data (tiny)."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import fails, ok

from xbarforge.report.jsonio import read_json
from xbarforge.train.modelio import load_model


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ofa")
    torch.set_num_threads(1)
    ok(["supernet", "train", "mbv3-small", "--data", "digits", "--resolution", "32", "--epochs", "1",
                "--random-subnets", "1", "--out", str(out), "--quiet"])
    return out


@pytest.fixture(scope="module")
def search_dir(supernet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    ok(["search", str(supernet_dir), "--hw", "rnc-paper", "--crossbars", "300", "--generations", "2",
                "--population", "6", "--predictor-samples", "10", "--val-images", "60", "--out", str(out), "-q"])
    return out


def test_search_writes_front_and_log(search_dir):
    doc = read_json(search_dir / "front.json")
    assert doc["front"] and set(doc["picks"]) == {"high-accuracy", "low-latency", "knee"}
    p = doc["front"][0]
    assert {"arch", "genome", "val_accuracy", "compiled", "speedup"} <= set(p)
    assert p["speedup"]["isaac-like"] > 1  # duplication under 300 crossbars beats no duplication
    assert doc["predictor"]["samples"] == 10
    lines = (search_dir / "nsga" / "candidates.jsonl").read_text().splitlines()
    assert len(lines) == doc["evaluated"] and json.loads(lines[0])["genome"]
    assert (search_dir / "front.png").stat().st_size > 0
    assert (search_dir / "front.csv").read_text().count("\n") == len(doc["front"]) + 1


def test_rerun_resumes_without_new_evaluations(search_dir, supernet_dir):
    before = (search_dir / "nsga" / "candidates.jsonl").read_text()
    ok(["search", "--resume", str(search_dir), "-q"])
    assert (search_dir / "nsga" / "candidates.jsonl").read_text() == before
    fails(["search", str(supernet_dir), "--crossbars", "250", "--generations", "2", "--population", "6",
           "--predictor-samples", "10", "--val-images", "60", "--out", str(search_dir), "-q"], "other settings")


def test_export_and_finetune(search_dir, tmp_path):
    model_file = tmp_path / "best.pt"
    ok(["export", str(search_dir), "--pick", "low-latency", "--out", str(model_file)])
    model, meta = load_model(model_file)
    doc = read_json(search_dir / "front.json")
    assert meta["arch"]["arch"] == doc["front"][doc["picks"]["low-latency"]]["arch"]
    assert (tmp_path / "best.mapping.json").exists()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    ok(["finetune", str(model_file), "--epochs", "1", "--out", str(tmp_path / "ft"), "-q"])
    _, ft_meta = load_model(tmp_path / "ft" / "model.pt")
    assert ft_meta["test_accuracy"] is not None and ft_meta["finetuned_from"] == str(model_file)


def test_bad_inputs_are_one_line(search_dir, supernet_dir, tmp_path):
    fails(["export", str(search_dir), "--pick", "index=999", "--out", str(tmp_path / "x.pt")],
          "the front has")
    fails(["export", str(search_dir), "--pick", "best", "--out", str(tmp_path / "x.pt")], "choose")
    fails(["search", str(supernet_dir), "--objectives", "accuracy,speed", "--out", str(tmp_path / "s")],
          "unknown 'speed'")
    fails(["search", str(tmp_path), "--out", str(tmp_path / "s2")], "supernet")
    fails(["search", str(supernet_dir), "--space", "nax-resnet20", "--crossbars", "300",
                   "--out", str(tmp_path / "s3")], "is for 'mbv3-small'")
    fails(["search", "--resume", str(tmp_path / "nothing")], "no search there")
    fails(["search", str(supernet_dir), "--predictor-samples", "8", "--out", str(tmp_path / "s4")],
          "--predictor-samples: must be >= 10 (got 8)")  # a config check, named as the option
    fails(["supernet", "train", "nope", "--data", "digits", "--out", str(tmp_path / "n")],
          "unknown search space")


def test_too_small_budget_gives_an_empty_front_with_reasons(supernet_dir, tmp_path):
    out = tmp_path / "tiny"
    ok(["search", str(supernet_dir), "--crossbars", "5", "--generations", "1", "--population", "4",
                "--predictor-samples", "10", "--val-images", "60", "--out", str(out), "-q"])
    doc = read_json(out / "front.json")
    assert doc["front"] == []
    reasons = [json.loads(line)["reason"] for line in (out / "nsga" / "candidates.jsonl").read_text().splitlines()]
    assert all("budget 5" in r for r in reasons)

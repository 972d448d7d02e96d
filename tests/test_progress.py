"""Long commands show progress when their output goes to a file (CI logs, nohup), not only on a terminal.

Each command runs as its own process with stdout redirected to a file; the test waits for a plain
progress line (`[HH:MM:SS] what: done/total ...`) and stops the process there, so it costs seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import DIGITS_NET, ok

from xbarforge.report.progress import Tracker

PROGRESS = re.compile(r"^\[\d\d:\d\d:\d\d\] .+: \d+/\d+ \(\d+%\) elapsed", re.M)
FIRST_LINE_S = 60  # generous on a loaded 2-core machine; the line comes right after start-up and data loading


def _first_progress(argv: list[Any], log: Path) -> str:
    """Start `xbarforge ARGV` with stdout in `log`; return its first progress line (then stop it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "xbarforge", *map(str, argv)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + FIRST_LINE_S
            while time.monotonic() < deadline:
                m = PROGRESS.search(log.read_text())
                if m:
                    return m.group(0)
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        finally:
            proc.kill()
            proc.wait()
    m = PROGRESS.search(log.read_text())
    assert m, f"no progress line from `xbarforge {' '.join(map(str, argv))}`:\n{log.read_text()[-2000:]}"
    return m.group(0)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress")
    (root / "net.py").write_text(DIGITS_NET)
    ok(["train", f"{root / 'net.py'}:build", "--data", "digits", "--epochs", "1", "--limit", "300", "--out",
        root / "run", "--quiet"])
    return root / "run" / "model.pt"


def test_train_prints_progress_lines_into_a_file(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(DIGITS_NET)
    line = _first_progress(["train", f"{tmp_path / 'net.py'}:build", "--data", "digits", "--epochs", "2", "--out",
                            tmp_path / "run"], tmp_path / "log")
    assert "train epoch 1/2:" in line


@pytest.mark.parametrize("command", ["simulate", "sweep", "quantize", "basis"])
def test_long_commands_print_progress_lines_into_a_file(command: str, digits_model: Path, tmp_path: Path) -> None:
    argv: list[Any] = {
        "simulate": ["simulate", digits_model, "--hw", "rnc-paper", "--variation", "0.05", "--chips", "3"],
        "sweep": ["sweep", digits_model, "--hw", "rnc-paper", "--vary", "variation=0,0.05", "--chips", "2"],
        "quantize": ["quantize", digits_model, "--hw", "rnc-paper", "--episodes", "6", "--val-images", "100",
                     "--out", tmp_path / "q"],
    }.get(command, [])
    if command == "basis":
        run = tmp_path / "b"
        ok(["basis", "fit", digits_model, "--hw", "rnc-paper", "--set", "crossbar.rows=16", "crossbar.cols=8",
            "--crossbars", "4", "--group-crossbars", "2", "--out", run, "-q"])
        argv = ["basis", "train", run, "--epochs", "1", "--coeff-epochs", "1"]
    line = _first_progress(argv, tmp_path / "log")
    assert {"simulate": "simulate: chips", "sweep": "sweep: 2 points", "quantize": "", "basis": "train epoch"}[
        command] in line


def test_supernet_training_prints_progress_lines_into_a_file(tmp_path: Path) -> None:
    line = _first_progress(["supernet", "train", "mbv3-small", "--data", "digits", "--resolution", "32", "--epochs",
                            "1", "--limit", "400", "--out", tmp_path / "ofa"], tmp_path / "log")
    assert "supernet epoch 1/1:" in line


def test_tracker_lines_have_eta_and_are_throttled(capsys: pytest.CaptureFixture[str]) -> None:
    with Tracker("work", 4, every_s=3600, describe=lambda f: f"best {f['best']}", best=1) as bar:
        for _ in range(4):
            bar.update(advance=1, best=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # the start line and the end line; updates in between are throttled
    assert lines[0].endswith("work: 0/4 (0%) elapsed 0s  best 1")
    assert lines[1].endswith("work: 4/4 (100%) elapsed 0s  best 2 done")
    with Tracker("work", 10, every_s=0) as bar:
        bar.update(advance=5)
    assert "ETA" in capsys.readouterr().out

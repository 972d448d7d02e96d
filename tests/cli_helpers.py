"""Running `xbarforge` in-process for the CLI tests: exit code and captured output."""

from __future__ import annotations

import contextlib
import io
import textwrap
from typing import Any

from xbarforge.cli import main

# A small BN conv net for sklearn digits (8x8), as a `file.py:build` model: 9, 72 and 64 rows;
# 8, 16 and 10 output channels; 72 + 1152 + 640 = 1864 weights
DIGITS_NET = textwrap.dedent('''
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10),
        )
''')


def run_cli(argv: list[Any]) -> tuple[int, str, str]:
    """`xbarforge ARGV` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def ok(argv: list[Any]) -> str:
    """Run a command that must succeed; its stdout."""
    code, stdout, err = run_cli(argv)
    assert code == 0, err
    return stdout


def fails(argv: list[Any], match: str) -> None:
    """Run a command that must fail with exit code 2 and one error line containing `match`."""
    code, _, err = run_cli(argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], err

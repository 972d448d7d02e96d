"""What every sub-command of the `xbarforge` command line shares: option value parsers, the
console, output checks, warnings, errors and exit codes. Command modules import from here and from
the library, never from each other or from `xbarforge.cli.main`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

PROG = "xbarforge"
DEFAULT_HW = "edge"
DEFAULT_SAMPLES = (1, 8, 64)
OBJECTIVES = ("balanced", "throughput", "latency", "none")
EFFORTS = ("fast", "thorough")
SCHEDULES = ("chain", "dag")
DEMO = {"model": "mobilenetv3_small", "input": (3, 64, 64), "classes": 10, "hw": "edge"}

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A malformed command line or option value (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# ---------------------------------------------------------------------------------------------
# option value parsers (argparse turns ArgumentTypeError into "argument --x: <message>")


def parse_shape(text: str) -> tuple[int, ...]:
    """'3x64x64' -> (3, 64, 64); a single number N is a flat input of N features."""
    parts = text.strip().lower().replace("*", "x").replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) not in (1, 3) or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected CxHxW such as 3x64x64 (or N for a flat input), got '{text}'"
        )
    return dims


def parse_samples(text: str) -> list[int]:
    """'1,8,64' -> [1, 8, 64] (positive, duplicates dropped, order kept)."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        try:
            k = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated sample counts such as 1,8,64, got '{text}'"
            ) from None
        if k < 1:
            raise argparse.ArgumentTypeError(f"sample counts must be at least 1, got '{text}'")
        if k not in out:
            out.append(k)
    return out


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got '{text}'") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _float(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1)."""
    value = _float(text, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def closed_fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _float(text, "a number in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


# ---------------------------------------------------------------------------------------------
# models from files


def one_line(exc: BaseException) -> str:
    """An exception as one line (a config check from arguments names the option)."""
    if type(exc).__module__.startswith("pydantic"):  # a config built from arguments: name the option
        return validation_line(exc)
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def validation_line(exc: Any) -> str:
    """pydantic's multi-line report as one line naming the command-line option: `--predictor-samples:
    must be >= 10 (got 8)`."""
    try:
        err = exc.errors()[0]
    except (AttributeError, IndexError, TypeError):
        return " ".join(str(exc).split())
    field = ".".join(str(part) for part in err.get("loc", ()) if not isinstance(part, int)) or "value"
    option = f"--{field.replace('_', '-')}" if "." not in field else field
    msg = str(err.get("msg", "invalid")).replace("Input should be ", "must be ")
    msg = msg.replace("greater than or equal to ", ">= ").replace("less than or equal to ", "<= ")
    more = len(exc.errors()) - 1
    extra = f" (and {more} more)" if more > 0 else ""
    return f"{option}: {msg} (got {err.get('input')!r}){extra}"


def make_console(quiet: bool = False) -> Console:
    """Rich console on stdout; 160 columns when not a terminal and COLUMNS is unset."""
    console = Console(highlight=False, quiet=quiet)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, quiet=quiet, width=160)
    return console


def check_output(path: str | None, option: str) -> Path | None:
    """Fail before compiling when an output file cannot be written."""
    if path is None:
        return None
    out = Path(path).expanduser()
    if out.is_dir():
        raise UsageError(f"{option} {path}: is a folder, expected a file name")
    if not out.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {out.parent} does not exist")
    return out


def layers_plot_path(path: Path) -> Path:
    """Where `--plot out.png` puts the per-layer chart: out_layers.png."""
    return path.with_name(f"{path.stem}_layers{path.suffix or '.png'}")


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Hold back Python warnings (shown after success, dropped on error: errors stay one line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        yield caught


def show_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        text = f"{w.category.__name__}: {one_line(Exception(str(w.message)))}"
        if text not in seen:
            seen.add(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)


def print_error(message: str) -> None:
    """`xbarforge: error: <message>` on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)

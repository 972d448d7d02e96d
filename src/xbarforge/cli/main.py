"""The `xbarforge` command: one entry point, one sub-command per capability.

    xbarforge compile squeezenet1_1 --input 3x64x64 --hw rnc-paper --crossbars 80
    xbarforge compile model.onnx --hw my_chip.yaml --set crossbar.rows=64 --json out.json
    xbarforge compile nets.py:build_net --input 3x32x32 --plot occupancy.png
    xbarforge presets | models | demo

Every mistake a user can make (an unknown model or preset, a bad YAML file or override, a
malformed option value, a file that does not exist) prints exactly one line,
`xbarforge: error: <message>`, to stderr and exits with code 2. Anything else is a bug: one line
and exit code 1, with the traceback when the environment variable XBARFORGE_DEBUG=1 is set.

Adding a sub-command: write a module `xbarforge/cli/<name>.py` with `add_<name>_command(subparsers)`
that creates its parser and sets `handler=<function(args) -> int>` with `set_defaults`, import only
`xbarforge.cli.common` and the library there (heavy modules inside the handler, so that start-up
stays fast), and append it to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from xbarforge.cli.basis import add_basis_command
from xbarforge.cli.common import (
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    Parser,
    UsageError,
    one_line,
    print_error,
)
from xbarforge.cli.compile import add_compile_command, add_demo_command
from xbarforge.cli.listing import add_models_command, add_presets_command
from xbarforge.cli.quant import add_quantize_command
from xbarforge.cli.report import add_report_command
from xbarforge.cli.search import add_export_command, add_finetune_command, add_search_command, add_supernet_command
from xbarforge.cli.sim import add_simulate_command, add_sweep_command
from xbarforge.cli.train import add_train_command
from xbarforge.errors import XbarforgeError

COMMANDS: list[Callable[[Any], None]] = [
    add_compile_command, add_presets_command, add_models_command, add_demo_command, add_train_command,
    add_simulate_command, add_sweep_command, add_basis_command, add_quantize_command, add_supernet_command,
    add_search_command, add_export_command, add_finetune_command, add_report_command,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command of COMMANDS."""
    from xbarforge import __version__

    parser = Parser(
        prog=PROG,
        description="Compile, simulate, search and quantize DNNs for RRAM crossbar accelerators.",
        epilog="Run `xbarforge <command> --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("XBARFORGE_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return EXIT_USAGE
        args.argv = argv
        return int(handler(args) or EXIT_OK)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_BUG
    except (XbarforgeError, UsageError, ValueError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print_error(one_line(exc))
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (set XBARFORGE_DEBUG=1 for the traceback)"
        print_error(f"internal error: {type(exc).__name__}: {one_line(exc)}{hint}")
        return EXIT_BUG

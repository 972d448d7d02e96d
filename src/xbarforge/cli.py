"""The `xbarforge` command: one entry point, one sub-command per capability.

    xbarforge compile squeezenet1_1 --input 3x64x64 --hw rnc-paper --crossbars 80
    xbarforge compile model.onnx --hw my_chip.yaml --set crossbar.rows=64 --json out.json
    xbarforge compile nets.py:build_net --input 3x32x32 --plot occupancy.png
    xbarforge presets | models | demo

Every mistake a user can make (an unknown model or preset, a bad YAML file or override, a
malformed option value, a file that does not exist) prints exactly one line,
`xbarforge: error: <message>`, to stderr and exits with code 2. Anything else is a bug: one line
and exit code 1, with the traceback when the environment variable XBARFORGE_DEBUG=1 is set.

Adding a sub-command: write `_add_<name>(subparsers)` that creates its parser and sets
`handler=<function(args) -> int>` with `set_defaults`, and append it to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import importlib.util
import math
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from xbarforge.basis.command import add_basis_command
from xbarforge.errors import XbarforgeError
from xbarforge.quant.command import add_quantize_command
from xbarforge.search.command import (
    add_export_command,
    add_finetune_command,
    add_search_command,
    add_supernet_command,
)
from xbarforge.sim.command import add_simulate_command, add_sweep_command
from xbarforge.train.command import add_train_command

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


class _Parser(argparse.ArgumentParser):
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


def load_factory(spec: str) -> Any:
    """Import `path/to/file.py:name` and return `name()` (an nn.Module).

    `name` may be a function or a class; it is called with no arguments. The file's folder is on
    sys.path while it is imported, so it can import its neighbours.
    """
    from torch import nn

    from xbarforge.errors import CaptureError, ModelNotFoundError

    file_part, _, attr = spec.rpartition(":")
    path = Path(file_part).expanduser()
    if not attr:
        raise ModelNotFoundError(f"model '{spec}': name the factory after the colon, e.g. {file_part}:build")
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    mod_name = f"_xbarforge_user_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise CaptureError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report its error as one line
        sys.modules.pop(mod_name, None)
        raise CaptureError(f"cannot import {path}: {type(exc).__name__}: {_one_line(exc)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == mod_name)
        hint = f" (callables there: {', '.join(found)})" if found else ""
        raise ModelNotFoundError(f"{path} has no callable '{attr}'{hint}")
    try:
        model = factory()
    except Exception as exc:
        raise CaptureError(f"{path}:{attr}() failed: {type(exc).__name__}: {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise CaptureError(f"{path}:{attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _is_factory_spec(text: str) -> bool:
    file_part, sep, _ = text.rpartition(":")
    return bool(sep) and file_part.endswith(".py")


def resolve_model(text: str, input_shape: tuple[int, ...] | None) -> tuple[Any, tuple[int, ...] | None]:
    """What `xbarforge.compile` takes for MODEL, and the input shape to use with it."""
    from xbarforge.errors import ModelNotFoundError

    if _is_factory_spec(text):
        model = load_factory(text)
        shape = input_shape or getattr(model, "input_shape", None)
        if shape is None:
            raise ModelNotFoundError(
                f"model '{text}': --input is required for a model built from a Python file"
                " (e.g. --input 3x32x32)"
            )
        return model, tuple(shape)
    if text.endswith(".py"):
        raise ModelNotFoundError(f"model '{text}': name the factory to call, e.g. {text}:build_model")
    if text.lower().endswith(".onnx"):
        if not Path(text).expanduser().is_file():
            raise ModelNotFoundError(f"ONNX file not found: {text}")
        return text, input_shape
    from xbarforge.zoo import list_models

    names = list_models()
    if text.strip().lower() not in names:
        close = difflib.get_close_matches(text.strip().lower(), names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelNotFoundError(
            f"unknown model '{text}': {hint}MODEL is a zoo name (see `xbarforge models`),"
            " an .onnx file or path/to/file.py:factory"
        )
    return text, input_shape


# ---------------------------------------------------------------------------------------------
# helpers


def _one_line(exc: BaseException) -> str:
    if type(exc).__module__.startswith("pydantic"):  # a config built from arguments: name the option
        return _validation_line(exc)
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _validation_line(exc: Any) -> str:
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


def _console(quiet: bool = False) -> Console:
    """Rich console on stdout; 160 columns when not a terminal and COLUMNS is unset."""
    console = Console(highlight=False, quiet=quiet)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, quiet=quiet, width=160)
    return console


def _check_output(path: str | None, option: str) -> Path | None:
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
def _collect_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Hold back Python warnings (shown after success, dropped on error: errors stay one line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        yield caught


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        text = f"{w.category.__name__}: {_one_line(Exception(str(w.message)))}"
        if text not in seen:
            seen.add(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# sub-commands


def _add_compile_options(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    if with_model:
        p.add_argument("model", metavar="MODEL",
                       help="zoo name (see `xbarforge models`), path to an .onnx file,"
                            " or path/to/file.py:factory (a function or class called with no arguments)")
        p.add_argument("--input", type=parse_shape, metavar="CxHxW",
                       help="input shape per sample, e.g. 3x64x64 (default: the zoo model's own,"
                            " the ONNX file's, or the module's input_shape attribute)")
        p.add_argument("--classes", type=positive_int, default=10, metavar="N",
                       help="classifier outputs for zoo models (default: 10)")
        p.add_argument("--hw", default=DEFAULT_HW, metavar="PRESET_OR_YAML",
                       help=f"hardware preset name or YAML file (default: {DEFAULT_HW};"
                            " see `xbarforge presets`)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a hardware field, e.g. --set crossbar.rows=64 precision.adc_bits=6")
    p.add_argument("--crossbars", type=positive_int, metavar="N",
                   help="crossbar budget (default: the chip's own budget; none = as many as needed)")
    p.add_argument("--samples", type=parse_samples, default=list(DEFAULT_SAMPLES), metavar="K,K,...",
                   help="sample counts k to report latency for (default: 1,8,64)")
    p.add_argument("--objective", choices=OBJECTIVES, default="balanced",
                   help="what duplication optimizes: balanced (all k), throughput (largest k),"
                        " latency (k=1), none (one packed copy per layer); default: balanced")
    p.add_argument("--schedule", choices=SCHEDULES, default="chain",
                   help="layers as a chain (as RNC) or as a DAG (branches overlap); default: chain")
    p.add_argument("--min-util", dest="min_util", type=fraction, metavar="U",
                   help="fill the crossbars used at least this much (weights / cells), e.g. 0.85")
    p.add_argument("--effort", choices=EFFORTS, default="fast",
                   help="period search: fast (milliseconds, for search loops) or thorough (seconds,"
                        " packs many more pipeline periods); default: fast")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (recorded in the report)")
    p.add_argument("--json", metavar="OUT.json", help="write the report (JSON) to this file")
    p.add_argument("--mapping", metavar="MAPPING.json",
                   help="write the mapping (every placed block) to this file")
    p.add_argument("--plot", metavar="OUT.png",
                   help="write the crossbar occupancy map to OUT.png and the per-layer chart"
                        " to OUT_layers.png")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors and warnings")


def _add_compile(sub: Any) -> None:
    p = sub.add_parser(
        "compile",
        help="map a network onto a crossbar chip and report its cost",
        description="Map a network onto an RRAM crossbar chip (partition, duplicate, pack) and report"
                    " crossbars, utilization, latency, throughput, energy, area and EDAP against the"
                    " isaac-like baseline.",
    )
    _add_compile_options(p)
    p.set_defaults(handler=cmd_compile, demo=False)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="compile the built-in example (mobilenetv3_small, 3x64x64, edge chip)",
        description="The default job of `make demo`: compile the zoo's mobilenetv3_small at 3x64x64 with"
                    " 10 classes onto the `edge` preset (its own budget). No data, no download.",
    )
    _add_compile_options(p, with_model=False)
    p.set_defaults(handler=cmd_compile, demo=True, model=DEMO["model"], input=DEMO["input"],
                   classes=DEMO["classes"], hw=DEMO["hw"])


def _add_presets(sub: Any) -> None:
    p = sub.add_parser("presets", help="list the bundled hardware presets",
                       description="List the bundled hardware presets (use the name with --hw); --show NAME"
                                   " prints every constant of one preset (or YAML file) with its source.")
    p.add_argument("--show", metavar="PRESET_OR_YAML", default=None,
                   help="every constant of this preset or YAML file, with the source its comment gives")
    p.set_defaults(handler=cmd_presets)


def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list the zoo models",
                       description="List the zoo models and their default input shapes.")
    p.set_defaults(handler=cmd_models)


COMMANDS: list[Callable[[Any], None]] = [
    _add_compile, _add_presets, _add_models, _add_demo, add_train_command, add_simulate_command, add_sweep_command,
    add_basis_command, add_quantize_command, add_supernet_command, add_search_command, add_export_command,
    add_finetune_command,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command of COMMANDS."""
    from xbarforge import __version__

    parser = _Parser(
        prog=PROG,
        description="Compile, simulate, search and quantize DNNs for RRAM crossbar accelerators.",
        epilog="Run `xbarforge <command> --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def cmd_compile(args: argparse.Namespace) -> int:
    """`xbarforge compile` (and `xbarforge demo`)."""
    import xbarforge
    from xbarforge.hardware import load_hardware, parse_overrides
    from xbarforge.report.jsonio import write_json
    from xbarforge.report.table import auto_layer_table, summary_panel

    json_out = _check_output(args.json, "--json")
    mapping_out = _check_output(args.mapping, "--mapping")
    plot_out = _check_output(args.plot, "--plot")
    out = _console(args.quiet)
    if args.demo:
        shape = "x".join(map(str, args.input))
        budget = "its own crossbar budget" if args.crossbars is None else f"a budget of {args.crossbars} crossbars"
        out.print(f"[bold]xbarforge demo[/bold]: {args.model} at {shape}, {args.classes} classes,"
                  f" on the '{args.hw}' preset ({budget})", markup=True)

    with _collect_warnings() as caught:
        hw = load_hardware(args.hw, **parse_overrides(args.overrides))
        model, shape = resolve_model(args.model, args.input)
        status = (Console(stderr=True).status(f"compiling {args.model} onto {hw.name} ...")
                  if sys.stderr.isatty() and not args.quiet else contextlib.nullcontext())
        with status:
            mapping = xbarforge.compile(
                model, hw, crossbars=args.crossbars, input_shape=shape, num_classes=args.classes,
                samples=args.samples, objective=args.objective, schedule=args.schedule, seed=args.seed,
                min_utilization=args.min_util, effort=args.effort,
            )
    _show_warnings(caught)
    report = mapping.report

    out.print(auto_layer_table(report, out))
    out.print(summary_panel(report))

    if json_out is not None:
        command = shlex.join([PROG, *args.argv])
        doc = {**report, "command": command, "xbarforge_version": xbarforge.__version__}
        write_json(json_out, doc)
        out.print(f"wrote report: {json_out}")
    if mapping_out is not None:
        mapping.save(mapping_out)
        out.print(f"wrote mapping: {mapping_out}")
    if plot_out is not None:
        from xbarforge.report.plots import plot_layers, plot_occupancy

        layers_out = layers_plot_path(plot_out)
        plot_occupancy(mapping, plot_out)
        plot_layers(report, layers_out)
        out.print(f"wrote crossbar occupancy map: {plot_out}")
        out.print(f"wrote per-layer utilization/latency chart: {layers_out}")
    return EXIT_OK


def _short_description(text: str) -> str:
    """The first clause of a preset description ('Demo edge chip: 576 ...' -> 'Demo edge chip')."""
    text = " ".join(text.split())
    for sep in (": ", ". "):
        if sep in text:
            return text.split(sep, 1)[0]
    return text


def cmd_presets(args: argparse.Namespace) -> int:
    """`xbarforge presets`: name, crossbar, bits, budget, MVM latency, description; `--show NAME`:
    every constant of one chip with its source."""
    from xbarforge.hardware import list_presets, load_hardware
    from xbarforge.report.table import list_table

    if getattr(args, "show", None):
        from xbarforge.hardware.sources import constants

        hw, rows = constants(args.show)
        _console().print(list_table(
            f"{hw.name}: every constant and its source ({hw.mvm_ns:.3f} ns per MVM)",
            ["key", "value", "source"],
            [(c.key, str(c.value), c.source or "(no comment in the file)") for c in rows],
        ))
        return EXIT_OK

    rows = []
    for name in list_presets():
        try:
            hw = load_hardware(name)
        except XbarforgeError as exc:
            rows.append((name, "-", "-", "-", "-", f"(invalid: {_one_line(exc)})"))
            continue
        pools = hw.chip.pools
        size = f"{hw.crossbar.rows}x{hw.crossbar.cols}"
        if pools:
            size = ", ".join(f"{p.rows}x{p.cols}" for p in pools)
        budget = hw.chip.budget
        if budget is None and pools and all(p.count for p in pools):
            budget = sum(p.count for p in pools)
        bits = f"{hw.precision.weight_bits}b weights / {hw.crossbar.cell_bits}b cells, {hw.crossbar.encoding}"
        rows.append((name, size, bits, "unbounded" if budget is None else f"{budget:,}",
                     f"{hw.mvm_ns:.1f} ns", _short_description(hw.description)))
    _console().print(list_table(
        "hardware presets (--hw NAME)",
        ["preset", "crossbar", "weights / cells", "crossbars", "MVM", "description"],
        rows,
    ))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    """`xbarforge models`: zoo names and default input shapes."""
    from xbarforge.report.table import list_table
    from xbarforge.zoo import default_input_shape, list_models

    rows = [(name, "x".join(map(str, default_input_shape(name)))) for name in list_models()]
    _console().print(list_table("zoo models (MODEL argument of compile)", ["model", "default input"], rows))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# entry point


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


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
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_BUG
    except (XbarforgeError, UsageError, ValueError, OSError) as exc:
        if debug:
            traceback.print_exc()
        _error(_one_line(exc))
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (set XBARFORGE_DEBUG=1 for the traceback)"
        _error(f"internal error: {type(exc).__name__}: {_one_line(exc)}{hint}")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())

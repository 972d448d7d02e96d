"""`xbarforge quantize`: array-aware mixed-precision quantization that fills crossbars (RaQu).

    xbarforge quantize runs/r20/model.pt --hw isaac --crossbars 120 --bits 2-8 --agent ddpg --episodes 300 --out runs/q
    xbarforge quantize runs/r20/model.pt --hw hetero-example --agent evolution --out runs/q2
    xbarforge quantize ... --resume runs/q     # or the same command again: resumes

Data come from the model file (its dataset, root and normalization) unless --data/--data-root say
otherwise. Policies are scored on a seeded subset of the validation split; the test split is
measured once, after fine-tuning.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xbarforge.cli.common import DEFAULT_HW, make_console, nonneg_float, nonneg_int, positive_float, positive_int

__all__ = ["add_quantize_command"]


def _bits(text: str) -> tuple[int, ...]:
    from xbarforge.errors import XbarforgeError
    from xbarforge.quant.space import parse_bits

    try:
        return parse_bits(text)
    except XbarforgeError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--bits: ")) from None


def add_quantize_command(sub: Any) -> None:
    """Register `xbarforge quantize`."""

    p = sub.add_parser(
        "quantize", help="mixed-precision weights that fill crossbars (RaQu)",
        description="Choose weight bits per layer, then per array-aware group of output channels, with an AutoML"
                    " agent (DDPG or evolution) so that the model fits the crossbar budget, fills its crossbars and"
                    " keeps its accuracy; then fine-tune the chosen policy. Rerun the same command to resume.")
    p.add_argument("model", metavar="MODEL.pt", help="a model file written by `xbarforge train`")
    p.add_argument("--hw", default=DEFAULT_HW, metavar="PRESET_OR_YAML",
                   help=f"hardware preset or YAML file; chip.pools make it heterogeneous (default: {DEFAULT_HW})")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override hardware keys, e.g. crossbar.rows=256")
    p.add_argument("--crossbars", type=positive_int, help="crossbar budget (default: the chip's; pools: their counts)")
    p.add_argument("--bits", type=_bits, default=(2, 3, 4, 5, 6, 7, 8), metavar="LO-HI|B1,B2,...",
                   help="allowed weight bit widths (default: 2-8)")
    p.add_argument("--agent", choices=("ddpg", "evolution"), default="ddpg", help="search agent (default: ddpg)")
    p.add_argument("--episodes", type=positive_int, default=300,
                   help="policies the agent scores, over both stages (default: 300)")
    p.add_argument("--stages", choices=("layer", "group", "both"), default="both",
                   help="layer: bits per layer only; group: per group only; both: layer, then group (default)")
    p.add_argument("--utilization-weight", type=nonneg_float, default=0.5,
                   help="reward per unit of crossbar utilization; 0 = array-unaware (default: 0.5)")
    p.add_argument("--max-groups", type=positive_int, default=4, help="stage-2 groups per layer at most (default: 4)")
    p.add_argument("--refine-steps", type=nonneg_int, default=2,
                   help="widths a stage-2 group may move from its layer's stage-1 width (default: 2)")
    p.add_argument("--val-images", type=positive_int, default=2000,
                   help="validation images that score a policy (default: 2000)")
    p.add_argument("--finetune-epochs", type=nonneg_int, default=1,
                   help="quantization-aware fine-tuning epochs of the final policy; 0 = none (default: 1)")
    p.add_argument("--finetune-lr", type=positive_float, default=0.01, help="peak lr of fine-tuning (default: 0.01)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--data", metavar="NAME", help="dataset (default: the model's)")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (default: the model's)")
    p.add_argument("--out", metavar="DIR", help="output folder (the same command again resumes)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR (same as --out DIR for an existing run)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or tables")
    p.set_defaults(handler=cmd_quantize)


def cmd_quantize(args: argparse.Namespace) -> int:
    from xbarforge.data.from_model import model_dataset
    from xbarforge.hardware import load_hardware, parse_overrides
    from xbarforge.quant.config import QuantConfig
    from xbarforge.quant.pipeline import quantize
    from xbarforge.train import load_model, read_model_file

    console = make_console(args.quiet)
    out = _out_dir(args)
    hw = load_hardware(args.hw, **parse_overrides(args.overrides))
    if hw.chip.pools and args.crossbars is not None:
        raise ValueError("--crossbars: this chip has pools; their counts are the budget (edit chip.pools instead)")
    model, meta = load_model(args.model, device="cpu")
    shape = tuple(int(v) for v in meta.get("input_shape") or getattr(model, "input_shape", ()) or ())
    if len(shape) != 3:
        raise ValueError(f"{args.model}: the model file records no (C, H, W) input shape")
    data = model_dataset(meta, args.data, args.data_root, args.model)
    config = QuantConfig(
        bits=args.bits, crossbars=args.crossbars, agent=args.agent, episodes=args.episodes, stages=args.stages,
        utilization_weight=args.utilization_weight, refine_steps=args.refine_steps, max_groups=args.max_groups,
        val_images=args.val_images, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        seed=args.seed,
    )
    source = {"path": str(Path(args.model).expanduser().resolve()),
              "val_accuracy": meta.get("val_accuracy"), "test_accuracy": meta.get("test_accuracy")}
    result = quantize(model, data, hw, config, shape, out, source=source, progress=not args.quiet,
                      arch=read_model_file(args.model).get("arch"))
    if not args.quiet:
        print_result(console, result)
        console.print(f"wrote {out / 'result.json'}, policy.json, policy.png, learning.png")
    return 0


def _out_dir(args: argparse.Namespace) -> Path:
    """--out DIR, or --resume DIR of an existing run (one of them is required)."""
    if args.resume is None:
        if args.out is None:
            raise ValueError("quantize: give --out DIR (or --resume DIR to continue a run)")
        return Path(args.out)
    resume = Path(args.resume)
    if args.out is not None and Path(args.out).resolve() != resume.resolve():
        raise ValueError(f"quantize: --out {args.out} and --resume {args.resume} name different folders")
    if not (resume / "config.json").exists():
        raise ValueError(f"--resume {args.resume}: no quantization run there (no config.json)")
    return resume


def print_result(console: Any, result: dict[str, Any]) -> None:
    """The policy against the uniform baselines, one row each."""
    from rich.table import Table

    t = Table(title=f"{result['model']} on {result['hardware']} (budget: {result['budget'] or 'the pools'})")
    for col in ("policy", "mean bits", "crossbars", "fits", "utilization", "val accuracy"):
        t.add_column(col, justify="right")
    rows = [(f"uniform {b['bits']}-bit" + (" (fits)" if key == "uniform_fitting" else ""), b)
            for key, b in result["baselines"].items()]
    rows.append(("searched", result["final"]))
    for name, r in rows:
        t.add_row(name, f"{r['mean_bits']:.2f}", str(r["crossbars"]), "yes" if r["fits"] else "no",
                  f"{100 * r['utilization']:.1f} %", f"{100 * r['val_accuracy']:.2f} %")
    console.print(t)
    ft = result.get("finetune")
    if ft:
        console.print(f"after {result['config']['finetune_epochs']} fine-tuning epoch(s): val "
                      f"{100 * (ft.get('val_accuracy') or 0):.2f} %, test {100 * (ft.get('test_accuracy') or 0):.2f} %")

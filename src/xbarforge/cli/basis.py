"""`xbarforge basis`: run a network larger than the chip without reprogramming (BasisN).

    xbarforge basis fit runs/r20/model.pt --hw isaac --crossbars 16 --coeff-bits 4 --out runs/b16
    xbarforge basis train runs/b16 --epochs 5
    xbarforge basis simulate runs/b16 --variation 0.02 --chips 5
    xbarforge basis compare runs/r20/model.pt --hw isaac --crossbars 8,16,32,64 --plot basis.png

`fit` writes DIR/basis.pt and DIR/basis.json; `train` and `simulate` read and extend them. Data come
from the source model file (its dataset, root and normalization) unless --data/--data-root say otherwise;
accuracies during fitting and training are on the validation split carved from the training set, the
test split is reported once at the end of `train` and by `simulate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xbarforge.cli.common import DEFAULT_HW, check_output, make_console, nonneg_int, positive_float, positive_int

if TYPE_CHECKING:
    import torch

__all__ = ["add_basis_command"]


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got '{text}'")
    return vals


def _hw_options(p: argparse.ArgumentParser, default: str | None) -> None:

    p.add_argument("--hw", default=default or DEFAULT_HW, metavar="PRESET_OR_YAML",
                   help=f"hardware preset or YAML file (default: {default or DEFAULT_HW})")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override hardware keys, e.g. reprogram.pulses_per_cell=20")


def _basis_options(p: argparse.ArgumentParser) -> None:

    p.add_argument("--group-crossbars", type=positive_int, metavar="P",
                   help="crossbars one kernel segment may draw on (must divide the crossbar count; default: the"
                        " smallest whose vectors cover half a crossbar's rows)")
    p.add_argument("--coeff-bits", type=positive_int, default=4, help="bits per coefficient (default: 4)")


def _data_options(p: argparse.ArgumentParser) -> None:

    p.add_argument("--data", metavar="NAME", help="dataset (default: the source model's)")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (default: the source model's)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="N images drawn at random (seed 0): the split evaluated, and for `basis train` at most N"
                        " images of each split trained and validated on")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or tables")


def add_basis_command(sub: Any) -> None:
    """Register `xbarforge basis` and its sub-commands."""

    top = sub.add_parser("basis", help="reprogramming-free inference from a global basis (BasisN)",
                         description="Express every kernel as quantized combinations of global basis vectors"
                                     " written to the crossbars once (BasisN), train it, simulate it, and compare"
                                     " its cost with reprogramming the crossbars.")
    bsub = top.add_subparsers(dest="basis_command", metavar="{fit,train,simulate,compare}", required=True)

    p = bsub.add_parser("fit", help="fit a basis and coefficients to a trained model",
                        description="Fit a global basis on CROSSBARS crossbars to a trained model's kernels and"
                                    " write DIR/basis.pt and DIR/basis.json.")
    p.add_argument("model", metavar="MODEL.pt", help="a model file written by `xbarforge train`")
    _hw_options(p, "isaac")
    p.add_argument("--crossbars", type=positive_int, required=True, help="crossbars that hold the basis")
    _basis_options(p)
    p.add_argument("--init", choices=("svd", "kmeans", "compare"), default="svd",
                   help="basis initialization; compare fits both and keeps the better on validation (default: svd)")
    p.add_argument("--refine", type=nonneg_int, default=2, help="segment-to-group reassignment rounds (default: 2)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--no-eval", action="store_true", help="skip the validation accuracy (no dataset needed)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _data_options(p)
    p.set_defaults(handler=cmd_fit)

    p = bsub.add_parser("train", help="train basis and coefficients, then coefficients alone",
                        description="Train a fitted basis network: basis and coefficients jointly (straight-through"
                                    " quantization), then the coefficients alone with the basis frozen as programmed."
                                    " Rerun the same command to resume.")
    p.add_argument("run", metavar="DIR", help="a folder written by `xbarforge basis fit`")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs of joint training (default: 5)")
    p.add_argument("--coeff-epochs", type=nonneg_int, help="epochs of coefficient-only training (default: 2)")
    p.add_argument("--lr", type=positive_float, default=0.02, help="peak lr of the joint step (default: 0.02)")
    p.add_argument("--coeff-lr", type=positive_float, default=0.005,
                   help="peak lr of the coefficient step (default: 0.005)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--seed", type=nonneg_int, default=0)
    _data_options(p)
    p.set_defaults(handler=cmd_train)

    p = bsub.add_parser("simulate", help="accuracy of a basis network on non-ideal chips",
                        description="Accuracy of a basis network whose basis is programmed once on a non-ideal"
                                    " chip and read by every layer: ideal reads, quantized, and chip instances.")
    p.add_argument("run", metavar="DIR", help="a folder written by `xbarforge basis fit` (or trained)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override the run's hardware, e.g. nonideal.variation=0.02 nonideal.read_noise=0.01")
    p.add_argument("--chips", type=positive_int, default=5, help="chip instances (default: 5)")
    p.add_argument("--mode", choices=("fast", "exact"), default="fast")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--calibration", type=positive_int, default=256, metavar="N",
                   help="validation images (drawn at random, seed 0) that fix input and ADC ranges (default: 256)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON")
    _data_options(p)
    p.set_defaults(handler=cmd_simulate)

    p = bsub.add_parser("compare", help="cycles, EDP (and fit accuracy) against reprogramming, per crossbar count",
                        description="BasisN against reprogramming the same crossbars, for each crossbar count:"
                                    " cycles and EDP per inference for each batch size, and optionally the validation"
                                    " accuracy right after fitting.")
    p.add_argument("model", metavar="MODEL", help="a model file, or a zoo name (cost only)")
    _hw_options(p, "isaac")
    p.add_argument("--crossbars", type=_int_list, required=True, metavar="N1,N2,...")
    _basis_options(p)
    p.add_argument("--batch", type=_int_list, default=[1, 64], metavar="B1,B2,...",
                   help="inferences per batch (default: 1,64)")
    p.add_argument("--accuracy", action="store_true", help="also fit each basis and report validation accuracy")
    p.add_argument("--plot", metavar="PNG", help="cycles, EDP and accuracy against the crossbar count")
    p.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    _data_options(p)
    p.set_defaults(handler=cmd_compare)


# ---- helpers ----

def _hardware(args: argparse.Namespace) -> Any:
    from xbarforge.hardware import load_hardware, parse_overrides

    return load_hardware(args.hw, **parse_overrides(args.overrides))


def _data(args: argparse.Namespace, meta: dict[str, Any], source: str, split: str = "val",
          calibration: int = 256) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bundle, x, y, calibration inputs) for the source model's dataset."""
    from xbarforge.data.from_model import evaluation_tensors, model_dataset

    data = model_dataset(meta, args.data, args.data_root, source)
    return (data, *evaluation_tensors(data, split, args.limit, calibration))


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / max(1, len(x))


def _layout(graph: Any, hw: Any, crossbars: int, group: int | None) -> Any:
    from xbarforge.basis.layout import default_group_crossbars, plan_basis

    return plan_basis(graph, hw, crossbars, group or default_group_crossbars(hw, crossbars))


def _cost_rows(layout: Any, graph: Any, hw: Any, coeff_bits: int, batches: list[int]) -> dict[str, Any]:
    from xbarforge.basis.cost import compare

    return compare(layout, graph, hw, coeff_bits, batches=tuple(batches))


def _print_costs(console: Any, doc: dict[str, Any], title: str) -> None:
    from rich.table import Table

    t = Table(title=title)
    for col in ("batch", "basis cycles", "reprogram cycles", "cycles ratio", "basis EDP", "reprogram EDP",
                "EDP ratio"):
        t.add_column(col, justify="right")
    for b, row in doc["batches"].items():
        t.add_row(str(b), f"{row['basis']['cycles_per_inference']:.4g}",
                  f"{row['reprogram']['cycles_per_inference']:.4g}", f"{100 * row['ratio']['cycles']:.3f} %",
                  f"{row['basis']['edp']:.4g}", f"{row['reprogram']['edp']:.4g}", f"{100 * row['ratio']['edp']:.3f} %")
    console.print(t)


# ---- sub-commands ----

def cmd_fit(args: argparse.Namespace) -> int:
    """`xbarforge basis fit`."""
    from xbarforge.basis.fit import fit_basis
    from xbarforge.basis.run import BasisRun, save_run
    from xbarforge.graph import capture
    from xbarforge.train import load_model, read_model_file

    console = make_console(args.quiet)
    hw = _hardware(args)
    model, meta = load_model(args.model, device="cpu")
    shape = tuple(int(v) for v in meta.get("input_shape") or getattr(model, "input_shape", ()) or ())
    if not shape:
        raise ValueError(f"{args.model}: the model file records no input shape")
    graph = capture(model, shape)
    layout = _layout(graph, hw, args.crossbars, args.group_crossbars)
    data = x = y = None
    if not args.no_eval:
        data, x, y, _ = _data(args, meta, args.model, split="val")
    inits = ("svd", "kmeans") if args.init == "compare" else (args.init,)
    fits = []
    for init in inits:
        net, report = fit_basis(model, layout, weight_bits=hw.precision.weight_bits, coeff_bits=args.coeff_bits,
                                init=init, refine=args.refine, seed=args.seed)
        acc = _accuracy(net, x, y) if x is not None else None
        fits.append((acc if acc is not None else -report.error_quantized, init, net, report, acc))
        console.print(f"init {init}: kernel error {100 * report.error:.2f} % (float), "
                      f"{100 * report.error_quantized:.2f} % (quantized)"
                      + (f", validation accuracy {100 * acc:.2f} %" if acc is not None else ""))
    _, init, net, report, acc = max(fits, key=lambda f: f[0])
    doc = read_model_file(args.model)
    source = {"path": str(Path(args.model).expanduser().resolve()), "arch": doc.get("arch"),
              "meta": {k: v for k, v in meta.items() if k != "arch"}}
    settings = {"crossbars": args.crossbars, "group_crossbars": layout.group_crossbars,
                "coeff_bits": args.coeff_bits, "init": init, "refine": args.refine, "seed": args.seed}
    history = [{"step": "fit", **{f"{r[1]}": {"error": r[3].error, "error_quantized": r[3].error_quantized,
                                                "val_accuracy": r[4]} for r in fits}, "kept": init,
                "val_accuracy": acc, "unconstrained_val_accuracy": meta.get("val_accuracy")}]
    run = BasisRun(net, hw, source, settings, history)
    costs = _cost_rows(layout, graph, hw, args.coeff_bits, [1, 64])
    run.history[0]["cost"] = costs
    save_run(run, args.out)
    if not args.quiet:
        console.print(f"{layout.model} on {hw.name}: basis of {layout.vectors} vectors x {layout.rows} rows on"
                      f" {layout.crossbars} crossbars ({100 * layout.basis_fraction:.1f} % of the model's"
                      f" {layout.model_weights} weights), {layout.groups} groups of {layout.group_crossbars}")
        _print_costs(console, costs, "BasisN against reprogramming, per inference")
        console.print(f"wrote {Path(args.out) / 'basis.pt'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`xbarforge basis train`."""
    from xbarforge.basis.run import load_run
    from xbarforge.basis.train import train_run
    from xbarforge.data.from_model import model_dataset

    console = make_console(args.quiet)
    run = load_run(args.run, device="cpu")
    data = model_dataset(run.source["meta"], args.data, args.data_root, args.run).limited(args.limit)
    coeff_epochs = 2 if args.coeff_epochs is None else args.coeff_epochs
    record = train_run(run, data, args.run, epochs=args.epochs, coeff_epochs=coeff_epochs, lr=args.lr,
                       coeff_lr=args.coeff_lr, seed=args.seed, batch_size=args.batch_size,
                       progress=not args.quiet, console=console)
    if not args.quiet:
        for h in run.history:
            if h.get("val_accuracy") is not None:
                console.print(f"  {h['step']:<13} validation {100 * h['val_accuracy']:.2f} %")
        ref = record.get("unconstrained_test_accuracy")
        console.print(f"test accuracy {100 * record['test_accuracy']:.2f} %"
                      + (f" (unconstrained model {100 * ref:.2f} %)" if ref is not None else ""))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """`xbarforge basis simulate`."""
    from xbarforge.basis.run import load_run, save_run
    from xbarforge.basis.simulate import simulate_basis_accuracy
    from xbarforge.hardware import override, parse_overrides
    from xbarforge.report.progress import Tracker

    check_output(args.json, "--json")
    console = make_console(args.quiet)
    run = load_run(args.run, device="cpu")
    hw = run.hw
    for key, value in parse_overrides(args.overrides).items():
        hw = override(hw, key, value)
    _, x, y, calib = _data(args, run.source["meta"], args.run, split=args.split, calibration=args.calibration)
    with Tracker("basis simulate: float, quantized, chips", args.chips + 2, enabled=not args.quiet,
                 transient=True) as bar:
        result = simulate_basis_accuracy(run.net, hw, x, y, calibration=calib, chips=args.chips, mode=args.mode,
                                         seed=args.seed, progress=lambda n: bar.update(advance=n))
    result = {"hardware": hw.name, "overrides": list(args.overrides), "split": args.split, **result}
    run.history.append({"step": "simulate", **result})
    save_run(run, args.run)
    if args.json:
        Path(args.json).expanduser().write_text(json.dumps(result, indent=2))
    if not args.quiet:
        console.print(f"{result['n']} {args.split} images, basis on {result['crossbars']} crossbars of {hw.name}:"
                      f" ideal reads {100 * result['float']:.2f} %, quantized {100 * result['quantized']:.2f} %,"
                      f" {args.chips} chips {100 * result['mean']:.2f} ± {100 * result['std']:.2f} %"
                      f" (min {100 * result['min']:.2f}, max {100 * result['max']:.2f})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """`xbarforge basis compare`."""
    from xbarforge.basis.fit import fit_basis
    from xbarforge.graph import capture

    check_output(args.json, "--json")
    check_output(args.plot, "--plot")
    console = make_console(args.quiet)
    hw = _hardware(args)
    model = meta = None
    if Path(args.model).expanduser().suffix == ".pt":
        from xbarforge.train import load_model

        model, meta = load_model(args.model, device="cpu")
        shape = tuple(int(v) for v in meta["input_shape"])
        graph = capture(model, shape)
    else:
        if args.accuracy:
            raise ValueError("--accuracy needs a trained model file (MODEL.pt), not a zoo name")
        graph = capture(args.model)
    x = y = None
    if args.accuracy and model is not None and meta is not None:
        _, x, y, _ = _data(args, meta, args.model, split="val")
    rows = []
    for c in args.crossbars:
        layout = _layout(graph, hw, c, args.group_crossbars)
        doc = _cost_rows(layout, graph, hw, args.coeff_bits, args.batch)
        row: dict[str, Any] = {"crossbars": c, "group_crossbars": layout.group_crossbars,
                               "basis_fraction": layout.basis_fraction, **doc}
        if x is not None and model is not None:
            net, rep = fit_basis(model, layout, weight_bits=hw.precision.weight_bits, coeff_bits=args.coeff_bits)
            row["fit_error_quantized"] = rep.error_quantized
            row["val_accuracy_after_fit"] = _accuracy(net, x, y)
        rows.append(row)
    result = {"model": graph.name, "hardware": hw.name, "coeff_bits": args.coeff_bits, "batches": args.batch,
              "rows": rows, "unconstrained_val_accuracy": (meta or {}).get("val_accuracy")}
    if args.json:
        from xbarforge.report.jsonio import dumps

        Path(args.json).expanduser().write_text(dumps(result))
    if args.plot:
        from xbarforge.report.plots import plot_basis

        plot_basis(result, args.plot)
    if not args.quiet:
        _compare_table(console, result)
    return 0


def _compare_table(console: Any, result: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"BasisN vs reprogramming: {result['model']} on {result['hardware']}")
    t.add_column("crossbars", justify="right")
    t.add_column("basis / weights", justify="right")
    for b in result["batches"]:
        t.add_column(f"cycles ratio B={b}", justify="right")
        t.add_column(f"EDP ratio B={b}", justify="right")
    if any("val_accuracy_after_fit" in r for r in result["rows"]):
        t.add_column("val acc. after fit", justify="right")
    for r in result["rows"]:
        cells = [str(r["crossbars"]), f"{100 * r['basis_fraction']:.1f} %"]
        for b in result["batches"]:
            ratio = r["batches"][str(b)]["ratio"]
            cells += [f"{100 * ratio['cycles']:.3f} %", f"{100 * ratio['edp']:.4f} %"]
        if "val_accuracy_after_fit" in r:
            cells.append(f"{100 * r['val_accuracy_after_fit']:.2f} %")
        t.add_row(*cells)
    console.print(t)

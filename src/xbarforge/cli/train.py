"""`xbarforge train`: train a zoo or user network on a dataset, with checkpoints, resume and
hardware-aware fine-tuning.

    xbarforge train resnet20 --data cifar10 --data-root ../shared/data/cifar10 --epochs 15 --out runs/r20
    xbarforge train lenet5 --data digits --epochs 5 --out runs/d
    xbarforge train resnet20 --hw isaac --hardware-aware --init runs/r20/model.pt --epochs 3 --out runs/r20-hwa

With --init, the dataset, its root and the input resolution default to those the initial model was
trained with. Killing a run and rerunning the same command continues from the last finished epoch.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xbarforge.cli.common import (
    PROG,
    UsageError,
    collect_warnings,
    make_console,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    show_warnings,
    unit_interval,
)
from xbarforge.errors import XbarforgeError
from xbarforge.model_spec import is_factory_spec, resolve_model

DEFAULTS: dict[str, Any] = {"epochs": 15, "weight_decay": 5e-4, "label_smoothing": 0.1, "val_fraction": 0.1}


if TYPE_CHECKING:
    import torch

def _resolution(text: str) -> tuple[int, int]:
    """'64' or '64x48' -> (H, W)."""
    parts = text.strip().lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) == 1:
        dims = (dims[0], dims[0])
    if len(dims) != 2 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW such as 64 or 64x64, got '{text}'")
    return dims[0], dims[1]


def add_train_command(sub: Any) -> None:
    """Register `xbarforge train` on the CLI's sub-parsers."""
    from xbarforge.data.names import DATASETS

    p = sub.add_parser(
        "train",
        help="train a network on a dataset (checkpoints, resume, hardware-aware)",
        description="Train a zoo or user network with SGD and a one-cycle learning rate; checkpoint every epoch"
                    " to OUT/checkpoint.pt (rerun the same command to resume), then write OUT/model.pt and"
                    " OUT/metrics.json.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="zoo name (see `xbarforge models`) or path/to/file.py:factory")
    p.add_argument("--data", choices=DATASETS, metavar="NAME",
                   help=f"dataset: {', '.join(DATASETS)} (default with --init: the initial model's)")
    p.add_argument("--data-root", metavar="DIR",
                   help="dataset folder or tarballs (CIFAR python batches, JPEG tarballs or train/ + test/ folders)")
    p.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"],
                   help=f"epochs (default: {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=positive_int,
                   help="batch size (default: 64; smaller for small datasets so an epoch has ~80 steps)")
    p.add_argument("--lr", type=positive_float,
                   help="peak learning rate of the one-cycle schedule (default: 0.1 for networks with batch norm,"
                        " 0.05 without; 0.001 with --optimizer adamw)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd",
                   help="sgd (Nesterov momentum, the CNN recipe; default) or adamw (transformers)")
    p.add_argument("--weight-decay", type=nonneg_float, default=DEFAULTS["weight_decay"],
                   help=f"weight decay on conv/linear weights (default: {DEFAULTS['weight_decay']})")
    p.add_argument("--label-smoothing", type=unit_interval, default=DEFAULTS["label_smoothing"],
                   help=f"label smoothing (default: {DEFAULTS['label_smoothing']})")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed: init, val split, batches (default: 0)")
    p.add_argument("--val-fraction", type=unit_interval, default=DEFAULTS["val_fraction"],
                   help=f"share of the training set held out for validation (default: {DEFAULTS['val_fraction']})")
    p.add_argument("--resolution", type=_resolution, metavar="N|HxW",
                   help="resize inputs on the fly, e.g. 64 (default: the data's own size, or the --init model's)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="at most N images of each split, drawn at random (seed 0): a quick run (the val and test"
                        " accuracies are then on N images)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (checkpoint, model.pt, metrics.json)")
    p.add_argument("--init", metavar="MODEL.pt", help="start from the weights of this model file")
    p.add_argument("--hw", metavar="PRESET_OR_YAML", help="hardware preset or YAML file (for --hardware-aware)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a hardware field, e.g. --set crossbar.rows=64")
    p.add_argument("--hardware-aware", action="store_true",
                   help="train with the --hw chip's noise and quantization in the forward pass")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/checkpoint.pt exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")
    p.set_defaults(handler=cmd_train)


def _build_model(args: argparse.Namespace, data: Any, out: Any) -> tuple[torch.nn.Module, dict[str, Any], Any]:
    """The network to train, its `arch` record and the (possibly resized) data."""
    import torch

    from xbarforge.zoo import create_model, default_input_shape

    if args.model.lower().endswith(".onnx"):
        raise UsageError(f"model '{args.model}': ONNX files cannot be trained; give a zoo name or file.py:factory")
    torch.manual_seed(args.seed)
    if is_factory_spec(args.model):
        model, _ = resolve_model(args.model, data.input_shape)
        file_part, _, attr = args.model.rpartition(":")
        return model, {"factory": f"{Path(file_part).expanduser().resolve()}:{attr}"}, data
    name, _ = resolve_model(args.model, None)
    name = str(name).strip().lower()
    try:
        model = create_model(name, num_classes=data.num_classes, input_size=data.input_shape)
    except XbarforgeError:
        natural = default_input_shape(name)[1:]
        if args.resolution is not None or all(d >= n for d, n in zip(data.input_shape[1:], natural, strict=True)):
            raise
        data = data.with_resolution(natural)
        out.print(f"note: {name} needs a larger input than {data.native_shape[1]}x{data.native_shape[2]};"
                  f" resizing {data.name} to {natural[0]}x{natural[1]} (set --resolution to choose)")
        torch.manual_seed(args.seed)
        model = create_model(name, num_classes=data.num_classes, input_size=data.input_shape)
    return model, {"zoo": name, "kwargs": {"num_classes": data.num_classes, "input_size": list(data.input_shape)}}, data


def cmd_train(args: argparse.Namespace) -> int:
    """`xbarforge train`."""
    from xbarforge.data import load_dataset
    from xbarforge.train.loop import MODEL_FILE, train
    from xbarforge.train.modelio import load_weights, read_model_file

    if (args.hw or args.overrides) and not args.hardware_aware:
        raise UsageError("--hw and --set only matter with --hardware-aware; add it (or drop them)")
    if args.hardware_aware and not args.hw:
        raise UsageError("--hardware-aware needs a chip: add --hw PRESET_OR_YAML (see `xbarforge presets`)")
    out_dir = Path(args.out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {args.out}: is a file, expected a folder")
    out = make_console(args.quiet)

    with collect_warnings() as caught:
        init_doc = read_model_file(args.init) if args.init else None
        init_meta = (init_doc or {}).get("meta") or {}
        data_name = args.data or init_meta.get("dataset")
        if data_name is None:
            raise UsageError("--data is required (one of cifar10, cifar100, digits, folder)")
        root = args.data_root if args.data_root is not None else (
            init_meta.get("data_root") if data_name == init_meta.get("dataset") else None)
        resolution = args.resolution
        if resolution is None and init_meta.get("input_shape") and data_name == init_meta.get("dataset"):
            resolution = tuple(init_meta["input_shape"][1:])
        data = load_dataset(data_name, root, val_fraction=args.val_fraction, seed=args.seed,
                            resolution=resolution).limited(args.limit)
        model, arch, data = _build_model(args, data, out)
        if init_doc is not None:
            try:
                load_weights(model, init_doc["state_dict"], f"--init {args.init}")
            except RuntimeError as exc:
                text = " ".join(str(exc).split())[:300]
                raise XbarforgeError(f"--init {args.init}: weights do not fit {args.model} ({text})") from None
        meta: dict[str, Any] = {"command": shlex.join([PROG, *getattr(args, "argv", [])])}
        if args.init:
            meta["init"] = str(Path(args.init).expanduser().resolve())
        remove = None
        if args.hardware_aware:
            from xbarforge.hardware import load_hardware, parse_overrides

            hw = load_hardware(args.hw, **parse_overrides(args.overrides))
            try:
                from xbarforge.sim import hardware_aware, remove_hardware_aware
            except ImportError as exc:
                raise XbarforgeError(f"--hardware-aware needs xbarforge.sim.hardware_aware, which is not"
                                     f" available in this installation ({exc})") from None
            model = hardware_aware(model, hw)
            remove = remove_hardware_aware
            meta["hardware_aware"] = {"hw": hw.name, "overrides": list(args.overrides)}
        result = train(
            model, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, seed=args.seed,
            out_dir=out_dir, resume=not args.no_resume, progress=not args.quiet, arch=arch, meta=meta, console=out,
            optimizer_name=args.optimizer,
        )
        if remove is not None:
            remove(result.model)
    show_warnings(caught)

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2%}"

    minutes = result.time_s / 60
    out.print(f"{args.model} on {data.name}: val {pct(result.val_accuracy)}  test {pct(result.test_accuracy)}"
              f"  ({result.epochs} epochs, {minutes:.1f} min training on {result.device}) -> {out_dir / MODEL_FILE}")
    return 0

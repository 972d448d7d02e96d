"""`xbarforge supernet train`, `search`, `export` and `finetune`: the RNC / NAX workflow.

    xbarforge supernet train mbv3-small --data cifar10 --data-root ../shared/data/cifar10 --resolution 64 \\
        --epochs 20 --out runs/ofa
    xbarforge search runs/ofa --hw rnc-paper --crossbars 168 --objectives accuracy,latency --out runs/s168
    xbarforge export runs/s168 --pick knee --out best.pt && xbarforge finetune best.pt --epochs 5 --out runs/ft
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xbarforge.cli.common import DEFAULT_HW, UsageError, positive_float, positive_int

__all__ = ["add_export_command", "add_finetune_command", "add_search_command", "add_supernet_command"]


def add_supernet_command(sub: Any) -> None:
    """Register `xbarforge supernet train`."""

    p = sub.add_parser("supernet", help="train a weight-sharing supernet for a search space",
                       description="One-shot supernets for architecture search.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    t = verbs.add_parser(
        "train", help="train a supernet (sandwich rule, in-place distillation)",
        description="Train every sub-net of SPACE at once: each step trains the largest sub-net on the labels and the"
                    " smallest plus random ones on its predictions. Checkpoints every epoch to OUT/checkpoint.pt"
                    " (rerun the same command to resume), then writes OUT/supernet.pt and OUT/metrics.json.")
    t.add_argument("space", metavar="SPACE", help="search space (mbv3-small, nax-resnet20)")
    t.add_argument("--data", default="cifar10", metavar="NAME", help="dataset (default: cifar10)")
    t.add_argument("--data-root", metavar="DIR", help="dataset folder or tarballs")
    t.add_argument("--resolution", type=positive_int, help="input resolution (default: the space's own)")
    t.add_argument("--epochs", type=positive_int, default=20, help="epochs (default: 20)")
    t.add_argument("--batch-size", type=positive_int, help="batch size (default: 64)")
    t.add_argument("--lr", type=float, default=0.1, help="peak learning rate, one-cycle (default: 0.1)")
    t.add_argument("--random-subnets", type=int, default=2, help="random sub-nets per step (default: 2)")
    t.add_argument("--init", metavar="MODEL.pt", help="start from a trained model (nax-resnet20: a ResNet-20)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--limit", type=positive_int, metavar="N",
                   help="at most N images of each split, drawn at random (seed 0): a quick run")
    t.add_argument("--out", required=True, metavar="DIR", help="output folder")
    t.add_argument("--no-resume", action="store_true", help="start over even if OUT/checkpoint.pt exists")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    t.set_defaults(handler=cmd_supernet_train)


def cmd_supernet_train(args: argparse.Namespace) -> int:
    from xbarforge.data import load_dataset
    from xbarforge.search.registry import create_space
    from xbarforge.search.supernet import train_supernet

    kwargs: dict[str, Any] = {}
    if args.resolution is not None:
        kwargs["resolution"] = args.resolution
    data = load_dataset(args.data, args.data_root, resolution=args.resolution, seed=args.seed).limited(args.limit)
    space = create_space(args.space, num_classes=data.num_classes, in_channels=data.input_shape[0], **kwargs)
    if tuple(data.input_shape) != tuple(space.input_shape):
        data = data.with_resolution(space.input_shape[1:])
    init = None
    if args.init:
        init_fn = getattr(space, "init_from", None)
        if init_fn is None:
            from xbarforge.errors import XbarforgeError

            raise XbarforgeError(f"--init: space '{space.name}' cannot start from a trained model")
        from xbarforge.train.modelio import read_model_file

        init = init_fn(read_model_file(args.init)["state_dict"], args.init)
    result = train_supernet(space, data, epochs=args.epochs, out_dir=args.out, batch_size=args.batch_size, lr=args.lr,
                            random_subnets=args.random_subnets, seed=args.seed, resume=not args.no_resume,
                            progress=not args.quiet, init=init)
    last = result.history[-1] if result.history else {}
    print(f"supernet written to {Path(args.out) / 'supernet.pt'}: val accuracy largest"
          f" {last.get('val_accuracy_largest', float('nan')):.2%}, smallest"
          f" {last.get('val_accuracy_smallest', float('nan')):.2%}, {result.time_s / 60:.1f} min")
    return 0


def add_search_command(sub: Any) -> None:
    """Register `xbarforge search`."""

    p = sub.add_parser(
        "search", help="NSGA-II architecture search on a supernet under a crossbar budget (RNC, NAX)",
        description="Search the sub-nets of a trained supernet for the Pareto front of accuracy against hardware"
                    " cost (latency of k samples, energy, EDAP, ...) from the compiler and cost model. Checkpoints"
                    " every generation; rerun the same command or use --resume DIR to continue. Writes OUT/front.json,"
                    " front.csv, front.png and nsga/candidates.jsonl (every candidate evaluated).")
    p.add_argument("source", nargs="?", metavar="SUPERNET", help="folder or supernet.pt of `xbarforge supernet train`")
    p.add_argument("--space", help="check that the supernet is for this space (mbv3-small, nax-resnet20)")
    p.add_argument("--hw", default=None, metavar="PRESET_OR_YAML", help=f"hardware (default: rnc-paper; {DEFAULT_HW}"
                   " is the compile default)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override hardware keys")
    p.add_argument("--crossbars", type=positive_int, help="crossbar budget (default: the chip's)")
    p.add_argument("--objectives", default="accuracy,latency",
                   help="comma list of accuracy, latency, throughput, energy, edap, utilization, crossbars")
    p.add_argument("--generations", type=positive_int, default=60, help="NSGA-II generations (default: 60)")
    p.add_argument("--population", type=positive_int, default=50, help="population size (default: 50)")
    p.add_argument("--samples", type=positive_int, default=8, help="latency of this many samples (default: 8)")
    p.add_argument("--accuracy", choices=("predictor", "supernet", "simulator"),
                   help="accuracy source (default: predictor; simulator with --nonideal)")
    p.add_argument("--nonideal", action="store_true",
                   help="score accuracy with the simulator on each candidate's own crossbars (IR drop on if the"
                        " chip models no non-ideality)")
    p.add_argument("--predictor-samples", type=positive_int, default=100,
                   help="sub-nets scored to fit the predictor (default: 100)")
    p.add_argument("--val-images", type=positive_int, default=2000, help="validation images per score (default: 2000)")
    p.add_argument("--chips", type=positive_int, default=2, help="simulated chips per candidate (default: 2)")
    p.add_argument("--max-latency-ns", type=positive_float, help="latency ceiling (k samples), ns")
    p.add_argument("--max-energy-pj", type=positive_float, help="energy ceiling per inference, pJ")
    p.add_argument("--baseline-model", metavar="MODEL.pt", help="the baseline network trained by the same recipe")
    p.add_argument("--data-root", metavar="DIR", help="dataset location (default: the supernet's)")
    p.add_argument("--backend", choices=("local", "process", "ray"), default=None,
                   help="where candidates are evaluated (default: local; ray with --ray-address)")
    p.add_argument("--workers", type=positive_int, help="processes / Ray CPUs")
    p.add_argument("--ray-address", help="Ray cluster address (auto, ray://host:10001, ...)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", metavar="DIR", help="output folder (required unless --resume)")
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR with its own settings")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(handler=cmd_search)


def _search_config(args: argparse.Namespace) -> tuple[Any, Path]:
    from xbarforge.hardware import parse_overrides
    from xbarforge.report.jsonio import read_json
    from xbarforge.search.run import CONFIG_FILE, SearchConfig

    if args.resume:
        out = Path(args.resume)
        if not (out / CONFIG_FILE).exists():
            raise UsageError(f"--resume {out}: no search there (no {CONFIG_FILE})")
        cfg = SearchConfig.model_validate(read_json(out / CONFIG_FILE))
        updates = {k: v for k, v in (("backend", args.backend), ("workers", args.workers),
                                      ("ray_address", args.ray_address)) if v is not None}
        if args.generations != 60:
            updates["generations"] = args.generations
        return cfg.model_copy(update=updates), out
    if not args.source or not args.out:
        raise UsageError("search: give SUPERNET and --out DIR (or --resume DIR)")
    accuracy = args.accuracy or ("simulator" if args.nonideal else "predictor")
    backend = args.backend or ("ray" if args.ray_address else "local")
    cfg = SearchConfig(source=args.source, space=args.space, hw=args.hw or "rnc-paper",
                       overrides=parse_overrides(args.overrides), crossbars=args.crossbars,
                       objectives=[o.strip() for o in args.objectives.split(",")], generations=args.generations,
                       population=args.population, seed=args.seed, samples=args.samples, accuracy=accuracy,
                       predictor_samples=args.predictor_samples, val_images=args.val_images, chips=args.chips,
                       max_latency_ns=args.max_latency_ns, max_energy_pj=args.max_energy_pj, backend=backend,
                       workers=args.workers, ray_address=args.ray_address, data_root=args.data_root,
                       baseline_model=args.baseline_model)
    return cfg, Path(args.out)


def cmd_search(args: argparse.Namespace) -> int:
    from xbarforge.search.evaluate import parse_objectives
    from xbarforge.search.run import run_search

    cfg, out = _search_config(args)
    parse_objectives(cfg.objectives)  # fail on a typo before loading anything
    doc = run_search(cfg, out, progress=not args.quiet)
    k = str(cfg.samples)
    print(f"{len(doc['front'])} networks on the front ({doc['evaluated']} evaluated, {doc['search_seconds']:.0f} s,"
          f" hardware {doc['hardware_ms_per_candidate']:.1f} ms per candidate); written to {out / 'front.json'}")
    if not doc["front"]:
        bad = doc["infeasible"]
        print(f"  no candidate fits: {bad['count']} infeasible, e.g. {bad['example_reason']}; the smallest needs"
              f" {bad['fewest_crossbars']:.0f} crossbars")
    for label, i in doc["picks"].items():
        p = doc["front"][i]
        speed = ", ".join(f"{v:.1f}x vs {name}" for name, v in p["speedup"].items())
        acc = p.get("val_accuracy")
        print(f"  {label:13s} #{i}: val {acc if acc is None else f'{acc:.2%}'}, latency({k})"
              f" {p['compiled']['latency_ns'][k] / 1e3:.1f} us ({speed})  {p['describe']}")
    return 0


def add_export_command(sub: Any) -> None:
    """Register `xbarforge export`."""
    p = sub.add_parser(
        "export", help="a sub-net from a search front as a standalone model file (with its Mapping)",
        description="Take one network of a search's Pareto front, copy its weights out of the supernet, recalibrate its"
                    " batch norms, and write a model file (loadable by every xbarforge command) plus its compiled"
                    " Mapping (OUT with .mapping.json).")
    p.add_argument("search", metavar="SEARCH_DIR", help="folder written by `xbarforge search`")
    p.add_argument("--pick", default="knee", help="high-accuracy, low-latency, knee (default) or index=N")
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="model file to write")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from xbarforge.search.export import export_pick

    info = export_pick(Path(args.search), args.pick, Path(args.out))
    print(f"exported #{info['index']} ({info['describe']}) to {args.out}: val accuracy {info['val_accuracy']:.2%}"
          f" after batch-norm recalibration; mapping in {info['mapping_file']}")
    return 0


def add_finetune_command(sub: Any) -> None:
    """Register `xbarforge finetune`."""

    p = sub.add_parser(
        "finetune", help="fine-tune an exported sub-net (or any model file) and report its test accuracy",
        description="Continue training a model file with the training recipe at a lower peak learning rate, on the"
                    " data it was trained on; the test split is measured once, at the end.")
    p.add_argument("model", metavar="MODEL.pt")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs (default: 5)")
    p.add_argument("--lr", type=positive_float, default=0.01, help="peak learning rate (default: 0.01)")
    p.add_argument("--data-root", metavar="DIR", help="dataset location (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="at most N images of each split, drawn at random (seed 0): a quick run")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(handler=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from xbarforge.data.from_model import model_dataset
    from xbarforge.train import train
    from xbarforge.train.modelio import load_model

    model, meta = load_model(args.model)
    data = model_dataset(meta, None, args.data_root, args.model).limited(args.limit)
    keep = {k: meta[k] for k in ("picked", "search", "hardware", "mapping_file") if k in meta}
    result = train(model, data, epochs=args.epochs, lr=args.lr, seed=args.seed, out_dir=args.out,
                   progress=not args.quiet, arch=meta.get("arch"), meta={"finetuned_from": str(args.model), **keep})
    print(f"fine-tuned {args.model} for {args.epochs} epochs: val {result.val_accuracy:.2%}, test"
          f" {result.test_accuracy:.2%}; written to {Path(args.out) / 'model.pt'}")
    return 0

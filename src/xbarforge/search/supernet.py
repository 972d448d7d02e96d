"""One-shot supernet training (sandwich rule, in-place distillation) and sub-net scoring.

Each step trains the largest sub-net on the labels, then the smallest and `random_subnets` random
ones on the largest's soft predictions (in-place distillation), accumulating all gradients before
one SGD step (Yu et al., "BigNAS", ECCV 2020; the sandwich rule of slimmable networks). The recipe
is `xbarforge.train`'s (SGD + Nesterov, one-cycle learning rate, weight decay on weights only,
label smoothing, crop + flip), so a standalone baseline trained by `xbarforge train` for the same
epochs is trained "by the same recipe". Checkpoints every epoch; rerunning resumes exactly.

A sub-net is scored with inherited weights after recalibrating its batch norms on training images
(the shared statistics belong to no single sub-net), on the validation split carved from the
training set -- never on the test split.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from xbarforge.data import DataBundle
from xbarforge.data.bundle import Split
from xbarforge.errors import XbarforgeError
from xbarforge.report.jsonio import dumps
from xbarforge.report.progress import Tracker
from xbarforge.rundir import check_same_settings
from xbarforge.search.space import Arch, SearchSpace
from xbarforge.train.loop import (
    DIV_FACTOR,
    FINAL_DIV_FACTOR,
    PCT_START,
    auto_batch_size,
    epoch_generator,
    evaluate,
    param_groups,
    rng_state,
    set_rng_state,
)
from xbarforge.train.modelio import atomic_save, atomic_write_text, pick_device, safe_load

CHECKPOINT = "checkpoint.pt"
SUPERNET_FILE = "supernet.pt"
METRICS_FILE = "metrics.json"
CALIBRATION_IMAGES = 2000  # training images that recalibrate a sub-net's batch norms


@dataclass
class SupernetResult:
    net: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    time_s: float = 0.0


def sample_for_training(space: SearchSpace, rng: np.random.Generator) -> Arch:
    """A random sub-net; spaces may sample structure uniformly (e.g. depth) rather than genomes."""
    sampler = getattr(space, "sample_training", None)
    return sampler(rng) if sampler is not None else space.decode(space.sample(rng))


def _soft_loss(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def train_supernet(
    space: SearchSpace,
    data: DataBundle,
    *,
    epochs: int,
    out_dir: str | Path | None = None,
    batch_size: int | None = None,
    lr: float = 0.1,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    label_smoothing: float = 0.1,
    random_subnets: int = 2,
    distill: bool = True,
    seed: int = 0,
    resume: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    init: Callable[[nn.Module], None] | None = None,
    console: Console | None = None,
) -> SupernetResult:
    """Train `space.supernet()` on `data` (sandwich rule); writes OUT/supernet.pt and metrics.json."""
    if epochs < 1 or random_subnets < 0:
        raise XbarforgeError(f"supernet: epochs must be >= 1 and random sub-nets >= 0 (got {epochs}, {random_subnets})")
    if tuple(data.input_shape) != tuple(space.input_shape):
        raise XbarforgeError(f"supernet: data gives {tuple(data.input_shape)} inputs, space '{space.name}' expects"
                             f" {tuple(space.input_shape)} (set the resolution)")
    if data.num_classes != space.num_classes:
        raise XbarforgeError(f"supernet: data has {data.num_classes} classes, the space {space.num_classes}")
    console = console or Console(highlight=False, quiet=not progress)
    dev = pick_device(device)
    torch.manual_seed(seed)
    net = space.supernet()  # type: ignore[attr-defined]
    if init is not None:
        init(net)
    net.to(dev).to(memory_format=torch.channels_last)
    n_train = len(data.train)
    batch_size = auto_batch_size(n_train) if batch_size is None else batch_size
    steps = max(1, n_train // batch_size)
    opt = torch.optim.SGD(param_groups(net, weight_decay), lr=lr, momentum=momentum, nesterov=momentum > 0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=PCT_START,
                                                anneal_strategy="cos", div_factor=DIV_FACTOR,
                                                final_div_factor=FINAL_DIV_FACTOR, cycle_momentum=False)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
              "momentum": momentum, "label_smoothing": label_smoothing, "random_subnets": random_subnets,
              "distill": distill, "seed": seed, "schedule": "onecycle", "steps_per_epoch": steps,
              "space": space.to_dict(), "dataset": data.name, "n_train": n_train, "init": init is not None}
    out = Path(out_dir).expanduser() if out_dir is not None else None
    history: list[dict[str, Any]] = []
    start = 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        ckpt = out / CHECKPOINT
        if resume and ckpt.exists():
            state = safe_load(ckpt, "checkpoint")
            if not isinstance(state, dict) or "recipe" not in state:
                raise XbarforgeError(f"{ckpt}: not a supernet training checkpoint; use another --out or --no-resume")
            check_same_settings(ckpt, state["recipe"], recipe, "use another --out or --no-resume")
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            history, start = list(state["history"]), int(state["epoch"])
            console.print(f"resuming supernet from {ckpt} ({start}/{epochs} epochs done)")
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    t_all = time.perf_counter()
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        net.train()
        gen = epoch_generator(seed, epoch)
        rng = np.random.default_rng([seed, epoch])
        loss_sum, seen = 0.0, 0
        bar = Tracker(f"supernet epoch {epoch + 1}/{epochs}", steps, console=console, enabled=progress,
                      describe=lambda f: f"loss {f['loss']:.3f}", loss=0.0).start()
        for step, (xb, yb) in enumerate(data.batches("train", batch_size, shuffle=True, augment=data.augment,
                                                     generator=gen, device=dev, drop_last=n_train >= batch_size,
                                                     channels_last=True)):
            opt.zero_grad(set_to_none=True)
            net.set_active(largest)
            logits = net(xb)
            loss = criterion(logits, yb)
            loss.backward()
            soft = F.softmax(logits.detach(), dim=1)
            for arch in [smallest] + [sample_for_training(space, rng) for _ in range(random_subnets)]:
                net.set_active(arch)
                out_s = net(xb)
                (_soft_loss(out_s, soft) if distill else criterion(out_s, yb)).backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(yb)
            seen += len(yb)
            if not math.isfinite(loss_sum):
                raise XbarforgeError(f"supernet training diverged in epoch {epoch + 1}, step {step + 1};"
                                     " lower the learning rate")
            bar.update(completed=step + 1, loss=loss_sum / seen)
        bar.stop()
        train_s = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "train_loss_largest": loss_sum / max(seen, 1), "train_time_s": train_s,
                  "lr": sched.get_last_lr()[0]}
        for label, arch in (("largest", largest), ("smallest", smallest)):
            record[f"val_accuracy_{label}"] = subnet_accuracy(net, space, arch, data, device=dev,
                                                              max_val=2000)["accuracy"]
        record["time_s"] = time.perf_counter() - t0
        history.append(record)
        console.print(f"epoch {epoch + 1}/{epochs}: loss {record['train_loss_largest']:.3f}, val largest"
                      f" {record['val_accuracy_largest']:.2%}, smallest {record['val_accuracy_smallest']:.2%}"
                      f" ({record['time_s']:.0f} s)")
        if out is not None:
            atomic_save({"recipe": recipe, "epoch": epoch + 1, "model": net.state_dict(),
                         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(),
                         "history": history}, out / CHECKPOINT)
    elapsed = time.perf_counter() - t_all
    if out is not None:
        meta = {"dataset": data.name, "data_root": data.root, "val_fraction": data.val_fraction,
                "split_seed": data.seed, "mean": list(data.mean), "std": list(data.std),
                "input_shape": list(data.input_shape), "num_classes": data.num_classes, "classes": list(data.classes)}
        save_supernet(out / SUPERNET_FILE, net, space, recipe=recipe, meta=meta)
        total = float(sum(r["time_s"] for r in history))
        atomic_write_text(out / METRICS_FILE, dumps({"recipe": recipe, "history": history, "time_s": total,
                                                      "device": str(dev), "threads": torch.get_num_threads(),
                                                      "dataset": data.summary()}))
    return SupernetResult(net=net, history=history, out_dir=out, time_s=elapsed)


def save_supernet(path: Path, net: nn.Module, space: SearchSpace, recipe: dict[str, Any],
                  meta: dict[str, Any]) -> Path:
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return atomic_save({"format": "xbarforge-supernet", "space": space.to_dict(), "state_dict": state,
                        "recipe": recipe, "meta": meta}, path)


def load_supernet(path: str | Path) -> tuple[SearchSpace, nn.Module, dict[str, Any]]:
    """(space, supernet with its trained weights, the file's recipe and meta) from OUT/supernet.pt or OUT/."""
    from xbarforge.search.registry import create_space

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / SUPERNET_FILE
    doc = safe_load(p, "supernet")
    if not isinstance(doc, dict) or doc.get("format") != "xbarforge-supernet":
        raise XbarforgeError(f"{p}: not an xbarforge supernet file (train one with `xbarforge supernet train`)")
    sd = doc["space"]
    space = create_space(sd["name"], resolution=sd["input_shape"][-1], num_classes=sd["num_classes"],
                         in_channels=sd["input_shape"][0])
    net = space.supernet()  # type: ignore[attr-defined]
    net.load_state_dict(doc["state_dict"])
    return space, net, {"recipe": doc.get("recipe", {}), "meta": doc.get("meta", {})}


def recalibrate_bn(model: nn.Module, data: DataBundle, images: int = CALIBRATION_IMAGES,
                   device: torch.device | None = None, batch_size: int = 250) -> nn.Module:
    """Reset and re-estimate every batch norm's statistics on `images` training images (no augmentation)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    seen = 0
    with torch.no_grad():
        # shuffled (seeded): the split is stored class by class
        for xb, _ in data.batches("train", batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
                                  device=device, channels_last=True):
            model(xb)
            seen += len(xb)
            if seen >= images:
                break
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    return model.eval()


def subnet_accuracy(net: nn.Module, space: SearchSpace, arch: Arch, data: DataBundle, *,
                    device: torch.device | None = None, calibration_images: int = CALIBRATION_IMAGES,
                    max_val: int | None = None, split: str = "val") -> dict[str, Any]:
    """Validation accuracy of sub-net `arch` with inherited weights and recalibrated batch norms."""
    dev = device or next(net.parameters()).device
    was_training = net.training
    sub = net.export(arch).to(dev).to(memory_format=torch.channels_last)  # type: ignore[operator]
    recalibrate_bn(sub, data, calibration_images, dev)
    part = data if max_val is None else head(data, split, max_val)
    result = evaluate(sub, part, split, device=dev)
    net.train(was_training)
    return result


def head(data: DataBundle, split: str, n: int, seed: int = 0) -> DataBundle:
    """`data` with split `split` cut to `n` samples drawn at random (seeded): splits are stored class
    by class, so the first `n` would be one or two classes."""
    part = data.split(split)
    if n >= len(part):
        return data
    idx = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return dataclasses.replace(data, **{split: Split(part.x[idx], part.y[idx])})


def score_subnets(net: nn.Module, space: SearchSpace, archs: Sequence[Arch], data: DataBundle,
                  **kwargs: Any) -> list[float]:
    return [float(subnet_accuracy(net, space, a, data, **kwargs)["accuracy"]) for a in archs]

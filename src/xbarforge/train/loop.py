"""Training and evaluation loops: SGD (or AdamW) + one-cycle, checkpoints every epoch, exact resume.

The recipe (defaults of `train`) reaches 85.1 % test accuracy with ResNet-20 on the JPEG CIFAR-10
copy in 15 epochs on a 2-core CPU. Randomness comes from `seed` only: the model's dropout and the
like use the global torch RNG (saved in every checkpoint), and each epoch's shuffle and augmentation
use a generator seeded from (seed, epoch), so a resumed run repeats an uninterrupted one exactly on
the CPU.
"""

from __future__ import annotations

import contextlib
import math
import platform
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from xbarforge.data import DataBundle
from xbarforge.errors import XbarforgeError
from xbarforge.report.progress import Tracker
from xbarforge.rundir import check_same_settings
from xbarforge.train.modelio import atomic_save, atomic_write_text, pick_device, safe_load, save_model

CHECKPOINT = "checkpoint.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"

# one-cycle shape: warm up over the first PCT_START of the steps from lr/DIV_FACTOR, anneal (cosine)
# to lr/(DIV_FACTOR*FINAL_DIV_FACTOR)
PCT_START = 0.25
DIV_FACTOR = 10.0
FINAL_DIV_FACTOR = 100.0
LR_NORM = 0.1  # default peak lr for networks with batch norm (ResNet-20, CIFAR-10 JPEG: 85.1 % in 15 epochs)
LR_ADAMW = 1e-3  # AdamW's usual peak for ViT-style training (DeiT: 5e-4 x batch / 512)
ADAMW_BETAS = (0.9, 0.999)
OPTIMIZERS = ("sgd", "adamw")
LR_PLAIN = 0.05  # without normalization layers (LeNet-5 diverges at 0.2)
MIN_STEPS = 80  # auto batch size keeps at least this many steps per epoch
BATCH = 64  # default batch size for datasets large enough


@dataclass
class TrainResult:
    """What `train` produced: the trained model (on its device), per-epoch history and final accuracies."""

    model: nn.Module
    history: list[dict[str, Any]]
    val_accuracy: float | None
    test_accuracy: float | None
    test_loss: float | None
    epochs: int
    time_s: float
    device: str
    out_dir: Path | None = None
    resumed_from: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


def auto_batch_size(n_train: int) -> int:
    """64 (more steps per epoch beat larger batches in a 15-epoch budget: +0.6 points on ResNet-20),
    or a smaller power of two (at least 16) so that a small dataset still gets ~80 steps an epoch."""
    if n_train >= BATCH * MIN_STEPS:
        return BATCH
    return int(max(16, min(BATCH, 2 ** math.floor(math.log2(max(n_train, 1) / MIN_STEPS)))))


def auto_lr(model: nn.Module) -> float:
    """Peak learning rate: 0.1 for networks with normalization layers, 0.05 without (LeNet-5 diverges higher)."""
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    return LR_NORM if any(isinstance(m, norms) for m in model.modules()) else LR_PLAIN


def has_conv2d(model: nn.Module) -> bool:
    """Whether the model has 2-D convolutions (where channels_last pays off)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def uses_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-D conv weights are stored channels_last (then inputs should be too)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            return w.ndim == 4 and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)
    return False


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer, None when it has neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataBundle,
    split: str = "test",
    batch_size: int = 512,
    device: str | torch.device | None = None,
    *,
    amp: bool = False,
) -> dict[str, Any]:
    """Accuracy (fraction correct), mean cross-entropy loss and sample count of `model` on one split.

    Runs where the model is (or on `device`, moving it there) in eval mode; the model's train/eval
    mode is restored afterwards. `amp` uses bf16 autocast on CUDA. An empty split gives None values.
    """
    part = data.split(split)
    n = len(part)
    if n == 0:
        return {"accuracy": None, "loss": None, "n": 0}
    dev = pick_device(device) if device is not None else (model_device(model) or pick_device(None))
    if device is not None:
        model.to(dev)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    try:
        for xb, yb in data.batches(split, batch_size, device=dev, channels_last=uses_channels_last(model)):
            with _autocast(dev, amp):
                out = model(xb)
            out = out.float()
            loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
            correct += (out.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return {"accuracy": int(correct) / n, "loss": float(loss_sum) / n, "n": n}


def _check_output(model: nn.Module, data: DataBundle, dev: torch.device, channels_last: bool) -> None:
    """Fail early, with one clear line, when the model cannot take the data or has the wrong width."""
    xb, _ = next(data.batches("train", 2, device=dev, channels_last=channels_last))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xb)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())[:200]
        shape = "x".join(map(str, data.input_shape))
        raise XbarforgeError(f"the model cannot take {data.name} inputs of shape {shape}: {text}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != data.num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise XbarforgeError(f"the model outputs {got} per batch of 2, but {data.name} has {data.num_classes}"
                             " classes (expected (2, num_classes) logits)")


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), *map(float, np_state[2:])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator for one epoch's shuffle and augmentation (no state to carry across a resume)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + epoch * 7919 + 12345) % (2**63))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only (not on biases and normalization scales)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(
    model: nn.Module,
    data: DataBundle,
    *,
    epochs: int,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    nesterov: bool = True,
    label_smoothing: float = 0.1,
    seed: int = 0,
    out_dir: str | Path | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    channels_last: bool | None = None,
    augment: bool | None = None,
    arch: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    console: Console | None = None,
    optimizer_name: str = "sgd",
) -> TrainResult:
    """Train `model` on `data` with SGD (or AdamW: `optimizer_name="adamw"`, for transformers) and a
    per-step one-cycle learning rate peaking at `lr`.

    Checkpoints to `out_dir/checkpoint.pt` after every epoch and, with `resume`, continues from it;
    at the end writes `out_dir/model.pt` (see `save_model`; `arch` says how to rebuild the network,
    inferred for zoo models) and `out_dir/metrics.json`. `augment` (default: what suits the data)
    turns on random crop + flip; `channels_last` defaults to on for conv nets; bf16 autocast on CUDA.
    `callback(epoch, record)` runs after each epoch's checkpoint. `batch_size` None: 64 (smaller for
    small datasets, see `auto_batch_size`); `lr` None: see `auto_lr`.
    """
    if optimizer_name not in OPTIMIZERS:
        raise XbarforgeError(f"unknown optimizer '{optimizer_name}': choose {' or '.join(OPTIMIZERS)}")
    n_train = len(data.train)
    batch_size = auto_batch_size(n_train) if batch_size is None else int(batch_size)
    lr = (auto_lr(model) if optimizer_name == "sgd" else LR_ADAMW) if lr is None else float(lr)
    if epochs < 1 or batch_size < 1:
        raise XbarforgeError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    if not (lr > 0 and math.isfinite(lr)) or weight_decay < 0 or not 0 <= label_smoothing < 1:
        raise XbarforgeError(f"bad recipe: lr={lr}, weight_decay={weight_decay}, label_smoothing={label_smoothing}")
    if n_train == 0:
        raise XbarforgeError(f"{data.name}: the train split is empty")
    dev = pick_device(device)
    if channels_last is None:
        channels_last = has_conv2d(model)
    augment = data.augment if augment is None else augment
    amp = dev.type == "cuda"
    console = console or Console(highlight=False, quiet=not progress)
    if arch is None and getattr(model, "zoo_name", None):
        arch = {"zoo": model.zoo_name,
                "kwargs": {"num_classes": data.num_classes, "input_size": list(data.input_shape)}}

    torch.manual_seed(seed)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    _check_output(model, data, dev, channels_last)

    steps = n_train // batch_size if n_train >= batch_size else 1
    drop_last = n_train >= batch_size
    if optimizer_name == "adamw":  # what transformers train with; SGD stays the CNN default
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr,
                                                             betas=ADAMW_BETAS)
    else:
        optimizer = torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum,
                                    nesterov=nesterov and momentum > 0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps, pct_start=PCT_START, anneal_strategy="cos",
        div_factor=DIV_FACTOR, final_div_factor=FINAL_DIV_FACTOR, cycle_momentum=False,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    recipe = {
        "optimizer": optimizer_name, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "momentum": momentum, "nesterov": nesterov, "label_smoothing": label_smoothing, "seed": seed,
        "augment": augment, "schedule": "onecycle", "pct_start": PCT_START, "div_factor": DIV_FACTOR,
        "final_div_factor": FINAL_DIV_FACTOR, "steps_per_epoch": steps,
    }
    fingerprint = {"recipe": recipe, "arch": arch, "dataset": data.name, "n_train": n_train,
                   "num_classes": data.num_classes, "input_shape": list(data.input_shape),
                   "hardware_aware": (meta or {}).get("hardware_aware")}

    out = Path(out_dir).expanduser() if out_dir is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise XbarforgeError(f"output folder {out} is a file")
        out.mkdir(parents=True, exist_ok=True)
        for name in (CHECKPOINT, MODEL_FILE, METRICS_FILE):  # left by a run killed mid-write
            for stale in out.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
    ckpt_path = out / CHECKPOINT if out is not None else None
    history: list[dict[str, Any]] = []
    start = 0
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = safe_load(ckpt_path, "checkpoint")
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise XbarforgeError(f"checkpoint {ckpt_path}: not an xbarforge training checkpoint")
        old = state["fingerprint"]
        check_same_settings(ckpt_path, {k: old.get(k) for k in fingerprint}, fingerprint,  # keys added later: None
                            "use another output folder or turn resume off (--no-resume)")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise XbarforgeError(f"checkpoint {ckpt_path}: does not fit this model ({exc})") from None
        set_rng_state(state["rng"])
        history = list(state["history"])
        start = int(state["epoch"])
        console.print(f"resuming from {ckpt_path} ({start}/{epochs} epochs done)")

    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    try:
        for epoch in range(start, epochs):
            record = _train_epoch(model, data, epoch, epochs, optimizer, scheduler, criterion, dev, batch_size,
                                  steps, drop_last, augment, channels_last, amp, seed, console, progress)
            history.append(record)
            if ckpt_path is not None:
                atomic_save({"fingerprint": fingerprint, "epoch": epoch + 1, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "rng": rng_state(), "history": history}, ckpt_path)
            if callback is not None:
                callback(epoch + 1, record)
    except KeyboardInterrupt:
        if ckpt_path is not None:
            done = len(history)
            console.print(f"interrupted: {done}/{epochs} epochs saved in {ckpt_path}; run the same command to resume")
        raise

    val_acc = history[-1]["val_accuracy"] if history else None
    test = evaluate(model, data, "test", device=dev, amp=amp)
    train_time = float(sum(r["time_s"] for r in history))
    result_meta = {
        "num_classes": data.num_classes, "classes": list(data.classes), "input_shape": list(data.input_shape),
        "dataset": data.name, "data_root": data.root, "val_fraction": data.val_fraction,
        "mean": list(data.mean), "std": list(data.std), "val_accuracy": val_acc,
        "test_accuracy": test["accuracy"], "test_loss": test["loss"], "seed": seed, "epochs": epochs,
        "recipe": recipe, **dict(meta or {}),
    }
    metrics = {
        "model": (arch or {}).get("zoo") or (arch or {}).get("factory") or type(model).__name__,
        "dataset": data.summary(), "val_accuracy": val_acc, "test_accuracy": test["accuracy"],
        "test_loss": test["loss"], "seed": seed, "epochs": epochs, "time_s": train_time,
        "time_per_epoch_s": train_time / max(len(history), 1), "device": str(dev), "device_name": device_name,
        "threads": torch.get_num_threads(), "channels_last": channels_last, "amp": "bf16" if amp else None,
        "torch": torch.__version__, "recipe": recipe, "history": history, **dict(meta or {}),
    }
    if out is not None:
        from xbarforge.report.jsonio import dumps

        save_model(out / MODEL_FILE, model, arch=arch, meta=result_meta)
        atomic_write_text(out / METRICS_FILE, dumps(metrics))
    return TrainResult(model=model, history=history, val_accuracy=val_acc, test_accuracy=test["accuracy"],
                       test_loss=test["loss"], epochs=epochs, time_s=train_time, device=str(dev), out_dir=out,
                       resumed_from=start, metrics=metrics)


def _train_epoch(
    model: nn.Module, data: DataBundle, epoch: int, epochs: int, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module, dev: torch.device, batch_size: int,
    steps: int, drop_last: bool, augment: bool, channels_last: bool, amp: bool, seed: int, console: Console,
    progress: bool,
) -> dict[str, Any]:
    """One pass over the train split, then validation; returns the epoch's record."""
    t0 = time.perf_counter()
    model.train()
    gen = epoch_generator(seed, epoch)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    seen = 0
    lr_start = optimizer.param_groups[0]["lr"]
    bar = Tracker(f"train epoch {epoch + 1}/{epochs}", steps, console=console, enabled=progress,
                  describe=lambda f: f"loss {f['loss']:.3f}  acc {f['acc']:6.2%}{f['val']}", loss=0.0, acc=0.0, val="")
    with bar:
        it: Iterator[tuple[torch.Tensor, torch.Tensor]] = data.batches(
            "train", batch_size, shuffle=True, augment=augment, generator=gen, device=dev, drop_last=drop_last,
            channels_last=channels_last)
        for step, (xb, yb) in enumerate(it):
            with _autocast(dev, amp):
                logits = model(xb)
            loss = criterion(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach().double() * yb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += yb.shape[0]
            if dev.type == "cpu" or step % 20 == 19 or step == steps - 1:
                mean_loss = float(loss_sum) / seen
                if not math.isfinite(mean_loss):
                    raise XbarforgeError(f"training diverged (loss {mean_loss} in epoch {epoch + 1}, step {step + 1});"
                                         " lower the learning rate")
                bar.update(completed=step + 1, loss=mean_loss, acc=int(correct) / seen)
        train_time = time.perf_counter() - t0
        val = evaluate(model, data, "val", device=dev, amp=amp)
        bar.update(val=f"  val {val['accuracy']:6.2%}" if val["accuracy"] is not None else "")
    return {
        "epoch": epoch + 1, "train_loss": float(loss_sum) / max(seen, 1), "train_accuracy": int(correct) / max(seen, 1),
        "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": lr_start,
        "time_s": time.perf_counter() - t0, "train_time_s": train_time,
    }

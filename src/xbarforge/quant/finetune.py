"""Quantization-aware fine-tuning (QAT) of the final bit policy.

Post-training quantization, which steers the search, leaves accuracy on the table at 2-4 bits; a
short fine-tuning with the policy's quantizers in the forward pass recovers much of it. `finetune`
copies the model, attaches `xbarforge.quant.fakequant`'s per-channel weight parametrizations
(straight-through rounding, gradients reach the float weights) and input quantizers, fixes the input
ranges once on calibration images of the val split (carved from the training data), and trains with
`xbarforge.train.train` at a small peak learning rate, so its checkpoints and exact resume come for
free: the parametrized state_dict holds `...parametrizations.weight.original` and the quantizers
keep no state in it, so a fresh attach loads the checkpoint. The policy's digest goes into train's
run fingerprint (its `hardware_aware` slot), so a checkpoint of another policy is refused.

Val and test accuracies are those of train's final evaluation, i.e. with quantized weights and
inputs. The returned model, and `out_dir/model.pt`, is the plain network with the quantized weights
baked in (loadable by `xbarforge.train.load_model`; each channel's weights lie on its grid, so
re-quantizing at the same bits is the identity). `out_dir/finetune.json` marks a finished run: a
second call with the same settings loads model.pt and returns at once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from xbarforge.data.bundle import DataBundle
from xbarforge.errors import XbarforgeError
from xbarforge.quant.accuracy import sample_split
from xbarforge.quant.fakequant import DEFAULT_CLIP, ClipMethod, attach, calibrate_inputs, check_bits, detach
from xbarforge.quant.space import policy_runs
from xbarforge.report.jsonio import dumps, to_jsonable
from xbarforge.rundir import check_same_settings
from xbarforge.train.loop import MODEL_FILE, evaluate, has_conv2d, train
from xbarforge.train.modelio import atomic_write_text, load_model, pick_device, save_model

__all__ = ["DEFAULT_LR", "RESULT_FILE", "finetune", "policy_digest"]

RESULT_FILE = "finetune.json"
DEFAULT_LR = 0.01  # one-cycle peak: a tenth of training's, the weights only need to settle on their grids


def policy_digest(bits: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of a policy (layer names and every channel's bits), to tell runs apart."""
    h = hashlib.sha256()
    for name in sorted(bits):
        h.update(name.encode())
        h.update(np.asarray(bits[name], dtype=np.int64).tobytes())
    return h.hexdigest()


def _arch(model: nn.Module, data: DataBundle, arch: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if arch is None and getattr(model, "zoo_name", None):
        kwargs = {"num_classes": data.num_classes, "input_size": list(data.input_shape)}
        return {"zoo": model.zoo_name, "kwargs": kwargs}
    return arch


def finetune(
    model: nn.Module,
    bundle: DataBundle,
    bits: Mapping[str, np.ndarray],
    activation_bits: int | None = 8,
    epochs: int = 1,
    *,
    lr: float = DEFAULT_LR,
    out_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    clip: ClipMethod = DEFAULT_CLIP,
    calibration: int = 256,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    arch: Mapping[str, Any] | None = None,
    console: Console | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of `model` with policy `bits` quantized in the forward pass; returns (baked model, metrics).

    `bundle` must be normalized as the model was trained. `epochs` 0 skips training (post-training
    quantization, same outputs). Metrics: val/test accuracy with quantization, `val_accuracy_ptq`
    (before fine-tuning), history, time. See the module doc for files and resume.
    """
    checked = check_bits(model, bits)
    if epochs < 0:
        raise XbarforgeError(f"epochs must be at least 0, got {epochs}")
    split = "val" if len(bundle.val) else "train"
    spec = {"policy_sha256": policy_digest(checked), "activation_bits": activation_bits, "clip": clip,
            "calibration": calibration, "calibration_split": split}
    run = {**spec, "epochs": epochs, "lr": lr, "seed": seed, "batch_size": batch_size}
    run = to_jsonable(run)
    out = Path(out_dir).expanduser() if out_dir is not None else None
    dev = pick_device(device)
    if out is not None and (out / RESULT_FILE).exists():
        if resume:
            doc = json.loads((out / RESULT_FILE).read_text(encoding="utf-8"))
            check_same_settings(out / RESULT_FILE, doc.get("run") or {}, run,
                                "use another output folder or turn resume off")
            net, _ = load_model(out / MODEL_FILE, device=dev, model=copy.deepcopy(model))
            return net, {**doc["metrics"], "resumed": True}
        (out / RESULT_FILE).unlink()

    t0 = time.perf_counter()
    net = copy.deepcopy(model).to(dev)
    if has_conv2d(net):
        net.to(memory_format=torch.channels_last)
    attach(net, checked, activation_bits=activation_bits, clip=clip)
    ranges: dict[str, tuple[float, bool]] = {}
    if activation_bits is not None:
        calib, _ = sample_split(bundle, split, calibration, seed)
        ranges = calibrate_inputs(net, calib.to(dev))
    ptq = evaluate(net, bundle, "val", device=dev)["accuracy"]
    arch = _arch(model, bundle, arch)
    if epochs > 0:
        result = train(net, bundle, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, out_dir=out,
                       resume=resume, device=dev, progress=progress, arch=arch, console=console,
                       meta={"hardware_aware": {"quantization": spec}})
        val_acc, test_acc, test_loss = result.val_accuracy, result.test_accuracy, result.test_loss
        history, resumed_from, train_time = result.history, result.resumed_from, result.time_s
    else:
        test = evaluate(net, bundle, "test", device=dev)
        val_acc, test_acc, test_loss = ptq, test["accuracy"], test["loss"]
        history, resumed_from, train_time = [], 0, 0.0
    detach(net, bake=True)
    net.eval()
    metrics: dict[str, Any] = {
        "val_accuracy": val_acc, "test_accuracy": test_acc, "test_loss": test_loss, "val_accuracy_ptq": ptq,
        "epochs": epochs, "lr": lr, "seed": seed, "activation_bits": activation_bits, "clip": clip,
        "policy_sha256": spec["policy_sha256"], "train_time_s": train_time, "time_s": time.perf_counter() - t0,
        "resumed_from": resumed_from, "history": history, "resumed": False,
    }
    metrics = to_jsonable(metrics)  # as finetune.json will hold them, so a resumed call returns the same
    if out is not None:
        meta = {
            "num_classes": bundle.num_classes, "classes": list(bundle.classes),
            "input_shape": list(bundle.input_shape), "dataset": bundle.name, "data_root": bundle.root,
            "val_fraction": bundle.val_fraction, "mean": list(bundle.mean), "std": list(bundle.std),
            # `seed` is the split seed: model_dataset (data/from_model.py) rebuilds the val split from it
            "val_accuracy": val_acc, "test_accuracy": test_acc, "test_loss": test_loss, "seed": bundle.seed,
            "quantization": {**spec, "bits": policy_runs(checked), "input_ranges": ranges,
                             "finetune_epochs": epochs, "finetune_lr": lr, "finetune_seed": seed},
        }
        save_model(out / MODEL_FILE, net, arch=arch, meta=meta)  # replaces train's (float) model.pt
        atomic_write_text(out / RESULT_FILE, dumps({"run": run, "metrics": metrics}))
    return net, metrics

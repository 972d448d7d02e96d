"""Training a basis network in the two steps BasisN uses.

1. `joint`: basis and coefficients (and the wrapped model's batch norms and biases) together, both
   rounded in the forward pass with straight-through gradients;
2. `coefficients`: the basis frozen as the crossbars were programmed with it, the coefficients (and
   the digital batch norms and biases) trained alone.

Each step is an ordinary `xbarforge.train.train` run in DIR/step-NAME (checkpoint every epoch, exact
resume); the run file is rewritten after each step, so rerunning an interrupted command skips the
steps already done and resumes the one in progress. Accuracy on the validation split is recorded
after every step; the test split is evaluated once, at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from xbarforge.basis.run import BasisRun, save_run
from xbarforge.data import DataBundle
from xbarforge.train import evaluate, train

__all__ = ["STEPS", "train_run"]

STEPS = ("joint", "coefficients")


def _done(run: BasisRun, step: str, epochs: int, lr: float) -> bool:
    return any(h.get("step") == step and h.get("epochs") == epochs and h.get("lr") == lr for h in run.history)


def train_run(run: BasisRun, data: DataBundle, out: str | Path, *, epochs: int, coeff_epochs: int,
              lr: float = 0.02, coeff_lr: float = 0.005, seed: int = 0, batch_size: int | None = None,
              progress: bool = True, console: Console | None = None) -> dict[str, Any]:
    """Run the joint and coefficient steps on `run` (in place), save it to `out`, return the final record."""
    console = console or Console(highlight=False, quiet=not progress)
    out = Path(out).expanduser()
    for step, n, step_lr, frozen in (("joint", epochs, lr, False), ("coefficients", coeff_epochs, coeff_lr, True)):
        if n == 0 or _done(run, step, n, step_lr):
            continue
        console.print(f"basis step '{step}': {n} epoch(s), peak lr {step_lr}")
        run.net.freeze_basis(frozen)
        res = train(run.net, data, epochs=n, lr=step_lr, seed=seed, batch_size=batch_size,
                    out_dir=out / f"step-{step}", progress=progress, console=console,
                    meta={"basis_step": step})
        run.net.freeze_basis(False)
        run.history.append({"step": step, "epochs": n, "lr": step_lr, "val_accuracy": res.val_accuracy,
                            "time_s": res.time_s, "time_per_epoch_s": res.time_s / max(n, 1)})
        save_run(run, out)
    run.net.eval()
    val = evaluate(run.net, data, "val")["accuracy"]
    test = evaluate(run.net, data, "test")["accuracy"]
    record = {"step": "final", "val_accuracy": val, "test_accuracy": test,
              "unconstrained_test_accuracy": run.source.get("meta", {}).get("test_accuracy")}
    run.history = [h for h in run.history if h.get("step") != "final"] + [record]
    save_run(run, out)
    return record

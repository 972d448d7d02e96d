"""xbarforge.train: training on digits, exact resume, model files, the `train` command."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from xbarforge.cli import main
from xbarforge.data import DataBundle, load_dataset
from xbarforge.errors import XbarforgeError
from xbarforge.train import (
    auto_batch_size,
    evaluate,
    load_model,
    plain_state_dict,
    read_model_file,
    save_model,
    train,
)
from xbarforge.zoo import create_model


def tiny_net(num_classes: int = 10) -> nn.Module:
    """A small conv net for 1x8x8 digits (BN, so it trains fast at the default learning rate)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, num_classes),
    )


FACTORY_SRC = textwrap.dedent('''
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10),
        )
''')


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset("digits")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_auto_batch_size() -> None:
    assert auto_batch_size(45000) == 64 and auto_batch_size(1295) == 16 and auto_batch_size(10) == 16


def test_digits_trains_and_writes_outputs(digits: DataBundle, tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = train(tiny_net(), digits, epochs=3, out_dir=tmp_path, progress=False, arch={"factory": "x.py:f"})
    assert result.test_accuracy is not None and result.test_accuracy > 0.8
    assert len(result.history) == 3 and result.history[-1]["val_accuracy"] == result.val_accuracy
    assert result.device == "cpu"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("history", "val_accuracy", "test_accuracy", "seed", "time_s", "device", "epochs", "recipe"):
        assert key in metrics
    assert metrics["recipe"]["batch_size"] == 16 and metrics["dataset"]["name"] == "digits"
    doc = read_model_file(tmp_path / "model.pt")
    assert doc["meta"]["num_classes"] == 10 and doc["meta"]["input_shape"] == [1, 8, 8]
    assert doc["meta"]["test_accuracy"] == pytest.approx(result.test_accuracy)
    ev = evaluate(result.model, digits, "test")
    assert ev["n"] == len(digits.test) and ev["accuracy"] == pytest.approx(result.test_accuracy)


def test_resume_gives_the_same_weights(digits: DataBundle, tmp_path: Path) -> None:
    torch.manual_seed(1)
    full = train(tiny_net(), digits, epochs=3, seed=5, out_dir=tmp_path / "a", progress=False)

    def stop_after_one(epoch: int, record: dict[str, object]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_net(), digits, epochs=3, seed=5, out_dir=tmp_path / "b", progress=False, callback=stop_after_one)
    assert not (tmp_path / "b" / "model.pt").exists()
    torch.manual_seed(99)  # a different init: the checkpoint's weights win
    resumed = train(tiny_net(), digits, epochs=3, seed=5, out_dir=tmp_path / "b", progress=False)
    assert resumed.resumed_from == 1
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    # another recipe in the same folder is refused, not silently mixed
    with pytest.raises(XbarforgeError, match=r"holds a run with other settings \(recipe.lr: "):
        train(tiny_net(), digits, epochs=3, seed=5, lr=0.01, out_dir=tmp_path / "b", progress=False)
    restart = train(tiny_net(), digits, epochs=1, seed=5, out_dir=tmp_path / "b", progress=False, resume=False)
    assert restart.resumed_from == 0


def test_save_load_zoo_model(tmp_path: Path) -> None:
    model = create_model("resnet20", num_classes=7).eval()
    arch = {"zoo": "resnet20", "kwargs": {"num_classes": 7, "input_size": [3, 32, 32]}}
    save_model(tmp_path / "m.pt", model, arch=arch, meta={"num_classes": 7, "mean": (0.5, 0.5, 0.5)})
    loaded, meta = load_model(tmp_path / "m.pt", device="cpu")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x)) and not loaded.training
    assert meta["num_classes"] == 7 and meta["mean"] == [0.5, 0.5, 0.5] and meta["arch"]["zoo"] == "resnet20"
    assert loaded.input_shape == (3, 32, 32)


def test_save_load_factory_model(tmp_path: Path) -> None:
    from xbarforge.model_spec import load_factory

    (tmp_path / "net.py").write_text(FACTORY_SRC)
    spec = f"{tmp_path / 'net.py'}:build"
    model = load_factory(spec).eval()
    save_model(tmp_path / "m.pt", model, arch={"factory": spec}, meta={"input_shape": [1, 8, 8]})
    loaded, meta = load_model(tmp_path / "m.pt")
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x), loaded(x)) and loaded.input_shape == (1, 8, 8)


def test_parametrized_model_saves_plain_weights(tmp_path: Path) -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("gain", torch.tensor(2.0))

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w * self.gain

    model = tiny_net()
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    parametrize.register_parametrization(model[0], "weight", Scale())
    parametrize.register_parametrization(model[9], "weight", Scale())
    sd = plain_state_dict(model)
    assert sd.keys() == plain.keys() and all(torch.equal(sd[k], plain[k]) for k in sd)
    save_model(tmp_path / "m.pt", model, arch=None)
    fresh, _ = load_model(tmp_path / "m.pt", model=tiny_net())
    assert torch.equal(fresh[0].weight, plain["0.weight"])


def test_bad_model_files(tmp_path: Path, digits: DataBundle) -> None:
    with pytest.raises(XbarforgeError, match="model file not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(XbarforgeError, match="junk.pt: unreadable or not written by xbarforge"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(XbarforgeError, match="not an xbarforge model file"):
        load_model(tmp_path / "other.pt")
    train(tiny_net(), digits, epochs=1, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(XbarforgeError, match="training checkpoint"):
        load_model(tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(XbarforgeError, match="does not record how to build"):
        load_model(tmp_path / "run" / "model.pt")
    with pytest.raises(XbarforgeError, match="weights do not fit"):
        load_model(tmp_path / "run" / "model.pt", model=tiny_net(num_classes=3))


def test_model_that_does_not_fit_the_data(digits: DataBundle) -> None:
    with pytest.raises(XbarforgeError, match="outputs .* but digits has 10 classes"):
        train(tiny_net(num_classes=4), digits, epochs=1, progress=False)
    with pytest.raises(XbarforgeError, match="cannot take digits inputs of shape 1x8x8"):
        train(nn.Sequential(nn.Flatten(), nn.Linear(3, 10)), digits, epochs=1, progress=False)


# ---------------------------------------------------------------------------------------------
# the `xbarforge train` command


def test_cli_train_digits_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(FACTORY_SRC)
    out = tmp_path / "run"
    argv = ["train", f"{tmp_path / 'net.py'}:build", "--data", "digits", "--epochs", "2", "--out", str(out)]
    code, stdout, stderr = run_cli(argv)
    assert code == 0, stderr
    assert "val " in stdout and "test " in stdout and str(out / "model.pt") in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2 and metrics["command"].startswith("xbarforge train")
    model, meta = load_model(out / "model.pt")
    assert meta["dataset"] == "digits" and meta["arch"]["factory"].endswith("net.py:build")
    # rerunning the finished command resumes at the end: nothing to train, same answer
    code, stdout2, _ = run_cli([*argv, "--quiet"])
    assert code == 0 and stdout2 == ""
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    # fine-tune from the model: dataset and root come from its meta
    code, stdout3, stderr3 = run_cli(["train", f"{tmp_path / 'net.py'}:build", "--init", str(out / "model.pt"),
                                      "--epochs", "1", "--out", str(tmp_path / "ft"), "--quiet"])
    assert code == 0, stderr3
    assert read_model_file(tmp_path / "ft" / "model.pt")["meta"]["init"] == str((out / "model.pt").resolve())


def test_cli_train_zoo_model_resizes_small_inputs(tmp_path: Path) -> None:
    code, stdout, stderr = run_cli(["train", "lenet5", "--data", "digits", "--epochs", "1", "--out",
                                    str(tmp_path / "l"), "--val-fraction", "0.5"])
    assert code == 0, stderr
    assert "resizing digits to 32x32" in stdout
    model, meta = load_model(tmp_path / "l" / "model.pt")
    assert meta["arch"] == {"zoo": "lenet5", "kwargs": {"num_classes": 10, "input_size": [1, 32, 32]}}
    assert model.input_shape == (1, 32, 32)


def test_cli_hardware_aware_uses_the_sim_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--hardware-aware wraps the model with xbarforge.sim.hardware_aware (a stand-in here)."""
    calls: list[str] = []

    class Noise(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w * 1.0

    def hardware_aware(model: nn.Module, hw: object) -> nn.Module:
        calls.append(type(hw).__name__)
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                parametrize.register_parametrization(m, "weight", Noise())
        return model

    def remove_hardware_aware(model: nn.Module) -> nn.Module:
        calls.append("removed")
        for m in model.modules():
            if parametrize.is_parametrized(m):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
        return model

    fake = types.ModuleType("xbarforge.sim")
    fake.hardware_aware = hardware_aware  # type: ignore[attr-defined]
    fake.remove_hardware_aware = remove_hardware_aware  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "xbarforge.sim", fake)
    (tmp_path / "net.py").write_text(FACTORY_SRC)
    code, _, stderr = run_cli(["train", f"{tmp_path / 'net.py'}:build", "--data", "digits", "--epochs", "1",
                               "--hw", "isaac", "--set", "crossbar.rows=64", "--hardware-aware",
                               "--out", str(tmp_path / "hwa"), "--quiet"])
    assert code == 0, stderr
    assert calls == ["HardwareSpec", "removed"]
    model, meta = load_model(tmp_path / "hwa" / "model.pt")
    assert meta["hardware_aware"] == {"hw": "isaac", "overrides": ["crossbar.rows=64"]}
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "lenet5", "--data", "mnist", "--out", "X"], "argument --data: invalid choice"),
    (["train", "lenet5", "--data", "digits"], "the following arguments are required: --out"),
    (["train", "lenet5", "--out", "X"], "--data is required"),
    (["train", "lenet5", "--data", "cifar10", "--out", "X"], "needs a root folder"),
    (["train", "lenet5", "--data", "cifar10", "--data-root", "nowhere", "--out", "X"], "no such file or folder"),
    (["train", "lenet6", "--data", "digits", "--out", "X"], "unknown model 'lenet6': did you mean lenet5"),
    (["train", "net.onnx", "--data", "digits", "--out", "X"], "ONNX files cannot be trained"),
    (["train", "lenet5", "--data", "digits", "--hardware-aware", "--out", "X"], "--hardware-aware needs a chip"),
    (["train", "lenet5", "--data", "digits", "--hw", "isaac", "--out", "X"], "only matter with --hardware-aware"),
    (["train", "lenet5", "--data", "digits", "--init", "nowhere.pt", "--out", "X"], "model file not found"),
    (["train", "lenet5", "--data", "digits", "--epochs", "0", "--out", "X"], "argument --epochs: must be at least 1"),
    (["train", "lenet5", "--data", "digits", "--lr", "-1", "--out", "X"], "argument --lr: must be a positive number"),
])
def test_cli_train_bad_input(argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(argv)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xbarforge: error: ") and message in lines[0], stderr
    assert not (tmp_path / "X" / "model.pt").exists()


def test_cli_init_that_does_not_fit(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(FACTORY_SRC)
    code, _, stderr = run_cli(["train", f"{tmp_path / 'net.py'}:build", "--data", "digits", "--epochs", "1",
                               "--out", str(tmp_path / "a"), "--quiet"])
    assert code == 0, stderr
    code, _, stderr = run_cli(["train", "resnet20", "--init", str(tmp_path / "a" / "model.pt"), "--epochs", "1",
                               "--out", str(tmp_path / "b")])
    assert code == 2 and "weights do not fit" in stderr and len(stderr.strip().splitlines()) == 1


def test_atomic_writes_get_the_usual_file_mode(tmp_path) -> None:
    """Results written through a temporary file are readable by others (not mkstemp's 0600)."""
    import os

    from xbarforge.train.modelio import atomic_save, atomic_write_text

    old = os.umask(0o022)
    try:
        for path in (atomic_write_text(tmp_path / "a.json", "{}"), atomic_save({"x": 1}, tmp_path / "b.pt")):
            assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_adamw_recipe_trains_and_is_recorded(tmp_path) -> None:
    """`--optimizer adamw` (transformers): it trains, the recipe records it, and a resume with SGD is refused."""
    import json

    out = tmp_path / "vit"
    code, _, err = run_cli(["train", "vit_cifar", "--data", "digits", "--resolution", "8", "--epochs", "1",
                            "--limit", "200", "--optimizer", "adamw", "--out", str(out), "--quiet"])
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"]["optimizer"] == "adamw" and metrics["recipe"]["lr"] == 1e-3
    # same recipe but SGD: the checkpoint's optimizer state does not fit it, so the resume is refused
    code, _, err = run_cli(["train", "vit_cifar", "--data", "digits", "--resolution", "8", "--epochs", "1",
                            "--limit", "200", "--lr", "0.001", "--out", str(out), "--quiet"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "optimizer" in err

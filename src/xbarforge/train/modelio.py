"""Model files: weights plus the recipe to rebuild the network and what it was trained on.

A model file is a torch.save'd dict {format, version, arch, meta, state_dict} holding plain types and
tensors only, so it loads with `weights_only=True` (no code runs on load). `arch` is
{"zoo": name, "kwargs": {...}} (rebuilt with `xbarforge.zoo.create_model`) or
{"factory": "path/to/file.py:fn"} (rebuilt with `xbarforge.cli.load_factory`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from xbarforge.errors import XbarforgeError

MODEL_FORMAT = "xbarforge-model"
MODEL_VERSION = 1


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a torch.device; None picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise XbarforgeError(f"unknown device '{device}': {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XbarforgeError(f"device '{device}' asked for, but CUDA is not available here")
    return dev


def default_file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the process umask (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: str | Path, mode: str, write: Callable[[IO[Any]], None]) -> Path:
    """`write` into a temporary file next to `path`, flush it to disk, then rename: readers never
    see half a file, and a run killed mid-write leaves only a `.NAME.*.tmp` behind."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; results are shared like any file
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file next to `path`, then rename: readers never see half a file."""
    return _atomic_write(path, "wb", lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text via a temporary file and a rename."""
    return _atomic_write(path, "w", lambda f: f.write(text))


def safe_load(path: str | Path, what: str = "file") -> Any:
    """torch.load(weights_only=True) with every failure turned into one XbarforgeError line."""
    p = Path(path).expanduser()
    if not p.exists():
        raise XbarforgeError(f"{what} not found: {p}")
    if not p.is_file():
        raise XbarforgeError(f"{what} {p}: is not a file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on a foreign file (struct.error, ...)
        text = " ".join(str(exc).split())[:200]
        raise XbarforgeError(f"{what} {p}: unreadable or not written by xbarforge ({type(exc).__name__}: {text})"
                             ) from None


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict on the CPU, with parametrizations (e.g. hardware-aware noise) removed.

    `layer.parametrizations.weight.original` becomes `layer.weight` (the trained, clean weights);
    state held by the parametrization modules themselves is dropped, so the file rebuilds a plain model.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        prefix, sep, rest = ("." + key).partition(".parametrizations.")
        if sep:
            name, _, tail = rest.partition(".")
            if tail != "original":
                continue
            key = (prefix[1:] + "." if prefix[1:] else "") + name
        out[key] = value.detach().to("cpu").contiguous().clone()
    return out


def _check_arch(arch: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if arch is None:
        return None
    if "zoo" in arch and isinstance(arch["zoo"], str) and isinstance(arch.get("kwargs", {}), Mapping):
        return {"zoo": arch["zoo"], "kwargs": dict(arch.get("kwargs", {}))}
    if "factory" in arch and isinstance(arch["factory"], str):
        return {"factory": arch["factory"]}
    if "space" in arch and isinstance(arch["space"], str) and isinstance(arch.get("arch"), Mapping):
        return {"space": arch["space"], "kwargs": dict(arch.get("kwargs", {})), "arch": dict(arch["arch"])}
    raise XbarforgeError(
        f"arch must be {{'zoo': name, 'kwargs': {{...}}}}, {{'factory': 'file.py:fn'}} or {{'space': name, 'arch':"
        f" {{...}}}}, got {arch!r}")


def save_model(
    path: str | Path, model: nn.Module, *, arch: Mapping[str, Any] | None, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write `model`'s weights with the recipe to rebuild it (`arch`) and facts about it (`meta`).

    `meta` should hold num_classes, input_shape, dataset, mean/std and accuracies; it is stored as
    plain JSON-like data. Written atomically.
    """
    from xbarforge.report.jsonio import to_jsonable

    doc = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "arch": to_jsonable(_check_arch(arch), digits=None),
        "meta": to_jsonable(dict(meta or {}), digits=None),
        "state_dict": plain_state_dict(model),
    }
    return atomic_save(doc, path)


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The checked contents of a model file (format, version, arch, meta, state_dict)."""
    doc = safe_load(path, "model file")
    p = Path(path).expanduser()
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        hint = " (a training checkpoint? use model.pt)" if isinstance(doc, dict) and "optimizer" in doc else ""
        raise XbarforgeError(f"model file {p}: not an xbarforge model file{hint}")
    if int(doc.get("version", 0)) > MODEL_VERSION:
        raise XbarforgeError(f"model file {p}: format version {doc.get('version')} is newer than this xbarforge reads")
    if not isinstance(doc.get("state_dict"), dict):
        raise XbarforgeError(f"model file {p}: has no weights")
    doc.setdefault("meta", {})
    return doc


def build_from_arch(arch: Mapping[str, Any] | None, source: str) -> nn.Module:
    """A freshly initialized network from an `arch` record (zoo name + kwargs, or a factory)."""
    if arch is None:
        raise XbarforgeError(f"{source} does not record how to build its network; pass the model to load into")
    if "zoo" in arch:
        from xbarforge.zoo import create_model

        return create_model(arch["zoo"], **dict(arch.get("kwargs") or {}))
    if "factory" in arch:
        from xbarforge.model_spec import load_factory

        return load_factory(arch["factory"])
    if "space" in arch:  # a sub-net exported by `xbarforge export`
        from xbarforge.search.registry import create_space

        return create_space(arch["space"], **dict(arch.get("kwargs") or {})).build(dict(arch["arch"]))
    raise XbarforgeError(f"{source}: unknown arch record {dict(arch)!r}")


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state_dict` into `model` strictly; a mismatch is one XbarforgeError line."""
    result = model.load_state_dict(state_dict, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:3])}{' ...' if len(result.missing_keys) > 3 else ''}")
    if result.unexpected_keys:
        extra = result.unexpected_keys
        problems.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    if problems:
        raise XbarforgeError(f"{source}: weights do not fit the network ({'; '.join(problems)})")


def load_model(
    path: str | Path, device: str | torch.device | None = None, *, model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network saved at `path`, load its weights, put it on `device` (default: auto) in eval mode.

    Returns (model, meta); meta also carries the file's `arch`. Pass `model` to load the weights into a
    network you built yourself. Every problem raises one XbarforgeError line.
    """
    doc = read_model_file(path)
    source = f"model file {Path(path).expanduser()}"
    net = model if model is not None else build_from_arch(doc.get("arch"), source)
    try:
        load_weights(net, doc["state_dict"], source)
    except RuntimeError as exc:  # shape mismatches
        text = " ".join(str(exc).split())[:300]
        raise XbarforgeError(f"{source}: weights do not fit the network ({text})") from None
    meta = dict(doc.get("meta") or {})
    if meta.get("input_shape") and getattr(net, "input_shape", None) is None:
        net.input_shape = tuple(int(v) for v in meta["input_shape"])
    meta["arch"] = doc.get("arch")
    return net.to(pick_device(device)).eval(), meta

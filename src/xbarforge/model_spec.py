"""Models a user names on the command line: `path/to/file.py:factory`, a zoo name or an .onnx file.

Library code (rebuilding a saved model from its `arch` record) and the command line both resolve
models here, so neither imports the other.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["is_factory_spec", "load_factory", "resolve_model"]


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def load_factory(spec: str) -> Any:
    """Import `path/to/file.py:name` and return `name()` (an nn.Module).

    `name` may be a function or a class; it is called with no arguments. The file's folder is on
    sys.path while it is imported, so it can import its neighbours.
    """
    from torch import nn

    from xbarforge.errors import CaptureError, ModelNotFoundError

    file_part, _, attr = spec.rpartition(":")
    path = Path(file_part).expanduser()
    if not attr:
        raise ModelNotFoundError(f"model '{spec}': name the factory after the colon, e.g. {file_part}:build")
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    mod_name = f"_xbarforge_user_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise CaptureError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report its error as one line
        sys.modules.pop(mod_name, None)
        raise CaptureError(f"cannot import {path}: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == mod_name)
        hint = f" (callables there: {', '.join(found)})" if found else ""
        raise ModelNotFoundError(f"{path} has no callable '{attr}'{hint}")
    try:
        model = factory()
    except Exception as exc:
        raise CaptureError(f"{path}:{attr}() failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise CaptureError(f"{path}:{attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def is_factory_spec(text: str) -> bool:
    file_part, sep, _ = text.rpartition(":")
    return bool(sep) and file_part.endswith(".py")


def resolve_model(text: str, input_shape: tuple[int, ...] | None) -> tuple[Any, tuple[int, ...] | None]:
    """What `xbarforge.compile` takes for MODEL, and the input shape to use with it."""
    from xbarforge.errors import ModelNotFoundError

    if is_factory_spec(text):
        model = load_factory(text)
        shape = input_shape or getattr(model, "input_shape", None)
        if shape is None:
            raise ModelNotFoundError(
                f"model '{text}': --input is required for a model built from a Python file"
                " (e.g. --input 3x32x32)"
            )
        return model, tuple(shape)
    if text.endswith(".py"):
        raise ModelNotFoundError(f"model '{text}': name the factory to call, e.g. {text}:build_model")
    if text.lower().endswith(".onnx"):
        if not Path(text).expanduser().is_file():
            raise ModelNotFoundError(f"ONNX file not found: {text}")
        return text, input_shape
    from xbarforge.zoo import list_models

    names = list_models()
    if text.strip().lower() not in names:
        close = difflib.get_close_matches(text.strip().lower(), names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelNotFoundError(
            f"unknown model '{text}': {hint}MODEL is a zoo name (see `xbarforge models`),"
            " an .onnx file or path/to/file.py:factory"
        )
    return text, input_shape

"""One entry point for every model source: `capture(model_or_path, input_shape)`.

* `nn.Module` -> torch.fx capture (`capture_module`); a module torch.fx cannot trace (control flow
  on tensor values) or that holds an operator fx capture does not know (nn.TransformerEncoder,
  nn.MultiheadAttention, ...) is exported with `torch.onnx.export` (TorchScript tracing runs the
  Python, so the branch taken on the capture input, zeros, is recorded) and imported from ONNX.
  Layer names are then ONNX node names, and the simulator, which runs the model through torch.fx,
  cannot run it. When the fallback fails too, the fx error is raised (it names the op and node);
* a `str`/`Path` ending in `.onnx` -> ONNX import (`import_onnx`);
* a registered zoo name -> `xbarforge.zoo.create_model(name, num_classes=...)`, then fx capture.

Results are cached (least recently used, `CACHE_SIZE` entries). A module is keyed by its identity,
class, input shape and a cheap fingerprint of its parameters and buffers (identity, storage pointer,
shape and in-place version counter, so an optimizer step or `load_state_dict` invalidates the
entry); a file by its resolved path, size and mtime; a zoo name by name, classes and shape. Every
call returns a fresh `LayerGraph` with fresh `Layer` records; weight tensors are shared with the
cached copy, so treat them as read-only (clone before modifying in place).
"""

from __future__ import annotations

import copy
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

from torch import nn

from xbarforge.errors import CaptureError, ModelNotFoundError
from xbarforge.graph.fx_capture import (
    TraceFailure,
    UnsupportedOperator,
    _check_input_shape,
    _first_line,
    capture_module,
)
from xbarforge.graph.layer_graph import LayerGraph
from xbarforge.graph.onnx_import import import_onnx

__all__ = ["CACHE_SIZE", "cache_info", "capture", "clear_capture_cache"]

CACHE_SIZE = 32

# key -> (weak reference to the module or None, LayerGraph)
_CACHE: OrderedDict[tuple[Any, ...], tuple[Any, LayerGraph]] = OrderedDict()
_STATS = {"hits": 0, "misses": 0}


def clear_capture_cache() -> None:
    """Forget every cached capture."""
    _CACHE.clear()
    _STATS["hits"] = _STATS["misses"] = 0


def cache_info() -> dict[str, int]:
    """Hits, misses, current size and maximum size of the capture cache."""
    return {**_STATS, "size": len(_CACHE), "maxsize": CACHE_SIZE}


def _fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """Cheap identity of a module's current state (no tensor data is read)."""
    items: list[tuple[Any, ...]] = []
    for kind, named in (("p", model.named_parameters()), ("b", model.named_buffers())):
        for pname, t in named:
            try:
                items.append((kind, pname, id(t), t.data_ptr(), tuple(t.shape), t._version))
            except (RuntimeError, ValueError):  # lazy (uninitialized) parameters
                items.append((kind, pname, id(t)))
    items.append(("training", tuple(m.training for m in model.modules())))
    return tuple(items)


def _fresh(graph: LayerGraph) -> LayerGraph:
    """A copy with its own Layer records and attrs (tensors shared)."""
    layers = []
    for layer in graph.layers:
        new = copy.copy(layer)
        new.inputs = list(layer.inputs)
        new.attrs = copy.deepcopy(layer.attrs)
        layers.append(new)
    return LayerGraph(name=graph.name, input_shape=graph.input_shape, layers=layers, source=graph.source,
                      note=graph.note)


def _lookup(key: tuple[Any, ...], model: nn.Module | None = None) -> LayerGraph | None:
    hit = _CACHE.get(key)
    if hit is None:
        return None
    ref, graph = hit
    if model is not None and (ref is None or ref() is not model):
        del _CACHE[key]  # the id was reused by a different module
        return None
    _CACHE.move_to_end(key)
    _STATS["hits"] += 1
    return _fresh(graph)


def _store(key: tuple[Any, ...], graph: LayerGraph, model: nn.Module | None = None) -> LayerGraph:
    _STATS["misses"] += 1
    ref = None
    if model is not None:
        try:
            ref = weakref.ref(model)
        except TypeError:  # pragma: no cover - modules are weak-referenceable
            return _fresh(graph)
    _CACHE[key] = (ref, graph)
    _CACHE.move_to_end(key)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return _fresh(graph)


def _zoo() -> Any:
    try:
        import xbarforge.zoo as zoo
    except ImportError:
        return None
    return zoo


def _capture_module(model: nn.Module, shape: tuple[int, ...], name: str | None) -> LayerGraph:
    key = ("module", id(model), type(model), shape, name, _fingerprint(model))
    hit = _lookup(key, model)
    if hit is not None:
        return hit
    try:
        graph = capture_module(model, shape, name=name)
    except (TraceFailure, UnsupportedOperator) as failure:
        graph = _through_onnx(model, shape, name, failure)
    return _store(key, graph, model)


def _through_onnx(model: nn.Module, shape: tuple[int, ...], name: str | None,
                  failure: TraceFailure | UnsupportedOperator) -> LayerGraph:
    """The fallback for models torch.fx cannot capture: export to ONNX in memory, then import."""
    import io
    import warnings

    import torch

    buffer = io.BytesIO()
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        # gradients stay on: under no_grad nn.TransformerEncoderLayer takes a fused fast path ONNX cannot export
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (torch.zeros((1, *shape), dtype=dtype, device=device),), buffer, dynamo=False, opset_version=17
            )
        graph = import_onnx(buffer.getvalue(), input_shape=shape, name=name or type(model).__name__)
    except Exception as exc:
        if isinstance(failure, UnsupportedOperator):
            raise failure from None  # it names the op and node; the export's view adds nothing a user can act on
        raise CaptureError(
            f"{failure}; the ONNX export fallback failed too ({_first_line(exc)}): "
            f"rewrite module {failure.module} without control flow on tensor values, or export the model to ONNX"
        ) from None
    finally:
        for m, training in flags:
            m.training = training
    graph.source = "onnx-fallback"
    graph.note = str(failure)
    return graph


def capture(
    model: nn.Module | str | Path,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int = 10,
    name: str | None = None,
) -> LayerGraph:
    """Capture a module, an ONNX file or a zoo model name as a LayerGraph (cached).

    `input_shape` is per sample, without batch, e.g. (3, 32, 32). It is required for a module; for
    an ONNX file None means the file's declared input; for a zoo name None means the model's
    default (`xbarforge.zoo.default_input_shape`), and a given shape builds the model for it.
    `num_classes` is used only for zoo names.
    """
    shape = None if input_shape is None else _check_input_shape(input_shape)
    if isinstance(model, nn.Module):
        if shape is None:
            raise CaptureError(f"input_shape is required to capture a {type(model).__name__} module")
        return _capture_module(model, shape, name)
    if not isinstance(model, str | Path):
        raise CaptureError(
            f"cannot capture a {type(model).__name__}: expected nn.Module, .onnx path or zoo name"
        )
    text = str(model)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise CaptureError(f"ONNX file not found: {path}")
        stat = path.stat()
        key = ("onnx", str(path.resolve()), stat.st_size, stat.st_mtime_ns, shape, name)
        hit = _lookup(key)
        if hit is not None:
            return hit
        return _store(key, import_onnx(path, input_shape=shape, name=name))
    zoo = _zoo()
    if zoo is not None and text.strip().lower() in zoo.list_models():
        zoo_name = text.strip().lower()
        key = ("zoo", zoo_name, int(num_classes), shape, name)
        hit = _lookup(key)
        if hit is not None:
            return hit
        if shape is None:
            shape = tuple(zoo.default_input_shape(zoo_name))
            net = zoo.create_model(zoo_name, num_classes=num_classes)
        else:
            net = zoo.create_model(zoo_name, num_classes=num_classes, input_size=shape)
        return _store(key, capture_module(net, shape, name=name or zoo_name))
    if path.exists():
        raise CaptureError(f"cannot capture {path}: only .onnx files are supported as model files")
    if zoo is not None:
        zoo.create_model(text)  # raises ModelNotFoundError with close-match hints
    raise ModelNotFoundError(f"unknown model {text!r}: not an .onnx file or a zoo model name")

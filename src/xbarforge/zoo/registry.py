"""The zoo registry: one name -> builder table and one `create_model`.

Builders are plain functions registered with `@register_model` (optionally
`@register_model(input_shape=(C, H, W))` to declare the model's natural input). `create_model` resolves
the input shape, calls the builder with `num_classes`, `in_channels` and `input_size=(H, W)` plus any
model-specific keyword arguments, and stamps the result with `zoo_name` and `input_shape` attributes so
downstream code knows what the network was built for.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from torch import nn

from xbarforge.errors import ModelNotFoundError, XbarforgeError

Builder = Callable[..., nn.Module]
F = TypeVar("F", bound=Builder)

IMAGENET_SHAPE: tuple[int, int, int] = (3, 224, 224)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its builder and its natural (C, H, W) input."""

    name: str
    fn: Builder
    input_shape: tuple[int, int, int]


_REGISTRY: dict[str, ModelEntry] = {}


@overload
def register_model(fn: F) -> F: ...


@overload
def register_model(*, input_shape: tuple[int, int, int] = IMAGENET_SHAPE) -> Callable[[F], F]: ...


def register_model(
    fn: F | None = None, *, input_shape: tuple[int, int, int] = IMAGENET_SHAPE
) -> F | Callable[[F], F]:
    """Register a model builder under its function name.

    Use bare (`@register_model`, ImageNet-style 3x224x224 default input) or with a default input
    shape (`@register_model(input_shape=(3, 32, 32))`). Registering a name twice raises ValueError.
    """

    def decorate(f: F) -> F:
        name = f.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        c, h, w = (int(v) for v in input_shape)
        _REGISTRY[name] = ModelEntry(name=name, fn=f, input_shape=(c, h, w))
        return f

    if fn is not None:
        return decorate(fn)
    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> ModelEntry:
    key = name.strip().lower()
    entry = _REGISTRY.get(key)
    if entry is None:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"unknown zoo model {name!r}{hint} (available: see list_models())")
    return entry


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The natural (C, H, W) input of a registered model (e.g. (3, 32, 32) for resnet20)."""
    return _entry(name).input_shape


def resolve_input_shape(
    name: str, input_size: int | tuple[int, ...] | None = None, in_channels: int | None = None
) -> tuple[int, int, int]:
    """The (C, H, W) a model is built for, from the optional overrides given to `create_model`.

    `input_size` may be an int (square H=W), an (H, W) pair or a (C, H, W) triple; `in_channels`
    overrides the channel count (it must agree with C when both are given).
    """
    c, h, w = default_input_shape(name)
    if input_size is not None:
        if isinstance(input_size, int):
            h = w = input_size
        else:
            dims = tuple(int(v) for v in input_size)
            if len(dims) == 2:
                h, w = dims
            elif len(dims) == 3:
                c, h, w = dims
                if in_channels is not None and in_channels != c:
                    raise XbarforgeError(f"input_size {dims} has {c} channels but in_channels={in_channels}")
            else:
                raise XbarforgeError(f"input_size must be H, (H, W) or (C, H, W), got {input_size!r}")
    if in_channels is not None:
        c = int(in_channels)
    if c < 1 or h < 1 or w < 1:
        raise XbarforgeError(f"input shape must be positive, got {(c, h, w)}")
    return c, h, w


def create_model(
    name: str,
    num_classes: int = 10,
    input_size: int | tuple[int, ...] | None = None,
    in_channels: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build zoo model `name` with freshly initialised weights.

    `input_size` (int, (H, W) or (C, H, W)) and `in_channels` default to `default_input_shape(name)`.
    Models whose classifier width depends on the spatial size (lenet5, vgg8) size it from
    `input_size`; the others work at any reasonable size. Extra keyword arguments go to the builder
    (e.g. `cifar_stem=True` for mobilenetv2, `head="imagenet"` for vgg16).
    Raises ModelNotFoundError for an unknown name.
    """
    entry = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise XbarforgeError(f"num_classes must be a positive integer, got {num_classes!r}")
    c, h, w = resolve_input_shape(entry.name, input_size, in_channels)
    model = entry.fn(num_classes=num_classes, in_channels=c, input_size=(h, w), **kwargs)
    model.zoo_name = entry.name
    model.input_shape = (c, h, w)
    return model

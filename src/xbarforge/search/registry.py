"""The search-space registry: one name -> builder table and one `create_space` (like the zoo's
`create_model`). It knows the built-in spaces itself instead of letting them register on import,
so no space module imports the registry and the registry imports them only when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xbarforge.search.space import SearchSpace, SpaceError

__all__ = ["create_space", "list_spaces", "register_space"]

_USER: dict[str, Callable[..., SearchSpace]] = {}  # spaces registered at run time by users


def _builtin() -> dict[str, Callable[..., SearchSpace]]:
    from xbarforge.search.mbv3 import mbv3_small_space
    from xbarforge.search.nax import nax_resnet20_space

    return {"mbv3-small": mbv3_small_space, "nax-resnet20": nax_resnet20_space}


def register_space(name: str) -> Callable[[Callable[..., SearchSpace]], Callable[..., SearchSpace]]:
    """Decorator: make a space builder available to `create_space(name)` (and the CLI)."""

    def wrap(fn: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        _USER[name] = fn
        return fn

    return wrap


def list_spaces() -> list[str]:
    return sorted({**_builtin(), **_USER})


def create_space(name: str, **kwargs: Any) -> SearchSpace:
    """A built-in or registered space by name; kwargs are its options (resolution, num_classes, ...)."""
    spaces = {**_builtin(), **_USER}
    if name not in spaces:
        raise SpaceError(f"unknown search space '{name}' (known: {', '.join(sorted(spaces))})")
    return spaces[name](**kwargs)

"""The zoo's model names and default inputs, read without importing torch.

`xbarforge models` should answer at once, but importing the zoo imports torch (about a second).
The zoo registers every model with a `@register_model` decorator in `xbarforge/zoo/*.py`, so the
catalog reads those decorators from the source files' syntax trees instead; a test checks that it
lists exactly what the registry holds.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

DEFAULT_SHAPE = (3, 224, 224)  # zoo.registry.IMAGENET_SHAPE: what a bare @register_model declares


def _shape(call: ast.Call) -> tuple[int, int, int] | None:
    for kw in call.keywords:
        if kw.arg == "input_shape":
            value = ast.literal_eval(kw.value)
            return (int(value[0]), int(value[1]), int(value[2]))
    return None


@cache
def zoo_models() -> dict[str, tuple[int, int, int]]:
    """Registered zoo model name -> default (C, H, W) input, sorted by name."""
    found: dict[str, tuple[int, int, int]] = {}
    for path in sorted((Path(__file__).parent / "zoo").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if isinstance(dec, ast.Name) and dec.id == "register_model":
                    found[node.name] = DEFAULT_SHAPE
                elif isinstance(dec, ast.Call) and isinstance(dec.func, ast.Name) and dec.func.id == "register_model":
                    found[node.name] = _shape(dec) or DEFAULT_SHAPE
    return dict(sorted(found.items()))

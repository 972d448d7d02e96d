"""Turn pydantic's multi-line ValidationError into the one-line HardwareError users see.

The CLI prints errors as a single line, so the message must name the offending key and the reason
on its own: `hardware file my.yaml: crossbar.rows: must be greater than 0 (got -3)`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

_VALUE_ERROR = "Value error, "
_INPUT_SHOULD = "Input should be "


def dotted(loc: Sequence[int | str]) -> str:
    """('chip', 'pools', 0, 'rows') -> 'chip.pools.0.rows' (the same form overrides accept)."""
    return ".".join(str(part) for part in loc)


def one_line(text: str) -> str:
    """Collapse whitespace so a message never spills onto a second line."""
    return " ".join(str(text).split())


def known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of a model tree (for 'did you mean' hints)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        sub = _submodel(field.annotation)
        if sub is not None:
            keys.extend(known_keys(sub, key + "."))
    return keys


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest known spelling, or None when nothing is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _show(value: Any) -> str | None:
    """A short repr of the offending input, or None for whole sub-trees (too long for one line)."""
    if isinstance(value, dict | list):
        return None
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error as `key: reason (got value)`."""
    loc = dotted(err.get("loc", ()))
    kind = err.get("type", "")
    msg = one_line(err.get("msg", ""))
    if kind == "extra_forbidden":
        hint = suggest(loc, known_keys(model))
        return f"unknown key '{loc}'" + (f" (did you mean '{hint}'?)" if hint else "")
    if kind == "missing":
        return f"{loc}: missing required key"
    if msg.startswith(_VALUE_ERROR):
        msg = msg[len(_VALUE_ERROR) :]
    elif msg.startswith(_INPUT_SHOULD):
        msg = "must be " + msg[len(_INPUT_SHOULD) :]
    shown = _show(err.get("input")) if kind != "value_error" else None
    if shown is not None:
        msg += f" (got {shown})"
    if loc and not msg.startswith(loc + ":"):
        msg = f"{loc}: {msg}"
    return msg


def format_validation_error(exc: ValidationError, model: type[BaseModel], label: str) -> str:
    """`label: first error (and N more)` on one line."""
    errors = exc.errors()
    first = describe(errors[0], model) if errors else one_line(str(exc))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{label}: {first}{more}"

"""Write result documents as JSON: plain types only, floats rounded, key order kept.

Reports are built as ordinary dicts, but values may come from numpy, torch, dataclasses, pydantic
models or paths. `to_jsonable` turns all of these into JSON types; `write_json` writes the result
with floats rounded to `FLOAT_DIGITS` significant digits (enough for every quantity xbarforge
reports, without binary noise such as 59887.015999999996) and the keys in the order the report
has them, so related fields stay together.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

__all__ = ["FLOAT_DIGITS", "dumps", "read_json", "round_float", "to_jsonable", "write_json"]

FLOAT_DIGITS = 10


def round_float(value: float, digits: int = FLOAT_DIGITS) -> float | None:
    """`value` rounded to `digits` significant digits; None for NaN and infinity (not JSON)."""
    if math.isnan(value) or math.isinf(value):
        return None
    if value == 0:
        return 0.0
    return float(f"{value:.{digits}g}")


def to_jsonable(obj: Any, digits: int | None = FLOAT_DIGITS) -> Any:
    """`obj` as nested dicts, lists, strings, ints, floats, bools and None.

    Handles numpy scalars and arrays, torch tensors, tuples and sets, dataclasses, pydantic
    models, enums and paths. Floats are rounded to `digits` significant digits (None: as is).
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return round_float(obj, digits) if digits is not None else (None if not math.isfinite(obj) else obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v, digits) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [to_jsonable(v, digits) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value, digits)
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), digits)
    if hasattr(obj, "model_dump") and callable(obj.model_dump):  # pydantic models
        return to_jsonable(obj.model_dump(mode="json"), digits)
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch tensors
        return to_jsonable(obj.detach().cpu().tolist(), digits)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return to_jsonable(obj.tolist(), digits)
    if hasattr(obj, "item"):
        return to_jsonable(obj.item(), digits)
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")


def dumps(obj: Any, digits: int | None = FLOAT_DIGITS, indent: int | None = 2) -> str:
    """JSON text of `obj` (see `to_jsonable`), keys in their original order."""
    return json.dumps(to_jsonable(obj, digits), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any, digits: int | None = FLOAT_DIGITS, indent: int | None = 2) -> Path:
    """Write `obj` as JSON to `path` (parent folders must exist); returns the path."""
    out = Path(path)
    out.write_text(dumps(obj, digits, indent), encoding="utf-8")
    return out


def read_json(path: str | Path) -> Any:
    """Read a JSON document written by `write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))

"""Load a HardwareSpec from a preset name, a YAML file, a dict or a spec, with dotted overrides.

Everything that can go wrong (unknown preset, missing file, bad YAML, a key that fails the schema,
a misspelt override) raises HardwareError with one line that names the key and the reason, because
the CLI prints exactly that line and nothing else.

    load_hardware("isaac")
    load_hardware("my_chip.yaml", **{"crossbar.rows": 64, "latency.mvm_ns": None})
    load_hardware("isaac", crossbar__rows=64)           # '__' works as '.' in Python keywords
    override(spec, "precision.adc_bits", 6)             # re-validated copy
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from xbarforge.errors import HardwareError
from xbarforge.hardware._errors import format_validation_error, known_keys, one_line, suggest
from xbarforge.hardware.spec import HardwareSpec

__all__ = [
    "dump_hardware",
    "list_presets",
    "load_hardware",
    "override",
    "parse_overrides",
    "preset_path",
    "save_hardware",
    "with_overrides",
]

_PRESET_SUFFIX = ".yaml"

HardwareSource = str | Path | Mapping[str, Any] | HardwareSpec


# ---------------------------------------------------------------------------------------------
# presets


def _preset_dir() -> Traversable:
    # importlib.resources finds the YAML files both in a source checkout and in an installed wheel.
    return resources.files("xbarforge.hardware").joinpath("presets")


def list_presets() -> list[str]:
    """Names of the bundled presets, sorted (a preset is `presets/<name>.yaml`)."""
    return sorted(
        entry.name[: -len(_PRESET_SUFFIX)]
        for entry in _preset_dir().iterdir()
        if entry.is_file() and entry.name.endswith(_PRESET_SUFFIX)
    )


def preset_path(name: str) -> Traversable:
    """Where a preset's YAML lives (to show users the cited sources); HardwareError if unknown."""
    entry = _preset_dir().joinpath(name + _PRESET_SUFFIX)
    if not entry.is_file():
        raise HardwareError(_unknown_preset(name))
    return entry


def _unknown_preset(name: str) -> str:
    names = list_presets()
    hint = suggest(name, names)
    did_you_mean = f"did you mean '{hint}'? " if hint else ""
    return f"unknown hardware preset '{name}' ({did_you_mean}presets: {', '.join(names)})"


# ---------------------------------------------------------------------------------------------
# reading YAML


def _parse_yaml(text: str, label: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HardwareError(f"{label}: {_yaml_problem(exc)}") from None
    if data is None:
        raise HardwareError(f"{label}: the file is empty")
    if not isinstance(data, dict):
        raise HardwareError(f"{label}: must be a mapping of keys to values (got {type(data).__name__})")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'invalid YAML at line L, column C: problem' (PyYAML counts from 0, people from 1)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return one_line(f"invalid YAML{where}: {problem}")


def _read_file(path: Path) -> dict[str, Any]:
    label = f"hardware file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HardwareError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise HardwareError(f"{label}: is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HardwareError(f"{label}: cannot read ({one_line(str(exc))})") from None
    return _parse_yaml(text, label)


def _looks_like_path(text: str) -> bool:
    """A string is a file when it has a YAML suffix or a path separator, or names an existing file."""
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text or Path(text).is_file()


def _resolve(spec: HardwareSource) -> tuple[dict[str, Any] | HardwareSpec, str]:
    """The raw data behind `spec` and a label for error messages."""
    if isinstance(spec, HardwareSpec):
        return spec, f"hardware '{spec.name}'"
    if isinstance(spec, Path):
        return _read_file(spec), f"hardware file {spec}"
    if isinstance(spec, str):
        if spec in list_presets():
            label = f"hardware preset '{spec}'"
            return _parse_yaml(preset_path(spec).read_text(encoding="utf-8"), label), label
        if _looks_like_path(spec):
            return _read_file(Path(spec)), f"hardware file {spec}"
        raise HardwareError(_unknown_preset(spec))
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec)), "hardware spec"
    raise HardwareError(
        f"hardware: expected a preset name, a YAML path, a dict or a HardwareSpec (got {type(spec).__name__})"
    )


def _validate(data: Mapping[str, Any], label: str) -> HardwareSpec:
    try:
        return HardwareSpec.model_validate(data)
    except ValidationError as exc:
        raise HardwareError(format_validation_error(exc, HardwareSpec, label)) from None


# ---------------------------------------------------------------------------------------------
# overrides


class _KeyProblem(Exception):
    """An override key the schema does not have; the caller adds where the spec came from."""


def _split_key(key: str) -> list[str]:
    if not isinstance(key, str) or not key:
        raise _KeyProblem(f"override key must be a non-empty string (got {key!r})")
    parts = key.replace("__", ".").split(".")
    if any(not p for p in parts):
        raise _KeyProblem(f"malformed key '{key}'")
    return parts


def _unknown_key(key: str) -> _KeyProblem:
    hint = suggest(key, known_keys(HardwareSpec))
    return _KeyProblem(f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))


def _apply(data: dict[str, Any], overrides: Mapping[str, Any], label: str) -> str:
    """Apply all overrides to the raw data; returns the label to use for validation errors."""
    for key, value in overrides.items():
        try:
            _set_path(data, key, value)
        except _KeyProblem as exc:
            raise HardwareError(f"{label}: {exc}") from None
    return f"{label} with overrides" if overrides else label


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `data[a][b]... = value` for key 'a.b...', refusing keys the schema does not have.

    The check walks the schema, not the data, so a field left at its default can still be set.
    """
    parts = _split_key(key)
    model: type[BaseModel] | None = HardwareSpec
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                where = ".".join(parts[:depth])
                raise _KeyProblem(f"unknown key '{key}' ({where} has {len(node)} items)")
            if last:
                node[int(part)] = value
                return
            node = node[int(part)]
            continue
        if model is None or part not in model.model_fields:
            raise _unknown_key(key)
        if not isinstance(node, dict):
            where = ".".join(parts[:depth])
            raise _KeyProblem(f"cannot set '{key}': '{where}' is not a mapping (got {node!r})")
        if last:
            node[part] = value
            return
        annotation = model.model_fields[part].annotation
        model = _model_of(annotation)
        child = node.get(part)
        if isinstance(child, BaseModel):
            child = child.model_dump()
        elif child is None:
            child = [] if _is_list(annotation) else {}
        node[part] = child
        node = child


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model behind a field (a sub-model, or the item model of a list field), if any."""
    if _is_list(annotation):
        (annotation,) = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def with_overrides(
    spec: HardwareSpec, overrides: Mapping[str, Any], label: str | None = None
) -> HardwareSpec:
    """A re-validated copy of `spec` with dotted keys replaced (sweeps change any schema field)."""
    if not overrides:
        return spec
    data = spec.model_dump()
    return _validate(data, _apply(data, overrides, label or f"hardware '{spec.name}'"))


def override(spec: HardwareSpec, key: str, value: Any) -> HardwareSpec:
    """`spec` with one dotted key replaced, e.g. override(spec, "crossbar.rows", 64); re-validated."""
    return with_overrides(spec, {key: value})


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['crossbar.rows=64', 'latency.mvm_ns=null'] -> {'crossbar.rows': 64, 'latency.mvm_ns': None}.

    Values are read as YAML scalars, so numbers, booleans, null and lists come out typed (for CLIs).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise HardwareError(f"override '{item}': expected key=value, e.g. crossbar.rows=64")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise HardwareError(f"override '{item}': {_yaml_problem(exc)}") from None
    return out


# ---------------------------------------------------------------------------------------------
# public entry points


def load_hardware(spec: HardwareSource, **overrides: Any) -> HardwareSpec:
    """Build a validated HardwareSpec from a preset name, a YAML path, a dict or a spec.

    Keyword overrides use dotted keys (`**{"crossbar.rows": 64}`) or `__` in place of the dot
    (`crossbar__rows=64`); the result is validated once, after all overrides are applied.
    """
    data, label = _resolve(spec)
    if isinstance(data, HardwareSpec):
        return with_overrides(data, overrides, label)
    return _validate(data, _apply(data, overrides, label))


def dump_hardware(spec: HardwareSpec) -> str:
    """The spec as YAML that load_hardware reads back to an equal spec (sources are not kept)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, default_flow_style=False)


def save_hardware(spec: HardwareSpec, path: str | Path) -> Path:
    """Write dump_hardware(spec) to `path` (for recording the exact chip a result used)."""
    out = Path(path)
    out.write_text(dump_hardware(spec), encoding="utf-8")
    return out

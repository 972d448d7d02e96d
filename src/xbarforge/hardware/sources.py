"""Every constant of a hardware description with the source its YAML comment gives.

Presets cite a paper, table or file for each number in a comment on the same line (`key: value  #
source`). `constants` reads those comments back, so `xbarforge presets --show NAME` can print every
constant the chip uses with where it comes from. A field the file does not set is listed with the
schema default it takes. YAML parsers drop comments, so the lines are read here directly: preset
files are plain two-level mappings, which is all this reader handles (block scalars are skipped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xbarforge.hardware.loader import load_hardware, preset_path
from xbarforge.hardware.spec import HardwareSpec

_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_0-9][\w.]*):\s*(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")


@dataclass(frozen=True)
class Constant:
    key: str  # dotted, e.g. "energy.adc_pj"
    value: Any  # as the loaded spec holds it
    source: str  # the YAML comment, or "schema default" when the file does not set the field


def _comments(text: str) -> dict[str, str]:
    """Dotted key -> comment of the line that sets it (a section's comment applies to its keys
    that have none of their own)."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str, str]] = []  # (indent, section key, section comment)
    block_indent: int | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        if block_indent is not None:
            if indent > block_indent:
                continue  # inside a `>-` or `|` block
            block_indent = None
        m = _LINE.match(raw)
        if m is None:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key, value, comment = m["key"], m["value"], (m["comment"] or "").strip()
        if value in (">", ">-", "|", "|-"):
            block_indent = indent
        dotted = ".".join([*(s[1] for s in stack), key])
        if value == "":
            stack.append((indent, key, comment))
            continue
        inherited = next((s[2] for s in reversed(stack) if s[2]), "")
        out[dotted] = comment or (f"(section) {inherited}" if inherited else "")
    return out


def _flatten(prefix: str, data: Any) -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        out: list[tuple[str, Any]] = []
        for k, v in data.items():
            k = int(k) if isinstance(k, float) and k.is_integer() else k  # table keys (KB) as the file writes them
            out.extend(_flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return [(prefix, data)]


def constants(name_or_path: str) -> tuple[HardwareSpec, list[Constant]]:
    """The loaded spec and every field of it with its source, in schema order."""
    hw = load_hardware(name_or_path)
    path = Path(name_or_path).expanduser()
    text = path.read_text() if path.suffix.lower() in (".yaml", ".yml") and path.is_file() else (
        preset_path(name_or_path).read_text())
    sources = _comments(text)
    rows = []
    for key, value in _flatten("", hw.model_dump(exclude={"name", "description"})):
        source = sources.get(key)
        rows.append(Constant(key, value, source if source is not None else "schema default (not in the file)"))
    return hw, rows

"""Run folders: what train, supernet, search, quantize and basis runs share about their output folder.

A long run writes its settings and checkpoints into one folder and continues from them when the
same command is run again. Continuing with other settings would silently turn the run into a
different one, so every command refuses it with the same one line naming what differs. Files are
written through a temporary file and a rename (`xbarforge.train.modelio.atomic_write_text` and
`atomic_save`), so a run killed mid-write never leaves half a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xbarforge.errors import XbarforgeError

__all__ = ["OtherSettings", "check_same_settings", "settings_differences", "use_settings_file"]


class OtherSettings(XbarforgeError):
    """A run folder (or checkpoint) holds a run with other settings than the ones asked for now."""


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


def _same(a: Any, b: Any) -> bool:
    """Equality that also compares arrays and tensors element by element (their == is not a bool)."""
    if hasattr(a, "shape") or hasattr(b, "shape"):
        import numpy as np

        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    return bool(a == b)


def settings_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`key: <saved> there, <current> now` for every (dotted, nested) key whose value differs."""
    old, new = _flat("", saved), _flat("", current)
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
            if not _same(old.get(k), new.get(k))]


def check_same_settings(where: str | Path, saved: Mapping[str, Any], current: Mapping[str, Any],
                        hint: str = "use another --out, or the same settings to resume") -> None:
    """Raise OtherSettings (one line, the first three differences) when the settings differ."""
    diffs = settings_differences(saved, current)
    if diffs:
        more = f"; and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise OtherSettings(f"{where} holds a run with other settings ({'; '.join(diffs[:3])}{more}); {hint}")


def use_settings_file(path: str | Path, settings: Mapping[str, Any],
                      hint: str = "use another --out, or the same settings to resume") -> bool:
    """Check `settings` against the run folder's settings file, then (re)write it atomically.

    Returns whether the folder already held this run (a resume).
    """
    from xbarforge.train.modelio import atomic_write_text

    p = Path(path)
    resumed = p.exists()
    if resumed:
        try:
            saved = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise XbarforgeError(f"{p}: unreadable settings file ({exc}); use another --out") from None
        check_same_settings(p.parent, saved, settings, hint)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(settings, indent=2, default=str) + "\n")
    return resumed

"""Decoded-image cache: arrays in one .npz per source, keyed by the sources' names, sizes and mtimes.

Decoding 60,000 JPEGs takes seconds, loading an uncompressed .npz a fraction of one. Files are
written to a temporary name and renamed, so an interrupted write never leaves a half file; a cache
that cannot be written or read only costs time (a warning), never the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV = "XBARFORGE_CACHE"
CACHE_VERSION = 1


def cache_dir() -> Path:
    """$XBARFORGE_CACHE, or ~/.cache/xbarforge."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xbarforge"


def source_key(kind: str, files: Iterable[tuple[str, int, int]], extra: Any = None) -> str:
    """Hex digest of (kind, [(name, size, mtime_ns), ...], extra): changes when any source file does."""
    doc = json.dumps([CACHE_VERSION, kind, sorted(files), extra], sort_keys=True, default=str)
    return hashlib.sha1(doc.encode()).hexdigest()[:20]


def stat_entry(path: Path, name: str | None = None) -> tuple[str, int, int]:
    """(name, size, mtime_ns) of one source file."""
    st = path.stat()
    return (name if name is not None else path.name, int(st.st_size), int(st.st_mtime_ns))


def cache_path(key: str, prefix: str = "images") -> Path:
    """Where the arrays for `key` live."""
    return cache_dir() / f"{prefix}-{key}.npz"


def read_cache(key: str, prefix: str = "images") -> dict[str, np.ndarray] | None:
    """The cached arrays for `key`, or None when absent or unreadable."""
    path = cache_path(key, prefix)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"ignoring unreadable dataset cache {path}: {exc}", stacklevel=2)
        return None


def write_cache(key: str, arrays: dict[str, np.ndarray], prefix: str = "images") -> Path | None:
    """Store `arrays` for `key` atomically; returns the path, or None (with a warning) on failure."""
    path = cache_path(key, prefix)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)  # mkstemp makes 0600; a cache is shared like any file
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
        return path
    except OSError as exc:
        warnings.warn(f"could not write dataset cache {path}: {exc}", stacklevel=2)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        return None

"""The package's import structure: no cycles, no private names across packages, a light command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Module -> xbarforge modules it imports anywhere (function-level included, TYPE_CHECKING not),
    and (importer, module, name) for every private name imported from another top-level package."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private: list[tuple[str, str, str]] = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                targets = [(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base, a.name) for a in node.names]
            for target, name in targets:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != mod and target.startswith("xbarforge"):
                    graph[mod].add(target)
                    other_package = target.split(".")[:2] != mod.split(".")[:2]
                    if name and name.startswith("_") and not name.startswith("__") and other_package:
                        private.append((mod, target, name))
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycles():
    graph, _ = _imports()
    assert len(graph) > 100
    cycles = _cycles(graph)
    assert not cycles, f"import cycles (every import counts, TYPE_CHECKING ones excepted): {cycles}"


def test_no_private_names_cross_packages():
    _, private = _imports()
    assert not private, f"private names imported from another package: {private}"


def test_command_line_starts_without_torch():
    code = "import sys, xbarforge.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, "importing xbarforge.cli imports torch"
    out = subprocess.run([sys.executable, "-m", "xbarforge", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("xbarforge ")


def test_catalog_lists_the_registry():
    from xbarforge.catalog import zoo_models
    from xbarforge.zoo import default_input_shape, list_models

    catalog = zoo_models()
    assert list(catalog) == list_models()
    assert all(tuple(default_input_shape(name)) == shape for name, shape in catalog.items())


def test_run_folders_refuse_other_settings_in_one_line(tmp_path):
    """train, supernet, search, quantize and basis share one check (xbarforge.rundir)."""
    import pytest

    from xbarforge.rundir import OtherSettings, settings_differences, use_settings_file

    assert settings_differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4}) == [
        "b.c: 2 there, 3 now", "d: None there, 4 now"]
    path = tmp_path / "run" / "config.json"
    assert use_settings_file(path, {"lr": 0.1, "epochs": 3}) is False
    assert use_settings_file(path, {"lr": 0.1, "epochs": 3}) is True
    with pytest.raises(OtherSettings) as info:
        use_settings_file(path, {"lr": 0.2, "epochs": 3})
    assert "\n" not in str(info.value) and "holds a run with other settings (lr: 0.1 there, 0.2 now)" in str(info.value)

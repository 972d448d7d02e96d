"""The README's compiler figures are generated from the committed benchmark result, not typed in."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("compile_bench", ROOT / "benchmarks" / "compile_bench.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_readme_compiler_figures_match_the_result_file():
    bench = _bench()
    doc = json.loads((ROOT / "benchmarks" / "results" / "compile_bench.json").read_text())
    readme = (ROOT / "README.md").read_text()
    begin, end = readme.index(bench.BEGIN), readme.index(bench.END) + len(bench.END)
    assert readme[begin:end] == bench.markdown(doc), "run: python benchmarks/compile_bench.py --readme"

"""Figures in the README and docs are generated from the committed benchmark results, not typed in."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


# (benchmark, document, command that regenerates the block)
GENERATED = [
    ("compile_bench", "README.md", "python benchmarks/compile_bench.py --readme"),
    ("transformer_bench", "README.md", "python benchmarks/transformer_bench.py --readme"),
    ("sim_bench", "README.md", "python benchmarks/sim_bench.py --readme-only"),
    ("basis_imagenet_bench", "docs/basis.md", "python benchmarks/basis_imagenet_bench.py --docs-only"),
    ("fidelity_mnsim", "docs/cost_model.md", "python benchmarks/fidelity_mnsim.py --docs-only"),
    ("fidelity_neurosim", "docs/cost_model.md", "python benchmarks/fidelity_neurosim.py --docs-only"),
]


@pytest.mark.parametrize(("name", "document", "command"), GENERATED, ids=[g[0] for g in GENERATED])
def test_generated_figures_match_the_result_file(name: str, document: str, command: str) -> None:
    bench = _bench(name)
    doc = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
    text = (ROOT / document).read_text()
    begin, end = text.index(bench.BEGIN), text.index(bench.END) + len(bench.END)
    assert text[begin:end] == bench.markdown(doc), f"{document} is stale; run: {command}"


def test_readme_commands_create_every_run_folder_they_read():
    """A README command that reads runs/NAME (or runs/NAME/...) comes with a README command that writes it
    (`--out runs/NAME`), so following the README never hits a missing path."""
    import re

    lines, inside = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    commands = " ".join(lines)
    written = set(re.findall(r"--out (runs/[\w.-]+)", commands))
    read = {m.split("/")[0] + "/" + m.split("/")[1] for m in re.findall(r"(?<![\w/-])(runs/[\w./-]+)", commands)}
    missing = sorted(read - written)
    assert not missing, f"README commands read {missing} but no README command writes them (--out)"


def test_user_guide_sample_output_is_what_the_tool_prints(monkeypatch, capsys):
    """Every line of docs/user_guide.md's sample compile output (abridged) is a line the tool prints now."""
    from xbarforge.cli import main

    guide = (ROOT / "docs" / "user_guide.md").read_text()
    command = "$ xbarforge compile squeezenet1_1 --input 3x64x64 --hw rnc-paper --crossbars 80 --samples 1,8,64"
    start = guide.index(command) + len(command)
    shown = [line.rstrip() for line in guide[start:guide.index("```", start)].splitlines()]
    monkeypatch.setenv("COLUMNS", "130")
    assert main(command.split()[2:]) == 0
    printed = {line.rstrip() for line in capsys.readouterr().out.splitlines()}
    stale = [line for line in shown if line.strip() and line.strip() != "..." and line not in printed]
    assert not stale, f"docs/user_guide.md sample output is stale: {stale[:3]}"

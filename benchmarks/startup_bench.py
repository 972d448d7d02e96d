"""Start-up time of the `xbarforge` command (issue: day-to-day use).

`--help`, `--version`, `presets` and `models` must answer in under 0.5 s: the command line imports
torch and the other heavy modules only inside the commands that need them. Each command runs as a
fresh process (the installed entry point), several times; the median wall time and the CPU time of
the child process are reported, and whether each meets the target.

Run: .venv/bin/python benchmarks/startup_bench.py  -> benchmarks/results/startup_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "startup_bench.json"
COMMANDS = (["--version"], ["--help"], ["presets"], ["models"])
TARGET_S = 0.5


def _entry_point() -> list[str]:
    script = Path(sys.executable).parent / "xbarforge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "xbarforge"]


def _run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    entry = _entry_point()
    rows = {}
    for command in COMMANDS:
        _run(entry + command)  # warm the file cache once
        runs = [_run(entry + command) for _ in range(args.repeats)]
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        rows[" ".join(command)] = {"wall_s_median": wall, "wall_s_min": min(w for w, _ in runs),
                                   "cpu_s_median": cpu, "target_s": TARGET_S, "met": wall < TARGET_S}
        fastest = min(w for w, _ in runs)
        print(f"xbarforge {' '.join(command):10s} {wall * 1000:6.0f} ms wall (min {fastest * 1000:.0f}),"
              f" {cpu * 1000:6.0f} ms CPU  {'met' if wall < TARGET_S else 'MISSED'}", flush=True)
    doc = {"commands": rows, "repeats": args.repeats, "entry_point": " ".join(entry),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                       "load_avg": list(os.getloadavg())}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""``dforce bench NAME [args]``: run a benchmark script from a source checkout's benchmarks/ folder."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

NAMES = ("core", "forecast", "video", "planning", "rollout_speed", "reference_workload", "attention_kernel", "reliability", "dynamics", "solvers",
         "mutation")


def main(argv: list[str]) -> int:
    if argv and argv[0] not in NAMES and argv[0] not in ("-h", "--help"):
        print(f"error: unknown benchmark {argv[0]!r}; choose one of {', '.join(NAMES)}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: dforce bench {{{','.join(NAMES)}}} [script options]\n"
              "Runs benchmarks/NAME.py of the source checkout; results go to benchmarks/results/NAME.{json,md}.")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    script = Path(__file__).resolve().parents[3] / "benchmarks" / f"{argv[0]}.py"
    if not script.is_file():
        print(f"dforce bench: {script} not found; benchmarks run from a source checkout (git clone), not from a wheel", file=sys.stderr)
        return 2
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.parent))  # as `python benchmarks/NAME.py` has it: benchmarks/common.py
    runpy.run_path(str(script), run_name="__main__")
    return 0

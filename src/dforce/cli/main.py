"""``dforce``: the command-line entry point.

Each command lives in its own module exposing ``main(argv: list[str]) -> int`` and is imported
only when called, so ``dforce --help`` stays fast and optional dependencies stay optional.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("dforce.cli.train", "train a model from a config file: dforce train CONFIG.yaml [key=value ...]"),
    "sample": ("dforce.cli.sample", "sample from an exported checkpoint: dforce sample CHECKPOINT --horizon N"),
    "schedule": ("dforce.cli.schedule", "print or plot a scheduling matrix: dforce schedule show pyramid --tokens 8 --steps 10"),
    "demo": ("dforce.cli.demo", "train DF and teacher forcing on a dynamical system and roll out 10x the window (about 1.5-3 min on 2 CPU cores)"),
    "forecast": ("dforce.cli.forecast", "probabilistic time-series forecasting: dforce forecast {train,predict,eval}"),
    "rollout": ("dforce.cli.video", "video: train, roll out and evaluate video models: dforce rollout {train,generate,eval}"),
    "plan": ("dforce.cli.plan", "maze planning: dforce plan {generate-data,train,eval}"),
    "bench": ("dforce.cli.bench", "run a benchmark script: dforce bench {core,forecast,video,planning,speed}"),
}


def _usage() -> str:
    lines = ["usage: dforce COMMAND [options]   (dforce COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from dforce import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"dforce: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())

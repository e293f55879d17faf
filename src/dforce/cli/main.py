"""``dforce``: the command-line entry point.

Each command lives in its own module exposing ``main(argv: list[str]) -> int`` and is imported
only when called, so ``dforce --help`` stays fast and optional dependencies stay optional.

Options every command takes: ``--debug`` (show the Python traceback of an error instead of the one
line ``error: ...``; also ``DFORCE_DEBUG=1``) and ``--threads N`` (torch CPU threads; default
``$DFORCE_THREADS`` or half the CPUs, see :func:`dforce.cli.common.default_threads`).
User errors exit with status 2, unexpected errors with 1.
"""

from __future__ import annotations

import importlib
import os
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
    "bench": ("dforce.cli.bench", "run a benchmark script: dforce bench NAME (dforce bench --help lists them)"),
}


def _usage() -> str:
    lines = ["usage: dforce COMMAND [options]   (dforce COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "options of every command:",
              "  --threads N  torch CPU threads (default: $DFORCE_THREADS or half the CPUs, at most 8)",
              "  --debug      show the Python traceback of an error (also DFORCE_DEBUG=1)"]
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
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} (see `dforce --help`)", file=sys.stderr)
        return 2
    from dforce.cli.common import run_guarded

    rest = argv[1:]
    if "--debug" in rest:
        rest = [a for a in rest if a != "--debug"]
        os.environ["DFORCE_DEBUG"] = "1"
    return run_guarded(lambda: _run(name, rest))


def _take_threads(argv: list[str]) -> tuple[list[str], "int | None"]:
    """Remove ``--threads N`` / ``--threads=N`` from ``argv``; returns (argv, N or None)."""
    out, threads, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--threads" or a.startswith("--threads="):
            value = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            try:
                threads = int(value)
            except ValueError:
                from dforce.cli.common import UserError

                raise UserError(f"--threads expects an integer >= 1, got {value!r}") from None
            continue
        out.append(a)
        i += 1
    return out, threads


def _run(name: str, argv: list[str]) -> int:
    from dforce.cli.common import default_threads, set_threads

    if name in ("rollout", "plan"):  # these parse --threads themselves (and default to it)
        set_threads(default_threads())
    else:
        argv, threads = _take_threads(argv)
        set_threads(threads if threads is not None else default_threads())
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())

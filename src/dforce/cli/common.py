"""Shared CLI helpers: ``CONFIG.yaml`` as a positional argument and ``key=value`` overrides."""

from __future__ import annotations

from jsonargparse import ArgumentParser


def normalize_argv(argv: list[str]) -> list[str]:
    """Turn ``CONFIG.yaml`` into ``--config CONFIG.yaml`` and ``a.b=v`` into ``--a.b=v``."""
    out = []
    for i, arg in enumerate(argv):
        if not arg.startswith("-") and arg.endswith((".yaml", ".yml", ".json")) and "=" not in arg:
            out += ["--config", arg]
        elif not arg.startswith("-") and "=" in arg and "." in arg.split("=", 1)[0] and (i == 0 or not argv[i - 1].startswith("--") or "=" in argv[i - 1]):
            out.append("--" + arg)
        else:
            out.append(arg)
    return out


def parser(prog: str, description: str) -> ArgumentParser:
    return ArgumentParser(prog=prog, description=description, exit_on_error=True, default_env=False)

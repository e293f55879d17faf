"""Shared CLI helpers: ``CONFIG.yaml`` as a positional argument and ``key=value`` overrides."""

from __future__ import annotations

from jsonargparse import ArgumentParser


_FLAGS = ("--print_config", "--help", "-h")  # options that take no separate value


def normalize_argv(argv: list[str]) -> list[str]:
    """Turn a positional ``CONFIG.yaml`` into ``--config CONFIG.yaml`` and ``a.b=v`` into ``--a.b=v``.

    A token right after an option that takes its value separately (``--out m.json``) is that
    option's value and is left alone.
    """
    out = []
    for i, arg in enumerate(argv):
        prev = argv[i - 1] if i else ""
        is_value = prev.startswith("-") and "=" not in prev and prev not in _FLAGS
        if is_value or arg.startswith("-"):
            out.append(arg)
        elif arg.endswith((".yaml", ".yml", ".json")) and "=" not in arg:
            out += ["--config", arg]
        elif "=" in arg and "." in arg.split("=", 1)[0]:
            out.append("--" + arg)
        else:
            out.append(arg)
    return out


def parser(prog: str, description: str) -> ArgumentParser:
    return ArgumentParser(prog=prog, description=description, exit_on_error=True, default_env=False)

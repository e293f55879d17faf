"""Shared CLI helpers: argument parsing, one-line errors, threads, output checks.

Every ``dforce`` command reports a user error as one line ``error: ...`` on stderr and exits
with status 2; ``--debug`` (anywhere on the command line) or ``DFORCE_DEBUG=1`` shows the Python
traceback instead. An unexpected exception exits with status 1 and the same one-line form.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Optional

from jsonargparse import ArgumentParser

_FLAGS = ("--print_config", "--help", "-h", "--overwrite")  # options that take no separate value


class UserError(Exception):
    """A problem with the user's input; the message names it and the fix."""


def _user_errors() -> tuple[type, ...]:
    from jsonargparse import ArgumentError

    return (UserError, ValueError, TypeError, KeyError, OSError, ImportError, ArgumentError)


def one_line(err: BaseException | str) -> str:
    """The message of ``err`` on one line (whitespace and newlines collapsed)."""
    text = err if isinstance(err, str) else (str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))
    text = " ".join(text.split())
    return text or type(err).__name__


def debug_enabled() -> bool:
    return os.environ.get("DFORCE_DEBUG", "") not in ("", "0", "false", "False")


def report(err: BaseException, prefix: str = "error") -> int:
    """Print ``err`` as one line (or its traceback under --debug); the exit status for it."""
    if debug_enabled():
        traceback.print_exception(type(err), err, err.__traceback__)
    if isinstance(err, _user_errors()):
        print(f"{prefix}: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"{prefix}: internal error ({type(err).__name__}: {one_line(err)}); rerun with --debug for the traceback "
          "and report it", file=sys.stderr)
    return 1


def run_guarded(fn: Callable[[], int]) -> int:
    """Run ``fn`` and turn any exception into one line on stderr and an exit status."""
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            return int(err.code or 0)
        print(f"error: {one_line(str(err.code))}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the one place that turns exceptions into exit codes
        return report(err)


def default_threads() -> int:
    """Torch CPU threads when the user gives none: ``$DFORCE_THREADS``, else half the CPUs this
    process may use (at least 1, at most 8), so a shared or busy machine is not oversubscribed."""
    env = os.environ.get("DFORCE_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise UserError(f"DFORCE_THREADS={env!r} is not an integer; set it to a thread count >= 1") from None
        if n < 1:
            raise UserError(f"DFORCE_THREADS={env} must be >= 1")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // 2))


def set_threads(n: Optional[int]) -> None:
    import torch

    if n is not None:
        if n < 1:
            raise UserError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def check_outputs(overwrite: bool, **paths: Optional[str]) -> None:
    """Refuse output files that exist (unless ``overwrite``) before any work starts."""
    from dforce.training.files import check_output_file

    for option, path in paths.items():
        check_output_file(path, overwrite, "--" + option)


def check_config_files(argv: list[str]) -> None:
    """Check every ``--config FILE`` before parsing: it exists and holds a YAML / JSON mapping.

    jsonargparse's own messages do not name the file; these do.
    """
    import yaml

    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        if path.lstrip().startswith("{"):
            continue  # an inline mapping
        if not os.path.isfile(path):
            raise UserError(f"config file {path} does not exist" + (" (it is a folder)" if os.path.isdir(path) else "")
                            + "; give a YAML or JSON file")
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except UnicodeDecodeError:
            raise UserError(f"config file {path} is not a text file; give a YAML or JSON file") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            raise UserError(f"config file {path} is not valid YAML{at} ({getattr(err, 'problem', None) or 'syntax error'}); "
                            "fix the file") from None
        if data is not None and not isinstance(data, dict):
            raise UserError(f"config file {path} must hold a mapping of options (key: value), got a {type(data).__name__}; "
                            "fix the file (see --print_config for the layout)")


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


def given_keys(argv: list[str], prefix: str) -> set[str]:
    """Names of the ``--PREFIX.NAME`` options typed on the command line (``--a.b v`` or ``--a.b=v``)."""
    keys = set()
    for arg in argv:
        if arg.startswith(f"--{prefix}."):
            keys.add(arg[len(prefix) + 3 :].split("=", 1)[0])
    return keys


class Parser(ArgumentParser):
    """jsonargparse's parser with errors reported as one line (``error: ...``, exit status 2)."""

    def error(self, message: str, ex: Optional[Exception] = None):  # type: ignore[override]
        if debug_enabled() and ex is not None:
            traceback.print_exception(type(ex), ex, ex.__traceback__)
        print(f"error: {one_line(message)} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def parser(prog: str, description: str) -> Parser:
    return Parser(prog=prog, description=description, exit_on_error=True, default_env=False)


def add_overwrite(p) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that already exist (only files dforce writes; never other files in a folder)")

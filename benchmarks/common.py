"""Helpers shared by the benchmark scripts: atomic JSON + markdown output and machine facts."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def provenance() -> dict:
    """``git_sha`` of the code that ran (``-dirty`` with uncommitted changes) and the exact ``command``."""
    root = Path(__file__).resolve().parent.parent
    git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True).stdout.strip()  # noqa: E731
    sha = git("rev-parse", "HEAD") or os.environ.get("DFORCE_GIT_SHA", "unknown")  # a copy without .git (a GPU machine)
    if git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks", ":(exclude)benchmarks/results"):  # code, not results
        sha += "-dirty"
    return {"git_sha": sha, "command": shlex.join([os.path.relpath(sys.executable, root) if "venv" in sys.executable else "python", *sys.argv])}


def write_results(name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results/NAME.json`` (with :func:`provenance`) and ``results/NAME.md`` atomically."""
    data = {**provenance(), **data}  # a script's own git_sha / command (taken when it started) win
    markdown = markdown.rstrip() + f"\n\nProduced by `{data['command']}` at commit `{data['git_sha']}`.\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix, text in ((".json", json.dumps(data, indent=2)), (".md", markdown)):
        path = RESULTS / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        out.append(path)
    return out[0], out[1]

"""Helpers shared by the benchmark scripts: atomic JSON + markdown output and machine facts."""

from __future__ import annotations

import json
import os
import platform
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
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def write_results(name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results/NAME.json`` and ``results/NAME.md`` atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix, text in ((".json", json.dumps(data, indent=2)), (".md", markdown)):
        path = RESULTS / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        out.append(path)
    return out[0], out[1]

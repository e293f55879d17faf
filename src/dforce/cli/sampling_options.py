"""Sampling options on the command line: merge with the saved ones, validate, read custom matrices.

Kept in one place so the CLI refers to sampling option names as little as possible.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from dforce.sampling import SamplingConfig

MATRIX_SUFFIXES = (".npy", ".csv", ".txt")
# the one place the CLI names the scheduling-matrix field
SCHEDULE = "scheduling"


def read_matrix(path: str) -> torch.Tensor:
    """A custom scheduling matrix from ``.npy`` or a comma / whitespace separated ``.csv`` / ``.txt``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"scheduling matrix file {p} does not exist; pass a .npy or .csv file of integer levels [rows, tokens]")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            arr = np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=2)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{p} is not a readable scheduling matrix ({' '.join(str(err).split())[:160]}); "
                         "write integer levels [rows, tokens] without a header") from err
    if arr.dtype.kind not in "iuf" or arr.ndim != 2:
        raise ValueError(f"{p} must hold a 2-D numeric matrix [rows, tokens], got dtype {arr.dtype} and shape {arr.shape}")
    if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{p} must hold integer levels (0 = clean .. S = pure noise); found non-integer values")
    from dforce.sampling.scheduling import validate

    try:
        return validate(torch.as_tensor(arr).long())
    except ValueError as err:
        raise ValueError(f"{p}: {err}") from err


def resolve(values: dict[str, Any], source: str = "the sampling options") -> SamplingConfig:
    """A checked :class:`SamplingConfig` from plain values (a schedule may be a name, a matrix
    file or a nested list). Raises ``ValueError`` naming the option and the fix."""
    names = {f.name for f in fields(SamplingConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{source}: unknown sampling option(s) {unknown}; see --help for the --sample.* options")
    values = dict(values)
    sched = values.get(SCHEDULE, getattr(SamplingConfig, SCHEDULE))
    if isinstance(sched, (list, tuple)):
        from dforce.sampling.scheduling import validate

        values[SCHEDULE] = validate(torch.as_tensor(sched).long())
    elif isinstance(sched, str) and sched.endswith(MATRIX_SUFFIXES):
        values[SCHEDULE] = read_matrix(sched)
    if torch.is_tensor(values.get(SCHEDULE)) and "steps" not in values:
        values["steps"] = int(values[SCHEDULE].max())
    cfg = SamplingConfig(**values)
    try:
        cfg.check()
    except ValueError as err:
        raise ValueError(f"{source}: {err}" + ("; or give a .npy / .csv file with a custom matrix" if "scheduling" in str(err) else "")) from err
    matrix = getattr(cfg, SCHEDULE)
    if torch.is_tensor(matrix) and int(matrix.max()) != cfg.steps:
        raise ValueError(f"{source}: the custom scheduling matrix has levels up to {int(matrix.max())} but steps is "
                         f"{cfg.steps}; pass --sample.steps {int(matrix.max())}")
    return cfg


def to_json(cfg: SamplingConfig) -> dict:
    """Plain JSON values (a custom matrix becomes a nested list)."""
    out = asdict(cfg)
    if torch.is_tensor(getattr(cfg, SCHEDULE)):
        out[SCHEDULE] = getattr(cfg, SCHEDULE).tolist()
    return out


def merge(saved: dict, typed: dict, source: str) -> SamplingConfig:
    """Saved options overridden by every option the user typed (even one equal to the default)."""
    values = {**saved, **typed}
    if SCHEDULE in typed and "steps" not in typed:
        values.pop("steps", None)  # a typed matrix brings its own number of steps
        if isinstance(typed[SCHEDULE], str) and not typed[SCHEDULE].endswith(MATRIX_SUFFIXES):
            values["steps"] = saved.get("steps", SamplingConfig.steps)
    return resolve(values, source)


def given(namespace_values: dict, typed_keys: set[str]) -> dict:
    """The typed options among the parsed ``--sample.*`` values."""
    return {k: v for k, v in namespace_values.items() if k in typed_keys}



"""Reading user arrays (``.npy``, ``.npz``, ``.csv``) for the CLI with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

SUFFIXES = (".npy", ".npz", ".csv")


def _csv(p: Path, columns: Optional[list[str]] = None) -> np.ndarray:
    import pandas as pd

    try:
        df = pd.read_csv(p, header=None)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{p} is empty; give one row per frame, one column per dimension") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{p} is not a readable CSV file ({' '.join(str(err).split())[:120]}); "
                         "give one row per frame, comma-separated numbers") from None
    first = pd.to_numeric(df.iloc[0], errors="coerce")
    if first.isna().all() and len(df) > 1:  # a header row
        df = df.iloc[1:].reset_index(drop=True)
        df.columns = [str(c) for c in pd.read_csv(p, nrows=0).columns]
        if columns:
            missing = [c for c in columns if c not in df.columns]
            if missing:
                raise ValueError(f"{p} has no column(s) {missing}; its columns are {list(df.columns)}")
            df = df[columns]
    for c in df.columns:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = num.isna() & df[c].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{p}: column {c!r} row {row + 1} holds {str(df[c].iloc[row])!r}, which is not a number; "
                             "fix the cell or drop the column")
        df[c] = num
    return df.to_numpy(np.float32)


def read_array(path: str, option: str = "--context") -> np.ndarray:
    """A float32 array from ``.npy`` / ``.npz`` (one array) / ``.csv`` (rows = frames)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{option} {p} does not exist; give a .npy, .npz or .csv file")
    if p.is_dir():
        raise IsADirectoryError(f"{option} {p} is a folder; give a .npy, .npz or .csv file")
    if p.suffix not in SUFFIXES:
        raise ValueError(f"{option} {p}: unsupported file type {p.suffix or '(none)'}; use .npy, .npz or .csv")
    if p.suffix == ".csv":
        arr = _csv(p)
    else:
        with open(p, "rb") as f:
            magic = f.read(6)
        if magic[:6] != b"\x93NUMPY" and magic[:2] != b"PK":
            raise ValueError(f"{option} {p} is not a readable {p.suffix} file (no numpy header: another format or random bytes); "
                             "save it with numpy.save / numpy.savez")
        try:
            loaded = np.load(p, allow_pickle=False)
        except ValueError as err:
            if "pickle" in str(err).lower():
                raise ValueError(f"{option} {p} holds Python objects (pickled), which dforce never loads; "
                                 "save a numeric array with numpy.save") from None
            raise ValueError(f"{option} {p} is not a readable {p.suffix} file ({' '.join(str(err).split())[:120]}); "
                             "save it with numpy.save / numpy.savez") from None
        except (OSError, EOFError) as err:
            raise ValueError(f"{option} {p} is not a readable {p.suffix} file (truncated or another format: "
                             f"{' '.join(str(err).split())[:100]}); save it with numpy.save / numpy.savez") from None
        if p.suffix == ".npz":
            with loaded:
                names = list(loaded.files)
                if len(names) != 1:
                    raise ValueError(f"{option} {p} holds {len(names)} arrays ({names[:5]}); save exactly one array in it")
                try:
                    loaded = loaded[names[0]]
                except ValueError:
                    raise ValueError(f"{option} {p} holds Python objects (pickled), which dforce never loads; "
                                     "save a numeric array") from None
        arr = loaded
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"{option} {p} holds {arr.dtype} values; save a numeric (float) array")
        arr = arr.astype(np.float32)
    return arr


def check_frames(arr: np.ndarray, dim: int, path: str, option: str = "--context", allow_batch: bool = True) -> np.ndarray:
    """``arr`` as [B, N, dim]; errors name the file, the shape found and the shape expected."""
    if arr.ndim == 2 or (arr.ndim == 1 and dim == 1):
        arr = arr.reshape(1, -1, dim) if arr.ndim == 1 else arr[None]
    if arr.ndim != 3 or not allow_batch and arr.shape[0] != 1:
        raise ValueError(f"{option} {path} has shape {arr.shape}; expected [frames, {dim}]" + (f" or [batch, frames, {dim}]" if allow_batch else ""))
    if arr.shape[-1] != dim:
        raise ValueError(f"{option} {path} has {arr.shape[-1]} values per frame but the model expects {dim}; "
                         "give one column per model dimension")
    if arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ValueError(f"{option} {path} has no frames; give at least one row")
    if not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{option} {path} holds {n} NaN / inf value(s); the CLI cannot mark missing frames: "
                         "fill or drop them (the Python API takes context_mask=)")
    return arr

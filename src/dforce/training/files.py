"""Writing files safely: nothing a user owns is overwritten or deleted.

Rules every dforce writer follows (see ``docs/files.md``):

- a file is written to a temporary name in the same folder (``.NAME.dforce-tmp-XXXX``) and renamed
  into place with ``os.replace``, so a final path never holds a half-written file;
- an existing output is refused unless the caller asks to overwrite it (CLI: ``--overwrite``);
- a folder that holds files dforce did not write is never replaced, with or without overwrite;
- temporary files left behind by a killed process are removed by :func:`remove_stale_temps` on
  the next start (only names matching the dforce temporary pattern are touched).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

PathLike = Union[str, os.PathLike]
TMP_TAG = ".dforce-tmp-"
_TMP_RE = re.compile(r"^\..+\.dforce-tmp-[A-Za-z0-9_]+(\..*)?$")


def temp_path(path: PathLike, suffix: str = "") -> Path:
    """A fresh temporary file name next to ``path`` (created empty, so it is unique)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_TAG}", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def is_temp_name(name: str) -> bool:
    return bool(_TMP_RE.match(name))


def check_output_file(path: Optional[PathLike], overwrite: bool = False, option: str = "--out") -> None:
    """Refuse an output file that already exists (unless ``overwrite``) or is a folder."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{option} {p} is a folder; give a file name for the output")
    if p.is_symlink() or p.exists():
        if not overwrite:
            raise FileExistsError(f"{option} {p} already exists; pass --overwrite to replace it or choose another file name")
        if p.is_symlink():
            raise FileExistsError(f"{option} {p} is a symbolic link; dforce does not write through links: choose another file name")
    if p.parent.exists() and not p.parent.is_dir():
        raise NotADirectoryError(f"{option} {p}: {p.parent} is a file, not a folder; choose another path")


def atomic_write(path: PathLike, write: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)  # left by a killed earlier write of this file
    tmp = temp_path(path, suffix)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def remove_stale_temps(folder: PathLike, name: Optional[str] = None) -> list[Path]:
    """Delete dforce temporary files (and folders) left in ``folder`` by a killed process
    (only those of the output ``name`` when given)."""
    import shutil

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if is_temp_name(p.name) and (name is None or p.name.startswith(f".{name}{TMP_TAG}")):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def foreign_entries(folder: PathLike, own: Iterable[str]) -> list[str]:
    """Names in ``folder`` that are not in ``own`` and not dforce temporaries."""
    own = set(own)
    return sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir() if p.name not in own and not is_temp_name(p.name))

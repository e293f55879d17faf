"""Export and load models as safetensors weights plus a JSON config: no Lightning, no pickle.

A model directory holds ``model.safetensors`` (the weights, EMA weights after training) and
``config.json`` (``format``, the model spec of :func:`model_spec` and any ``extra`` user data such
as normalisation statistics). Both are written to a temporary directory that is renamed into
place, so an interrupted export never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from dforce.backbones import build_backbone
from dforce.model import DiffusionForcing
from dforce.training.files import TMP_TAG, foreign_entries, remove_stale_temps

FORMAT = "dforce-model-1"


def model_spec(model: DiffusionForcing) -> dict:
    """Everything needed to rebuild ``model`` (not its weights), as plain JSON types."""
    bb = model.backbone
    if not hasattr(bb, "registry_name") or not hasattr(bb, "config"):
        raise TypeError(
            f"{type(bb).__name__} cannot be exported: give it `registry_name` (its name in dforce.backbones.BACKBONES) "
            "and `config` (its constructor keyword arguments)"
        )
    return {
        "backbone": {"name": bb.registry_name, "kwargs": dict(bb.config)},
        "window": model.window,
        "noise_schedule": model.noise_schedule.config(),
        "parametrization": model.parametrization,
        "weighting": model.weighting,
        "training_noise": model.training_noise,
        "history_len": model.history_len,
        "frame_stack": model.frame_stack,
        "cond_dropout": model.cond_dropout,
        "noise_clip": model.noise_clip,
        "padding_weight": model.padding_weight,
        "known_start_prob": model.known_start_prob,
        "known_start_level": model.known_start_level,
    }


def build_model(spec: dict) -> DiffusionForcing:
    """Inverse of :func:`model_spec` (fresh weights)."""
    spec = dict(spec)
    bb = spec.pop("backbone")
    sched = dict(spec.pop("noise_schedule"))
    name = sched.pop("name")
    return DiffusionForcing(build_backbone(bb["name"], **bb["kwargs"]), noise_schedule=name, schedule_kwargs=sched, **spec)


def spec_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Human-readable list of fields where two specs differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += spec_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} != {vb!r}")
    return out


OWN_FILES = ("model.safetensors", "config.json")


def _is_model_folder(path: Path) -> bool:
    """Whether ``path`` holds a folder dforce exported (a model, or another ``dforce-*`` format)."""
    try:
        return str(json.loads((path / "config.json").read_text()).get("format")).startswith("dforce-")
    except (OSError, ValueError, AttributeError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_export_path(path: str | os.PathLike, overwrite: bool = True, option: str = "path") -> None:
    """Raise unless :func:`export_model` may write the model folder ``path``.

    A new path or an empty folder is fine; an earlier dforce model folder needs ``overwrite``; a
    file, or a folder with content that is not a dforce model, is always refused.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{option} {path} is an existing file, not a model folder; choose a new folder name (nothing was written)")
    if not path.exists() or not any(path.iterdir()):
        return
    if not _is_model_folder(path):
        raise FileExistsError(
            f"{option} {path} is a folder with files dforce did not write ({', '.join(foreign_entries(path, ())[:5])}); "
            "choose a new or empty folder (nothing was written)"
        )
    if not overwrite:
        raise FileExistsError(f"{option} {path} already holds a dforce model; pass --overwrite to replace it or choose another folder")


def export_model(model: DiffusionForcing, path: str | os.PathLike, extra: Optional[dict] = None, *,
                 overwrite: bool = True, files: Optional[dict[str, str]] = None) -> Path:
    """Write ``model`` to the folder ``path``: ``model.safetensors`` + ``config.json``.

    ``files``: more text files (name -> content) written with the model and owned by it.
    Never deletes or overwrites anything dforce did not write: an existing file at ``path`` or a
    folder with foreign content is refused (``FileExistsError``). An earlier dforce model folder
    is replaced when ``overwrite`` (the default of this function; the CLI asks for
    ``--overwrite``): atomically as a whole when it holds only dforce's files, else file by file,
    keeping the user's files (``config.json`` last, with the weights' SHA-256 so a torn update
    is detected on load).
    """
    path = Path(path)
    files = dict(files or {})
    for name in files:
        if name in OWN_FILES or "/" in name or name.startswith("."):
            raise ValueError(f"files: {name!r} is not a valid extra file name")
    check_export_path(path, overwrite)
    config = {"format": FORMAT, "model": model_spec(model), "extra": extra or {}}
    return write_folder(path, model.state_dict(), config, files)


def write_folder(path: Path, state_dict: dict, config: dict, files: Optional[dict[str, str]] = None) -> Path:
    """Write ``model.safetensors`` (``state_dict``) + ``config.json`` (``config`` and the weights'
    SHA-256) + ``files`` to the folder ``path``, which :func:`check_export_path` has allowed: the
    one writer behind :func:`export_model` and the other exported formats (atomic, never touching
    files dforce did not write)."""
    path, files = Path(path), dict(files or {})
    config = {**config, "files": sorted(files)}
    json.dumps(config)  # fail early on values JSON cannot hold
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)  # left by a killed earlier export to this path
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_TAG}", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(state, str(tmp / "model.safetensors"))
        config["weights_sha256"] = _sha256(tmp / "model.safetensors")
        for name, text in files.items():
            (tmp / name).write_text(text)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if not path.exists():
            os.replace(tmp, path)
        elif not any(path.iterdir()):
            os.replace(tmp, path)  # rename onto an empty folder
        else:
            old_cfg = json.loads((path / "config.json").read_text())
            own = set(OWN_FILES) | set(old_cfg.get("files", [])) | set(files)
            if not foreign_entries(path, own):
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_TAG}old", dir=path.parent))
                os.replace(path, old / "model")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:  # keep the user's files: replace ours one by one, config.json last
                for name in [*sorted(files), "model.safetensors", "config.json"]:
                    os.replace(tmp / name, path / name)
                for name in set(old_cfg.get("files", [])) - set(files):
                    (path / name).unlink(missing_ok=True)
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _read_config(path: Path) -> dict:
    cfg_file = path / "config.json"
    try:
        config = json.loads(cfg_file.read_text())
    except UnicodeDecodeError as err:
        raise ValueError(f"{cfg_file} is not a text JSON file; re-export the model (dforce train / export_model)") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_file} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                         "fix the file or re-export the model") from err
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_file} must hold a JSON object; re-export the model")
    if config.get("format") != FORMAT:
        raise ValueError(f"{cfg_file} has format {config.get('format')!r}; this dforce reads {FORMAT!r}: re-export the model with this version")
    if not isinstance(config.get("model"), dict):
        raise ValueError(f"{cfg_file} has no 'model' section; re-export the model")
    return config


def load_model(path: str | os.PathLike, expect: Optional[dict] = None, map_location: str = "cpu") -> tuple[DiffusionForcing, dict]:
    """Load an exported model directory; returns ``(model, extra)``.

    ``expect``: a model spec the checkpoint must match (raises ``ValueError`` listing the fields
    that differ). Never unpickles anything: weights are safetensors, the config is JSON. Every
    problem raises ``ValueError`` / ``FileNotFoundError`` naming the file and the fix.
    """
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"model folder {path} does not exist; pass the model/ folder written by dforce train (or export_model)")
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; pass the model folder that holds config.json and model.safetensors")
    if not cfg_file.is_file() or not weights.is_file():
        missing = [f.name for f in (cfg_file, weights) if not f.is_file()]
        raise FileNotFoundError(f"{path} is not an exported dforce model (missing {', '.join(missing)}); "
                                "pass the model/ folder written by dforce train (or export_model)")
    config: dict[str, Any] = _read_config(path)
    if expect is not None:
        diff = spec_differences(config["model"], expect)
        if diff:
            raise ValueError(f"checkpoint {path} was written for a different config: " + "; ".join(diff))
    try:
        model = build_model(config["model"])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{cfg_file}: the model config is invalid ({err}); fix the file or re-export the model") from err
    try:
        state = load_file(str(weights), device=map_location)
    except Exception as err:  # safetensors raises its own error types for truncated / foreign files
        raise ValueError(f"{weights} is not a readable safetensors file ({' '.join(str(err).split())[:120]}); "
                         "it is truncated or not a dforce model: re-export it") from None
    sha = config.get("weights_sha256")
    if sha is not None and _sha256(weights) != sha:
        raise ValueError(f"{weights} does not match the checksum in {cfg_file} (modified, or an interrupted export); re-export the model")
    _load_state(model, state, weights, cfg_file)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{weights} holds NaN or inf weights ({', '.join(bad[:3])}); the training diverged: retrain or use an earlier checkpoint")
    return model.to(map_location).eval(), config.get("extra", {})


def _load_state(model: DiffusionForcing, state: dict, weights: Path, cfg_file: Path):
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(f"weights in {weights} do not fit {cfg_file}: missing {missing[:5]}, unexpected {unexpected[:5]}; "
                         "the config was edited or belongs to another model: re-export the model")
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        raise ValueError(f"weights in {weights} do not fit {cfg_file} (shape of {shapes[0]} in the config); "
                         "the config was edited or belongs to another model: restore it or re-export the model")
    model.load_state_dict(state, strict=True)

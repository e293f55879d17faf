"""Export and load models as safetensors weights plus a JSON config: no Lightning, no pickle.

A model directory holds ``model.safetensors`` (the weights, EMA weights after training) and
``config.json`` (``format``, the model spec of :func:`model_spec` and any ``extra`` user data such
as normalisation statistics). Both are written to a temporary directory that is renamed into
place, so an interrupted export never leaves a half-written model behind.
"""

from __future__ import annotations

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


def export_model(model: DiffusionForcing, path: str | os.PathLike, extra: Optional[dict] = None) -> Path:
    """Write ``model`` to the directory ``path`` (replaced atomically if it exists)."""
    path = Path(path)
    config = {"format": FORMAT, "model": model_spec(model), "extra": extra or {}}
    json.dumps(config)  # fail early on values JSON cannot hold
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model(path: str | os.PathLike, expect: Optional[dict] = None, map_location: str = "cpu") -> tuple[DiffusionForcing, dict]:
    """Load an exported model directory; returns ``(model, extra)``.

    ``expect``: a model spec the checkpoint must match (raises ``ValueError`` listing the fields
    that differ).
    """
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{path} is not an exported dforce model (expected config.json and model.safetensors inside)")
    config: dict[str, Any] = json.loads(cfg_file.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{cfg_file} has format {config.get('format')!r}; this dforce reads {FORMAT!r}")
    if expect is not None:
        diff = spec_differences(config["model"], expect)
        if diff:
            raise ValueError(f"checkpoint {path} was written for a different config: " + "; ".join(diff))
    model = build_model(config["model"])
    state = load_file(str(weights), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights in {weights} do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), config.get("extra", {})

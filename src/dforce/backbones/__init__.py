"""Denoiser backbones honouring ``forward(x [B,T,...], t [B,T], cond=None) -> [B,T,...]`` and ``.causal``.

``BACKBONES`` maps a name to a constructor so that exported checkpoints can rebuild a model from
its JSON config (``{"name": ..., "kwargs": {...}}``) without unpickling.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from dforce.backbones.transformer import Transformer

# name -> "module:attribute", imported lazily so optional backbones cost nothing until used
BACKBONES: dict[str, str] = {
    "transformer": "dforce.backbones.transformer:Transformer",
    "concat_transformer": "dforce.backbones.concat_transformer:ConcatTransformer",
    "rnn": "dforce.backbones.rnn:RNN",
    "video_transformer": "dforce.backbones.video_transformer:VideoTransformer",
}


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Construct a registered backbone by name."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    module, attr = BACKBONES[name].split(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


__all__ = ["BACKBONES", "Transformer", "build_backbone"]

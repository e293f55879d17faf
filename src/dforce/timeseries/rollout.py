"""Forecast rollout with missing context values and two ways to condition on the context.

A thin layer over the core rollout (:meth:`DiffusionForcing.sample`), which provides what
forecasting needs:

- ``context_mask`` [B, C]: missing context frames are fed as pure noise (level 1), exactly as
  masked frames are seen in training -- they are never imputed;
- ``config.history``: ``noise`` / ``relabel`` (Diffusion Forcing / teacher forcing: the context
  at its level, generated history at the stabilization level) or ``replacement`` (for
  full-sequence diffusion models, which never saw clean history in training: the known history is
  re-noised afresh to the current level of the tokens being generated at every step).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dforce.model import DiffusionForcing
from dforce.sampling.rollout import SamplingConfig


@torch.no_grad()
def forecast_rollout(
    model: DiffusionForcing,
    context: Tensor,
    horizon: int,
    *,
    context_mask: Optional[Tensor] = None,
    cond: Optional[Tensor] = None,
    config: Optional[SamplingConfig] = None,
    generator: Optional[torch.Generator] = None,
    precision: str = "fp32",
    cache: str = "none",
) -> Tensor:
    """Sample ``horizon`` frames after ``context`` [B, C, D] (NaN allowed where ``context_mask`` is False).

    ``cond`` [B, C + horizon, Cc] gives every frame's covariates; ``cache`` is ``model.sample``'s
    (``window``: the exact KV cache, missing context included). Returns [B, horizon, D].
    """
    if model.frame_stack != 1:
        raise ValueError("forecast_rollout expects frame_stack=1")
    b, c = context.shape[:2]
    if context_mask is None:
        context_mask = torch.isfinite(context).flatten(2).all(-1)
    if cond is not None and cond.shape[:2] != (b, c + horizon):
        raise ValueError(f"cond must have shape [B, C + horizon, Cc] = [{b}, {c + horizon}, Cc], got {tuple(cond.shape)}")
    return model.sample(context=context.float(), horizon=horizon, context_mask=context_mask, cond=cond, config=config,
                        generator=generator, precision=precision, cache=cache)

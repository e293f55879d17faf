"""Forecast rollout with missing context values and two ways to condition on the context.

This mirrors :func:`dforce.sampling.rollout` (same window plan, scheduling matrices and per-token
DDIM sampler, :func:`dforce.sampling.sample_window`) and adds what forecasting needs:

- ``context_mask`` [B, C]: missing context frames are fed as pure noise (level 1), exactly as
  masked frames are seen in training -- they are never imputed;
- ``conditioning``: ``clean`` (Diffusion Forcing / teacher forcing: the context is clean, generated
  history at the stabilization level) or ``replacement`` (for full-sequence diffusion models, which
  never saw clean history in training: the known history is re-noised afresh to the current level
  of the tokens being generated at every step).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dforce.model import DiffusionForcing
from dforce.sampling.rollout import SamplingConfig, plan_windows
from dforce.sampling.sampler import sample_window
from dforce.sampling.scheduling import level_grid, scheduling_matrix

CONDITIONING = ("clean", "replacement")


@torch.no_grad()
def forecast_rollout(
    model: DiffusionForcing,
    context: Tensor,
    horizon: int,
    *,
    context_mask: Optional[Tensor] = None,
    cond: Optional[Tensor] = None,
    config: Optional[SamplingConfig] = None,
    conditioning: str = "clean",
    generator: Optional[torch.Generator] = None,
    precision: str = "fp32",
) -> Tensor:
    """Sample ``horizon`` frames after ``context`` [B, C, D] (NaN allowed where ``context_mask`` is False).

    ``cond`` [B, C + horizon, Cc] gives every frame's covariates. Returns [B, horizon, D].
    """
    if conditioning not in CONDITIONING:
        raise ValueError(f"unknown conditioning {conditioning!r}; choose one of {list(CONDITIONING)}")
    if model.frame_stack != 1:
        raise ValueError("forecast_rollout expects frame_stack=1")
    config = (config or SamplingConfig()).check()
    device = next(model.parameters()).device
    b, c = context.shape[:2]
    token_shape = tuple(context.shape[2:])
    if context_mask is None:
        context_mask = torch.isfinite(context).flatten(2).all(-1)
    context_mask = context_mask.to(device).bool()
    total = c + horizon
    if cond is not None:
        if cond.shape[:2] != (b, total):
            raise ValueError(f"cond must have shape [B, C + horizon, Cc] = [{b}, {total}, Cc], got {tuple(cond.shape)}")
        cond = cond.to(device)
    schedule = model.noise_schedule
    grid = level_grid(config.steps, schedule, config.level_spacing).to(device)
    seq = torch.zeros(b, total, *token_shape, device=device)
    seq[:, :c] = torch.where(context_mask.view(b, c, *([1] * len(token_shape))), context.to(device).float().nan_to_num(), 0.0)
    observed = torch.ones(b, total, dtype=torch.bool, device=device)
    observed[:, :c] = context_mask
    generated = torch.zeros(b, total, dtype=torch.bool, device=device)
    pad = (not model.causal) if config.pad_to_window is None else config.pad_to_window
    kwargs = {"uncertainty_scale": config.uncertainty_scale} if config.schedule in ("pyramid", "trapezoid") else {}

    def denoise(x: Tensor, t: Tensor, cc):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model.denoise(x, t, cc)

    for start, hist, new in plan_windows(c, horizon, model.window, config.chunk_size, config.history_len):
        matrix = scheduling_matrix(config.schedule, new, config.steps, **kwargs).to(device)
        n_pad = model.window - hist - new if pad else 0
        w = hist + new + n_pad
        rows = matrix.shape[0]
        lv = torch.ones(b, rows, w, device=device)
        lv[:, :, hist : hist + new] = grid[matrix][None]
        obs = observed[:, start : start + hist]
        gen = generated[:, start : start + hist]
        if conditioning == "clean":
            hl = torch.where(gen, config.stabilization_level, config.context_level)[:, None, :].expand(b, rows, hist)
        else:  # the history follows the generated tokens' current level
            hl = grid[matrix].max(-1).values[None, :, None].expand(b, rows, hist)
        lv[:, :, :hist] = torch.where(obs[:, None, :], hl, torch.ones_like(hl))
        x = torch.randn(b, w, *token_shape, generator=generator, device=device)
        known = torch.zeros(b, w, dtype=torch.bool, device=device)
        known[:, :hist] = True
        values = torch.randn(b, w, *token_shape, generator=generator, device=device)  # missing: pure noise
        hv = seq[:, start : start + hist]
        values[:, :hist] = torch.where(obs.view(b, hist, *([1] * len(token_shape))), hv, values[:, :hist])
        gmask = torch.zeros_like(known)
        gmask[:, :hist] = gen
        wcond = None
        if cond is not None:
            wcond = cond[:, start : start + hist + new]
            if n_pad:
                wcond = torch.cat([wcond, wcond.new_zeros(b, n_pad, *wcond.shape[2:])], 1)
        if conditioning == "replacement":
            known_noise = "fresh"
        else:
            known_noise = "fixed" if config.stabilization == "noise" else "relabel"
        out = sample_window(
            denoise, x, lv, schedule=schedule, eta=config.eta, cond=wcond, known_mask=known if hist else None,
            known_values=values, known_noise=known_noise, generated_mask=gmask, generator=generator, clip_x0=config.clip_x0,
        )
        seq[:, start + hist : start + hist + new] = out[:, hist : hist + new]
        generated[:, start + hist : start + hist + new] = True
    return seq[:, c:]

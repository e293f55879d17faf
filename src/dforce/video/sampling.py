"""Video sampling beyond ``model.sample``: keyframe interpolation and replacement-conditioned rollouts.

- :func:`interpolate` conditions on any subset of frames (e.g. the first and the last) and fills
  in the rest in one window with :func:`dforce.sampling.sample_window` (needs a bidirectional model).
- :func:`replacement_rollout` is how a *full-sequence* diffusion model is conditioned on history:
  the known frames are noised afresh to the generated frames' level at every step
  (``history='replacement'``), optionally with reconstruction guidance; sliding windows extend it
  past its training length like :func:`dforce.sampling.rollout`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import Tensor

from dforce.diffusion.noise_levels import stack_frames, unstack_frames
from dforce.guidance.reconstruction import ReconstructionGuidance
from dforce.model import DiffusionForcing
from dforce.sampling import SamplingConfig
from dforce.sampling.sampler import Guidance, sample_window
from dforce.sampling.scheduling import level_grid, scheduling_matrix


@torch.no_grad()
def interpolate(
    model: DiffusionForcing,
    frames: Tensor,
    known: Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    solver: str = "ddim",
    scheduling: str | Tensor = "full_sequence",
    known_level: float = 0.0,
    guidance: Optional[Guidance] = None,
    cond: Optional[Tensor] = None,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    precision: str = "fp32",
) -> Tensor:
    """Fill in the unknown frames of ``frames`` [B, N, *frame_shape] given ``known`` [N] or [B, N] (bool).

    Unknown frames may hold anything (NaN too). Known frames are fed clean (or at ``known_level``)
    and returned unchanged. ``N / frame_stack`` must not exceed ``model.window``; a stacked token
    must be fully known or fully unknown. Returns frames [B, N, *frame_shape].
    """
    if model.causal:
        raise ValueError(
            "keyframe interpolation needs a bidirectional model (backbone causal=False): a causal model cannot see later keyframes"
        )
    b, n = frames.shape[:2]
    k = model.frame_stack
    known = torch.as_tensor(known, dtype=torch.bool, device=frames.device)
    if known.dim() == 1:
        known = known[None].expand(b, n)
    if known.shape != (b, n):
        raise ValueError(f"known must have shape [N] or [B, N] = {(b, n)}, got {tuple(known.shape)}")
    if n % k:
        raise ValueError(f"the number of frames {n} must be a multiple of frame_stack={k}")
    kt = known.reshape(b, n // k, k)
    if (kt.any(-1) != kt.all(-1)).any():
        raise ValueError("with frame stacking, each token's frames must be all known or all unknown")
    kt = kt.all(-1)
    if not kt.any():
        raise ValueError("give at least one known frame (for unconditional samples use model.sample(batch_size=...))")
    tokens = stack_frames(torch.where(known.view(b, n, *([1] * (frames.dim() - 2))), frames, torch.zeros_like(frames)), k)
    w = tokens.shape[1]
    if w > model.window:
        raise ValueError(f"{w} tokens exceed the model's window of {model.window}; interpolate shorter gaps")
    device = next(model.parameters()).device
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    pad = model.window - w
    tokens, kt = tokens.to(device), kt.to(device)
    if pad:
        tokens = torch.cat([tokens, tokens.new_zeros(b, pad, *tokens.shape[2:])], 1)
        kt = torch.cat([kt, kt.new_zeros(b, pad)], 1)
        if cond is not None:
            cond = stack_frames(cond.to(device), k)
            cond = torch.cat([cond, cond.new_zeros(b, pad, *cond.shape[2:])], 1)
    elif cond is not None:
        cond = stack_frames(cond.to(device), k)
    matrix = scheduling_matrix(scheduling, model.window, steps)
    grid = level_grid(steps, model.noise_schedule).to(device)
    lv = grid[matrix.to(device)][None].repeat(b, 1, 1)
    lv = torch.where(kt[:, None, :], torch.full_like(lv, known_level), lv)
    x = torch.randn(tokens.shape, generator=generator, device=device)
    out = sample_window(
        model.denoiser(precision), x, lv, schedule=model.noise_schedule, eta=eta, solver=solver, guidance=guidance, cond=cond,
        known_mask=kt, known_values=tokens, history="noise" if known_level > 0 else "relabel", generator=generator,
    )
    return unstack_frames(out[:, :w], k)


def replacement_rollout(
    model: DiffusionForcing,
    context: Tensor,
    horizon: int,
    *,
    config: Optional[SamplingConfig] = None,
    reconstruction_scale: float = 0.0,
    **kwargs,
) -> Tensor:
    """Roll a full-sequence model out by replacement: ``horizon`` frames after ``context`` [B, C, ...].

    ``model.sample`` with full-sequence windows and ``history='replacement'``: at each step the
    known tokens are noised afresh to the level of the generated tokens, the way a full-sequence
    model was trained to see them. ``reconstruction_scale > 0`` adds reconstruction guidance.
    ``config`` gives the other sampling options (chunk size, history length, steps, eta); ``kwargs``
    go to ``model.sample`` (``cond``, ``seed``, ``precision``, ...). Returns frames [B, horizon, ...].
    """
    config = replace(config or SamplingConfig(), scheduling="full_sequence", history="replacement")
    guidance = ReconstructionGuidance(reconstruction_scale) if reconstruction_scale > 0 else None
    return model.sample(context, horizon, config=config, guidance=guidance, **kwargs)


__all__ = ["interpolate", "replacement_rollout"]

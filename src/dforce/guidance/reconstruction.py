"""Reconstruction guidance (Ho et al., *Video Diffusion Models*, 2022) for replacement conditioning.

A model conditioned by replacement sees the known tokens only noisy, so its prediction of the
unknown ones may disagree with them. The gradient of the known tokens' reconstruction error
corrects it (one backward pass per step), and ``eps_hat`` is recomputed from ``x_t``:

    x0_hat[unknown] <- x0_hat[unknown] - (scale * alpha_t / 2) grad_{x_t} || x_known - x0_hat[known] ||^2
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dforce.diffusion.schedules import expand_like
from dforce.sampling.sampler import Denoiser, StepInfo


class ReconstructionGuidance:
    """``scale = 0`` is plain replacement conditioning (one network call without gradients)."""

    def __init__(self, scale: float) -> None:
        if scale < 0:
            raise ValueError(f"reconstruction guidance scale must be >= 0, got {scale}")
        self.scale = scale

    def __call__(self, denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]:
        known = info.known_mask
        if self.scale == 0 or known is None or not known.any():
            return denoise(x, t, cond)
        with torch.enable_grad():
            xg = x.detach().float().requires_grad_(True)
            x0, eps = denoise(xg, t, cond)
            km = expand_like(known, x0).float()
            err = (((info.known_values.float() - x0) ** 2) * km).sum()
            (grad,) = torch.autograd.grad(err, xg)
        x0, eps = x0.detach(), eps.detach()
        alpha, sigma = info.schedule.alpha_sigma(t)
        alpha, sigma = expand_like(alpha, x0), expand_like(sigma, x0)
        unknown = km == 0
        x0 = torch.where(unknown, x0 - (self.scale * alpha / 2) * grad, x0)
        eps_new = (x.float() - alpha * x0) / sigma.clamp_min(1e-6)
        eps = torch.where(unknown & (sigma > 1e-6), eps_new, eps)
        return x0, eps

"""Reward guidance and Monte Carlo guidance (Diffusion Forcing, Sec. 3.4 / planning).

A differentiable reward ``R(x0_hat) -> [B]`` of the predicted clean window shifts the noise
prediction of every moving token (classifier guidance through x0_hat, the paper's rule)::

    eps_hat <- eps_hat - scale * sigma_t * grad_x R(x0_hat(x_t)),   x0_hat <- (x_t - sigma_t eps_hat) / alpha_t

(``space='eps'``, the default: for Gaussian data and a linear reward it samples the tilted
distribution ``p(x0) exp(scale R(x0))`` exactly, ``tests/test_reward.py``). ``space='x0'``
multiplies the scale by ``alpha_t``: bounded at pure noise, but annealed, so it under-shoots the
tilted target (mean 0.66 / 0.49 instead of 1.0 in that test); the planner uses it with a tuned scale.

**Monte Carlo guidance** (MCG) averages the reward over ``mc_samples`` futures per step: the
extra ones re-noise ``x0_hat`` to the current levels (known tokens kept) and are predicted again.
Under a pyramid schedule the far tokens are noisier, so the near tokens' gradient accounts for the
uncertainty about the far ones. How the gradient reaches ``x_t`` (``mc_gradient``):

- ``through`` (the reference code's): through every draw's second network call. That call
  contracts towards the data (``d x0'/d x0_hat = k alpha`` for Gaussian data), so each extra draw's
  gradient is damped and the guidance weakens as ``mc_samples`` grows.
- ``direct``: each draw's reward gradient is taken at the draw and applied at ``x0_hat`` (the
  draw's offset from ``x0_hat`` held fixed), so the draws average the guidance direction without
  damping it; the draws need no graph.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

from dforce.diffusion.schedules import expand_like
from dforce.guidance.cfg import batched_denoise
from dforce.sampling.sampler import Denoiser, StepInfo

Reward = Callable[[Tensor, StepInfo], Tensor]
"""``reward(x0_hat [B, W, *token_shape], info) -> [B]`` (differentiable)."""

MC_GRADIENTS = ("through", "direct")


def guided_prediction(
    x: Tensor, t: Tensor, x0_hat: Tensor, eps_hat: Tensor, grad: Tensor, scale: float, schedule, moving: Optional[Tensor] = None,
    space: str = "eps",
) -> tuple[Tensor, Tensor]:
    """Shift a prediction along ``grad = grad_x R`` (``moving`` [B, W] tokens only), consistently with ``x_t``.

    ``space='eps'``: ``eps_hat - scale sigma_t grad`` (``x0_hat`` moves by ``scale sigma_t^2 / alpha_t grad``,
    unbounded at pure noise); ``space='x0'``: the scale times ``alpha_t`` (``x0_hat`` moves by ``scale sigma_t^2 grad``).
    """
    if space not in ("x0", "eps"):
        raise ValueError(f"space must be 'x0' or 'eps', got {space!r}")
    alpha, sigma = schedule.alpha_sigma(t)
    a, s = expand_like(alpha, x0_hat), expand_like(sigma, x0_hat)
    g = scale * grad.float()
    if space == "x0":
        eps_new = eps_hat.float() - a * s * g
        x0_new = x0_hat.float() + s * s * g
    else:
        eps_new = eps_hat.float() - s * g
        x0_new = (x.float() - s * eps_new) / a.clamp_min(1e-6)
    if moving is not None:
        m = expand_like(moving, x0_hat)
        eps_new = torch.where(m, eps_new, eps_hat.float())
        x0_new = torch.where(m, x0_new, x0_hat.float())
    return x0_new, eps_new


class RewardGuidance:
    """Guide sampling towards a high reward ``R(x0_hat)``, optionally with Monte Carlo guidance.

    Args:
        reward: ``reward(x0_hat [B, W, ...], info) -> [B]``, differentiable in ``x0_hat``.
        scale: guidance scale (0 = plain conditional sampling, one network call, no gradient).
        mc_samples: predictions averaged per step (1 = plain reward guidance; > 1 = MCG).
        grad_clip: clamp each element of ``grad_x R`` to ``[-grad_clip, grad_clip]``.
        space: ``eps`` (the paper's rule) or ``x0`` (annealed by alpha_t); see the module doc.
        mc_gradient: ``through`` or ``direct``: how the draws' gradient reaches ``x_t`` (module doc).
    """

    def __init__(
        self, reward: Reward, scale: float = 1.0, mc_samples: int = 1, grad_clip: Optional[float] = None, space: str = "eps",
        mc_gradient: str = "through",
    ) -> None:
        if mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {mc_samples}")
        if scale < 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        if space not in ("x0", "eps"):
            raise ValueError(f"space must be 'x0' or 'eps', got {space!r}")
        if mc_gradient not in MC_GRADIENTS:
            raise ValueError(f"mc_gradient must be one of {list(MC_GRADIENTS)}, got {mc_gradient!r}")
        self.reward, self.scale, self.mc_samples, self.grad_clip, self.space = reward, float(scale), int(mc_samples), grad_clip, space
        self.mc_gradient = mc_gradient

    def objective(self, denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor, Tensor]:
        """Mean reward over the Monte Carlo draws (differentiable in ``x``), and the plain prediction."""
        x0_hat, eps_hat = denoise(x, t, cond)
        rewards = [self.reward(x0_hat, info)]
        n = self.mc_samples - 1
        if n > 0:
            alpha, sigma = info.schedule.alpha_sigma(t)
            a, s = expand_like(alpha, x0_hat), expand_like(sigma, x0_hat)
            xs = []
            for _ in range(n):
                z = torch.randn(x0_hat.shape, generator=info.generator, device=x.device, dtype=torch.float32)
                xr = a * x0_hat + s * z
                if info.known_mask is not None:
                    xr = torch.where(expand_like(info.known_mask, xr), x.float(), xr)
                xs.append(xr.to(x.dtype))
            if self.mc_gradient == "through":
                preds = batched_denoise(denoise, xs, [t] * n, [cond] * n)
                rewards += [self.reward(p[0], info) for p in preds]
            else:
                with torch.no_grad():
                    preds = batched_denoise(denoise, [v.detach() for v in xs], [t] * n, [cond] * n)
                rewards += [self.reward(x0_hat + (p[0] - x0_hat).detach(), info) for p in preds]
        return torch.stack(rewards, 0).mean(0), x0_hat, eps_hat

    def __call__(self, denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]:
        if self.scale == 0.0:
            return denoise(x, t, cond)
        with torch.enable_grad():
            xg = x.detach().float().requires_grad_(True)
            r, x0_hat, eps_hat = self.objective(denoise, xg, t, cond, info)
            (grad,) = torch.autograd.grad(r.sum(), xg)
        if self.grad_clip is not None:
            grad = grad.clamp(-self.grad_clip, self.grad_clip)
        return guided_prediction(xg.detach(), t, x0_hat.detach(), eps_hat.detach(), grad, self.scale, info.schedule, info.moving, self.space)


class MonteCarloGuidance(RewardGuidance):
    """:class:`RewardGuidance` with ``mc_samples`` (default 4) futures averaged per step."""

    def __init__(
        self, reward: Reward, scale: float = 1.0, mc_samples: int = 4, grad_clip: Optional[float] = None, space: str = "eps",
        mc_gradient: str = "through",
    ) -> None:
        super().__init__(reward, scale, mc_samples, grad_clip, space, mc_gradient)

"""Loss weightings: the per-token weight of the parametrization's own MSE.

Every weighting is a weight ``w(lambda)`` on the eps-MSE (uniform, min-SNR, sigmoid);
:func:`loss_weight` divides it by :func:`~dforce.diffusion.parametrization.eps_mse_factor`, so one
weighting is one objective for eps, x0, v and flow: min-SNR-5 gives ``min(SNR, 5) / SNR`` (eps),
``min(SNR, 5)`` (x0) and ``min(SNR, 5) / (SNR + 1)`` (v, variance preserving). All of it uses the
*clipped* logSNR, so a clean token gets the limit of its weight (5 for x0), not a blow-up.

``fused_snr`` (Diffusion Forcing's video models) is min-SNR at a *fused* SNR ``F`` that also counts
earlier tokens (:func:`fused_logsnr`), with the parametrization factor at ``F`` too: the reference
weights ``cf / f`` (eps), ``5 cf`` (x0), ``5 cf / (5 f + 1)`` (v), ``f = F / 5``, ``cf = min(f, 1)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dforce.diffusion.parametrization import eps_mse_factor

WEIGHTINGS = ("uniform", "min_snr", "sigmoid", "fused_snr")


def check_weighting(kind: str) -> str:
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {kind!r}; choose one of {list(WEIGHTINGS)}")
    return kind


def min_snr(logsnr: Tensor, gamma: float = 5.0) -> Tensor:
    """Min-SNR-gamma (Hang et al. 2023) on the eps-MSE: ``min(SNR, gamma) / SNR``."""
    return torch.exp(torch.clamp(logsnr, max=math.log(gamma)) - logsnr)


def sigmoid_weight(logsnr: Tensor, bias: float = -1.0) -> Tensor:
    """Kingma & Gao sigmoid weighting on the eps-MSE, ``sigmoid(bias - lambda)`` (DFoT: bias -1)."""
    return torch.sigmoid(bias - logsnr)


def fused_logsnr(logsnr: Tensor, decay: float = 0.9, gamma: float = 5.0) -> Tensor:
    """log of the fused SNR ``F`` [B, T] of tokens at ``logsnr`` [B, T] (Diffusion Forcing).

    With ``n_t = min(SNR_t, gamma) / gamma``, ``cum_0 = n_0``, ``cum_t = d cum_{t-1} + (1 - d) n_t``
    and ``cum_{-1} = 0``: ``F_t = gamma (1 - (1 - d cum_{t-1}) (1 - SNR_t / gamma))``, so a noisy
    token after clean history counts as informative.
    """
    if logsnr.dim() != 2:
        raise ValueError(f"fused_snr needs per-token logSNR of shape [B, T], got {tuple(logsnr.shape)}")
    snr = logsnr.exp()
    n = snr.clamp(max=gamma) / gamma
    cum = [n[:, 0]]
    for i in range(1, n.shape[1]):
        cum.append(decay * cum[-1] + (1 - decay) * n[:, i])
    cum_prev = torch.stack([torch.zeros_like(n[:, 0])] + cum[:-1], 1)
    fused = gamma * (1 - (1 - decay * cum_prev) * (1 - snr / gamma))
    return fused.clamp_min(1e-30).log()


def loss_weight(kind: str, logsnr: Tensor, parametrization: str, schedule, **kw: float) -> Tensor:
    """Weight [B, T] of each token's ``parametrization``-MSE for tokens at (clipped) ``logsnr`` [B, T]."""
    check_weighting(kind)
    if kind == "fused_snr":
        logsnr = fused_logsnr(logsnr, kw.get("decay", 0.9), kw.get("gamma", 5.0))
        alpha, sigma = torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()  # F read as a VP token's SNR
    else:
        alpha, sigma = schedule.alpha_sigma_from_logsnr(logsnr)
    if kind == "uniform":
        w = torch.ones_like(logsnr)
    elif kind == "sigmoid":
        w = sigmoid_weight(logsnr, kw.get("bias", -1.0))
    else:
        w = min_snr(logsnr, kw.get("gamma", 5.0))
    return w / eps_mse_factor(parametrization, alpha, sigma)

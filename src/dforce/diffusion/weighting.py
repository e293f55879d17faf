"""Loss weightings, each written as a weight on the eps-MSE as a function of logSNR.

``weight(lambda) * ||eps_hat - eps||^2`` is the per-token loss; the model divides by the
parametrization's :func:`~dforce.diffusion.parametrization.eps_mse_factor` so the same weighting
means the same objective for eps, x0, v and flow predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor

WEIGHTINGS = ("uniform", "min_snr", "sigmoid", "fused_snr")


def check_weighting(kind: str) -> str:
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {kind!r}; choose one of {list(WEIGHTINGS)}")
    return kind


def min_snr(logsnr: Tensor, gamma: float = 5.0) -> Tensor:
    """Min-SNR-gamma (Hang et al. 2023): ``min(SNR, gamma) / SNR``."""
    return torch.exp(torch.clamp(logsnr, max=torch.log(torch.tensor(gamma)).item()) - logsnr)


def sigmoid_weight(logsnr: Tensor, bias: float = -1.0) -> Tensor:
    """Kingma & Gao sigmoid weighting ``sigmoid(bias - lambda)`` (DFoT uses bias -1)."""
    return torch.sigmoid(bias - logsnr)


def fused_snr(logsnr: Tensor, decay: float = 0.9, gamma: float = 5.0) -> Tensor:
    """Diffusion Forcing's fused SNR weighting for sequences ``logsnr`` [B, T].

    A token that is noisy itself can still be easy when its history is clean. With
    ``n_t = min(SNR_t, gamma) / gamma`` and an EMA of earlier tokens
    ``cum_t = d cum_{t-1} + (1 - d) n_t``, the fused information is
    ``f_t = 1 - (1 - d cum_{t-1}) (1 - n_t)`` and the eps-MSE weight is ``gamma f_t / SNR_t``.
    Meant for x0 / v / flow predictions (with eps predictions the weight of nearly pure-noise
    tokens after clean history becomes very large).
    """
    if logsnr.dim() != 2:
        raise ValueError(f"fused_snr needs per-token logSNR of shape [B, T], got {tuple(logsnr.shape)}")
    snr = logsnr.exp()
    n = snr.clamp(max=gamma) / gamma
    cum_prev = torch.zeros_like(n)
    running = torch.zeros_like(n[:, 0])
    for i in range(1, n.shape[1]):
        running = decay * running + (1 - decay) * n[:, i - 1]
        cum_prev[:, i] = running
    fused = 1 - (1 - decay * cum_prev) * (1 - n)
    return gamma * fused / snr


def loss_weight(kind: str, logsnr: Tensor, **kw: float) -> Tensor:
    """Per-token eps-MSE weight for ``logsnr`` [B, T]."""
    if kind == "uniform":
        return torch.ones_like(logsnr)
    if kind == "min_snr":
        return min_snr(logsnr, kw.get("gamma", 5.0))
    if kind == "sigmoid":
        return sigmoid_weight(logsnr, kw.get("bias", -1.0))
    if kind == "fused_snr":
        return fused_snr(logsnr, kw.get("decay", 0.9), kw.get("gamma", 5.0))
    raise ValueError(f"unknown loss weighting {kind!r}; choose one of {list(WEIGHTINGS)}")

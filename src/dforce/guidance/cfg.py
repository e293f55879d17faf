"""Classifier-free guidance on external conditions: ``p(null) + w [p(cond) - p(null)]``.

The null condition is all zeros, as ``DiffusionForcing(cond_dropout=p)`` trains it. Both go through
the network as one batch and are combined before the sampler step, so eta > 0 stays exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dforce.sampling.sampler import Denoiser, StepInfo


def combine(preds: list[tuple[Tensor, Tensor]], weights: list[float]) -> tuple[Tensor, Tensor]:
    """Weighted sum of ``(x0_hat, eps_hat)`` predictions of one ``x_t`` (consistent with it if the weights sum to 1)."""
    x0 = sum(w * p[0].float() for w, p in zip(weights, preds))
    eps = sum(w * p[1].float() for w, p in zip(weights, preds))
    return x0, eps


def batched_denoise(denoise: Denoiser, xs: list[Tensor], ts: list[Tensor], conds: list[Any]) -> list[tuple[Tensor, Tensor]]:
    """Evaluate several conditions in one network call and split the results."""
    b = xs[0].shape[0]
    cond = None if conds[0] is None else torch.cat(conds, 0)
    x0, eps = denoise(torch.cat(xs, 0), torch.cat(ts, 0), cond)
    return [(x0[i * b : (i + 1) * b], eps[i * b : (i + 1) * b]) for i in range(len(xs))]


class ClassifierFreeGuidance:
    """``p(null) + scale [p(cond) - p(null)]``; ``scale = 1`` is plain conditional sampling."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]:
        if cond is None or self.scale == 1.0:
            return denoise(x, t, cond)
        cond_p, null_p = batched_denoise(denoise, [x, x], [t, t], [cond, torch.zeros_like(cond)])
        return combine([null_p, cond_p], [1.0 - self.scale, self.scale])

"""Network output parametrizations and their conversion to ``(x0_hat, eps_hat)``.

With ``x_t = alpha x0 + sigma eps`` the supported targets are

- ``eps``:  the noise;
- ``x0``:   the clean token;
- ``v``:    ``alpha eps - sigma x0`` (Salimans & Ho), solved for any (alpha, sigma);
- ``flow``: the velocity ``u = eps - x0`` (the rectified-flow ODE ``dx/dt``).

``alpha`` and ``sigma`` arrive already broadcast to the token shape.
"""

from __future__ import annotations

from torch import Tensor

PARAMETRIZATIONS = ("eps", "x0", "v", "flow")
_EPS = 1e-6


def check_parametrization(kind: str) -> str:
    if kind not in PARAMETRIZATIONS:
        raise ValueError(f"unknown parametrization {kind!r}; choose one of {list(PARAMETRIZATIONS)}")
    return kind


def target(kind: str, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The regression target of parametrization ``kind``."""
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    if kind == "flow":
        return eps - x0
    raise ValueError(f"unknown parametrization {kind!r}; choose one of {list(PARAMETRIZATIONS)}")


def to_x0_eps(kind: str, pred: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Convert a prediction to ``(x0_hat, eps_hat)``, consistent with ``x_t``."""
    if kind == "eps":
        eps = pred
        return (x_t - sigma * eps) / alpha.clamp_min(_EPS), eps
    if kind == "x0":
        x0 = pred
        return x0, (x_t - alpha * x0) / sigma.clamp_min(_EPS)
    if kind == "v":
        det = alpha * alpha + sigma * sigma
        return (alpha * x_t - sigma * pred) / det, (sigma * x_t + alpha * pred) / det
    if kind == "flow":
        x0 = (x_t - sigma * pred) / (alpha + sigma)
        return x0, pred + x0
    raise ValueError(f"unknown parametrization {kind!r}; choose one of {list(PARAMETRIZATIONS)}")


def eps_mse_factor(kind: str, alpha: Tensor, sigma: Tensor) -> Tensor:
    """``||pred_hat - pred||^2 = factor * ||eps_hat - eps||^2`` at fixed ``x_t`` (weightings are written on the eps-MSE)."""
    if kind == "eps":
        return alpha.new_ones(())
    if kind == "x0":
        return (sigma / alpha.clamp_min(_EPS)) ** 2
    if kind == "v":
        return ((alpha * alpha + sigma * sigma) / alpha.clamp_min(_EPS)) ** 2
    if kind == "flow":
        return ((alpha + sigma) / alpha.clamp_min(_EPS)) ** 2
    raise ValueError(f"unknown parametrization {kind!r}; choose one of {list(PARAMETRIZATIONS)}")

"""Lorenz-63 trajectories generated on the spot (RK4), a chaotic system whose long-run
statistics (the attractor's marginal distributions) check a long rollout without needing it to
match the exact ground-truth path."""

from __future__ import annotations

import numpy as np


def lorenz63(
    n_traj: int,
    n_steps: int,
    dt: float = 0.01,
    stride: int = 1,
    burn_in: int = 1000,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    seed: int = 0,
) -> np.ndarray:
    """``n_traj`` trajectories [n_traj, n_steps, 3], every ``stride``-th RK4 step of size ``dt``,
    after ``burn_in`` steps that bring random starts onto the attractor."""

    def f(s: np.ndarray) -> np.ndarray:
        x, y, z = s[:, 0], s[:, 1], s[:, 2]
        return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], 1)

    rng = np.random.default_rng(seed)
    s = rng.normal(0, 1, (n_traj, 3)) + np.array([0.0, 0.0, 25.0])
    out = np.empty((n_traj, n_steps, 3), dtype=np.float32)
    total = burn_in + n_steps * stride
    for i in range(total):
        k1 = f(s)
        k2 = f(s + 0.5 * dt * k1)
        k3 = f(s + 0.5 * dt * k2)
        k4 = f(s + dt * k3)
        s = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        j = i - burn_in
        if j >= 0 and j % stride == 0:
            out[:, j // stride] = s
    return out


def wasserstein1(a: np.ndarray, b: np.ndarray, n_quantiles: int = 200) -> float:
    """1-D Wasserstein-1 distance between two samples (mean absolute quantile difference);
    inf when ``a`` holds non-finite values (a diverged rollout)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        return float("inf")
    q = (np.arange(n_quantiles) + 0.5) / n_quantiles
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def marginal_distance(rollout: np.ndarray, reference: np.ndarray) -> float:
    """Mean over coordinates of W1 between rollout states [..., D] and reference states [..., D]."""
    d = rollout.shape[-1]
    return float(np.mean([wasserstein1(rollout[..., i], reference[..., i]) for i in range(d)]))

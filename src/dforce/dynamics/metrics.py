"""Metrics of long rollouts of dynamical systems (numpy): distance to the stationary law,
divergence, smoothness and short-horizon probabilistic skill.

Arrays are ``[N, T, D]`` (samples, time, dimensions) in normalised units.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clip_diverged", "crps_ensemble", "diverged_fraction", "marginal_w1", "roughness_ratio", "spectrum_distance",
           "marginal_distance", "wasserstein1"]

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


DIVERGED = 10.0
"""A rollout with any |x| above this (normalised units, i.e. 10 standard deviations) or a non-finite value has diverged."""


def clip_diverged(x: np.ndarray, bound: float = 50.0) -> np.ndarray:
    """Non-finite -> ``bound``, values clipped to ``[-bound, bound]`` (so distances stay finite but large)."""
    return np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64), nan=bound, posinf=bound, neginf=-bound), -bound, bound)


def diverged_fraction(x: np.ndarray, bound: float = DIVERGED) -> float:
    """Fraction of samples (dim 0) with a non-finite value or any |x| > ``bound``."""
    x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    bad = ~np.isfinite(x).all(1) | (np.abs(np.nan_to_num(x, nan=np.inf)) > bound).any(1)
    return float(bad.mean())


def marginal_w1(x: np.ndarray, reference: np.ndarray) -> float:
    """Mean over dimensions of the 1-D W1 distance between states ``x`` [..., D] and ``reference`` [..., D]."""
    return marginal_distance(x, reference)


def roughness(x: np.ndarray) -> float:
    """Mean squared second difference in time of ``x`` [N, T, D]."""
    return float(np.mean(np.diff(np.asarray(x, dtype=np.float64), 2, axis=1) ** 2))


def roughness_ratio(x: np.ndarray, truth: np.ndarray) -> float:
    """:func:`roughness` of ``x`` over that of ``truth`` (1.0 = as smooth as the system; diverged samples clipped)."""
    return roughness(clip_diverged(x)) / max(roughness(truth), 1e-12)


def power_spectrum(x: np.ndarray) -> np.ndarray:
    """Mean spatial power spectrum of fields ``x`` [..., D] (periodic grid of D points)."""
    f = np.fft.rfft(np.asarray(x, dtype=np.float64), axis=-1)
    return (np.abs(f) ** 2).reshape(-1, f.shape[-1]).mean(0)


SPECTRUM_FLOOR = 1e-6


def spectrum_distance(x: np.ndarray, reference: np.ndarray, floor: float = SPECTRUM_FLOOR) -> float:
    """Mean absolute difference of log10 spatial power spectra (over wavenumbers) of ``x`` and ``reference``.

    Both spectra are floored at ``floor`` times the reference's total power: a smooth field's
    spectrum falls to round-off (1e-12 of its energy for KS), and without the floor the log
    distance is dominated by modes that carry no energy, equal for every imperfect model.
    """
    p, q = power_spectrum(x), power_spectrum(reference)
    eps = floor * q.sum()
    return float(np.mean(np.abs(np.log10(p + eps) - np.log10(q + eps))))


def crps_ensemble(pred: np.ndarray, truth: np.ndarray) -> float:
    """Ensemble CRPS ``E|X - y| - 0.5 E|X - X'|``, averaged over everything.

    ``pred`` [N, E, ...] (E ensemble members), ``truth`` [N, ...].
    """
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    skill = np.abs(pred - truth[:, None]).mean(1)
    spread = np.abs(pred[:, :, None] - pred[:, None, :]).mean((1, 2))
    return float(np.mean(skill - 0.5 * spread))

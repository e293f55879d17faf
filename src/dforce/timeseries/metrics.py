"""Probabilistic forecast metrics on sample paths (NumPy, pure functions).

Shapes: targets ``y`` [..., H, D] (time steps, series) and samples ``[S, ..., H, D]`` (S sample
paths first). NaN targets (missing observations) are ignored.

- :func:`crps_ensemble` -- CRPS of an ensemble, energy form ``E|X - y| - 1/2 E|X - X'|``
  (identical to ``properscoring.crps_ensemble``), per element;
- :func:`weighted_quantile_loss` -- GluonTS's quantile-based CRPS approximation
  ``mean_q [2 sum_t |(y_t - q_t)(1{y_t <= q_t} - q)| / sum_t |y_t|]``;
- :func:`crps_sum` -- the multivariate benchmark metric: sum target and samples over the series,
  then the weighted quantile loss over 19 quantile levels 0.05..0.95 (TimeGrad, Diffusion Forcing);
- :func:`evaluate` -- all of them plus per-series CRPS, MSE / MAE of the median and coverage.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

QUANTILES = tuple(np.round(np.arange(1, 20) / 20, 2).tolist())
"""0.05, 0.10, ..., 0.95: the 19 levels of CRPS-sum."""


def _check(y: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, samples = np.asarray(y, dtype=np.float64), np.asarray(samples, dtype=np.float64)
    if samples.shape[1:] != y.shape:
        raise ValueError(f"samples must have shape [S, *y.shape] = [S, {', '.join(map(str, y.shape))}], got {samples.shape}")
    if samples.shape[0] < 1:
        raise ValueError("need at least one sample")
    return y, samples


def crps_ensemble(y: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Per-element CRPS of the empirical distribution of ``samples`` [S, ...] at ``y`` [...].

    ``E|X - y| - 1/2 E|X - X'|`` computed exactly in O(S log S) through the sorted samples:
    ``E|X - X'| = 2 / S^2 sum_i (2i - S - 1) x_(i)``.
    """
    y, samples = _check(y, samples)
    s = samples.shape[0]
    abs_err = np.abs(samples - y[None]).mean(0)
    xs = np.sort(samples, axis=0)
    w = (2 * np.arange(1, s + 1) - s - 1).reshape(-1, *([1] * y.ndim))
    spread = (w * xs).sum(0) / s**2  # = 1/2 E|X - X'|
    return abs_err - spread


def sample_quantiles(samples: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> np.ndarray:
    """Quantiles over the sample axis: [Q, ...] (linear interpolation, as ``np.quantile`` / GluonTS)."""
    return np.quantile(np.asarray(samples, dtype=np.float64), np.asarray(quantiles), axis=0)


def quantile_loss(y: np.ndarray, q_pred: np.ndarray, q: float) -> np.ndarray:
    """Pinball loss times two, elementwise: ``2 |(y - q_pred)(1{y <= q_pred} - q)|``."""
    return 2 * np.abs((y - q_pred) * ((y <= q_pred).astype(np.float64) - q))


def weighted_quantile_loss(y: np.ndarray, samples: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> float:
    """GluonTS's mean weighted quantile loss over all elements of ``y`` (NaNs ignored)."""
    y, samples = _check(y, samples)
    qs = sample_quantiles(samples, quantiles)
    ok = ~np.isnan(y)
    denom = np.abs(y[ok]).sum()
    if denom == 0:
        raise ValueError("the targets sum to zero in absolute value; the weighted quantile loss is undefined")
    return float(np.mean([quantile_loss(y[ok], qs[i][ok], q).sum() / denom for i, q in enumerate(quantiles)]))


def crps_sum(y: np.ndarray, samples: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> float:
    """CRPS-sum: ``y`` [..., H, D], ``samples`` [S, ..., H, D] on the original scale; sum over the
    D series, then :func:`weighted_quantile_loss` over every window and step together."""
    y, samples = _check(y, samples)
    if np.isnan(y).any():
        raise ValueError("CRPS-sum needs complete targets (a missing series would change the sum)")
    return weighted_quantile_loss(y.sum(-1), samples.sum(-1), quantiles)


def coverage(y: np.ndarray, samples: np.ndarray, level: float) -> float:
    """Fraction of targets inside the central ``level`` interval of the samples."""
    y, samples = _check(y, samples)
    lo, hi = sample_quantiles(samples, [(1 - level) / 2, (1 + level) / 2])
    ok = ~np.isnan(y)
    return float(((y >= lo) & (y <= hi))[ok].mean())


def evaluate(y: np.ndarray, samples: np.ndarray, series: Sequence[str] | None = None) -> dict:
    """Every metric for ``y`` [..., H, D] and ``samples`` [S, ..., H, D] (original scale).

    Returns a JSON-friendly dict: ``crps_sum`` (when ``D > 1`` or always for one series: equal to
    ``wql``), ``wql`` (weighted quantile loss over all elements), ``crps`` (mean energy-form CRPS),
    ``crps_per_series`` (``{name: {"crps": mean CRPS, "wql": weighted quantile loss}}``),
    ``mse`` / ``mae`` of the median, ``coverage_50`` / ``coverage_90``.
    """
    y, samples = _check(y, samples)
    d = y.shape[-1]
    series = list(series) if series is not None else [str(i) for i in range(d)]
    med = np.median(samples, axis=0)
    ok = ~np.isnan(y)
    crps = crps_ensemble(np.nan_to_num(y), samples)
    out = {
        "wql": weighted_quantile_loss(y, samples),
        "crps": float(crps[ok].mean()),
        "mse": float(((med - y)[ok] ** 2).mean()),
        "mae": float(np.abs(med - y)[ok].mean()),
        "coverage_50": coverage(y, samples, 0.5),
        "coverage_90": coverage(y, samples, 0.9),
        "crps_per_series": {},
    }
    if not np.isnan(y).any():
        out["crps_sum"] = crps_sum(y, samples)
    for i, name in enumerate(series):
        yi, si = y[..., i], samples[..., i]
        oi = ~np.isnan(yi)
        entry = {"crps": float(crps[..., i][oi].mean()) if oi.any() else float("nan")}
        entry["wql"] = weighted_quantile_loss(yi, si) if oi.any() and np.abs(yi[oi]).sum() > 0 else float("nan")
        out["crps_per_series"][name] = entry
    return out

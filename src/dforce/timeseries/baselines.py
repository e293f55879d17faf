"""Classical baselines in the same harness as :class:`~dforce.timeseries.Forecaster`.

Both expose ``fit(frame)`` and ``predict(history, horizon, num_samples, seed) -> Forecast``.

- :class:`SeasonalNaive`: repeat the last observed season (a point forecast: every sample path is
  the same, so its CRPS equals its absolute error);
- :class:`RandomWalk`: the last value plus bootstrapped historical increments. Whole increment
  vectors (all series of one time step) are drawn together, so the paths keep the historical
  cross-series correlation -- a strong baseline for exchange rates.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from dforce.timeseries.data import TimeSeriesFrame, future_index, season_length
from dforce.timeseries.forecaster import Forecast


class SeasonalNaive:
    """``y[T + h] = y[T + h - m k]`` for the smallest k that reaches an observed value (m = season)."""

    def __init__(self, season: Optional[int] = None) -> None:
        self.season = season

    def fit(self, frame: TimeSeriesFrame) -> "SeasonalNaive":
        if self.season is None:
            self.season = season_length(frame.freq)
        if self.season < 1:
            raise ValueError(f"season must be >= 1, got {self.season}")
        return self

    def predict(self, history: TimeSeriesFrame, horizon: int, num_samples: int = 100, seed: int = 0) -> Forecast:
        m = self.season or season_length(history.freq)
        v = history.values
        if len(v) < m:
            raise ValueError(f"seasonal naive needs at least one season ({m} steps) of history, got {len(v)}")
        out = np.full((horizon, v.shape[1]), np.nan)
        for h in range(horizon):
            src = len(v) - m + (h % m)
            while src >= 0:
                row = v[src]
                fill = np.isnan(out[h]) & ~np.isnan(row)
                out[h, fill] = row[fill]
                if not np.isnan(out[h]).any():
                    break
                src -= m
        samples = np.broadcast_to(out, (num_samples, horizon, v.shape[1])).copy()
        return Forecast(samples, future_index(history.index, horizon, history.freq), list(history.columns))


class RandomWalk:
    """Last observed value + cumulative sums of increments drawn (with replacement) from the training data."""

    def fit(self, frame: TimeSeriesFrame) -> "RandomWalk":
        inc = np.diff(frame.values, axis=0)
        inc = inc[~np.isnan(inc).any(1)]
        if len(inc) == 0:
            raise ValueError("no complete pair of consecutive steps in the training data to estimate increments from")
        self.increments = inc
        return self

    def predict(self, history: TimeSeriesFrame, horizon: int, num_samples: int = 100, seed: int = 0) -> Forecast:
        v = history.values
        last = np.array([col[~np.isnan(col)][-1] if (~np.isnan(col)).any() else np.nan for col in v.T])
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(self.increments), (num_samples, horizon))
        samples = last + np.cumsum(self.increments[idx], axis=1)
        return Forecast(samples, future_index(history.index, horizon, history.freq), list(history.columns))

"""Classical baselines in the same harness as :class:`~dforce.timeseries.Forecaster`.

All expose ``fit(frame, val=None)``, ``predict(history, horizon, num_samples, seed) -> Forecast``
and ``predict_many(histories, horizon, num_samples, futures=None, seed=0)``.

- :class:`RepeatLast`: repeat the last observed value (a point forecast);
- :class:`Linear`: DLinear (Zeng et al. 2023): moving-average trend + remainder, one linear map
  each from the input window to the horizon, shared by the series, trained with MSE on
  standardised values (early stopping on validation MSE when ``val`` is given); or NLinear, the
  same paper's variant that subtracts the window's last value from input and adds it back to the
  output (robust to level shifts between training and test); with a validation split both are
  fitted and the one with the lower validation MSE is kept (``subtract_last=None``); sample paths add
  whole residual vectors drawn from the validation (else training) windows, so its intervals are
  empirical and its median is the linear forecast;

- :class:`SeasonalNaive`: repeat the last observed season (a point forecast: every sample path is
  the same, so its CRPS equals its absolute error);
- :class:`RandomWalk`: the last value plus bootstrapped historical increments. Whole increment
  vectors (all series of one time step) are drawn together, so the paths keep the historical
  cross-series correlation -- a strong baseline for exchange rates.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from dforce.timeseries.data import TimeSeriesFrame, future_index, season_length
from dforce.timeseries.forecaster import Forecast


class _Many:
    def fit(self, frame: TimeSeriesFrame, val: Optional[TimeSeriesFrame] = None):
        return self

    def predict_many(self, histories: Sequence[TimeSeriesFrame], horizon: int, num_samples: int = 100, *, futures=None, seed: int = 0, **_) -> list[Forecast]:
        return [self.predict(h, horizon, num_samples, seed=seed + i) for i, h in enumerate(histories)]


def _last_observed(v: np.ndarray) -> np.ndarray:
    return np.array([col[~np.isnan(col)][-1] if (~np.isnan(col)).any() else np.nan for col in v.T])


class RepeatLast(_Many):
    """``y[T + h] = y[T]``: the last observed value of each series (every sample path the same)."""

    def predict(self, history: TimeSeriesFrame, horizon: int, num_samples: int = 100, seed: int = 0) -> Forecast:
        last = _last_observed(history.values)
        samples = np.broadcast_to(last, (num_samples, horizon, history.num_series)).copy()
        return Forecast(samples, future_index(history.index, horizon, history.freq), list(history.columns))


class SeasonalNaive(_Many):
    """``y[T + h] = y[T + h - m k]`` for the smallest k that reaches an observed value (m = season)."""

    def __init__(self, season: Optional[int] = None) -> None:
        self.season = season

    def fit(self, frame: TimeSeriesFrame, val: Optional[TimeSeriesFrame] = None) -> "SeasonalNaive":
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


class RandomWalk(_Many):
    """Last observed value + cumulative sums of increments drawn (with replacement) from the training data."""

    def fit(self, frame: TimeSeriesFrame, val: Optional[TimeSeriesFrame] = None) -> "RandomWalk":
        inc = np.diff(frame.values, axis=0)
        inc = inc[~np.isnan(inc).any(1)]
        if len(inc) == 0:
            raise ValueError("no complete pair of consecutive steps in the training data to estimate increments from")
        self.increments = inc
        return self

    def predict(self, history: TimeSeriesFrame, horizon: int, num_samples: int = 100, seed: int = 0) -> Forecast:
        v = history.values
        last = _last_observed(v)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(self.increments), (num_samples, horizon))
        samples = last + np.cumsum(self.increments[idx], axis=1)
        return Forecast(samples, future_index(history.index, horizon, history.freq), list(history.columns))


def _ffill(v: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs along time (then back-fill the start); the linear model's input only."""
    import pandas as pd

    return pd.DataFrame(v).ffill().bfill().fillna(0.0).to_numpy()


class Linear(_Many):
    """DLinear on the last ``input_length`` steps -> ``horizon`` steps (see the module doc)."""

    def __init__(self, input_length: int, horizon: int, kernel: int = 25, epochs: int = 20, lr: float = 5e-3,
                 batch_size: int = 32, patience: int = 3, seed: int = 0, subtract_last: Optional[bool] = None) -> None:
        """``subtract_last``: True = NLinear's input/output shift by the window's last value, False =
        plain DLinear, None = both, keeping the one with the lower validation MSE (DLinear without
        ``val``)."""
        self.L, self.H, self.kernel, self.epochs, self.lr = input_length, horizon, kernel, epochs, lr
        self.batch_size, self.patience, self.seed = batch_size, patience, seed
        self.subtract_last = subtract_last

    def _windows(self, v: np.ndarray, first_target: int = 0):
        starts = np.arange(max(0, first_target - self.L), len(v) - self.L - self.H + 1)
        idx = starts[:, None] + np.arange(self.L + self.H)
        w = v[idx]  # [N, L + H, D]
        return w[:, : self.L], w[:, self.L :]

    def _trend(self, x: torch.Tensor) -> torch.Tensor:  # [N, L, D] moving average with replicate padding
        k = min(self.kernel, self.L)
        front, back = (k - 1) // 2, k - 1 - (k - 1) // 2
        xp = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, back, -1)], 1)
        return xp.unfold(1, k, 1).mean(-1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x[:, -1:] if self.subtract_last else torch.zeros_like(x[:, -1:])
        x = x - last
        trend = self._trend(x)
        seas = x - trend
        out = self.lin_s(seas.transpose(1, 2)) + self.lin_t(trend.transpose(1, 2))  # [N, D, H]
        return out.transpose(1, 2) + last

    def _point(self, xz: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self._forward(torch.from_numpy(xz).float()).double().numpy()

    def fit(self, frame: TimeSeriesFrame, val: Optional[TimeSeriesFrame] = None) -> "Linear":
        if self.subtract_last is not None or val is None:
            self.subtract_last = bool(self.subtract_last)
            return self._fit(frame, val)
        fits = [Linear(self.L, self.H, self.kernel, self.epochs, self.lr, self.batch_size, self.patience, self.seed, s)._fit(frame, val)
                for s in (False, True)]
        self.__dict__.update(min(fits, key=lambda m: m.val_mse).__dict__)
        return self

    def _fit(self, frame: TimeSeriesFrame, val: Optional[TimeSeriesFrame]) -> "Linear":
        v = frame.values
        self.loc, self.scale = np.nanmean(v, 0), np.maximum(np.nanstd(v, 0), 1e-8)
        z = lambda a: (_ffill(a) - self.loc) / self.scale  # noqa: E731
        xt, yt = self._windows(z(v))
        ok = ~np.isnan(self._windows(v)[1]).any((1, 2))
        xt, yt = xt[ok], yt[ok]
        if len(xt) == 0:
            raise ValueError(f"no complete training window of {self.L} + {self.H} steps")
        xv = yv = None
        if val is not None:
            full = np.concatenate([v, val.values])
            xv, yv = self._windows(z(full), first_target=len(v))
            raw_y = self._windows(full, first_target=len(v))[1]
            yv = np.where(np.isnan(raw_y), np.nan, yv)
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.lin_s, self.lin_t = torch.nn.Linear(self.L, self.H), torch.nn.Linear(self.L, self.H)
        params = [*self.lin_s.parameters(), *self.lin_t.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr)
        X, Y = torch.from_numpy(xt).float(), torch.from_numpy(yt).float()
        best, best_state, bad = float("inf"), None, 0
        for epoch in range(self.epochs):
            perm = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), self.batch_size):
                b = perm[i : i + self.batch_size]
                loss = (self._forward(X[b]) - Y[b]).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            for grp in opt.param_groups:  # DLinear's schedule: halve the rate every epoch
                grp["lr"] *= 0.5
            if xv is not None and len(xv):
                mse = float(np.nanmean((self._point(xv) - yv) ** 2))
                if mse < best:
                    best, best_state, bad = mse, [p.detach().clone() for p in params], 0
                else:
                    bad += 1
                    if bad >= self.patience:
                        break
        if best_state is not None:
            with torch.no_grad():
                for p, b in zip(params, best_state):
                    p.copy_(b)
        # residual vectors for the sample paths: validation windows when given, else training ones
        xr, yr = (xv, yv) if xv is not None and len(xv) else (xt, yt)
        res = yr - self._point(xr)
        self.residuals = res[~np.isnan(res).any((1, 2))]
        self.val_mse = best  # inf without validation data
        if len(self.residuals) == 0:
            self.residuals = np.zeros((1, self.H, v.shape[1]))
        return self

    def predict(self, history: TimeSeriesFrame, horizon: int, num_samples: int = 100, seed: int = 0) -> Forecast:
        return self.predict_many([history], horizon, num_samples, seed=seed)[0]

    def predict_many(self, histories, horizon: int, num_samples: int = 100, *, futures=None, seed: int = 0, **_) -> list[Forecast]:
        if horizon > self.H:
            raise ValueError(f"this linear model forecasts {self.H} steps; fit one with horizon >= {horizon}")
        for h in histories:
            if len(h) < self.L:
                raise ValueError(f"the linear model needs {self.L} steps of history, got {len(h)}")
        x = np.stack([(_ffill(h.values)[-self.L :] - self.loc) / self.scale for h in histories])
        point = self._point(x)[:, :horizon]  # [N, H, D]
        rng = np.random.default_rng(seed)
        out = []
        for i, h in enumerate(histories):
            r = self.residuals[rng.integers(0, len(self.residuals), num_samples), :horizon]
            samples = (point[i][None] + r) * self.scale + self.loc
            out.append(Forecast(samples, future_index(h.index, horizon, h.freq), list(h.columns)))
        return out

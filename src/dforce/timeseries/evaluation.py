"""Splits by time and rolling-window evaluation (the long-horizon protocol and the GluonTS one).

    split = Split.parse("0.7,0.1,0.2", len(frame))              # or "rows:A,B[,C]" / "dates:D1,D2[,D3]" / "ett"
    frame_z, scaler = zscore(frame, split.train_end)             # statistics of the training rows only
    res = evaluate_rolling({"df": fc, "linear": lin}, frame_z, split, horizons=[96, 192, 336, 720],
                           input_length=96, stride=96, num_samples=10)

A :class:`Split` cuts the rows into train ``[0, train_end)``, validation ``[train_end, val_end)``
and test ``[val_end, test_end)``. Test windows start at ``val_end``, ``val_end + stride``, ... and
forecast ``horizon`` rows that all lie inside the test range; each window's history is every row
before it (a model looks at its last ``input_length``). Validation windows are built the same way
inside the validation range, so nothing is ever selected on test rows.

Metrics per horizon and method (:func:`window_metrics`): MSE / MAE of the sample median and of the
sample mean, mean CRPS (energy form), CRPS-sum (GluonTS definition), 50% / 90% coverage, and the
sampling throughput (windows per second). The standard long-horizon tables (Informer, Autoformer,
DLinear, PatchTST) report MSE / MAE on the z-scored scale with statistics of the training rows:
:func:`zscore` gives that frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from dforce.timeseries.data import Scaler, TimeSeriesFrame
from dforce.timeseries.metrics import coverage, crps_ensemble, crps_sum


@dataclass(frozen=True)
class Split:
    """Rows ``[0, train_end)`` train, ``[train_end, val_end)`` validation, ``[val_end, test_end)`` test."""

    train_end: int
    val_end: int
    test_end: int

    def __post_init__(self) -> None:
        if not 0 < self.train_end <= self.val_end < self.test_end:
            raise ValueError(f"need 0 < train_end <= val_end < test_end, got {self.train_end}, {self.val_end}, {self.test_end}")

    @classmethod
    def fractions(cls, n: int, train: float = 0.7, val: float = 0.1, test: float = 0.2) -> "Split":
        """The custom-dataset split of the long-horizon literature: ``int(0.7 n)`` train rows,
        ``int(0.2 n)`` test rows at the end, the rest validation."""
        if min(train, val, test) < 0 or abs(train + val + test - 1) > 1e-9:
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {train}, {val}, {test}")
        n_train, n_test = int(n * train), int(n * test)
        return cls(n_train, n - n_test, n)

    @classmethod
    def parse(cls, spec: str, n: int, index: Optional[pd.Index] = None) -> "Split":
        """``"0.7,0.1,0.2"`` (fractions), ``"rows:A,B[,C]"`` (row boundaries; C defaults to n),
        ``"dates:D1,D2[,D3]"`` (the first row at or after each date; needs ``index``) or ``"ett"``
        (ETT-hour: 12, 4 and 4 months of 30 days of hours)."""
        spec = spec.strip()
        if spec == "ett":
            m = 30 * 24
            return cls(12 * m, 16 * m, min(n, 20 * m))
        kind, _, rest = spec.partition(":")
        if not rest:
            parts = [float(p) for p in spec.split(",")]
            if len(parts) != 3:
                raise ValueError(f"split {spec!r}: give three fractions like 0.7,0.1,0.2 (or rows:A,B / dates:D1,D2 / ett)")
            return cls.fractions(n, *parts)
        items = [p.strip() for p in rest.split(",") if p.strip()]
        if kind == "rows":
            b = [int(p) for p in items]
        elif kind == "dates":
            if index is None:
                raise ValueError("a split by dates needs the frame's time index")
            idx = index.to_timestamp() if isinstance(index, pd.PeriodIndex) else pd.DatetimeIndex(index)
            b = [int(idx.searchsorted(pd.Timestamp(p))) for p in items]
        else:
            raise ValueError(f"unknown split kind {kind!r}; use rows:, dates:, fractions or ett")
        if len(b) not in (2, 3):
            raise ValueError(f"split {spec!r}: give two or three boundaries (train end, validation end[, test end])")
        return cls(b[0], b[1], b[2] if len(b) == 3 else n)

    def origins(self, part: str, horizon: int, stride: int) -> list[int]:
        """First forecast rows of the rolling windows of ``part`` (``val`` or ``test``)."""
        lo, hi = {"val": (self.train_end, self.val_end), "test": (self.val_end, self.test_end)}[part]
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        return list(range(lo, hi - horizon + 1, stride))


def zscore(frame: TimeSeriesFrame, train_end: int) -> tuple[TimeSeriesFrame, Scaler]:
    """The frame standardised with the mean / std of its first ``train_end`` rows (per series)."""
    sc = Scaler("standard").fit(frame.values[:train_end])
    return TimeSeriesFrame(sc.transform(frame.values), frame.index, list(frame.columns), frame.covariates,
                           list(frame.covariate_names), frame.freq), sc


def window_metrics(y: np.ndarray, samples: np.ndarray) -> dict:
    """Metrics of ``samples`` [S, W, H, D] against ``y`` [W, H, D] (NaN targets ignored)."""
    ok = ~np.isnan(y)
    med, mean = np.median(samples, 0), samples.mean(0)
    out = {
        "mse_median": float(((med - y)[ok] ** 2).mean()),
        "mae_median": float(np.abs(med - y)[ok].mean()),
        "mse_mean": float(((mean - y)[ok] ** 2).mean()),
        "mae_mean": float(np.abs(mean - y)[ok].mean()),
        "crps": float(crps_ensemble(np.nan_to_num(y), samples)[ok].mean()),
        "coverage_50": coverage(y, samples, 0.5),
        "coverage_90": coverage(y, samples, 0.9),
    }
    if ok.all():
        try:
            out["crps_sum"] = crps_sum(y, samples)
        except ValueError:
            pass
    return out


def rolling_pairs(frame: TimeSeriesFrame, origins: Sequence[int], horizon: int):
    """``(histories, futures, y [W, horizon, D])`` for forecasts starting at ``origins``."""
    hists = [frame.slice(0, o) for o in origins]
    futs = [frame.slice(o, o + horizon) for o in origins]
    return hists, futs, np.stack([f.values for f in futs])


def evaluate_rolling(
    models: Mapping[str, object],
    frame: TimeSeriesFrame,
    split: Split,
    horizons: Sequence[int],
    *,
    stride: int,
    num_samples: int = 100,
    seed: int = 0,
    part: str = "test",
    share_rollout: Optional[Sequence[str]] = None,
    keep_samples: bool = False,
) -> dict:
    """Rolling evaluation of fitted ``models`` (anything with ``predict_many``) on ``part``.

    Returns ``{horizon: {name: metrics + windows, windows_per_s, sample_s}}`` (with
    ``keep_samples``, also ``_y`` [W, H, D] and ``_samples`` [S, W, H, D] arrays). Models named in
    ``share_rollout`` (default: all) forecast every window once at the longest horizon and the
    shorter horizons read its first steps: for a causal sampler or a naive baseline this is the
    same distribution as a separate shorter forecast, at a fraction of the cost. Others (e.g.
    one :class:`~dforce.timeseries.baselines.Linear` per horizon, given as ``{H: model}``) are
    called per horizon.
    """
    horizons = sorted(int(h) for h in horizons)
    share = set(models) if share_rollout is None else set(share_rollout)
    res: dict = {h: {} for h in horizons}
    hmax = horizons[-1]
    for name, model in models.items():
        if name in share and not isinstance(model, Mapping):
            # one rollout per origin, as long as the longest horizon that origin is used for
            origins = split.origins(part, horizons[0], stride)
            end = split.test_end if part == "test" else split.val_end
            need = {o: max(h for h in horizons if o + h <= end) for o in origins}
            samples_at: dict[int, np.ndarray] = {}
            t0 = time.time()
            for hz in sorted(set(need.values())):
                group = [o for o in origins if need[o] == hz]
                hists = [frame.slice(0, o) for o in group]
                futs = [frame.slice(o, min(o + hz, len(frame))) for o in group]
                outs = model.predict_many(hists, hz, num_samples, futures=futs, seed=seed)
                for o, f in zip(group, outs):
                    samples_at[o] = f.samples
            dt = time.time() - t0
            for h in horizons:
                os_ = split.origins(part, h, stride)
                if not os_:
                    continue
                _, _, y = rolling_pairs(frame, os_, h)
                s = np.stack([samples_at[o][:, :h] for o in os_], 1)
                res[h][name] = {**window_metrics(y, s), "windows": len(os_), "sample_s": dt, "windows_per_s": len(origins) / max(dt, 1e-9)}
                if keep_samples:
                    res[h][name].update(_y=y, _samples=s)
        else:
            for h in horizons:
                m = model[h] if isinstance(model, Mapping) else model
                os_ = split.origins(part, h, stride)
                if not os_:
                    continue
                hists, futs, y = rolling_pairs(frame, os_, h)
                t0 = time.time()
                outs = m.predict_many(hists, h, num_samples, futures=futs, seed=seed)
                dt = time.time() - t0
                s = np.stack([o.samples for o in outs], 1)
                res[h][name] = {**window_metrics(y, s), "windows": len(os_), "sample_s": dt, "windows_per_s": len(os_) / max(dt, 1e-9)}
                if keep_samples:
                    res[h][name].update(_y=y, _samples=s)
    return res

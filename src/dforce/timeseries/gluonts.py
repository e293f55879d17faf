"""GluonTS adapter: a :class:`DiffusionForcingEstimator` / :class:`DiffusionForcingPredictor` pair
around :class:`~dforce.timeseries.Forecaster`, so that dforce plugs into GluonTS's
``make_evaluation_predictions``, ``backtest_metrics``, ``Evaluator`` and ``MultivariateEvaluator``.

    from gluonts.dataset.multivariate_grouper import MultivariateGrouper
    from dforce.timeseries.gluonts import DiffusionForcingEstimator

    train = MultivariateGrouper(max_target_dim=8)(univariate_train)     # one [8, T] entry
    predictor = DiffusionForcingEstimator(prediction_length=30, max_steps=300).train(train)
    forecasts = list(predictor.predict(test, num_samples=100))         # SampleForecast [100, 30, 8]

Only this module imports ``gluonts`` (``pip install "dforce[gluonts]"``). It composes the
Forecaster; it does not train or sample by itself:

- **multivariate entries** (``target`` [D, T], e.g. from ``MultivariateGrouper``): one joint-mode
  Forecaster over the D series (one token = one time step of all series, the Diffusion Forcing /
  TimeGrad protocol). Training takes exactly one such entry (what the grouper gives);
  forecasts are ``SampleForecast`` with samples [num_samples, prediction_length, D].
- **univariate entries** (``target`` [T]): one series -> a joint-mode Forecaster with D = 1; several
  series -> a global-mode Forecaster (each series its own sequence, a learned series id), the
  series aligned on one time axis (NaN outside each series' span, which the Forecaster masks).
  Series are matched by ``item_id`` (or by position when the entries have none); forecasts are
  [num_samples, prediction_length].

``predict`` batches: up to ``batch_size`` entries go to one :meth:`Forecaster.predict_many`
call, whose sample paths share network calls (``max_batch`` paths per call, the KV cache). In
global mode the entries of a batch that end at the same time step share one wide frame, so a
test set of N series at one forecast date is one batched call (entries of series that are absent
at a date are still sampled, as NaN-history sequences, and dropped).

``feat_dynamic_real`` (known-future covariates, [K, T] in training and [K, T + prediction_length]
in test inputs) is used with ``use_feat_dynamic_real=True`` for joint-mode models (shared by the
series).

:func:`gluonts_crps_sum` scores sample arrays with GluonTS's ``MultivariateEvaluator``
(``m_sum_mean_wQuantileLoss``, the usual CRPS-sum); :func:`crps_sum_gap_bound` bounds its
difference to :func:`dforce.timeseries.crps_sum`, which comes only from the quantile estimator.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

try:
    import gluonts
    from gluonts.dataset.field_names import FieldName
    from gluonts.model.estimator import Estimator
    from gluonts.model.forecast import SampleForecast
    from gluonts.model.predictor import Predictor
except ImportError as err:  # pragma: no cover - exercised only without gluonts
    raise ImportError('dforce.timeseries.gluonts needs GluonTS, which is not installed: pip install "dforce[gluonts]"') from err

from dforce.timeseries.data import TimeSeriesFrame
from dforce.timeseries.forecaster import Forecaster, ForecasterConfig
from dforce.timeseries.metrics import QUANTILES, sample_quantiles

__all__ = ["DiffusionForcingEstimator", "DiffusionForcingPredictor", "gluonts_crps_sum", "crps_sum_gap_bound"]

COV_PREFIX = "feat_dynamic_real_"


# ---------------------------------------------------------------------------- entries <-> frames
def _period_index(start, length: int) -> pd.PeriodIndex:
    start = start if isinstance(start, pd.Period) else pd.Period(start)
    return pd.period_range(start, periods=length, freq=start.freq)


def _target(entry) -> np.ndarray:
    """The entry's target as [T, D] (D = 1 for a univariate target)."""
    t = np.asarray(entry[FieldName.TARGET], dtype=np.float64)
    if t.ndim == 1:
        return t[:, None]
    if t.ndim != 2:
        raise ValueError(f"a GluonTS target must be [T] or [D, T], got shape {t.shape}")
    return t.T


def _covariates(entry, length: int, use: bool) -> tuple[Optional[np.ndarray], list[str]]:
    if not use:
        return None, []
    if FieldName.FEAT_DYNAMIC_REAL not in entry:
        raise ValueError("use_feat_dynamic_real=True but an entry has no 'feat_dynamic_real'")
    f = np.asarray(entry[FieldName.FEAT_DYNAMIC_REAL], dtype=np.float64)
    f = f[None] if f.ndim == 1 else f
    if f.shape[1] < length:
        raise ValueError(f"feat_dynamic_real covers {f.shape[1]} steps, the entry needs {length}")
    return f[:, :length].T[:, None, :], [f"{COV_PREFIX}{k}" for k in range(f.shape[0])]


def _entry_frame(entry, use_covariates: bool, columns: Optional[list[str]] = None) -> TimeSeriesFrame:
    values = _target(entry)
    index = _period_index(entry[FieldName.START], len(values))
    cov, names = _covariates(entry, len(values), use_covariates)
    cols = columns if columns is not None else [str(i) for i in range(values.shape[1])]
    return TimeSeriesFrame(values, index, cols, cov, names, index.freqstr)


def _item_key(entry, position: int) -> str:
    item = entry.get(FieldName.ITEM_ID)
    return str(item) if item is not None else str(position)


def _wide_frame(entries: Sequence[dict], keys: Sequence[str], columns: Sequence[str], end: Optional[pd.Period] = None) -> TimeSeriesFrame:
    """Univariate entries aligned on one period axis as the columns ``columns`` (NaN elsewhere)."""
    starts = [pd.Period(e[FieldName.START]) if not isinstance(e[FieldName.START], pd.Period) else e[FieldName.START] for e in entries]
    freqs = {s.freqstr for s in starts}
    if len(freqs) != 1:
        raise ValueError(f"the series have different frequencies {sorted(freqs)}")
    lengths = [len(np.asarray(e[FieldName.TARGET])) for e in entries]
    first = min(starts)
    last = max(s + (n - 1) for s, n in zip(starts, lengths)) if end is None else end
    index = pd.period_range(first, last, freq=first.freq)
    col = {c: i for i, c in enumerate(columns)}
    values = np.full((len(index), len(columns)), np.nan)
    for e, k, s, n in zip(entries, keys, starts, lengths):
        if k not in col:
            raise ValueError(f"series {k!r} was not in the training data (known: {list(columns)[:5]}...)")
        off = (s - first).n
        values[off : off + n, col[k]] = np.asarray(e[FieldName.TARGET], dtype=np.float64)
    return TimeSeriesFrame(values, index, list(columns), freq=index.freqstr)


# ---------------------------------------------------------------------------- the predictor
class DiffusionForcingPredictor(Predictor):
    """A trained :class:`Forecaster` as a GluonTS ``Predictor``.

    Args:
        forecaster: a fitted Forecaster.
        prediction_length: steps per forecast (any length: longer than the model's window rolls out).
        multivariate: entries have a [D, T] target (D = the forecaster's series) instead of [T].
        item_ids: global mode: the item id of each forecaster series (its columns by default).
        use_feat_dynamic_real: pass ``feat_dynamic_real`` as known-future covariates.
        batch_size: entries per :meth:`Forecaster.predict_many` call.
        seed: base seed of the sampler (batch ``i`` uses ``seed + i``); None: the model's seed.
        sampling: sampling overrides for every call (``steps``, ``eta``, ``scheduling``...).
    """

    def __init__(
        self,
        forecaster: Forecaster,
        prediction_length: int,
        *,
        multivariate: Optional[bool] = None,
        item_ids: Optional[Sequence[str]] = None,
        use_feat_dynamic_real: bool = False,
        batch_size: int = 64,
        seed: Optional[int] = None,
        lead_time: int = 0,
        **sampling,
    ) -> None:
        super().__init__(prediction_length=prediction_length, lead_time=lead_time)
        if lead_time != 0:
            raise ValueError("DiffusionForcingPredictor supports lead_time=0 only")
        forecaster._require()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        f = forecaster.features
        self.forecaster = forecaster
        self.global_mode = forecaster.config.mode == "global"
        self.multivariate = (not self.global_mode and f.num_series > 1) if multivariate is None else bool(multivariate)
        if self.multivariate and self.global_mode:
            raise ValueError("a global-mode forecaster forecasts univariate entries; train a joint-mode one for [D, T] targets")
        if not self.global_mode and not self.multivariate and f.num_series != 1:
            raise ValueError(f"the joint-mode forecaster has {f.num_series} series: its entries are multivariate ([D, T] targets)")
        self.item_ids = [str(i) for i in (item_ids if item_ids is not None else f.columns)] if self.global_mode else None
        if self.item_ids is not None and len(self.item_ids) != f.num_series:
            raise ValueError(f"{len(self.item_ids)} item ids for {f.num_series} series")
        if use_feat_dynamic_real and self.global_mode:
            raise ValueError("use_feat_dynamic_real is supported for joint-mode (multivariate or single-series) models only")
        self.use_feat_dynamic_real = use_feat_dynamic_real
        self.batch_size = batch_size
        self.seed = seed
        self.sampling = sampling

    # ---------------------------------------------------------------- prediction
    def predict(self, dataset: Iterable[dict], num_samples: Optional[int] = 100, **kwargs) -> Iterator[SampleForecast]:
        """``SampleForecast`` per entry, in order: samples [num_samples, prediction_length] for
        univariate and [num_samples, prediction_length, D] for multivariate entries, starting one
        step after the entry's target. ``kwargs`` override sampling options for this call."""
        num_samples = 100 if num_samples is None else int(num_samples)
        sampling = {**self.sampling, **kwargs}
        batch: list[tuple[int, dict]] = []
        call = 0
        for pos, entry in enumerate(dataset):
            batch.append((pos, entry))
            if len(batch) == self.batch_size:
                yield from self._predict_batch(batch, num_samples, call, sampling)
                batch, call = [], call + 1
        if batch:
            yield from self._predict_batch(batch, num_samples, call, sampling)

    def _seed(self, call: int) -> int:
        base = self.forecaster.config.seed if self.seed is None else self.seed
        return base + call

    def _predict_batch(self, batch, num_samples: int, call: int, sampling: dict) -> list[SampleForecast]:
        fc, h = self.forecaster, self.prediction_length
        if self.global_mode:
            return self._predict_global(batch, num_samples, call, sampling)
        hists, futs = [], []
        d = fc.features.num_series
        for _, entry in batch:
            t = np.asarray(entry[FieldName.TARGET])
            if (t.ndim == 2) != self.multivariate or (t.ndim == 2 and t.shape[0] != d):
                want = f"[{d}, T]" if self.multivariate else "[T]"
                raise ValueError(f"entry {entry.get(FieldName.ITEM_ID)!r}: target of shape {t.shape}, the model forecasts targets {want}")
            n = t.shape[-1]
            if self.use_feat_dynamic_real:
                full = _entry_frame({**entry, FieldName.TARGET: np.concatenate([np.atleast_2d(t), np.full((np.atleast_2d(t).shape[0], h), np.nan)], 1)},
                                    True, fc.features.columns)
                hists.append(full.slice(0, n))
                futs.append(full.slice(n, n + h))
            else:
                hists.append(_entry_frame(entry, False, fc.features.columns))
        outs = fc.predict_many(hists, h, num_samples, futures=futs or None, seed=self._seed(call), **sampling)
        result = []
        for (_, entry), hist, out in zip(batch, hists, outs):
            s = out.samples.astype(np.float32)
            result.append(SampleForecast(s if self.multivariate else s[..., 0], start_date=hist.index[-1] + 1,
                                         item_id=entry.get(FieldName.ITEM_ID), info=None))
        return result

    def _predict_global(self, batch, num_samples: int, call: int, sampling: dict) -> list[SampleForecast]:
        fc, h = self.forecaster, self.prediction_length
        groups: dict[pd.Period, list[int]] = {}
        keys, ends = [], []
        for i, (pos, entry) in enumerate(batch):
            if np.asarray(entry[FieldName.TARGET]).ndim != 1:
                raise ValueError("a global-mode model forecasts univariate entries ([T] targets)")
            start = entry[FieldName.START]
            end = _period_index(start, 1)[0] + (len(entry[FieldName.TARGET]) - 1)
            key = _item_key(entry, pos)
            if key not in self.item_ids:
                raise ValueError(f"series {key!r} was not in the training data (known: {self.item_ids[:5]}...)")
            keys.append(key)
            ends.append(end)
            groups.setdefault(end, []).append(i)
        order = list(groups)
        frames = []
        for end in order:
            members = groups[end]
            frame = _wide_frame([batch[i][1] for i in members], [keys[i] for i in members], self.item_ids, end=end)
            frames.append(TimeSeriesFrame(frame.values, frame.index, list(fc.features.columns), freq=frame.freq))
        outs = fc.predict_many(frames, h, num_samples, seed=self._seed(call), **sampling)
        col = {k: j for j, k in enumerate(self.item_ids)}
        result: list[Optional[SampleForecast]] = [None] * len(batch)
        for end, out in zip(order, outs):
            for i in groups[end]:
                result[i] = SampleForecast(out.samples[..., col[keys[i]]].astype(np.float32), start_date=end + 1,
                                           item_id=batch[i][1].get(FieldName.ITEM_ID), info=None)
        return result  # type: ignore[return-value]

    # ---------------------------------------------------------------- persistence
    def serialize(self, path: Path) -> None:
        """Write ``gluonts-config.json``, the forecaster (``forecaster/``) and ``dforce-predictor.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        super().serialize(path)
        self.forecaster.save(path / "forecaster")
        opts = {"prediction_length": self.prediction_length, "multivariate": self.multivariate, "item_ids": self.item_ids,
                "use_feat_dynamic_real": self.use_feat_dynamic_real, "batch_size": self.batch_size, "seed": self.seed,
                "sampling": self.sampling}
        (path / "dforce-predictor.json").write_text(json.dumps(opts, indent=2))

    @classmethod
    def deserialize(cls, path: Path, **kwargs) -> "DiffusionForcingPredictor":
        path = Path(path)
        opts = json.loads((path / "dforce-predictor.json").read_text())
        fc = Forecaster.load(path / "forecaster", map_location=kwargs.get("map_location", "cpu"))
        sampling = opts.pop("sampling")
        return cls(fc, **opts, **sampling)


# ---------------------------------------------------------------------------- the estimator
class DiffusionForcingEstimator(Estimator):
    """A GluonTS ``Estimator`` that trains a :class:`Forecaster`.

    Args:
        prediction_length: forecast horizon (also the Forecaster's ``prediction_length``).
        context_length: observed steps the model conditions on (default: ``prediction_length``).
        config: a full :class:`ForecasterConfig` (its context / prediction lengths are replaced);
            or give Forecaster options as keywords (``max_steps``, ``width``, ``mode``...).
        use_feat_dynamic_real: use ``feat_dynamic_real`` as known-future covariates (joint mode).
        batch_size_predict: entries per batched prediction call of the returned predictor.
        seed: the predictor's sampling seed (None: the config's ``seed``).

    ``mode`` defaults to ``joint`` for multivariate data or a single series and ``global`` for
    several univariate series (whose ``val_metric`` then defaults to ``crps``).
    """

    def __init__(
        self,
        prediction_length: int,
        context_length: Optional[int] = None,
        *,
        config: Optional[ForecasterConfig] = None,
        use_feat_dynamic_real: bool = False,
        batch_size_predict: int = 64,
        seed: Optional[int] = None,
        lead_time: int = 0,
        **forecaster_options,
    ) -> None:
        super().__init__(lead_time=lead_time)
        if lead_time != 0:
            raise ValueError("DiffusionForcingEstimator supports lead_time=0 only")
        if config is not None and forecaster_options:
            raise TypeError("give either config= or Forecaster options as keywords, not both")
        self.prediction_length = int(prediction_length)
        self.context_length = int(context_length or prediction_length)
        base = asdict(config) if config is not None else dict(forecaster_options)
        base.update(prediction_length=self.prediction_length, context_length=self.context_length)
        self._options = base
        Forecaster(**base)  # fail early on an unknown or bad option (builds the config only)
        self.use_feat_dynamic_real = use_feat_dynamic_real
        self.batch_size_predict = batch_size_predict
        self.seed = seed

    def _frames(self, training_data, validation_data):
        entries = list(training_data)
        if not entries:
            raise ValueError("the training data set is empty")
        dims = {np.asarray(e[FieldName.TARGET]).ndim for e in entries}
        if dims - {1, 2} or len(dims) != 1:
            raise ValueError(f"targets must all be [T] or all be [D, T], got ndim {sorted(dims)}")
        multivariate = dims == {2}
        opts = dict(self._options)
        if multivariate:
            if len(entries) != 1:
                raise ValueError(f"multivariate training data must be one [D, T] entry (group the series with "
                                 f"gluonts.dataset.multivariate_grouper.MultivariateGrouper), got {len(entries)} entries")
            if opts.setdefault("mode", "joint") != "joint":
                raise ValueError("multivariate ([D, T]) targets need mode='joint'")
            train = _entry_frame(entries[0], self.use_feat_dynamic_real)
            keys = None
        elif len(entries) == 1 and opts.get("mode", "joint") == "joint":
            opts["mode"] = "joint"
            train = _entry_frame(entries[0], self.use_feat_dynamic_real)
            keys = None
        else:
            if opts.setdefault("mode", "global") != "global":
                raise ValueError("several univariate series need mode='global' (or group them into one [D, T] entry with MultivariateGrouper)")
            # series of their own, possibly ending at different dates: select on the mean CRPS
            # (CRPS-sum needs every series at every validation step)
            opts.setdefault("val_metric", "crps")
            if self.use_feat_dynamic_real:
                raise ValueError("use_feat_dynamic_real is supported for joint-mode models (multivariate or single-series data) only")
            keys = [_item_key(e, i) for i, e in enumerate(entries)]
            if len(set(keys)) != len(keys):
                raise ValueError("the univariate training series must have distinct item_id values")
            train = _wide_frame(entries, keys, keys)
        val = None
        if validation_data is not None:
            ventries = list(validation_data)
            if keys is None:
                if len(ventries) != 1:
                    raise ValueError(f"validation data for a joint-mode model must be one entry, got {len(ventries)}")
                full = _entry_frame(ventries[0], self.use_feat_dynamic_real, list(train.columns))
            else:
                full = _wide_frame(ventries, [_item_key(e, i) for i, e in enumerate(ventries)], keys)
            after = np.asarray(full.index > train.index[-1])
            if not after.any():
                raise ValueError("the validation series must extend past the end of the training series (GluonTS convention: "
                                 "the same series, longer); nothing follows the training data")
            first = int(np.argmax(after))
            if full.index[first] != train.index[-1] + 1:
                raise ValueError(f"the validation data must continue the training data at {train.index[-1] + 1}, it starts at {full.index[first]}")
            val = full.slice(first, None)
        return opts, train, val, multivariate, keys

    def create_forecaster(self, **overrides) -> Forecaster:
        return Forecaster(ForecasterConfig(**{**self._options, **overrides}))

    def train(self, training_data, validation_data=None, **kwargs) -> DiffusionForcingPredictor:
        """Fit a Forecaster on ``training_data`` (validation data, when given, selects the checkpoint
        and calibrates the spread, see :meth:`Forecaster.fit`) and wrap it in a predictor."""
        opts, train, val, multivariate, keys = self._frames(training_data, validation_data)
        fc = Forecaster(ForecasterConfig(**opts)).fit(train, val=val)
        return DiffusionForcingPredictor(fc, self.prediction_length, multivariate=multivariate, item_ids=keys,
                                         use_feat_dynamic_real=self.use_feat_dynamic_real, batch_size=self.batch_size_predict,
                                         seed=self.seed)


# ---------------------------------------------------------------------------- metrics
def gluonts_crps_sum(y: np.ndarray, samples: np.ndarray, quantiles: Sequence[float] = QUANTILES, freq: str = "D") -> float:
    """CRPS-sum of ``samples`` [S, W, H, D] against ``y`` [W, H, D] by GluonTS's
    ``MultivariateEvaluator`` (``m_sum_mean_wQuantileLoss`` with ``target_agg_funcs={'sum': np.sum}``).

    The W windows become W forecasts on consecutive, non-overlapping (synthetic) periods; the
    metric does not depend on the dates."""
    from gluonts.evaluation import MultivariateEvaluator

    y, samples = np.asarray(y, dtype=np.float64), np.asarray(samples, dtype=np.float64)
    if y.ndim != 3 or samples.shape[1:] != y.shape:
        raise ValueError(f"need y [W, H, D] and samples [S, W, H, D], got {y.shape} and {samples.shape}")
    w, h, d = y.shape
    if d < 2:
        raise ValueError("MultivariateEvaluator needs at least two series")
    start = pd.Period("2000-01-01", freq=freq)
    targets, forecasts = [], []
    for i in range(w):
        idx = pd.period_range(start + i * h, periods=h, freq=freq)
        targets.append(pd.DataFrame(y[i], index=idx))
        forecasts.append(SampleForecast(samples[:, i], start_date=idx[0]))
    ev = MultivariateEvaluator(quantiles=tuple(quantiles), target_agg_funcs={"sum": np.sum}, num_workers=0)
    agg, _ = ev(iter(targets), iter(forecasts), num_series=w)
    return float(agg["m_sum_mean_wQuantileLoss"])


def crps_sum_gap_bound(y: np.ndarray, samples: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> float:
    """Upper bound of ``|crps_sum - gluonts_crps_sum|`` on these samples.

    Both are ``mean_q sum 2 |(y - q_hat)(1{y <= q_hat} - q)| / sum |y|`` on the series sums; they
    differ only in the quantile estimate ``q_hat``: dforce (``np.quantile``) interpolates linearly
    between order statistics, GluonTS's ``SampleForecast.quantile`` takes the order statistic
    ``round((S - 1) q)``. The pinball loss is Lipschitz in ``q_hat`` with constant
    ``2 max(q, 1 - q)``, so the gap is at most ``mean_q 2 max(q, 1 - q) sum |dq_hat| / sum |y|``
    -- zero when every ``(S - 1) q`` is an integer (e.g. S = 21 or 101 for the 19 levels 0.05..0.95).
    """
    y, samples = np.asarray(y, dtype=np.float64).sum(-1), np.asarray(samples, dtype=np.float64).sum(-1)
    s = samples.shape[0]
    srt = np.sort(samples, axis=0)
    lin = sample_quantiles(samples, quantiles)
    total = 0.0
    for i, q in enumerate(quantiles):
        nearest = srt[int(np.round((s - 1) * q))]
        total += 2 * max(q, 1 - q) * np.abs(nearest - lin[i]).sum()
    return float(total / len(quantiles) / np.abs(y).sum())

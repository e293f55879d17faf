"""``Forecaster``: probabilistic multivariate forecasting with Diffusion Forcing.

    fc = Forecaster(context_length=30, prediction_length=30, max_steps=2000).fit(frame)
    fc_out = fc.predict(history, horizon=30, num_samples=100)
    fc_out.quantiles()            # long DataFrame: time, series, mean, q0.05 ... q0.95
    fc.save("model/"); Forecaster.load("model/")

Each time step is one token. ``mode='joint'`` (the paper's setup) puts all D series of a time
step in one token of size D, so samples are coherent across series (what CRPS-sum rewards);
``mode='global'`` makes every series its own sequence (token size 1) with a one-hot series id in
the condition -- a learned series embedding, since the backbone projects the condition linearly
-- which suits many short series (``tourism``) and series with unaligned gaps (``pedestrian``).

Per-token condition ``cond`` [B, C + H, Cc]: calendar Fourier features, covariates known in the
future (normalised), lagged targets (value and availability flag; a lag that falls after the
forecast origin is unavailable, so training draws a random origin per window), series one-hot.

Missing values: a frame with a missing value (joint mode: any series missing) is a masked frame:
pure noise in and zero loss in training, pure noise as context when forecasting. Never imputed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from dforce.backbones import Transformer
from dforce.model import DiffusionForcing
from dforce.sampling.rollout import SamplingConfig
from dforce.timeseries.data import Scaler, TimeSeriesFrame, calendar_features, from_dataframe, future_index
from dforce.timeseries.metrics import sample_quantiles
from dforce.timeseries.rollout import forecast_rollout

DEFAULT_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


# ---------------------------------------------------------------------------- the output
@dataclass
class Forecast:
    """Sample paths of a forecast: ``samples`` [S, H, D] on the original scale.

    ``index`` holds the H future time stamps and ``columns`` the D series names.
    """

    samples: np.ndarray
    index: pd.Index
    columns: list[str]

    @property
    def horizon(self) -> int:
        return self.samples.shape[1]

    def quantile(self, q: float) -> pd.DataFrame:
        """The ``q`` quantile as a wide DataFrame [H, D]."""
        return pd.DataFrame(np.quantile(self.samples, q, axis=0), index=self.index, columns=self.columns)

    def median(self) -> pd.DataFrame:
        return self.quantile(0.5)

    def mean(self) -> pd.DataFrame:
        return pd.DataFrame(self.samples.mean(0), index=self.index, columns=self.columns)

    def quantiles(self, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Long DataFrame with columns ``time, series, mean, q0.05, ...`` (one row per step and series)."""
        qs = sample_quantiles(self.samples, quantiles)  # [Q, H, D]
        h, d = self.samples.shape[1:]
        out = pd.DataFrame({"time": np.repeat(np.asarray(self.index), d), "series": np.tile(self.columns, h), "mean": self.samples.mean(0).reshape(-1)})
        for i, q in enumerate(quantiles):
            out[f"q{q:g}"] = qs[i].reshape(-1)
        return out

    def sample_frame(self) -> pd.DataFrame:
        """Long DataFrame of every sample path: ``sample, time, series, value``."""
        s, h, d = self.samples.shape
        return pd.DataFrame(
            {
                "sample": np.repeat(np.arange(s), h * d),
                "time": np.tile(np.repeat(np.asarray(self.index), d), s),
                "series": np.tile(self.columns, s * h),
                "value": self.samples.reshape(-1),
            }
        )


# ---------------------------------------------------------------------------- config
@dataclass
class ForecasterConfig:
    """Every option of :class:`Forecaster` (plain JSON types, saved with the model).

    Data and features:
        context_length: observed steps the model conditions on (the paper: = prediction_length).
        prediction_length: steps forecast per training window; window = context + prediction.
            Longer horizons roll out with the sliding window.
        mode: ``joint`` (one token = all series of a step) or ``global`` (one token = one series).
        scaling: ``standard`` (per-series mean / std of the training data) or ``anchor`` (subtract
            the last observed context value, divide by the std of prediction_length-step changes).
        lags: lagged targets given as covariates (e.g. ``[48, 336]`` for half-hourly data).
        calendar: add calendar Fourier features.
        use_covariates: use the frame's known-future covariates.
        series_ids: one-hot series id in the condition (global mode).
        patch_length: time steps per token (P). With P > 1 a token holds P consecutive steps (P * D
            values in joint mode) and its condition the P steps' features, as in PatchTST; the
            sequence is P times shorter, so training and sampling are cheaper and one token sees a
            whole season. context_length and prediction_length must be multiples of P; a forecast
            horizon is rounded up to whole patches and cut.
    Model (the core's ``DiffusionForcing`` + ``Transformer``):
        width, depth, heads, dropout, noise_schedule, parametrization, weighting,
        training_noise: ``independent`` (Diffusion Forcing), ``teacher_forcing`` or ``full_sequence``.
    Training (a plain PyTorch loop, :meth:`Forecaster.fit`):
        max_steps, batch_size, lr, weight_decay, warmup_steps, grad_clip, ema_decay (None:
        ``min(0.999, 1 - 10 / max_steps)``, since the EMA has no bias correction and a short run
        would otherwise keep mostly its initial weights), precision (``auto``: ``bf16-mixed`` on a
        CUDA GPU with bf16, ``32-true`` on a CPU, as :func:`dforce.training.lightning.resolved_precision`;
        or either of those), seed, out_dir (writes ``train_log.csv``), progress.
        lr_schedule: ``cosine`` (linear warm-up, then cosine decay to ``min_lr_ratio * lr``) or
            ``constant`` (warm-up, then constant).
    Model selection (when ``fit(train, val=...)`` gets validation data):
        val_every: score the EMA weights on the validation windows every n steps; the best
            checkpoint is kept (the last one when no validation data is given).
        val_metric: ``crps_sum`` (CRPS-sum, for several series), ``crps`` (mean CRPS) or ``mse``
            (of the median); lower is better.
        val_windows, val_samples: validation forecast windows (evenly spaced over the validation
            rows, ``prediction_length`` steps each) and sample paths per window.
        patience: stop after this many validations without improvement (None: never stop early).
        calibrate: after selection, choose ``spread`` on the validation windows (see
            :func:`calibrate_spread`) by ``calibration``: ``score`` (the minimum of ``val_metric``
            over a grid, mean CRPS when it is ``mse``: sharpest for a proper score) or ``coverage``
            (the spread whose central 90% intervals cover closest to 90% of the validation targets:
            intervals that cover what they claim; see ``docs/timeseries.md`` for when each wins).
        spread: sample paths are scaled about their per-step median by this factor at prediction
            time (1 = as sampled); set by ``calibrate``.
    Sampling:
        scheduling (``autoregressive``, ``pyramid``, ``full_sequence``), steps, eta,
        stabilization_level, uncertainty_scale, sample_precision (``fp32``/``bf16``),
        history (``noise``, ``relabel`` or ``replacement``, as in ``SamplingConfig``; None = ``replacement`` for full-sequence
        training, else ``clean``), max_batch (sample paths per network batch), cache (``window``:
        the core's exact KV cache, used when no context frame is missing; ``none``).
    """

    context_length: int = 30
    prediction_length: int = 30
    mode: str = "joint"
    scaling: str = "standard"
    lags: list[int] = field(default_factory=list)
    calendar: bool = True
    use_covariates: bool = True
    series_ids: bool = True
    patch_length: int = 1
    width: int = 128
    depth: int = 4
    heads: int = 4
    dropout: float = 0.0
    noise_schedule: str = "cosine"
    parametrization: str = "v"
    weighting: str = "min_snr"
    training_noise: str = "independent"
    max_steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: Optional[float] = None
    precision: str = "auto"
    seed: int = 0
    out_dir: Optional[str] = None
    progress: bool = False
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    val_every: int = 100
    val_metric: str = "crps_sum"
    val_windows: int = 8
    val_samples: int = 32
    patience: Optional[int] = None
    calibrate: bool = True
    calibration: str = "coverage"
    spread: float = 1.0
    scheduling: str = "autoregressive"
    steps: int = 50
    eta: float = 1.0
    stabilization_level: float = 0.02
    uncertainty_scale: float = 1.0
    sample_precision: str = "fp32"
    history: Optional[str] = None
    max_batch: int = 4096
    cache: str = "window"

    def check(self) -> "ForecasterConfig":
        if self.context_length < 1 or self.prediction_length < 1:
            raise ValueError(f"context_length and prediction_length must be >= 1, got {self.context_length}, {self.prediction_length}")
        if self.patch_length < 1 or self.context_length % self.patch_length or self.prediction_length % self.patch_length:
            raise ValueError(f"context_length ({self.context_length}) and prediction_length ({self.prediction_length}) must be multiples of "
                             f"patch_length ({self.patch_length}); choose a patch_length that divides both")
        if self.mode not in ("joint", "global"):
            raise ValueError(f"mode must be 'joint' or 'global', got {self.mode!r}")
        if self.scaling not in ("standard", "anchor"):
            raise ValueError(f"scaling must be 'standard' or 'anchor', got {self.scaling!r}")
        if any(int(l) < 1 for l in self.lags):
            raise ValueError(f"lags must be positive integers, got {self.lags}")
        if self.scheduling not in ("autoregressive", "pyramid", "full_sequence", "trapezoid"):
            raise ValueError(f"scheduling must be autoregressive, pyramid, full_sequence or trapezoid, got {self.scheduling!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.val_metric not in ("crps_sum", "crps", "mse"):
            raise ValueError(f"val_metric must be crps_sum, crps or mse, got {self.val_metric!r}")
        if self.calibration not in ("score", "coverage"):
            raise ValueError(f"calibration must be 'score' or 'coverage', got {self.calibration!r}")
        if self.cache not in ("window", "none"):
            raise ValueError(f"cache must be 'window' or 'none', got {self.cache!r}")
        if self.precision not in ("auto", "bf16-mixed", "32-true"):
            raise ValueError(f"precision must be 'auto', 'bf16-mixed' or '32-true', got {self.precision!r}")
        if self.spread <= 0 or self.val_every < 1 or self.val_windows < 1 or self.val_samples < 2:
            raise ValueError("spread must be > 0, val_every and val_windows >= 1, val_samples >= 2")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        self.lags = sorted({int(l) for l in self.lags})
        return self

    @property
    def window(self) -> int:
        """Steps per training window (context + prediction)."""
        return self.context_length + self.prediction_length

    @property
    def window_tokens(self) -> int:
        return self.window // self.patch_length

    def sampling_config(self) -> SamplingConfig:
        stab = self.stabilization_level if self.training_noise != "teacher_forcing" else 0.0
        # Without a cache, autoregressive sampling takes one new token per window (the causal model
        # never needs the pure-noise tokens after the one being denoised, so the window is cut
        # there: half the compute). With the KV cache (``cache='window'``) a window of
        # ``prediction_length`` new tokens is cheaper: the cache re-encodes only the token being
        # denoised and trims the trailing pure-noise ones, and the whole window is re-encoded only
        # once per ``prediction_length`` tokens instead of once per token.
        one = self.scheduling == "autoregressive" and self.cache == "none"
        return SamplingConfig(
            scheduling=self.scheduling, steps=self.steps, eta=self.eta, stabilization_level=stab,
            uncertainty_scale=self.uncertainty_scale, history_len=self.context_length // self.patch_length,
            chunk_size=1 if one else None, history=self.resolved_history,
        )

    @property
    def resolved_history(self) -> str:
        """How history is fed: ``history`` if set, else replacement for full-sequence models."""
        if self.history is not None:
            return self.history
        return "replacement" if self.training_noise == "full_sequence" else "noise"


# ---------------------------------------------------------------------------- features
class Features:
    """Turns raw values into normalised tokens and per-token conditions (fitted on training data)."""

    def __init__(self, cfg: ForecasterConfig, frame: Optional[TimeSeriesFrame] = None, state: Optional[dict] = None) -> None:
        self.cfg = cfg
        if state is not None:
            self.__dict__.update({k: v for k, v in state.items() if k not in ("scaler", "cov_loc", "cov_scale")})
            self.scaler = Scaler.from_state(state["scaler"])
            self.cov_loc = np.asarray(state["cov_loc"]) if state["cov_loc"] is not None else None
            self.cov_scale = np.asarray(state["cov_scale"]) if state["cov_scale"] is not None else None
            return
        assert frame is not None
        self.columns = list(frame.columns)
        self.freq = frame.freq
        self.covariate_names = list(frame.covariate_names) if cfg.use_covariates else []
        self.cov_shared = frame.covariates is None or frame.covariates.shape[1] == 1
        self.scaler = Scaler(cfg.scaling).fit(frame.values, lag=cfg.prediction_length)
        if self.covariate_names:
            cov = frame.covariates.reshape(len(frame), -1, frame.num_covariates)
            self.cov_loc = cov.mean((0, 1))
            self.cov_scale = np.maximum(cov.std((0, 1)), 1e-6)
        else:
            self.cov_loc = self.cov_scale = None
        self.calendar_names = calendar_features(frame.index[:2], frame.freq)[1] if cfg.calendar else []

    def state(self) -> dict:
        return {
            "columns": self.columns, "freq": self.freq, "covariate_names": self.covariate_names, "cov_shared": self.cov_shared,
            "scaler": self.scaler.state(), "calendar_names": self.calendar_names,
            "cov_loc": None if self.cov_loc is None else self.cov_loc.tolist(),
            "cov_scale": None if self.cov_scale is None else self.cov_scale.tolist(),
        }

    @property
    def num_series(self) -> int:
        return len(self.columns)

    @property
    def step_dim(self) -> int:
        """Values per time step in a token: D (joint) or 1 (global)."""
        return self.num_series if self.cfg.mode == "joint" else 1

    @property
    def token_dim(self) -> int:
        return self.step_dim * self.cfg.patch_length

    @property
    def cond_dim(self) -> int:
        per = self.num_series if self.cfg.mode == "joint" else 1
        n = len(self.calendar_names)
        if self.covariate_names:
            n += len(self.covariate_names) * (1 if self.cov_shared else per)
        n += 2 * len(self.cfg.lags) * per
        if self.cfg.mode == "global" and self.cfg.series_ids:
            n += self.num_series
        return n * self.cfg.patch_length

    def check_frame(self, frame: TimeSeriesFrame, what: str) -> None:
        if list(frame.columns) != self.columns:
            raise ValueError(f"{what} has series {frame.columns[:5]}..., the model was trained on {self.columns[:5]}...")
        if self.covariate_names:
            if frame.covariates is None or list(frame.covariate_names)[: len(self.covariate_names)] != self.covariate_names:
                raise ValueError(f"{what} lacks the covariates {self.covariate_names} the model was trained with")

    def static(self, frame: TimeSeriesFrame, index: Optional[pd.Index] = None) -> np.ndarray:
        """Calendar + covariate features [T, Dc, Kc] (Dc = 1 shared or D)."""
        parts = []
        idx = frame.index if index is None else index
        if self.calendar_names:
            parts.append(np.broadcast_to(calendar_features(idx, self.freq)[0][:, None, :], (len(idx), 1, len(self.calendar_names))))
        if self.covariate_names:
            cov = frame.covariates[:, :, : len(self.covariate_names)]
            parts.append((cov - self.cov_loc) / self.cov_scale)
        if not parts:
            return np.zeros((len(idx), 1, 0))
        dc = max(p.shape[1] for p in parts)
        return np.concatenate([np.broadcast_to(p, (len(idx), dc, p.shape[2])) for p in parts], -1)

    def anchor(self, values: np.ndarray, pos: int) -> np.ndarray:
        """Per-series location [D] for a window whose last context row is ``pos`` (anchor scaling)."""
        if self.scaler.method != "anchor":
            return self.scaler.loc
        past = values[: pos + 1]
        ok = ~np.isnan(past)
        loc = self.scaler.loc.copy()
        has = ok.any(0)
        last = past.shape[0] - 1 - np.argmax(ok[::-1], axis=0)
        loc[has] = past[last[has], np.nonzero(has)[0]]
        return loc

    def window_inputs(self, values: np.ndarray, static: np.ndarray, start: int, length: int, origin: int, loc: np.ndarray, series: Optional[int] = None):
        """Tokens [L, Dt] (NaN where missing) and cond [L, Cc] for rows [start, start + length).

        ``values`` [T, D] raw (rows at and after ``origin`` may be unknown); ``static`` [T, Dc, Kc].
        """
        cfg = self.cfg
        z = (values - loc) / self.scaler.scale  # [T, D]
        rows = np.arange(start, start + length)
        sel = slice(None) if series is None else slice(series, series + 1)
        x = z[rows][:, sel]
        parts = []
        st = static[rows]
        if st.shape[2]:
            if st.shape[1] == 1:
                parts.append(st[:, 0])
            elif series is None:
                cal = len(self.calendar_names)
                parts.append(st[:, 0, :cal])
                parts.append(st[:, :, cal:].reshape(length, -1))
            else:
                parts.append(st[:, series])
        for lag in cfg.lags:
            src = rows - lag
            ok = (src >= 0) & (src < origin)
            lv = np.zeros((length, x.shape[1]))
            lv[ok] = z[src[ok]][:, sel]
            avail = ok[:, None] & ~np.isnan(lv)
            parts += [np.where(avail, lv, 0.0), avail.astype(np.float64)]
        if cfg.mode == "global" and cfg.series_ids:
            onehot = np.zeros((length, self.num_series))
            onehot[:, series] = 1.0
            parts.append(onehot)
        cond = np.concatenate(parts, -1) if parts else np.zeros((length, 0))
        return x, cond


def to_patches(a: np.ndarray, p: int) -> np.ndarray:
    """[..., L, K] -> [..., L / p, p * K]: each token holds p consecutive steps, step-major."""
    return a.reshape(*a.shape[:-2], a.shape[-2] // p, p * a.shape[-1])


def from_patches(a: np.ndarray, p: int) -> np.ndarray:
    """Inverse of :func:`to_patches`: [..., N, p * K] -> [..., N * p, K]."""
    return a.reshape(*a.shape[:-2], a.shape[-2] * p, a.shape[-1] // p)


class WindowDataset(Dataset):
    """Training windows of ``context_length + prediction_length`` steps (dict items for ``train``)."""

    def __init__(self, features: Features, frame: TimeSeriesFrame) -> None:
        cfg = features.cfg
        self.f, self.values, self.w = features, frame.values, cfg.window
        self.static = features.static(frame)
        if len(frame) < self.w:
            raise ValueError(f"the training data has {len(frame)} steps, fewer than one window (context {cfg.context_length} + prediction {cfg.prediction_length})")
        starts = np.arange(len(frame) - self.w + 1)
        obs = ~np.isnan(self.values)
        if cfg.mode == "joint":
            full = obs.all(1).astype(np.int64)
            csum = np.concatenate([[0], np.cumsum(full)])
            good = (csum[starts + self.w] - csum[starts]) >= 2
            self.items = [(int(s), None) for s in starts[good]]
        else:
            csum = np.concatenate([np.zeros((1, obs.shape[1]), np.int64), np.cumsum(obs, 0)])
            good = (csum[starts + self.w] - csum[starts]) >= 2  # [S, D]
            self.items = [(int(s), int(d)) for s, d in zip(*np.nonzero(good))]
        if not self.items:
            raise ValueError("no training window has at least two observed steps")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        start, series = self.items[i]
        cfg = self.f.cfg
        p = cfg.patch_length
        origin = start + p * int(torch.randint(1, self.w // p + 1, ()).item())  # a token boundary
        loc = self.f.anchor(self.values, start + cfg.context_length - 1)
        x, cond = self.f.window_inputs(self.values, self.static, start, self.w, origin, loc, series)
        mask = ~np.isnan(to_patches(x, p)).any(-1)
        x, cond = to_patches(np.nan_to_num(x), p), to_patches(cond, p)
        out = {"x": torch.from_numpy(x).float(), "mask": torch.from_numpy(mask)}
        if cond.shape[1]:
            out["cond"] = torch.from_numpy(cond).float()
        return out


# ---------------------------------------------------------------------------- training helpers
def lr_factor(step: int, max_steps: int, warmup: int, schedule: str = "cosine", min_ratio: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then constant or a cosine
    decay from 1 to ``min_ratio`` at ``max_steps``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + np.cos(np.pi * frac))


def validation_windows(train: TimeSeriesFrame, val: TimeSeriesFrame, horizon: int, num_windows: int):
    """Up to ``num_windows`` forecast windows of ``horizon`` rows inside ``val`` (evenly spaced,
    the last one ending at the end of ``val``), each with every earlier row (train + val) as
    history. Returns ``(histories, futures, y [W, horizon, D])``."""
    full = concat_frames(train, val)
    n0, n = len(train), len(full)
    if n - n0 < horizon:
        raise ValueError(f"the validation data has {n - n0} rows, fewer than one window of {horizon}")
    last = n - horizon
    starts = np.unique(np.linspace(n0, last, num=min(num_windows, last - n0 + 1)).round().astype(int))
    hists = [full.slice(0, s) for s in starts]
    futs = [full.slice(s, s + horizon) for s in starts]
    return hists, futs, np.stack([f.values for f in futs])


def concat_frames(a: TimeSeriesFrame, b: TimeSeriesFrame) -> TimeSeriesFrame:
    """``b`` appended after ``a`` (same series and covariates)."""
    cov = None if a.covariates is None or b.covariates is None else np.concatenate([a.covariates, b.covariates])
    return TimeSeriesFrame(np.concatenate([a.values, b.values]), a.index.append(b.index), list(a.columns), cov,
                           list(a.covariate_names) if cov is not None else [], a.freq)


def scale_spread(samples: np.ndarray, factor: float, axis: int = 0) -> np.ndarray:
    """Scale sample paths about their per-element median along the sample ``axis``."""
    med = np.median(samples, axis=axis, keepdims=True)
    return med + factor * (samples - med)


SPREAD_GRID = tuple(np.round(np.exp(np.linspace(np.log(0.5), np.log(4.0), 22)), 3).tolist())


def calibrate_spread(y: np.ndarray, samples: np.ndarray, grid: Sequence[float] = SPREAD_GRID, metric: str = "crps") -> float:
    """The spread factor (see :func:`scale_spread`) with the lowest score on validation data.

    ``y`` [..., D], ``samples`` [S, ..., D]. ``metric='crps'``: mean CRPS, each series' divided by
    the standard deviation of its targets so that every series counts; ``'crps_sum'``: CRPS-sum
    (the spread of the sum over series, which also depends on the cross-series correlation).
    Both are proper scores: they trade sharpness against calibration, so the factor fixes under-
    (or over-) dispersed samples without chasing a coverage number. ``'coverage'``: the factor
    whose central 90% intervals cover closest to 90% of ``y`` (the smallest on a tie); with
    heavy-tailed errors the CRPS optimum is sharper than that.
    """
    from dforce.timeseries.metrics import coverage, crps_ensemble, crps_sum

    if metric == "coverage":
        scores = [abs(coverage(y, scale_spread(samples, g), 0.9) - 0.9) for g in grid]
    elif metric == "crps_sum" and not np.isnan(y).any():
        scores = [crps_sum(y, scale_spread(samples, g)) for g in grid]
    else:
        ok = ~np.isnan(y)
        norm = np.nanstd(y.reshape(-1, y.shape[-1]), 0) + 1e-12
        scores = [float((crps_ensemble(np.nan_to_num(y), scale_spread(samples, g)) / norm)[ok].mean()) for g in grid]
    return float(grid[int(np.argmin(scores))])


# ---------------------------------------------------------------------------- the forecaster
class Forecaster:
    """Probabilistic forecaster on the Diffusion Forcing core. Options: :class:`ForecasterConfig`."""

    def __init__(self, config: Optional[ForecasterConfig] = None, **kwargs) -> None:
        if config is not None and kwargs:
            raise TypeError("give either a ForecasterConfig or keyword options, not both")
        unknown = set(kwargs) - {f.name for f in fields(ForecasterConfig)}
        if unknown:
            raise TypeError(f"unknown Forecaster option(s) {sorted(unknown)}; see dforce.timeseries.ForecasterConfig")
        self.config = (config or ForecasterConfig(**kwargs)).check()
        self.model: Optional[DiffusionForcing] = None
        self.features: Optional[Features] = None

    # ---------------------------------------------------------------- building
    def _build(self) -> DiffusionForcing:
        c, f = self.config, self.features
        backbone = Transformer(f.token_dim, width=c.width, depth=c.depth, heads=c.heads, causal=True, cond_dim=f.cond_dim, dropout=c.dropout)
        return DiffusionForcing(
            backbone, window=c.window_tokens, noise_schedule=c.noise_schedule, parametrization=c.parametrization,
            weighting=c.weighting, training_noise=c.training_noise,
        )

    @staticmethod
    def _as_frame(data, **kwargs) -> TimeSeriesFrame:
        if isinstance(data, TimeSeriesFrame):
            return data
        if isinstance(data, pd.DataFrame):
            return from_dataframe(data, **kwargs)
        raise TypeError(f"expected a TimeSeriesFrame or a pandas DataFrame, got {type(data).__name__}")

    def fit(self, data: Union[TimeSeriesFrame, pd.DataFrame], val: Union[TimeSeriesFrame, pd.DataFrame, None] = None, **frame_kwargs) -> "Forecaster":
        """Train on ``data`` (a :class:`TimeSeriesFrame` or a DataFrame for :func:`from_dataframe`).

        ``val``: the rows that follow ``data`` in time (a frame with the same series). Every
        ``val_every`` steps the EMA weights forecast ``val_windows`` windows of the validation rows
        (history = everything before each window) and the checkpoint with the lowest
        ``val_metric`` is kept; with ``calibrate`` the sample spread is then fitted on the same
        windows. Nothing after ``val`` is ever looked at. ``self.history`` holds the training log.

        The loop is plain PyTorch (AdamW, warm-up + cosine decay, EMA, optional bf16 autocast) rather than
        :func:`dforce.training.train`, because selection scores sampled forecasts on the original
        scale, which needs the forecaster's features at every validation.
        """
        import copy
        import time

        from dforce.training.lightning import resolved_precision

        frame = self._as_frame(data, **frame_kwargs)
        c = self.config
        torch.manual_seed(c.seed)
        self.features = Features(c, frame)
        dataset = WindowDataset(self.features, frame)
        self.model = model = self._build()
        val_task = None
        if val is not None:
            vframe = self._as_frame(val, **frame_kwargs)
            self.features.check_frame(vframe, "val")
            val_task = validation_windows(frame, vframe, c.prediction_length, c.val_windows)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, betas=(0.9, 0.99))
        ema_decay = c.ema_decay if c.ema_decay is not None else min(0.999, max(0.0, 1 - 10 / max(c.max_steps, 1)))
        ema = [p.detach().clone() for p in model.parameters()]
        gen = torch.Generator().manual_seed(c.seed)
        loader = torch.utils.data.DataLoader(dataset, batch_size=min(c.batch_size, len(dataset)), shuffle=True, drop_last=True, generator=gen)
        it = iter(loader)
        device = next(model.parameters()).device
        bf16 = resolved_precision(c.precision, "gpu" if device.type == "cuda" else "cpu") == "bf16-mixed"
        self.history, best, best_state, bad = [], float("inf"), None, 0
        t0 = time.time()
        for step in range(c.max_steps):
            lr = c.lr * lr_factor(step, c.max_steps, c.warmup_steps, c.lr_schedule, c.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = lr
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model.loss(batch["x"], cond=batch.get("cond"), mask=batch["mask"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
            opt.step()
            with torch.no_grad():
                d = ema_decay if step >= c.warmup_steps else 0.0
                for e, p in zip(ema, model.parameters()):
                    e.lerp_(p.detach(), 1 - d)
            entry = {"step": step + 1, "loss": loss.item(), "lr": lr, "time_s": time.time() - t0}
            last = step + 1 == c.max_steps
            if val_task is not None and ((step + 1) % c.val_every == 0 or last):
                live = [p.detach().clone() for p in model.parameters()]
                self._load_params(ema)
                model.eval()
                score = self._val_score(val_task, c.val_metric, c.val_samples)
                entry["val_" + c.val_metric] = score
                if score < best:
                    best, best_state, bad = score, copy.deepcopy(ema), 0
                    entry["best"] = True
                else:
                    bad += 1
                self._load_params(live)
                if c.progress:
                    print(f"step {step + 1}: loss {loss.item():.4f} val {c.val_metric} {score:.5g} (best {best:.5g})", flush=True)
            self.history.append(entry)
            if c.patience is not None and bad > c.patience:
                break
        self._load_params(best_state if best_state is not None else ema)
        model.eval()
        self.selected_step = next((h["step"] for h in reversed(self.history) if h.get("best")), self.history[-1]["step"] if self.history else 0)
        self.validation = None
        if val_task is not None:
            ys, samples = self._val_samples(val_task, c.val_samples, spread=1.0)
            if c.calibrate:
                self.config.spread = calibrate_spread(ys, samples, metric=self.calibration_metric)
            self.validation = (ys, samples)  # targets [W, H, D] and raw samples [S, W, H, D] of the selected model
        if c.out_dir:
            Path(c.out_dir).mkdir(parents=True, exist_ok=True)
            pd.DataFrame(self.history).to_csv(Path(c.out_dir) / "train_log.csv", index=False)
        return self

    @property
    def calibration_metric(self) -> str:
        """The :func:`calibrate_spread` metric that ``calibration`` and ``val_metric`` select."""
        c = self.config
        return "coverage" if c.calibration == "coverage" else "crps_sum" if c.val_metric == "crps_sum" else "crps"

    def _load_params(self, params) -> None:
        with torch.no_grad():
            for p, v in zip(self.model.parameters(), params):
                p.copy_(v)

    def _val_samples(self, task, num_samples: int, spread: Optional[float] = None):
        hists, futs, y = task
        outs = self.predict_many(hists, self.config.prediction_length, num_samples, futures=futs, seed=12345, spread=spread)
        return y, np.stack([o.samples for o in outs], 1)

    def _val_score(self, task, metric: str, num_samples: int) -> float:
        from dforce.timeseries.metrics import crps_ensemble, crps_sum

        y, samples = self._val_samples(task, num_samples)
        if metric == "crps_sum":
            return crps_sum(y, samples)
        ok = ~np.isnan(y)
        if metric == "crps":
            z = self.features.scaler.scale  # scale-free: CRPS in units of each series' training scale
            return float((crps_ensemble(np.nan_to_num(y), samples) / z)[ok].mean())
        return float((((np.median(samples, 0) - y) / self.features.scaler.scale)[ok] ** 2).mean())

    def _require(self) -> None:
        if self.model is None or self.features is None:
            raise RuntimeError("the forecaster is not trained: call fit(...) or Forecaster.load(path) first")

    # ---------------------------------------------------------------- prediction
    def predict(
        self,
        history: Union[TimeSeriesFrame, pd.DataFrame],
        horizon: Optional[int] = None,
        num_samples: int = 100,
        *,
        future: Union[TimeSeriesFrame, pd.DataFrame, None] = None,
        seed: Optional[int] = None,
        **sampling,
    ) -> Forecast:
        """Forecast ``horizon`` steps (default: prediction_length) after ``history``.

        ``future``: the next ``horizon`` steps' known covariates (needed when the model uses
        covariates). ``sampling`` overrides sampling options of the config (``scheduling``,
        ``steps``, ``eta``, ``stabilization_level``, ``uncertainty_scale``, ``history``...).
        """
        return self.predict_many([history], horizon, num_samples, futures=None if future is None else [future], seed=seed, **sampling)[0]

    def predict_many(
        self,
        histories: Sequence[Union[TimeSeriesFrame, pd.DataFrame]],
        horizon: Optional[int] = None,
        num_samples: int = 100,
        *,
        futures: Optional[Sequence] = None,
        seed: Optional[int] = None,
        **sampling,
    ) -> list[Forecast]:
        """:meth:`predict` for several histories at once: every window's sample paths go through
        the network together (``max_batch`` paths per call, the KV cache when ``cache='window'``)."""
        self._require()
        from dataclasses import replace

        sampling = {k: v for k, v in sampling.items() if v is not None}
        cfg = replace(self.config, **sampling).check() if sampling else self.config
        f = self.features
        horizon = horizon or cfg.prediction_length
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        p = cfg.patch_length
        steps = -(-horizon // p) * p  # whole patches; the extra steps are cut
        xs, conds, masks, locs, indices = [], [], [], [], []
        for i, hist in enumerate(histories):
            hist = self._as_frame(hist)
            f.check_frame(hist, "history")
            if len(hist) < p:
                raise ValueError(f"history has {len(hist)} steps, fewer than one patch ({p}); pass a longer history")
            idx = future_index(hist.index, steps, f.freq or hist.freq)
            fut = None if futures is None else self._as_frame(futures[i])
            values = np.concatenate([hist.values, np.full((steps, hist.num_series), np.nan)])
            full_index = hist.index.append(idx)
            cov = None
            if f.covariate_names:
                if fut is None or fut.covariates is None or len(fut) < steps:
                    raise ValueError(f"the model uses known-future covariates {f.covariate_names}: pass future= with at least {steps} steps of them"
                                     + (f" (the horizon {horizon} rounded up to whole patches of {p})" if steps > horizon else ""))
                cov = np.concatenate([hist.covariates[:, :, : len(f.covariate_names)], fut.covariates[:steps, :, : len(f.covariate_names)]])
            frame = TimeSeriesFrame(values, full_index, hist.columns, cov, f.covariate_names if cov is not None else [], f.freq)
            static = f.static(frame)
            origin = len(hist)
            c = min(cfg.context_length, origin) // p * p
            loc = f.anchor(hist.values, origin - 1)
            series_list = [None] if cfg.mode == "joint" else list(range(f.num_series))
            for d in series_list:
                x, cond = f.window_inputs(values, static, origin - c, c + steps, origin, loc, d)
                x = to_patches(x[:c], p)
                xs.append(x)
                conds.append(to_patches(cond, p))
                masks.append(~np.isnan(x).any(-1))
            locs.append(loc)
            indices.append(idx[:horizon])
        x = torch.from_numpy(np.stack(xs)).float()
        cond = torch.from_numpy(np.stack(conds)).float() if conds[0].shape[1] else None
        mask = torch.from_numpy(np.stack(masks))
        device = next(self.model.parameters()).device
        gen = torch.Generator(device).manual_seed(cfg.seed if seed is None else seed)
        n = x.shape[0]
        # repeat each sequence num_samples times: [n * S, ...]
        rep = lambda t: None if t is None else t.repeat_interleave(num_samples, 0)  # noqa: E731
        xr, cr, mr = rep(x), rep(cond), rep(mask)
        out = []
        for s in range(0, xr.shape[0], cfg.max_batch):
            sl = slice(s, s + cfg.max_batch)
            cr_sl = None if cr is None else cr[sl]
            z_sl = forecast_rollout(
                self.model, xr[sl], steps // p, context_mask=mr[sl], cond=cr_sl, config=cfg.sampling_config(), generator=gen,
                precision=cfg.sample_precision, cache=cfg.cache if self.model.causal else "none",
            )
            out.append(z_sl.cpu())
        z = from_patches(torch.cat(out).double().numpy(), p)[:, :horizon].reshape(n, num_samples, horizon, -1)
        if cfg.spread != 1.0:
            z = scale_spread(z, cfg.spread, axis=1)
        per = 1 if cfg.mode == "joint" else f.num_series
        results = []
        for i, loc in enumerate(locs):
            zi = z[i * per : (i + 1) * per]  # [per, S, H, Dt]
            zi = zi[0] if cfg.mode == "joint" else np.moveaxis(zi[..., 0], 0, -1)  # [S, H, D]
            results.append(Forecast(f.scaler.inverse(zi, loc), indices[i], list(f.columns)))
        return results

    # ---------------------------------------------------------------- persistence
    def save(self, path: Union[str, os.PathLike], overwrite: bool = True) -> Path:
        """Write the model (safetensors + JSON, via :func:`dforce.training.export_model`, which never
        replaces files it did not write)."""
        from dforce.training import export_model

        self._require()
        return export_model(self.model, path, extra={"forecaster": asdict(self.config), "features": self.features.state()},
                            overwrite=overwrite)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], map_location: str = "cpu") -> "Forecaster":
        """Load a forecaster written by :meth:`save`."""
        from dforce.training import load_model

        model, extra = load_model(path, map_location=map_location)
        if "forecaster" not in extra:
            raise ValueError(f"{path} is a dforce model but not a Forecaster (no 'forecaster' entry in its config)")
        fc = cls(ForecasterConfig(**extra["forecaster"]))
        fc.features = Features(fc.config, state=extra["features"])
        fc.model = model.eval()
        return fc

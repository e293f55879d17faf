"""Probabilistic time-series forecasting with Diffusion Forcing (see ``docs/timeseries.md``)."""

from dforce.timeseries.baselines import Linear, RandomWalk, RepeatLast, SeasonalNaive
from dforce.timeseries.data import (
    EXCHANGE_RATE,
    RollingProtocol,
    Scaler,
    TimeSeriesFrame,
    calendar_features,
    from_dataframe,
    load_dataset,
    load_epf_fr_be,
    load_exchange_rate,
    load_pedestrian,
    load_tourism,
    load_vic_elec,
    read_csv,
    rolling_windows,
)
from dforce.timeseries.evaluation import Split, evaluate_rolling, window_metrics, zscore
from dforce.timeseries.forecaster import Forecast, Forecaster, ForecasterConfig, calibrate_spread, scale_spread
from dforce.timeseries.metrics import coverage, crps_ensemble, crps_sum, evaluate, weighted_quantile_loss
from dforce.timeseries.plots import fan_chart
from dforce.timeseries.rollout import forecast_rollout

__all__ = [
    "EXCHANGE_RATE", "Forecast", "Forecaster", "ForecasterConfig", "RandomWalk", "RollingProtocol", "Scaler", "SeasonalNaive",
    "TimeSeriesFrame", "calendar_features", "coverage", "crps_ensemble", "crps_sum", "evaluate", "fan_chart", "forecast_rollout",
    "from_dataframe", "load_dataset", "load_epf_fr_be", "load_exchange_rate", "load_pedestrian", "load_tourism", "load_vic_elec", "read_csv",
    "rolling_windows", "weighted_quantile_loss", "Linear", "RepeatLast", "Split", "evaluate_rolling", "window_metrics", "zscore",
    "calibrate_spread", "scale_spread",
]

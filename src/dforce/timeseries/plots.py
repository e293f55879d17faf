"""Fan charts: the median and the 50% / 90% intervals of a forecast against the actuals (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from dforce.timeseries.data import TimeSeriesFrame
from dforce.timeseries.forecaster import Forecast


def fan_chart(
    forecast: Forecast,
    path: Union[str, os.PathLike],
    *,
    history: Optional[TimeSeriesFrame] = None,
    actual: Optional[TimeSeriesFrame] = None,
    series: Optional[Sequence[str]] = None,
    history_steps: int = 60,
    title: Optional[str] = None,
) -> Path:
    """Write a grid of fan charts (one panel per series, at most 16) to ``path`` atomically.

    ``history``: the last ``history_steps`` observed steps are drawn before the forecast;
    ``actual``: the realised values over the forecast horizon.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(series) if series is not None else list(forecast.columns)[:16]
    missing = [c for c in cols if c not in forecast.columns]
    if missing:
        raise ValueError(f"series {missing} are not in the forecast; it has {forecast.columns[:8]}...")
    n = len(cols)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.6 * nrow), squeeze=False)
    fx = np.asarray(forecast.index.to_timestamp() if hasattr(forecast.index, "to_timestamp") else forecast.index)
    q = np.quantile(forecast.samples, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)  # [5, H, D]
    for k, name in enumerate(cols):
        ax = axes[k // ncol][k % ncol]
        d = forecast.columns.index(name)
        if history is not None:
            h = history.slice(max(0, len(history) - history_steps))
            hx = np.asarray(h.index.to_timestamp() if hasattr(h.index, "to_timestamp") else h.index)
            ax.plot(hx, h.values[:, history.columns.index(name)], color="black", lw=1, label="history")
        ax.fill_between(fx, q[0, :, d], q[4, :, d], color="tab:blue", alpha=0.2, label="90%")
        ax.fill_between(fx, q[1, :, d], q[3, :, d], color="tab:blue", alpha=0.4, label="50%")
        ax.plot(fx, q[2, :, d], color="tab:blue", lw=1.5, label="median")
        if actual is not None:
            ax.plot(fx, actual.values[: len(fx), actual.columns.index(name)], color="tab:red", lw=1, label="actual")
        ax.set_title(str(name), fontsize=9)
        ax.tick_params(labelsize=7)
        for lbl in ax.get_xticklabels():
            lbl.set_rotation(30)
    for k in range(n, nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    axes[0][0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path

import numpy as np
import pandas as pd
import pytest
import torch

from dforce.timeseries import Forecaster, Linear, RandomWalk, RepeatLast, SeasonalNaive, Split, TimeSeriesFrame, evaluate_rolling, window_metrics, zscore
from dforce.timeseries.forecaster import SPREAD_GRID, calibrate_spread, lr_factor, scale_spread, validation_windows


def _ramp(n=200, d=2):
    idx = pd.date_range("2020-01-01", periods=n, freq="h")
    return TimeSeriesFrame(np.arange(n, dtype=float)[:, None] * np.arange(1, d + 1), idx, [f"s{i}" for i in range(d)], freq="h")


def test_split_parse_and_origins():
    assert Split.fractions(100) == Split(70, 80, 100)
    assert Split.parse("0.7,0.1,0.2", 17420) == Split(12194, 13936, 17420)  # ETTm-style sizes: int(0.7 n), n - int(0.2 n)
    assert Split.parse("rows:50,60", 100) == Split(50, 60, 100)
    assert Split.parse("ett", 17420) == Split(8640, 11520, 14400)
    idx = pd.date_range("2020-01-01", periods=100, freq="D")
    assert Split.parse("dates:2020-02-01,2020-03-01", 100, idx) == Split(31, 60, 100)
    sp = Split(50, 60, 100)
    assert sp.origins("test", 10, 10) == [60, 70, 80, 90]
    assert sp.origins("test", 15, 10) == [60, 70, 80]
    assert sp.origins("val", 5, 3) == [50, 53]
    with pytest.raises(ValueError, match="train_end"):
        Split(50, 40, 100)
    with pytest.raises(ValueError, match="three fractions"):
        Split.parse("0.5,0.5", 10)


def test_zscore_uses_training_rows_only():
    f = _ramp(100, 1)
    z, sc = zscore(f, 50)
    assert sc.loc[0] == pytest.approx(24.5) and sc.scale[0] == pytest.approx(np.std(np.arange(50.0)))
    g = _ramp(100, 1)
    g.values[60:] *= 100  # test rows change: the statistics do not
    z2, sc2 = zscore(g, 50)
    np.testing.assert_allclose(sc2.scale, sc.scale)
    np.testing.assert_allclose(z.values[:50], z2.values[:50])


def test_window_metrics_known_answers():
    y = np.array([[[0.0], [1.0], [2.0]]])  # [W=1, H=3, D=1]
    point = np.broadcast_to(np.array([[[1.0], [1.0], [1.0]]]), (5, 1, 3, 1))
    m = window_metrics(y, point)
    assert m["mse_median"] == pytest.approx(2 / 3) and m["mae_median"] == pytest.approx(2 / 3) and m["mse_mean"] == pytest.approx(2 / 3)
    assert m["crps"] == pytest.approx(2 / 3)  # a point forecast: CRPS = absolute error
    s = np.random.default_rng(0).normal(size=(4000, 1, 50, 1))
    m = window_metrics(np.zeros((1, 50, 1)), s)
    assert m["crps"] == pytest.approx(np.sqrt(2) - 1 / np.sqrt(np.pi) * np.sqrt(2) * 1, abs=0.03) or m["crps"] > 0
    # CRPS of N(0,1) at 0 is 2 phi(0) - 1/sqrt(pi) = 0.2337
    assert m["crps"] == pytest.approx(2 / np.sqrt(2 * np.pi) - 1 / np.sqrt(np.pi), abs=0.01)


def test_rolling_repeat_last_on_a_ramp_is_a_closed_form():
    f = _ramp(200, 2)
    sp = Split(100, 120, 200)
    res = evaluate_rolling({"rl": RepeatLast()}, f, sp, [10, 20], stride=10, num_samples=3)
    for h in (10, 20):
        # series k rises by k+1 per step: the error at step j (1..h) is (k+1) j
        mse = np.mean([((k + 1) * j) ** 2 for k in range(2) for j in range(1, h + 1)])
        assert res[h]["rl"]["mse_median"] == pytest.approx(mse)
        assert res[h]["rl"]["windows"] == len(sp.origins("test", h, 10))
        assert res[h]["rl"]["coverage_90"] == 0.0
    # the shared rollout equals separate per-horizon calls
    sep = evaluate_rolling({"rl": RepeatLast()}, f, sp, [10, 20], stride=10, num_samples=3, share_rollout=[])
    assert sep[20]["rl"]["mse_median"] == pytest.approx(res[20]["rl"]["mse_median"])


def test_linear_baseline_beats_naive_on_a_seasonal_series_and_is_early_stopped():
    n = 600
    t = np.arange(n)
    rng = np.random.default_rng(0)
    v = np.stack([np.sin(2 * np.pi * t / 24) + 0.01 * t, np.cos(2 * np.pi * t / 12)], -1) + 0.05 * rng.normal(size=(n, 2))
    f = TimeSeriesFrame(v, pd.date_range("2020", periods=n, freq="h"), ["a", "b"], freq="h")
    sp = Split(400, 480, 600)
    lin = Linear(48, 24, epochs=10).fit(f.slice(0, 400), val=f.slice(400, 480))
    res = evaluate_rolling({"lin": {24: lin}, "rl": RepeatLast(), "sn": SeasonalNaive(24), "rw": RandomWalk().fit(f.slice(0, 400))},
                           f, sp, [24], stride=24, num_samples=50)[24]
    assert res["lin"]["mse_median"] < 0.5 * res["rl"]["mse_median"]
    assert res["lin"]["mse_median"] < 0.05  # noise variance 0.0025; the seasonal + trend structure is linear
    assert 0.6 < res["lin"]["coverage_90"] <= 1.0
    with pytest.raises(ValueError, match="forecasts 24 steps"):
        lin.predict(f.slice(0, 500), 48)


def test_linear_keeps_the_variant_with_the_lower_validation_mse():
    n = 600
    t = np.arange(n)
    rng = np.random.default_rng(0)
    v = np.sin(2 * np.pi * t / 24)[:, None] + 0.05 * rng.normal(size=(n, 1))
    v[340:] += 5.0  # a level shift near the end of the training rows: NLinear's last-value shift follows it
    f = TimeSeriesFrame(v, pd.date_range("2020", periods=n, freq="h"), ["a"], freq="h")
    train, val = f.slice(0, 400), f.slice(400, 480)
    auto = Linear(48, 24, epochs=10).fit(train, val=val)
    d, nl = (Linear(48, 24, epochs=10, subtract_last=s).fit(train, val=val) for s in (False, True))
    assert auto.subtract_last is True and nl.val_mse < 0.1 * d.val_mse
    assert auto.val_mse == nl.val_mse
    assert Linear(48, 24, epochs=2).fit(train).subtract_last is False  # no validation data: DLinear


def test_lr_schedule_closed_form():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert lr_factor(100, 100, 10) == pytest.approx(0.1)
    assert lr_factor(80, 100, 10, "constant") == 1.0


def test_calibrate_spread_recovers_the_true_scale():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 10, 2))  # truth N(0, 1)
    samples = 0.5 * rng.normal(size=(100, 200, 10, 2))  # under-dispersed by 2x
    s = calibrate_spread(y, samples)
    assert s == pytest.approx(2.0, rel=0.1)  # the samples are 2x too narrow
    np.testing.assert_allclose(np.median(scale_spread(samples, 3.0), 0), np.median(samples, 0))
    assert calibrate_spread(y, 2.0 * rng.normal(size=(100, 200, 10, 2))) < 0.6
    assert min(SPREAD_GRID) == 0.5 and max(SPREAD_GRID) == 4.0


def test_coverage_calibration_matches_the_90_percent_interval_of_a_heavy_tailed_truth():
    rng = np.random.default_rng(0)
    y = rng.standard_t(3, size=(400, 10, 2))  # central 90% interval +-2.353
    samples = rng.normal(size=(200, 400, 10, 2))  # N(0, 1): +-1.645
    s = calibrate_spread(y, samples, metric="coverage")
    assert s == pytest.approx(2.353 / 1.645, rel=0.1)
    from dforce.timeseries.metrics import coverage

    assert abs(coverage(y, scale_spread(samples, s), 0.9) - 0.9) < 0.03
    assert calibrate_spread(y, samples) < s  # the CRPS optimum is sharper under heavy tails
    assert Forecaster().calibration_metric == "coverage"
    assert Forecaster(val_metric="crps_sum", calibration="score").calibration_metric == "crps_sum"
    assert Forecaster(val_metric="mse", calibration="score").calibration_metric == "crps"
    with pytest.raises(ValueError, match="calibration must be 'score' or 'coverage'"):
        Forecaster(calibration="isotonic")


def test_fit_with_validation_selects_the_best_checkpoint_and_calibrates():
    n = 160
    idx = pd.date_range("2022-01-01", periods=n, freq="h")
    t = np.arange(n)
    v = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], -1) + 0.1 * np.random.default_rng(0).normal(size=(n, 2))
    f = TimeSeriesFrame(v + 5, idx, ["a", "b"], freq="h")
    fc = Forecaster(context_length=8, prediction_length=4, width=16, depth=1, heads=2, max_steps=12, batch_size=8, warmup_steps=2,
                    steps=2, precision="32-true", val_every=4, val_windows=3, val_samples=4, val_metric="crps")
    fc.fit(f.slice(0, 120), val=f.slice(120, 140))
    vals = [(h["step"], h["val_crps"]) for h in fc.history if "val_crps" in h]
    assert [s for s, _ in vals] == [4, 8, 12]
    assert fc.selected_step == min(vals, key=lambda sv: sv[1])[0]
    assert fc.config.spread in SPREAD_GRID
    out = fc.predict(f.slice(0, 140), horizon=4, num_samples=6)
    assert out.samples.shape == (6, 4, 2)
    # the selected weights reproduce the selected validation score (same windows, seed, spread 1)
    fc.config.spread = 1.0
    task = validation_windows(f.slice(0, 120), f.slice(120, 140), 4, 3)
    assert fc._val_score(task, "crps", 4) == pytest.approx(min(v for _, v in vals), rel=1e-5)


def test_cached_batched_sampling_matches_uncached():
    n = 100
    idx = pd.date_range("2022-01-01", periods=n, freq="h")
    v = np.stack([np.sin(np.arange(n) / 3), np.cos(np.arange(n) / 5)], -1)
    f = TimeSeriesFrame(v, idx, ["a", "b"], freq="h")
    fc = Forecaster(context_length=6, prediction_length=4, width=16, depth=1, heads=2, max_steps=3, batch_size=8, warmup_steps=1,
                    steps=3, precision="32-true", calibrate=False).fit(f.slice(0, 80))
    hists = [f.slice(0, 80), f.slice(0, 90)]
    a = fc.predict_many(hists, 4, 5, seed=3, cache="window")
    b = fc.predict_many(hists, 4, 5, seed=3, cache="none", scheduling="autoregressive")
    assert a[0].samples.shape == b[0].samples.shape == (5, 4, 2)
    assert np.isfinite(a[0].samples).all()

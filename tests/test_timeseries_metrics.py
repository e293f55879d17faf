import numpy as np
import properscoring
import pytest
import scoringrules

from dforce.timeseries.metrics import QUANTILES, coverage, crps_ensemble, crps_sum, evaluate, weighted_quantile_loss


def test_crps_ensemble_matches_properscoring_and_scoringrules():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(7, 3))
    samples = rng.normal(loc=0.3, scale=1.5, size=(50, 7, 3))
    ours = crps_ensemble(y, samples)
    ref = properscoring.crps_ensemble(y, np.moveaxis(samples, 0, -1))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    ref2 = np.asarray(scoringrules.crps_ensemble(y, np.moveaxis(samples, 0, -1), estimator="nrg"))
    np.testing.assert_allclose(ours, ref2, rtol=1e-8)


def test_crps_of_a_point_forecast_is_the_absolute_error():
    y = np.array([1.0, -2.0, 3.5])
    samples = np.broadcast_to(np.array([0.5, 0.0, 4.0]), (10, 3))
    np.testing.assert_allclose(crps_ensemble(y, samples), np.abs(y - samples[0]))


def test_weighted_quantile_loss_of_a_point_forecast_is_normalised_absolute_error():
    # mean over symmetric quantile levels of 2 * pinball = |y - pred| for a point forecast
    rng = np.random.default_rng(1)
    y = rng.uniform(1, 2, size=(4, 5))
    pred = y + rng.normal(size=y.shape)
    samples = np.broadcast_to(pred, (3, *y.shape))
    assert weighted_quantile_loss(y, samples) == pytest.approx(np.abs(y - pred).sum() / np.abs(y).sum())


def test_crps_sum_is_the_gluonts_definition():
    rng = np.random.default_rng(2)
    y = rng.uniform(1, 3, size=(5, 30, 8))  # windows, steps, series
    samples = y + rng.normal(scale=0.1, size=(100, 5, 30, 8))
    ys, ss = y.sum(-1).reshape(-1), samples.sum(-1).reshape(100, -1)
    losses = []
    for q in QUANTILES:  # written out independently of the module
        qp = np.quantile(ss, q, axis=0)
        losses.append(2 * np.sum(np.abs((ys - qp) * ((ys <= qp) - q))) / np.sum(np.abs(ys)))
    assert crps_sum(y, samples) == pytest.approx(np.mean(losses), rel=1e-12)
    assert len(QUANTILES) == 19 and QUANTILES[0] == 0.05 and QUANTILES[-1] == 0.95


def test_quantile_crps_approximates_the_exact_crps():
    rng = np.random.default_rng(3)
    y = rng.normal(10, 1, size=(200,))
    samples = rng.normal(10, 1, size=(2000, 200))
    exact = crps_ensemble(y, samples).sum() / np.abs(y).sum()
    assert weighted_quantile_loss(y, samples) == pytest.approx(exact, rel=0.05)


def test_coverage_and_evaluate():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(2, 400, 2))
    samples = rng.normal(size=(500, 2, 400, 2))
    assert coverage(y, samples, 0.9) == pytest.approx(0.9, abs=0.03)
    assert coverage(y, samples, 0.5) == pytest.approx(0.5, abs=0.04)
    y[0, 0, 1] = np.nan  # missing targets are skipped
    out = evaluate(y + 5, samples + 5, ["a", "b"])
    assert set(out["crps_per_series"]) == {"a", "b"}
    assert "crps_sum" not in out and np.isfinite(out["crps"]) and out["mae"] > 0


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"samples must have shape \[S, \*y.shape\]"):
        crps_sum(np.zeros((3, 2)), np.zeros((10, 3, 3)))
    with pytest.raises(ValueError, match="complete targets"):
        crps_sum(np.array([[np.nan, 1.0]]), np.ones((4, 1, 2)))

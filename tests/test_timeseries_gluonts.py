"""The GluonTS adapter (``dforce.timeseries.gluonts``): estimator / predictor contract, GluonTS's
evaluation helpers, and the CRPS-sum cross-check against ``MultivariateEvaluator``.

Everything but the ImportError test skips when gluonts is not installed (``pip install "dforce[gluonts]"``).
"""

import importlib
import sys

import numpy as np
import pytest

# gluonts 0.17 on pandas 2.x: its own FutureWarnings (DataFrame.agg with np.sum) and masked-array casts
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:Warning. converting a masked element:UserWarning")
REASON = 'gluonts is not installed (pip install "dforce[gluonts]")'
TINY = dict(width=16, depth=1, heads=2, batch_size=16, warmup_steps=2, steps=3, precision="32-true", val_every=4, val_windows=2,
            val_samples=4)
D, T, H = 4, 160, 6
QUANTILES_19 = tuple((np.arange(20) / 20.0)[1:])  # the CRPS-sum levels of TimeGrad / Diffusion Forcing


@pytest.fixture(scope="module")
def gl():
    return pytest.importorskip("gluonts", reason=REASON)


def _values(seed=0):
    """Four positive, correlated random walks [T, D] (a common shock plus per-series noise)."""
    rng = np.random.default_rng(seed)
    return 10 + np.cumsum(0.3 * rng.normal(size=(T, D)) + 0.3 * rng.normal(size=(T, 1)), 0)


def _univariate(x, ends, start="2021-01-04", freq="D"):
    from gluonts.dataset.common import ListDataset

    return ListDataset([{"start": start, "target": x[:e, i], "item_id": f"s{i}"} for e in ends for i in range(x.shape[1])], freq=freq)


@pytest.fixture(scope="module")
def mv(gl):
    """Exchange-rate style: D univariate series grouped into one D-dim target by MultivariateGrouper,
    a training entry and two rolling test dates; a tiny joint-mode model trained a few steps."""
    from gluonts.dataset.multivariate_grouper import MultivariateGrouper

    from dforce.timeseries.gluonts import DiffusionForcingEstimator

    x = _values()
    train = MultivariateGrouper(max_target_dim=D)(_univariate(x, [T - 2 * H]))
    test = MultivariateGrouper(max_target_dim=D, num_test_dates=2)(_univariate(x, [T - H, T]))
    est = DiffusionForcingEstimator(prediction_length=H, context_length=12, max_steps=8, **TINY)
    return x, train, test, est.train(train)


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gluonts", None)  # import gluonts -> ImportError
    monkeypatch.delitem(sys.modules, "dforce.timeseries.gluonts", raising=False)
    with pytest.raises(ImportError, match=r'pip install "dforce\[gluonts\]"'):
        importlib.import_module("dforce.timeseries.gluonts")
    monkeypatch.delitem(sys.modules, "dforce.timeseries.gluonts", raising=False)
    import dforce.timeseries  # noqa: F401  (the package itself never imports gluonts)


def test_multivariate_forecasts(mv):
    from gluonts.evaluation import MultivariateEvaluator, make_evaluation_predictions
    from gluonts.evaluation.backtest import backtest_metrics
    from gluonts.model.forecast import SampleForecast

    x, _, test, predictor = mv
    fit, tit = make_evaluation_predictions(test, predictor, num_samples=9)
    forecasts, truths = list(fit), list(tit)
    assert len(forecasts) == 2
    for f, ts, end in zip(forecasts, truths, (T - H, T)):
        assert isinstance(f, SampleForecast) and f.samples.shape == (9, H, D)
        assert np.isfinite(f.samples).all()
        # the forecast starts right after the input the predictor saw (the target minus its last H steps)
        assert f.start_date == ts.index[end - H] and f.index[-1] == ts.index[end - 1]
        np.testing.assert_allclose(ts.values[end - H : end], x[end - H : end], rtol=1e-6)
    ev = MultivariateEvaluator(quantiles=QUANTILES_19, target_agg_funcs={"sum": np.sum}, num_workers=0)
    agg, item = backtest_metrics(test, predictor, evaluator=ev, num_samples=9)
    assert np.isfinite(agg["m_sum_mean_wQuantileLoss"]) and agg["m_sum_mean_wQuantileLoss"] > 0
    assert {f"{d}_MSE" for d in range(D)} <= set(agg)


def test_crps_sum_matches_multivariate_evaluator(mv):
    """dforce's CRPS-sum against GluonTS's ``m_sum_mean_wQuantileLoss`` on the same samples.

    Both compute ``mean_q sum 2 |(y - q_hat)(1{y <= q_hat} - q)| / sum |y|`` on the series sums
    over 19 levels; they differ only in the sample quantile ``q_hat``: dforce interpolates
    (``np.quantile``), GluonTS takes the order statistic ``round((S - 1) q)``.

    Measured (random ensembles, 5 windows x 30 steps x 8 series, 20 draws per S; and this model):
    S = 21 or 101, where every (S - 1) q is an integer: identical (relative gap < 1e-15 in float64;
    < 2e-7 through the predictor, whose samples and GluonTS's targets are float32). S = 100: a
    systematic gap of 1.5-1.6% (99 q rounds outwards, e.g. 4.95 -> 5); S = 50: 0.1-0.3%; S = 20:
    4-6%. ``crps_sum_gap_bound`` (the Lipschitz bound of the pinball loss times the quantile
    gap) held in every draw and is the tolerance used here: it scales with the order-statistic
    spacing, i.e. with the approximation itself, not a fixed number.
    """
    from gluonts.evaluation import MultivariateEvaluator, make_evaluation_predictions

    from dforce.timeseries import crps_sum
    from dforce.timeseries.gluonts import crps_sum_gap_bound, gluonts_crps_sum

    _, _, test, predictor = mv
    ev = MultivariateEvaluator(quantiles=QUANTILES_19, target_agg_funcs={"sum": np.sum}, num_workers=0)
    for s in (21, 100):
        fit, tit = make_evaluation_predictions(test, predictor, num_samples=s)
        forecasts, truths = list(fit), list(tit)
        agg, _ = ev(iter(truths), iter(forecasts), num_series=len(forecasts))
        theirs = agg["m_sum_mean_wQuantileLoss"]
        y = np.stack([ts.loc[f.index].to_numpy() for ts, f in zip(truths, forecasts)])  # [W, H, D]
        samples = np.stack([f.samples for f in forecasts], 1)  # [S, W, H, D]
        ours = crps_sum(y, samples)
        bound = crps_sum_gap_bound(y, samples)
        assert abs(ours - theirs) <= bound + 1e-6 * ours, (s, ours, theirs, bound)
        if s == 21:  # exact quantiles on both sides: only float32 rounding separates them
            assert bound == 0.0 and abs(ours - theirs) <= 1e-6 * ours
        # the helper the benchmark uses (float64, synthetic dates) gives GluonTS's number too
        assert gluonts_crps_sum(y, samples) == pytest.approx(theirs, rel=1e-6)


def test_crps_sum_gap_on_random_ensembles(gl):
    from dforce.timeseries import crps_sum
    from dforce.timeseries.gluonts import crps_sum_gap_bound, gluonts_crps_sum

    rng = np.random.default_rng(3)
    y = 1 + 0.1 * rng.normal(size=(3, 5, 4))
    for s, exact in ((101, True), (100, False), (30, False)):
        samples = y[None] + rng.normal(scale=0.1, size=(s, 3, 5, 4)) + rng.normal(scale=0.05, size=(s, 3, 1, 1))
        ours, theirs, bound = crps_sum(y, samples), gluonts_crps_sum(y, samples), crps_sum_gap_bound(y, samples)
        assert abs(ours - theirs) <= bound + 1e-12
        if exact:
            assert theirs == pytest.approx(ours, rel=1e-12)
        else:
            assert bound > 0 and abs(ours - theirs) > 1e-12  # the estimators do differ here


def test_univariate_global_and_validation(gl):
    from gluonts.dataset.common import ListDataset
    from gluonts.evaluation import Evaluator
    from gluonts.evaluation.backtest import backtest_metrics

    from dforce.timeseries.gluonts import DiffusionForcingEstimator

    x = _values(1)
    # three series of different lengths (unaligned starts), matched by item_id
    starts = ["2021-01-04", "2021-01-11", "2021-02-01"]
    offs = [0, 5, 20]
    train = ListDataset([{"start": s, "target": x[o : T - 3 * H, i], "item_id": f"s{i}"} for i, (s, o) in enumerate(zip(starts, offs))], freq="D")
    val = ListDataset([{"start": s, "target": x[o : T - H, i], "item_id": f"s{i}"} for i, (s, o) in enumerate(zip(starts, offs))], freq="D")
    test = ListDataset([{"start": s, "target": x[o:T, i], "item_id": f"s{i}"} for i, (s, o) in enumerate(zip(starts, offs))], freq="D")
    est = DiffusionForcingEstimator(prediction_length=H, context_length=10, max_steps=6, **TINY)
    predictor = est.train(train, validation_data=val)
    fc = predictor.forecaster
    assert fc.config.mode == "global" and fc.features.columns == ["s0", "s1", "s2"]
    assert any("val_crps" in h for h in fc.history)  # the validation rows were used for selection
    forecasts = list(predictor.predict(test, num_samples=5))
    for f, entry in zip(forecasts, test):
        assert f.samples.shape == (5, H) and f.item_id == entry["item_id"]
        assert f.start_date == entry["start"] + len(entry["target"])
    agg, items = backtest_metrics(test, predictor, evaluator=Evaluator(quantiles=(0.1, 0.5, 0.9), num_workers=0), num_samples=5)
    assert np.isfinite(agg["mean_wQuantileLoss"]) and len(items) == 3
    with pytest.raises(ValueError, match="not in the training data"):
        list(predictor.predict(ListDataset([{"start": "2021-01-04", "target": x[:50, 0], "item_id": "new"}], freq="D")))


def test_predict_batches_entries(mv, monkeypatch):
    """Many windows go through one predict_many call (one batched sampling run), batch_size at a time."""
    from gluonts.dataset.common import ListDataset

    x, _, _, predictor = mv
    fc = predictor.forecaster
    calls = []
    orig = fc.predict_many
    monkeypatch.setattr(fc, "predict_many", lambda hists, *a, **k: calls.append(len(hists)) or orig(hists, *a, **k))
    windows = ListDataset([{"start": "2021-01-04", "target": x[: 40 + 7 * i].T} for i in range(10)], freq="D", one_dim_target=False)
    out = list(predictor.predict(windows, num_samples=3))
    assert calls == [10] and [f.samples.shape for f in out] == [(3, H, D)] * 10
    predictor.batch_size = 4
    calls.clear()
    list(predictor.predict(windows, num_samples=3))
    assert calls == [4, 4, 2]
    predictor.batch_size = 64


def test_single_series_serialize_roundtrip(gl, tmp_path):
    from gluonts.dataset.common import ListDataset
    from gluonts.model.predictor import Predictor

    from dforce.timeseries.gluonts import DiffusionForcingEstimator, DiffusionForcingPredictor

    x = _values(2)[:, 0]
    train = ListDataset([{"start": "2022-01-01", "target": x[:120]}], freq="D")
    predictor = DiffusionForcingEstimator(prediction_length=H, max_steps=4, seed=7, **TINY).train(train)
    assert predictor.forecaster.config.mode == "joint" and not predictor.multivariate
    test = ListDataset([{"start": "2022-01-01", "target": x[:130]}], freq="D")
    a = next(iter(predictor.predict(test, num_samples=4)))
    assert a.samples.shape == (4, H) and str(a.start_date) == "2022-05-11"
    predictor.serialize(tmp_path)
    loaded = Predictor.deserialize(tmp_path)
    assert isinstance(loaded, DiffusionForcingPredictor) and loaded.seed == 7
    b = next(iter(loaded.predict(test, num_samples=4)))
    np.testing.assert_allclose(b.samples, a.samples, rtol=1e-5, atol=1e-6)


def test_bad_inputs(mv):
    from gluonts.dataset.common import ListDataset

    from dforce.timeseries.gluonts import DiffusionForcingEstimator

    x, _, _, predictor = mv
    two = ListDataset([{"start": "2021-01-04", "target": x[:50].T}] * 2, freq="D", one_dim_target=False)
    with pytest.raises(ValueError, match="MultivariateGrouper"):
        DiffusionForcingEstimator(prediction_length=H, max_steps=1, **TINY).train(two)
    with pytest.raises(ValueError, match=r"\[4, T\]"):
        list(predictor.predict(ListDataset([{"start": "2021-01-04", "target": x[:50, 0]}], freq="D")))
    with pytest.raises(TypeError, match="unknown Forecaster option"):
        DiffusionForcingEstimator(prediction_length=H, widht=3)

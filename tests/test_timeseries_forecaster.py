import numpy as np
import pandas as pd
import pytest
import torch

from dforce.sampling import SamplingConfig

from dforce.timeseries import (
    Forecaster,
    RandomWalk,
    SeasonalNaive,
    TimeSeriesFrame,
    fan_chart,
    forecast_rollout,
)

TINY = dict(context_length=6, prediction_length=4, width=16, depth=1, heads=2, max_steps=15, batch_size=8,
            warmup_steps=2, steps=3, precision="32-true", ema_decay=0.0)


def _frame(n=80, missing=True, covariate=True):
    idx = pd.date_range("2022-01-01", periods=n, freq="h")
    t = np.arange(n)
    v = np.stack([10 + np.sin(2 * np.pi * t / 24), 5 + np.cos(2 * np.pi * t / 24)], -1)
    if missing:
        v[10:13, 0] = np.nan
    cov = (np.sin(t / 5.0)[:, None]) if covariate else None
    return TimeSeriesFrame(v, idx, ["a", "b"], cov, ["temp"] if covariate else [], "h")


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    return Forecaster(**TINY, lags=[24]).fit(_frame())


def test_predict_shapes_quantiles_and_sliding_window(fitted):
    frame = _frame(100)
    hist, fut = frame.slice(0, 80), frame.slice(80, 100)
    fc = fitted.predict(hist, horizon=20, num_samples=5, future=fut)  # 20 > window of 10: sliding windows
    assert fc.samples.shape == (5, 20, 2) and np.isfinite(fc.samples).all()
    assert fc.index[0] == hist.index[-1] + pd.Timedelta(hours=1) and len(fc.index) == 20
    q = fc.quantiles((0.1, 0.5, 0.9))
    assert list(q.columns) == ["time", "series", "mean", "q0.1", "q0.5", "q0.9"] and len(q) == 40
    assert (q["q0.1"] <= q["q0.9"]).all()
    assert fc.sample_frame().shape == (5 * 20 * 2, 4)
    for schedule in ("pyramid", "full_sequence"):
        assert fitted.predict(hist, 4, 3, future=fut, scheduling=schedule).samples.shape == (3, 4, 2)


def test_missing_covariates_give_a_clear_error(fitted):
    with pytest.raises(ValueError, match="known-future covariates"):
        fitted.predict(_frame().slice(0, 60), 4, 2)


def test_save_load_round_trip(fitted, tmp_path):
    frame = _frame(90)
    hist, fut = frame.slice(0, 86), frame.slice(86, 90)
    a = fitted.predict(hist, 4, 4, future=fut, seed=3).samples
    fitted.save(tmp_path / "m")
    b = Forecaster.load(tmp_path / "m").predict(hist, 4, 4, future=fut, seed=3).samples
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_missing_context_frames_are_pure_noise_not_values(fitted):
    model = fitted.model
    ctx = torch.randn(2, 6, 2)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 2] = False
    cond = torch.randn(2, 10, fitted.features.cond_dim)
    other = ctx.clone()
    other[:, 2] = 100.0  # the value of a masked frame must not matter
    cfg = SamplingConfig(steps=3, eta=1.0)
    out = [
        forecast_rollout(model, c, 4, context_mask=mask, cond=cond, config=cfg, generator=torch.Generator().manual_seed(0))
        for c in (ctx, other)
    ]
    torch.testing.assert_close(out[0], out[1])
    nan_ctx = ctx.clone()
    nan_ctx[:, 2] = float("nan")
    out2 = forecast_rollout(model, nan_ctx, 4, cond=cond, config=cfg, generator=torch.Generator().manual_seed(0))  # mask from NaNs
    torch.testing.assert_close(out[0], out2)


def test_global_mode_and_training_noise_variants():
    frame = _frame(60, missing=True, covariate=False)
    for kw in ({"mode": "global"}, {"training_noise": "teacher_forcing"}, {"training_noise": "full_sequence", "scaling": "anchor"}):
        fc = Forecaster(**{**TINY, "max_steps": 4, **kw}).fit(frame)
        out = fc.predict(frame, 4, 3)
        assert out.samples.shape == (3, 4, 2) and np.isfinite(out.samples).all()
    assert fc.config.resolved_history == "replacement"


def test_bad_options_are_rejected():
    with pytest.raises(TypeError, match="unknown Forecaster option"):
        Forecaster(windoww=3)
    with pytest.raises(ValueError, match="scaling"):
        Forecaster(scaling="minmax")
    with pytest.raises(RuntimeError, match="not trained"):
        Forecaster().predict(_frame(), 3)


def test_baselines_closed_forms(tmp_path):
    idx = pd.date_range("2022-01-01", periods=12, freq="D")
    v = np.stack([np.arange(12.0), np.arange(12.0) * 3], -1)
    frame = TimeSeriesFrame(v, idx, ["x", "y"], freq="D")
    sn = SeasonalNaive(season=3).fit(frame).predict(frame, 5, num_samples=2)
    np.testing.assert_array_equal(sn.samples[0, :, 0], [9, 10, 11, 9, 10])
    rw = RandomWalk().fit(frame).predict(frame, 4, num_samples=3)  # increments are always (1, 3)
    np.testing.assert_allclose(rw.samples[2], [[12, 36], [13, 39], [14, 42], [15, 45]])
    out = fan_chart(rw, tmp_path / "fan.png", history=frame)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_patches_layout_and_round_trip():
    from dforce.timeseries.forecaster import from_patches, to_patches

    a = np.arange(2 * 6 * 3).reshape(2, 6, 3)  # [B, L, K]
    p = to_patches(a, 2)
    assert p.shape == (2, 3, 6)
    np.testing.assert_array_equal(p[1, 2], np.concatenate([a[1, 4], a[1, 5]]))  # token j = steps 2j, 2j + 1, step-major
    np.testing.assert_array_equal(from_patches(p, 2), a)


def test_patched_forecaster_feeds_the_network_whole_patches():
    frame = _frame(120, missing=True, covariate=False)
    fc = Forecaster(**{**TINY, "context_length": 8, "prediction_length": 4, "max_steps": 3}, patch_length=4, lags=[8]).fit(frame)
    seen = []
    spy = lambda m, args, kw: seen.append((args[0].shape, kw.get("cond", args[2] if len(args) > 2 else None)))  # noqa: E731
    hook = fc.model.backbone.register_forward_pre_hook(spy, with_kwargs=True)
    out = fc.predict(frame, horizon=6, num_samples=3, cache="none")  # 6 steps = 2 patches, cut to 6
    hook.remove()
    assert out.samples.shape == (3, 6, 2) and len(out.index) == 6 and np.isfinite(out.samples).all()
    assert fc.model.window == 3 and fc.features.token_dim == 8
    assert seen and all(s[-1] == 8 for s, _ in seen) and max(s[1] for s, _ in seen) <= 4  # 2 + 2 tokens of 4 steps x 2 series
    assert all(c is None or c.shape[-1] == fc.features.cond_dim for _, c in seen)


def test_patched_training_origins_fall_on_token_boundaries():
    from dforce.timeseries.forecaster import Features, WindowDataset

    fc = Forecaster(**{**TINY, "context_length": 8, "prediction_length": 8}, patch_length=4, lags=[8], calendar=False)
    frame = _frame(80, missing=False, covariate=False)
    ds = WindowDataset(Features(fc.config, frame), frame)
    torch.manual_seed(0)
    for i in range(8, 48):  # windows starting after the first lag (before it, the data's start also hides lags)
        cond = ds[i]["cond"].numpy()  # [tokens, 4 steps * (value, flag) * 2 series]
        flags = cond.reshape(4, 4, 2, 2)[..., 1, :]  # [token, step, series]
        # with the origin on a token boundary and a lag that is a multiple of P, a token's lag
        # features are either all known or all unknown
        assert (flags == flags[:, :1]).all()


def test_patch_length_must_divide_the_window_and_covariates_cover_whole_patches():
    with pytest.raises(ValueError, match="multiples of patch_length"):
        Forecaster(context_length=6, prediction_length=4, patch_length=4)
    frame = _frame(100)
    fc = Forecaster(**{**TINY, "context_length": 8, "prediction_length": 4, "max_steps": 2}, patch_length=4).fit(frame.slice(0, 80))
    with pytest.raises(ValueError, match="at least 8 steps.*rounded up to whole patches of 4"):
        fc.predict(frame.slice(0, 80), 6, 2, future=frame.slice(80, 86))
    assert fc.predict(frame.slice(0, 80), 6, 2, future=frame.slice(80, 88)).samples.shape == (2, 6, 2)


def test_default_precision_trains_in_fp32_on_a_cpu_and_bf16_differs():
    def weights(**kw):
        torch.manual_seed(0)
        f = Forecaster(**{**{k: v for k, v in TINY.items() if k != "precision"}, "max_steps": 4, **kw}).fit(_frame())
        return torch.cat([p.detach().flatten() for p in f.model.parameters()])

    default = weights()
    assert torch.equal(default, weights(precision="32-true"))  # "auto" on a CPU: bf16 autocast trains 4-5x slower there
    assert not torch.equal(default, weights(precision="bf16-mixed"))
    with pytest.raises(ValueError, match="precision must be 'auto', 'bf16-mixed' or '32-true'"):
        Forecaster(precision="fp16")

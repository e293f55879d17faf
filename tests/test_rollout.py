"""The sliding-window rollout, pinned by what the network is fed (a spy backbone)."""

import pytest
import torch

from dforce import DiffusionForcing, Transformer
from dforce.sampling import SamplingConfig, level_grid, plan_windows, scheduling_matrix
from dforce.testing import SpyBackbone, perturb_parameters

W = 6


def spy_model(window=W, causal=True, **kw):
    torch.manual_seed(0)
    bb = SpyBackbone(perturb_parameters(Transformer(dim=2, width=16, depth=1, heads=2, causal=causal)))
    return DiffusionForcing(bb, window=window, **kw)


def test_generated_history_is_fed_at_the_stabilization_level_with_matching_noise():
    model = spy_model()
    ctx = torch.randn(2, 2, 2)
    out = model.sample(ctx, 4, steps=2, chunk_size=2, history_len=3, stabilization_level=0.3, context_level=0.1, seed=0)
    calls = model.backbone.calls
    # window 1: 2 context tokens + 2 new; window 2: history = [ctx 1, gen 0, gen 1] + 2 new
    last = calls[-1]
    assert torch.allclose(last["t"][:, :3], torch.tensor([0.1, 0.3, 0.3]).expand(2, 3))
    sigma_ctx = model.noise_schedule.alpha_sigma(torch.tensor(0.1))[1]
    a, s = model.noise_schedule.alpha_sigma(torch.tensor(0.3))
    fed = last["x"][:, 1:3]
    eps = (fed - a * out[:, :2]) / s  # the fed history is alpha x + sigma eps with eps ~ N(0, 1)
    assert 0.3 < eps.std() < 3 and not torch.allclose(fed, out[:, :2], atol=1e-3)
    assert (last["x"][:, 0] - ctx[:, 1]).abs().max() < 6 * sigma_ctx  # context noised to its own level
    # the same noise for every row of a window, fresh for the next window
    w2 = [c for c in calls if c["x"].shape[1] == 5]
    assert all(torch.equal(c["x"][:, :3], w2[0]["x"][:, :3]) for c in w2)


def test_relabel_feeds_the_clean_value_with_the_level():
    model = spy_model()
    ctx = torch.randn(2, 2, 2)
    out = model.sample(ctx, 4, steps=2, chunk_size=2, history_len=3, stabilization_level=0.3, history="relabel", seed=0)
    last = model.backbone.calls[-1]
    assert torch.equal(last["x"][:, 1:3], out[:, :2]) and torch.equal(last["x"][:, 0], ctx[:, 1])
    assert torch.allclose(last["t"][:, :3], torch.tensor([0.0, 0.3, 0.3]).expand(2, 3))


def test_stabilization_level_zero_feeds_clean_history():
    model = spy_model()
    out = model.sample(batch_size=1, horizon=6, steps=2, chunk_size=3, history_len=3, stabilization_level=0.0, seed=0)
    last = model.backbone.calls[-1]
    assert torch.equal(last["t"][:, :3], torch.zeros(1, 3)) and torch.equal(last["x"][:, :3], out[:, :3])


@pytest.mark.parametrize("scheduling, u", [("pyramid", 0.5), ("pyramid", 2.0), ("trapezoid", 1.0), ("autoregressive", 1.0)])
def test_each_window_walks_its_scheduling_matrix(scheduling, u):
    steps, chunk = 3, 4
    model = spy_model()
    model.sample(batch_size=1, horizon=8, steps=steps, chunk_size=chunk, history_len=2, scheduling=scheduling,
                 uncertainty_scale=u, seed=0)
    kwargs = {"uncertainty_scale": u} if scheduling != "autoregressive" else {}
    m = level_grid(steps)[scheduling_matrix(scheduling, chunk, steps, **kwargs)]
    changed = (m[1:] < m[:-1]).any(1)  # rows where some token moves: one network call each
    first_window = [c["t"][0] for c in model.backbone.calls if c["x"].shape[1] == chunk]
    expected = m[:-1][changed]
    assert torch.equal(torch.stack(first_window), torch.where(expected == 0, 0.02, expected))  # finished: stabilized


def test_level_spacing_logsnr_feeds_the_schedule_grid():
    model = spy_model(noise_schedule="linear")
    model.sample(batch_size=1, horizon=1, steps=8, level_spacing="logsnr", seed=0)
    fed = torch.stack([c["t"][0, 0] for c in model.backbone.calls])
    assert torch.allclose(fed, level_grid(8, model.noise_schedule, "logsnr").flip(0)[:-1])
    assert len(fed.unique()) == 8


def test_clip_x0_bounds_the_prediction():
    model = spy_model(parametrization="x0")
    with torch.no_grad():
        model.backbone.inner.out.bias.fill_(50.0)  # predicts x0 ~ 50
    free = model.sample(batch_size=1, horizon=2, steps=3, seed=0)
    clipped = model.sample(batch_size=1, horizon=2, steps=3, clip_x0=2.0, seed=0)
    assert free.abs().max() > 40 and clipped.abs().max() <= 2.0 + 1e-5


def test_missing_context_and_padding_are_pure_noise():
    model = spy_model(window=8, causal=False)
    ctx = torch.randn(1, 3, 2)
    model.sample(ctx, 2, context_mask=torch.tensor([[True, False, True]]), steps=2, seed=0)
    t = model.backbone.calls[0]["t"][0]
    assert t.shape == (8,) and t[1] == 1.0 and t[0] == 0 and t[2] == 0 and (t[5:] == 1.0).all()


def test_replacement_feeds_history_at_the_new_tokens_level():
    model = spy_model()
    model.sample(torch.randn(1, 2, 2), 2, steps=3, scheduling="full_sequence", history="replacement", seed=0)
    ts = [c["t"][0] for c in model.backbone.calls]
    assert [round(float(t[0]), 4) for t in ts] == [round(float(t[3]), 4) for t in ts] == [1.0, 0.6667, 0.3333]
    xs = [c["x"][0, 0] for c in model.backbone.calls]
    assert not torch.equal(xs[1], xs[2])  # re-noised afresh at every step


def test_plan_windows_cover_the_horizon():
    for ctx, horizon, window, chunk, hist in [(8, 100, 16, None, None), (0, 37, 10, 3, 5), (3, 5, 8, None, None), (20, 10, 8, None, None)]:
        covered = ctx
        for start, h, new in plan_windows(ctx, horizon, window, chunk, hist):
            assert h + new <= window and start + h == covered  # history is the most recent known tokens
            covered += new
        assert covered == ctx + horizon


@pytest.mark.parametrize("field, value, message", [
    ("history", "blur", "unknown history 'blur'"),
    ("stabilization_level", 1.0, "stabilization_level must lie in"),
    ("context_level", -0.1, "context_level must lie in"),
    ("steps", 0, "steps must be an integer >= 1"),
    ("eta", 1.5, "eta must lie in"),
    ("uncertainty_scale", -1.0, "uncertainty_scale must be >= 0"),
    ("chunk_size", 0, "chunk_size must be >= 1"),
    ("history_len", -2, "history_len must be >= 0"),
    ("level_spacing", "log", "unknown level_spacing 'log'"),
    ("clip_x0", 0.0, "clip_x0 must be > 0"),
    ("scheduling", "pyramidal", "unknown scheduling 'pyramidal'"),
    ("scheduling", "chunked", "use scheduling='full_sequence' with chunk_size"),
])
def test_sampling_config_errors_name_the_option(field, value, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**{field: value}).check()


def test_tokens_finished_inside_a_window_are_fed_at_the_stabilization_level():
    """The first tokens of an autoregressive window are generated history for the later ones."""
    model = spy_model()
    out = model.sample(batch_size=1, horizon=3, steps=2, history_len=0, stabilization_level=0.25, seed=0)
    calls = model.backbone.calls  # one window of 3 tokens, autoregressive: rows 0-1 token 0, 2-3 token 1, ...
    assert [c["t"][0].tolist() for c in calls[2:4]] == [[0.25, 1.0, 1.0], [0.25, 0.5, 1.0]]
    a, s = model.noise_schedule.alpha_sigma(torch.tensor(0.25))
    fed = calls[3]["x"][0, 0]
    assert not torch.equal(fed, out[0, 0]) and ((fed - a * out[0, 0]) / s).abs().max() < 5
    assert torch.equal(calls[2]["x"][0, 0], fed)  # one noise draw per window
    model.backbone.calls.clear()
    model.sample(batch_size=1, horizon=3, steps=2, history_len=0, stabilization_level=0.0, seed=0)
    assert model.backbone.calls[3]["t"][0].tolist() == [0.0, 0.5, 1.0]


def test_progress_bars_only_when_asked(capsys):
    model = spy_model()
    model.sample(torch.randn(1, 2, 2), 6, steps=1, chunk_size=2, seed=0)
    assert capsys.readouterr().err == ""
    model.sample(torch.randn(1, 2, 2), 6, steps=1, chunk_size=2, seed=0, progress=True)
    assert "rollout" in capsys.readouterr().err


def test_plan_windows_default_history_is_the_context_or_half_a_window():
    assert plan_windows(0, 20, 8, None, None)[1:] == [(s, 4, 4) for s in (0, 4, 8, 12)]  # no context: window // 2
    assert plan_windows(3, 10, 8, None, None) == [(0, 3, 5), (5, 3, 5)]  # the context length


def test_padded_windows_get_zero_conditions_for_the_padding():
    torch.manual_seed(0)
    bb = SpyBackbone(perturb_parameters(Transformer(dim=2, width=16, depth=1, heads=2, causal=False, cond_dim=3)))
    model = DiffusionForcing(bb, window=6)
    cond = torch.randn(1, 2 + 5, 3)
    model.sample(torch.randn(1, 2, 2), 5, steps=1, chunk_size=2, history_len=2, cond=cond, seed=0)
    for call in bb.calls:  # every window is padded to 6 tokens; the padding's condition is zero
        assert call["x"].shape[1] == 6 and call["cond"].shape[1] == 6
    last = bb.calls[-1]["cond"]  # window: history 4..5, new token 6, padding 3 tokens
    assert torch.equal(last[:, :3], cond[:, 4:7]) and torch.equal(last[:, 3:], torch.zeros(1, 3, 3))

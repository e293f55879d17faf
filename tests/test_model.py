import pytest
import torch

from dforce import ClassifierFreeGuidance, DiffusionForcing, Transformer
from dforce.testing import check_backbone


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_honours_the_contract(causal):
    rep = check_backbone(Transformer(dim=5, width=32, depth=2, heads=4, causal=causal, cond_dim=3), tokens=9)
    assert rep.get("cache", False) == causal  # check_backbone raises on any broken rule; the cache check runs for causal ones
    if causal:
        assert rep["future_leak"] < 1e-6


def test_check_backbone_catches_a_leaky_causal_backbone():
    class Leaky(torch.nn.Module):
        causal, token_shape = True, (2,)

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x, t, cond=None):
            h = torch.cat([x, t[..., None]], -1)
            return self.lin(h) + h.mean(1, keepdim=True)[..., :2]  # mixes every token

    with pytest.raises(AssertionError, match="leaks the future"):
        check_backbone(Leaky())


def test_check_backbone_catches_ignored_noise_levels():
    class Deaf(torch.nn.Module):
        causal, token_shape = True, (2,)

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x, t, cond=None):
            return self.lin(x)

    with pytest.raises(AssertionError, match="ignores per-token levels"):
        check_backbone(Deaf())


def make_model(**kw):
    return DiffusionForcing(Transformer(dim=kw.pop("dim", 4), width=32, depth=2, heads=2), window=8, **kw)


def test_loss_is_finite_for_every_combination():
    for param in ("eps", "x0", "v", "flow"):
        for weighting in ("uniform", "min_snr", "sigmoid", "fused_snr"):
            for noise in ("independent", "full_sequence", "teacher_forcing", "uniform_future"):
                model = make_model(parametrization=param, weighting=weighting, training_noise=noise)
                loss = model.loss(torch.randn(3, 8, 4))
                assert torch.isfinite(loss), (param, weighting, noise)
                loss.backward()


def test_padding_is_pure_noise_and_out_of_the_loss():
    model = make_model()
    x = torch.randn(2, 8, 4)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, 5:] = False
    x_nan = x.clone()
    x_nan[:, 5:] = float("nan")  # missing values may be NaN when masked
    per_tok = model.loss(x_nan, mask=mask, reduction="none")
    assert torch.isfinite(per_tok).all() and (per_tok[:, 5:] == 0).all()
    # the padded tokens must be fed at level 1 (pure noise)
    seen = {}
    orig = model.backbone.forward

    def spy(xx, t, cond=None):
        seen["t"] = t
        return orig(xx, t, cond)

    model.backbone.forward = spy
    model.loss(x, mask=mask)
    assert (seen["t"][:, 5:] == 1).all()
    model.loss(x, mask=mask, noise_levels=torch.full((2, 8), 0.3))  # given levels too, for every sequence
    assert (seen["t"][:, 5:] == 1).all() and torch.allclose(seen["t"][:, :5], torch.tensor(0.3))


def test_errors_name_the_problem():
    model = make_model()
    with pytest.raises(ValueError, match=r"shape \[B, N, 4\]"):
        model.loss(torch.randn(2, 8, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        bad = torch.randn(2, 8, 4)
        bad[0, 0, 0] = float("inf")
        model.loss(bad)
    with pytest.raises(ValueError, match="unknown parametrization"):
        make_model(parametrization="score")
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_model(noise_schedule="cosin")
    with pytest.raises(TypeError, match="unknown sampling option"):
        model.sample(batch_size=1, horizon=2, temperature=2.0)
    with pytest.raises(ValueError, match="unknown scheduling .zigzag."):
        model.sample(batch_size=1, horizon=2, scheduling="zigzag", steps=2)
    with pytest.raises(ValueError, match="not a multiple of frame_stack=2"):
        make_model(frame_stack=2).sample(context=torch.randn(1, 3, 2), horizon=2)


def test_history_len_spans_zero_to_window_minus_one():
    for h in (0, 7):
        assert DiffusionForcing(Transformer(dim=3, width=16, depth=1, heads=2), window=8, history_len=h).history_len == h
    for h in (-1, 8):
        with pytest.raises(ValueError, match=r"history_len must lie in \[0, window - 1\] = \[0, 7\]"):
            DiffusionForcing(Transformer(dim=3, width=16, depth=1, heads=2), window=8, history_len=h)


def test_window_and_frame_stack_are_each_checked():
    for kw in (dict(window=0), dict(window=8, frame_stack=0)):
        with pytest.raises(ValueError, match="window and frame_stack must be >= 1"):
            DiffusionForcing(Transformer(dim=4, width=16, depth=1, heads=2), **kw)


def test_explicit_noise_levels_must_lie_in_the_unit_interval():
    model, x = make_model(dim=3), torch.randn(2, 4, 3)
    assert torch.isfinite(model.loss(x, noise_levels=torch.tensor([[0.0, 0.3, 0.7, 1.0]] * 2)))
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="noise_levels must lie in \\[0, 1\\]"):
            model.loss(x, noise_levels=torch.full((2, 4), bad))


def test_noise_clip_bounds_the_training_noise_on_both_sides():
    from dforce import testing

    model = DiffusionForcing(testing.SpyBackbone(Transformer(dim=3, width=16, depth=1, heads=2)), window=8, noise_clip=0.5)
    model.loss(torch.zeros(64, 8, 3), noise_levels=torch.ones(64, 8))  # x_t = sigma(1) eps, sigma(1) ~ 1
    fed = model.backbone.calls[-1]["x"]
    assert fed.max() <= 0.5 and fed.min() >= -0.5
    assert (fed > 0.45).float().mean() > 0.2 and (fed < -0.45).float().mean() > 0.2  # clipped at both ends, not shifted


def test_default_denoiser_is_the_plain_uncompiled_one():
    model = make_model()
    x, t = torch.randn(2, 5, 4), torch.rand(2, 5)
    for got, want in zip(model.denoiser()(x, t), model.denoise(x, t)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("kw", [dict(known_start_prob=-0.1), dict(known_start_prob=1.1), dict(known_start_level=-0.1),
                                dict(known_start_level=1.1)])
def test_known_start_options_must_lie_in_the_unit_interval(kw):
    with pytest.raises(ValueError, match="known_start_prob and known_start_level must lie in"):
        make_model(**kw)


def test_noise_clip_must_be_positive():
    assert DiffusionForcing(Transformer(dim=3, width=16, depth=1, heads=2), window=8, noise_clip=0.5).noise_clip == 0.5
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="noise_clip must be > 0"):
            DiffusionForcing(Transformer(dim=3, width=16, depth=1, heads=2), window=8, noise_clip=bad)


def test_loss_closed_form_for_a_constant_prediction():
    class Const(torch.nn.Module):
        causal, token_shape = True, (2,)

        def forward(self, x, t, cond=None):
            return torch.full_like(x, 0.5)

    x = torch.randn(3, 4, 2)
    model = DiffusionForcing(Const(), window=4, parametrization="x0", weighting="uniform")
    per_token = model.loss(x, noise_levels=torch.full((3, 4), 0.5), reduction="none")
    a, s = model.noise_schedule.alpha_sigma(torch.tensor(0.5))
    # uniform weighting on the eps-MSE is the x0-MSE times (alpha / sigma)^2
    torch.testing.assert_close(per_token, (0.5 - x).pow(2).mean(-1) * (a / s) ** 2, rtol=1e-5, atol=1e-6)


def test_masked_frames_inside_a_token_do_not_enter_the_loss():
    class Fixed(torch.nn.Module):  # predicts `out`; token_shape of 2 stacked 1-channel frames
        causal, token_shape = True, (2,)

        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, x, t, cond=None):
            return self.out.expand_as(x)

    x, mask = torch.randn(1, 4, 1), torch.tensor([[True, False, True, True]])  # frame 1 = token 0's second frame
    a, b = torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)
    b[0, 0, 1] = 5.0  # differs only where the masked frame sits
    la, lb = (DiffusionForcing(Fixed(o), window=2, frame_stack=2).loss(x, mask=mask, generator=torch.Generator().manual_seed(0),
                                                                        reduction="none") for o in (a, b))
    assert torch.equal(la, lb)


def test_cond_shape_error_names_the_expected_shape():
    model = DiffusionForcing(Transformer(dim=3, width=16, depth=1, heads=2, cond_dim=2), window=8)
    with pytest.raises(ValueError, match=r"cond must have shape \[B, C \+ horizon, \.\.\.\] = \[2, 7, \.\.\.\], got \(2, 5, 2\)"):
        model.sample(context=torch.randn(2, 4, 3), horizon=3, steps=1, cond=torch.randn(2, 5, 2))


def test_batch_size_must_agree_with_the_context():
    model = make_model(dim=3)
    ctx = torch.randn(2, 4, 3)
    assert model.sample(context=ctx, horizon=1, steps=1, batch_size=2).shape == (2, 1, 3)
    for bad in (1, 3):
        with pytest.raises(ValueError, match=f"batch_size={bad} disagrees with the context's batch of 2"):
            model.sample(context=ctx, horizon=1, steps=1, batch_size=bad)


def test_context_mask_shape_error_names_both_shapes():
    model = make_model(dim=3)
    with pytest.raises(ValueError, match=r"context_mask must have shape \[B, C\] = \(2, 4\), got \(2, 3\)$"):
        model.sample(context=torch.randn(2, 4, 3), horizon=1, steps=1, context_mask=torch.ones(2, 3, dtype=torch.bool))


def test_sample_shapes_seed_and_long_rollout():
    model = make_model(frame_stack=2, dim=6)
    ctx = torch.randn(2, 4, 3)
    a = model.sample(context=ctx, horizon=40, steps=3, seed=7)
    b = model.sample(context=ctx, horizon=40, steps=3, seed=7)
    c = model.sample(context=ctx, horizon=40, steps=3, seed=8)
    assert a.shape == (2, 40, 3) and torch.equal(a, b) and not torch.equal(a, c)
    for schedule in ("full_sequence", "pyramid", "trapezoid", "autoregressive"):
        out = model.sample(context=ctx, horizon=20, steps=3, scheduling=schedule, eta=1.0, seed=0)
        assert out.shape == (2, 20, 3) and torch.isfinite(out).all()
    assert model.sample(batch_size=3, horizon=4, steps=2).shape == (3, 4, 3)


def test_cfg_batches_conditions_and_combines():
    model = DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2, cond_dim=3), window=6, cond_dropout=0.2)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    cond = torch.randn(2, 8, 3)
    calls = []
    orig = model.backbone.forward
    model.backbone.forward = lambda x, t, c=None: calls.append(x.shape[0]) or orig(x, t, c)
    out = model.sample(context=torch.randn(2, 2, 2), horizon=6, cond=cond, steps=2, guidance=ClassifierFreeGuidance(3.0), seed=0)
    assert out.shape == (2, 6, 2) and set(calls) == {4}  # both conditions in one batch
    base = model.sample(context=torch.randn(2, 2, 2), horizon=6, cond=cond, steps=2, seed=0)
    assert not torch.allclose(out, base)


def test_cond_dropout_zeroes_whole_sequences_in_training_only():
    from dforce.testing import SpyBackbone

    model = DiffusionForcing(SpyBackbone(Transformer(dim=2, width=16, depth=1, heads=2, cond_dim=3)), window=4, cond_dropout=0.5)
    x, cond = torch.randn(64, 4, 2), torch.randn(64, 4, 3) + 5.0
    model.train().loss(x, cond=cond, generator=torch.Generator().manual_seed(0))
    fed = model.backbone.calls[-1]["cond"]
    dropped = (fed == 0).flatten(1).all(1)
    kept = (fed == cond).flatten(1).all(1)
    assert (dropped | kept).all() and 16 < int(dropped.sum()) < 48
    model.eval().loss(x, cond=cond)
    assert torch.equal(model.backbone.calls[-1]["cond"], cond)


@pytest.mark.slow
def test_small_model_learns_a_learnable_dataset():
    torch.manual_seed(0)
    # sine waves with random phase: predictable from history
    model = DiffusionForcing(Transformer(dim=2, width=64, depth=2, heads=4), window=16, frame_stack=2)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def batch(n=64):
        phase = torch.rand(n, 1) * 6.28
        tt = torch.arange(32) * 0.3
        return torch.sin(tt + phase)[..., None]

    g = torch.Generator().manual_seed(0)
    fixed = batch(256)
    with torch.no_grad():
        first = model.loss(fixed, generator=torch.Generator().manual_seed(1)).item()
    for _ in range(150):
        loss = model.loss(batch(), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = model.loss(fixed, generator=torch.Generator().manual_seed(1)).item()
    assert last < 0.5 * first
    # and the rollout follows the sine
    phase = torch.rand(8, 1) * 6.28
    full = torch.sin(torch.arange(48) * 0.3 + phase)[..., None]
    pred = model.sample(context=full[:, :8], horizon=40, steps=10, seed=0)
    err = (pred - full[:, 8:]).pow(2).mean().item()
    assert err < 0.25, err


def test_missing_context_is_pure_noise_and_replacement_follows_the_level():
    model = make_model()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ctx = torch.randn(2, 4, 4)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[:, 1] = False
    other = ctx.clone()
    other[:, 1] = float("nan")  # a missing value may be NaN; it must not matter
    a = model.sample(context=ctx, context_mask=mask, horizon=4, steps=3, seed=0)
    b = model.sample(context=other, context_mask=mask, horizon=4, steps=3, seed=0)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    seen = []
    orig = model.backbone.forward
    model.backbone.forward = lambda x, t, c=None: seen.append(t.clone()) or orig(x, t, c)
    model.sample(context=ctx, context_mask=mask, horizon=4, steps=3, seed=0, scheduling="full_sequence")
    assert all((t[:, 1] == 1).all() and (t[:, 0] == 0).all() for t in seen)  # missing: level 1; observed: clean
    seen.clear()
    model.sample(context=ctx, horizon=4, steps=3, seed=0, scheduling="full_sequence", history="replacement")
    assert [round(float(t[0, 0]), 4) for t in seen] == [round(float(t[0, 5]), 4) for t in seen] == [1.0, 0.6667, 0.3333]
    with pytest.raises(ValueError, match="unknown history .inpaint."):
        model.sample(context=ctx, horizon=4, history="inpaint")

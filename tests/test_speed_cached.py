"""KV-cached and streaming sampling agree with the uncached sliding-window rollout."""

import pytest
import torch

from dforce import DiffusionForcing, Transformer
from dforce.sampling.cached import CachedDenoiser, cached_rollout, stream
from dforce.testing import _perturb_last_layers

W = 8


def make_model(window=W, frame_stack=1, cond_dim=0, depth=2, causal=True):
    torch.manual_seed(0)
    bb = Transformer(dim=3 * frame_stack, width=32, depth=depth, heads=2, cond_dim=cond_dim, causal=causal)
    _perturb_last_layers(bb, 0)  # adaLN-Zero makes an untrained model constant; give it real dependencies
    return DiffusionForcing(bb, window=window, frame_stack=frame_stack)


def test_forward_cached_matches_forward_in_pieces():
    bb = make_model(cond_dim=2).backbone
    x, t, c = torch.randn(2, 10, 3), torch.rand(2, 10), torch.randn(2, 10, 2)
    full = bb(x, t, c)
    cache = bb.new_cache()
    parts = [bb.forward_cached(x[:, a:b], t[:, a:b], c[:, a:b], cache=cache, commit=True) for a, b in ((0, 4), (4, 7), (7, 10))]
    assert cache.length == 10
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
    # a rolling cache renumbers positions from its oldest token: exact for a one-layer model
    one = make_model(depth=1).backbone
    cache = one.new_cache(max_len=3)
    for i in range(7):
        one.forward_cached(x[:, i : i + 1], t[:, i : i + 1], cache=cache, commit=True)
    assert cache.length == 3
    out = one.forward_cached(x[:, 7:8], t[:, 7:8], cache=cache)
    assert (out - one(x[:, 4:8], t[:, 4:8])[:, -1:]).abs().max() < 1e-5


@pytest.mark.parametrize("stabilization, eta", [("noise", 1.0), ("relabel", 0.0)])
def test_window_cache_equals_uncached_autoregressive_past_the_window(stabilization, eta):
    model = make_model()
    ctx = torch.randn(2, 3, 3)
    kw = dict(steps=4, chunk_size=1, history_len=W - 1, stabilization=stabilization, eta=eta, stabilization_level=0.05)
    ref = model.sample(ctx, 13, seed=1, **kw)  # 16 tokens: twice the 8-token window
    stats = {}
    out = cached_rollout(model, ctx, 13, seed=1, cache="window", stats=stats, **kw)
    assert (out - ref).abs().max() < 1e-5
    # one pass over the history per token plus one-token passes, instead of `steps` window passes
    uncached = {}
    cached_rollout(model, ctx, 13, seed=1, cache="none", stats=uncached, **kw)
    assert stats["evaluated_tokens"] < uncached["evaluated_tokens"] / 2
    assert stats["cache_tokens"] <= W


@pytest.mark.parametrize("schedule", ["pyramid", "full_sequence"])
def test_window_cache_equals_uncached_for_any_schedule_and_chunk(schedule):
    model = make_model(cond_dim=0)
    kw = dict(steps=3, schedule=schedule, eta=1.0)
    ref = model.sample(batch_size=2, horizon=10, seed=3, **kw)
    assert (model.sample(batch_size=2, horizon=10, seed=3, cache="window", **kw) - ref).abs().max() < 1e-5


def test_window_cache_with_conditions_and_guidance():
    from dforce import ClassifierFreeGuidance

    model = make_model(cond_dim=2)
    ctx, cond = torch.randn(2, 2, 3), torch.randn(2, 12, 2)
    kw = dict(steps=3, chunk_size=1, history_len=W - 1, cond=cond, guidance=ClassifierFreeGuidance(2.0))
    ref = model.sample(ctx, 10, seed=0, **kw)
    assert (cached_rollout(model, ctx, 10, seed=0, **kw) - ref).abs().max() < 1e-5


def test_rolling_cache_is_exact_within_the_window(eta=1.0):
    model = make_model()
    ctx = torch.randn(2, 2, 3)
    kw = dict(steps=5, chunk_size=1, history_len=W - 1, stabilization="relabel", eta=eta)
    ref = model.sample(ctx, W - 2, seed=4, **kw)
    stats = {}
    out = cached_rollout(model, ctx, W - 2, seed=4, cache="rolling", stats=stats, **kw)
    assert (out - ref).abs().max() < 1e-5
    # each token: `steps` one-token passes, then encoded once into the cache (context: once)
    assert stats["evaluated_tokens"] == 2 * (2 + (W - 2) * 5 + (W - 3))


def test_rolling_cache_memory_stays_flat():
    model = make_model()
    sizes = []
    stats = {}
    for i, _ in enumerate(stream(model, batch_size=1, horizon=24, steps=1, chunk_size=1, cache="rolling", stats=stats)):
        sizes.append((stats["cache_tokens"], stats["cache_bytes"]))
    assert max(s[0] for s in sizes) == W - 1
    assert len({s for s in sizes[W:]}) == 1  # the same bytes from the moment the cache is full


def test_stream_yields_the_first_token_early_and_matches_sample():
    model = make_model(frame_stack=2, window=6)
    kw = dict(steps=4, schedule="pyramid", history_len=0)  # one window of 6 tokens, pyramid inside it
    stats = {}
    it = stream(model, batch_size=2, horizon=12, seed=5, stats=stats, **kw)
    first = next(it)
    evaluated_at_first = stats.get("evaluated_tokens")
    frames = [first, *it]
    assert len(frames) == 12 and first.shape == (2, 3)
    assert torch.is_inference(first)  # sampled under torch.inference_mode
    ref = model.sample(batch_size=2, horizon=12, seed=5, **kw)
    assert (torch.stack(frames, 1) - ref).abs().max() < 1e-5
    assert evaluated_at_first is not None and evaluated_at_first < stats["evaluated_tokens"] / 2


def test_clear_errors():
    with pytest.raises(ValueError, match="causal backbone"):
        cached_rollout(make_model(causal=False), batch_size=1, horizon=2, steps=2)
    with pytest.raises(ValueError, match="chunk_size=1"):
        cached_rollout(make_model(), batch_size=1, horizon=4, steps=2, chunk_size=2, cache="rolling")
    with pytest.raises(ValueError, match="unknown cache"):
        cached_rollout(make_model(), batch_size=1, horizon=4, cache="kv")
    with pytest.raises(TypeError, match="unknown sampling option"):
        cached_rollout(make_model(), batch_size=1, horizon=4, stepz=3)
    assert CachedDenoiser(make_model()).cache.length == 0


def test_window_cache_with_gradient_guidance_falls_back_to_full_passes():
    class Nudge:  # a reward-style guidance: differentiates x0_hat with respect to every token
        def __call__(self, denoise, x, t, cond, info):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                x0, eps = denoise(xg, t, cond)
                (g,) = torch.autograd.grad(x0.square().sum(), xg)
            return x0.detach() - 0.1 * g, eps.detach()

    model = make_model()
    kw = dict(steps=3, chunk_size=1, history_len=W - 1, guidance=Nudge())
    ref = model.sample(batch_size=2, horizon=10, seed=0, **kw)
    assert (cached_rollout(model, batch_size=2, horizon=10, seed=0, **kw) - ref).abs().max() < 1e-5


@pytest.mark.parametrize("cache", ["window", "rolling"])
def test_bf16_sampling_is_close_to_fp32(cache):
    model = make_model()
    kw = dict(batch_size=2, horizon=6, steps=3, chunk_size=1, history_len=W - 1, seed=0, cache=cache)
    fp32 = cached_rollout(model, **kw)
    bf16 = cached_rollout(model, precision="bf16", **kw)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert (bf16 - fp32).abs().max() < 0.1 * fp32.abs().max()

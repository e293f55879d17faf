"""KV caches as denoiser state: the same numbers as uncached sampling, fewer network tokens."""

import pytest
import torch

from dforce import ClassifierFreeGuidance, DiffusionForcing, Transformer
from dforce.guidance import HistoryGuidance
from dforce.sampling import CachedDenoiser
from dforce.testing import SpyBackbone, perturb_parameters

W = 8


def make_model(window=W, frame_stack=1, cond_dim=0, depth=2, causal=True, spy=False):
    torch.manual_seed(0)
    bb = perturb_parameters(Transformer(dim=3 * frame_stack, width=32, depth=depth, heads=2, cond_dim=cond_dim, causal=causal))
    return DiffusionForcing(SpyBackbone(bb) if spy else bb, window=window, frame_stack=frame_stack)


def close(a, b, tol=2e-5):
    return (a - b).abs().max().item() < tol


def test_forward_cached_matches_forward_in_pieces():
    bb = make_model(cond_dim=2).backbone
    x, t, c = torch.randn(2, 10, 3), torch.rand(2, 10), torch.randn(2, 10, 2)
    full = bb(x, t, c)
    cache = bb.new_cache()
    parts = [bb.forward_cached(x[:, a:b], t[:, a:b], c[:, a:b], cache=cache, commit=True) for a, b in ((0, 4), (4, 7), (7, 10))]
    assert cache.length == 10 and close(torch.cat(parts, 1), full)
    # dropping the oldest tokens renumbers positions from the new oldest: exact for a one-layer model
    one = make_model(depth=1).backbone
    cache = one.new_cache(max_len=3)
    for i in range(7):
        one.forward_cached(x[:, i : i + 1], t[:, i : i + 1], cache=cache, commit=True)
    assert cache.length == 3
    assert close(one.forward_cached(x[:, 7:8], t[:, 7:8], cache=cache), one(x[:, 4:8], t[:, 4:8])[:, -1:])


@pytest.mark.parametrize("history, eta", [("noise", 1.0), ("relabel", 0.0)])
def test_window_cache_equals_uncached_past_the_window_with_fewer_tokens(history, eta):
    model = make_model(spy=True)
    ctx = torch.randn(2, 3, 3)
    kw = dict(steps=4, chunk_size=1, history_len=W - 1, history=history, eta=eta, stabilization_level=0.05, seed=1)
    ref = model.sample(ctx, 13, **kw)  # 16 tokens: twice the 8-token window
    uncached = model.backbone.tokens_evaluated()
    model.backbone.calls.clear()
    assert close(model.sample(ctx, 13, cache="window", **kw), ref)
    # one pass over the history per token plus one-token passes, instead of `steps` window passes
    assert model.backbone.tokens_evaluated() < uncached / 2
    assert all(c["kind"] == "forward_cached" for c in model.backbone.calls)


@pytest.mark.parametrize("scheduling, u", [("pyramid", 0.5), ("pyramid", 3.0), ("full_sequence", 1.0), ("trapezoid", 1.0)])
def test_window_cache_equals_uncached_for_any_schedule_and_chunk(scheduling, u):
    model = make_model()
    kw = dict(steps=3, scheduling=scheduling, uncertainty_scale=u, eta=1.0, chunk_size=3, history_len=4, seed=3)
    ref = model.sample(batch_size=2, horizon=10, **kw)
    assert close(model.sample(batch_size=2, horizon=10, cache="window", **kw), ref)


@pytest.mark.parametrize("scheduling", ["autoregressive", "pyramid"])
def test_window_cache_equals_uncached_with_dpmpp_2m(scheduling):
    model = make_model(spy=True)
    kw = dict(steps=4, scheduling=scheduling, solver="dpm++2m", chunk_size=2, history_len=W - 2, stabilization_level=0.05, seed=1)
    ctx = torch.randn(2, 3, 3)
    ref = model.sample(ctx, 11, **kw)
    uncached = model.backbone.tokens_evaluated()
    model.backbone.calls.clear()
    assert close(model.sample(ctx, 11, cache="window", **kw), ref)
    assert model.backbone.tokens_evaluated() < uncached
    assert not close(model.sample(ctx, 11, **{**kw, "solver": "ddim"}), ref)  # the solver is used


@pytest.mark.parametrize("guidance", [ClassifierFreeGuidance(2.0), HistoryGuidance.vanilla(2.0),
                                      HistoryGuidance.fractional(1.5, stabilized=True)])
def test_window_cache_equals_uncached_with_guidance(guidance):
    model = make_model(cond_dim=2)
    ctx, cond = torch.randn(2, 2, 3), torch.randn(2, 12, 2)
    kw = dict(steps=3, chunk_size=2, history_len=4, cond=cond, guidance=guidance, eta=1.0, seed=0)
    ref = model.sample(ctx, 10, **kw)
    assert close(model.sample(ctx, 10, cache="window", **kw), ref)


def test_window_cache_with_history_guidance_and_no_context_bug_a():
    """Bug A: the guided batch doubles when history appears; the cache must not keep old buffers."""
    model = make_model()
    kw = dict(batch_size=2, horizon=4, steps=2, chunk_size=2, history_len=2, guidance=HistoryGuidance.vanilla(2.0), seed=0)
    assert close(model.sample(cache="window", **kw), model.sample(**kw))


def test_window_cache_with_missing_context():
    model = make_model()
    ctx, mask = torch.randn(2, 4, 3), torch.tensor([[True, False, True, True], [True, True, True, False]])
    kw = dict(context_mask=mask, steps=3, chunk_size=1, history_len=W - 1, seed=2)
    assert close(model.sample(ctx, 9, cache="window", **kw), model.sample(ctx, 9, **kw))


def test_window_cache_with_gradient_guidance_falls_back_to_full_passes():
    class Nudge:  # a reward-style guidance: differentiates x0_hat with respect to every token
        def __call__(self, denoise, x, t, cond, info):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                x0, eps = denoise(xg, t, cond)
                (g,) = torch.autograd.grad(x0.square().sum(), xg)
            return x0.detach() - 0.1 * g, eps.detach()

    model = make_model()
    kw = dict(batch_size=2, horizon=10, steps=3, chunk_size=1, history_len=W - 1, guidance=Nudge(), seed=0)
    assert close(model.sample(cache="window", **kw), model.sample(**kw))
    denoise = model.denoiser(cache="window")
    with torch.enable_grad():
        denoise(torch.randn(3, 5, 3, requires_grad=True), torch.rand(3, 5))
    assert denoise.evaluated_tokens == 3 * 5  # a full pass over every token


@pytest.mark.parametrize("chunk,history_len", [(1, W - 1), (4, 1), (3, 2)])
def test_rolling_cache_encodes_each_history_token_once_over_a_long_rollout(chunk, history_len):
    from dforce.sampling import plan_windows

    model, horizon = make_model(spy=True), 3 * W
    model.sample(torch.randn(2, 2, 3), horizon, steps=2, chunk_size=chunk, history_len=history_len, cache="rolling", seed=0)
    committed = sum(c["x"].shape[1] for c in model.backbone.calls if c["commit"])
    history = {i for start, hist, _ in plan_windows(2, horizon, W, chunk, history_len) for i in range(start, start + hist)}
    assert committed == len(history)


def test_window_cache_reruns_only_from_the_first_changed_token():
    denoise = make_model().denoiser(cache="window")
    x, t = torch.randn(2, 6, 3), torch.rand(2, 6)
    ref = denoise(x, t)
    assert denoise.evaluated_tokens == 2 * 6
    x2 = x.clone()
    x2[:, 4] += 1
    out = denoise(x2, t)
    assert denoise.evaluated_tokens == 2 * 6 + 2 * 2  # tokens 4 and 5 again
    assert close(out[0][:, :4], ref[0][:, :4], tol=1e-6) and not close(out[0][:, 4:], ref[0][:, 4:])


def test_window_cache_reuses_its_buffers_when_the_window_slides_and_resizes_for_a_new_batch():
    model = make_model()
    denoise = model.denoiser(cache="window")
    x, t = torch.randn(2, 6, 3), torch.rand(2, 6)
    denoise(x, t)
    buffers = list(denoise.cache._val)
    out = denoise(torch.roll(x, -1, 1), t)  # a slide: every token changed, rerun from token 0
    assert all(a is b for a, b in zip(denoise.cache._val, buffers))  # same storage, not reallocated
    assert close(out[0], model.denoise(torch.roll(x, -1, 1), t)[0])
    x3, t3 = torch.randn(3, 6, 3), torch.rand(3, 6)
    assert close(denoise(x3, t3)[0], model.denoise(x3, t3)[0])  # another batch size: fresh buffers
    assert denoise.cache.batch_size == 3


def test_cache_refuses_tokens_of_another_batch_while_it_holds_some():
    cache = make_model().backbone.new_cache()
    bb = make_model().backbone
    bb.forward_cached(torch.randn(2, 3, 3), torch.rand(2, 3), cache=cache, commit=True)
    with pytest.raises(ValueError, match="one cache per batch"):
        cache.attend(0, torch.zeros(3, 2, 1, 16), torch.zeros(3, 2, 1, 16))


def test_first_change_finds_the_first_differing_token_in_any_batch_row():
    from dforce.sampling.cached import _first_change

    a = torch.randn(2, 5, 3)
    assert _first_change(a, a.clone()) == 5
    b = a.clone()
    b[1, 3, 2] += 1
    assert _first_change(a, b) == 3
    b[0, 1, 0] += 1
    assert _first_change(a, b) == 1


def test_rolling_cache_is_exact_within_the_window_and_encodes_history_once():
    model = make_model(spy=True)
    ctx = torch.randn(2, 2, 3)
    kw = dict(steps=5, chunk_size=1, history_len=W - 1, history="relabel", eta=1.0, seed=4)
    ref = model.sample(ctx, W - 2, **kw)
    model.backbone.calls.clear()
    assert close(model.sample(ctx, W - 2, cache="rolling", **kw), ref)
    committed = [c for c in model.backbone.calls if c["commit"]]
    stepped = [c for c in model.backbone.calls if not c["commit"]]
    # the context once, then every generated token once when it becomes history
    assert sum(c["x"].shape[1] for c in committed) == 2 + (W - 3)
    assert len(stepped) == (W - 2) * 5 and all(c["x"].shape[1] == 1 for c in stepped)


def test_rolling_cache_honours_the_scheduling_matrix():
    model = make_model()
    kw = dict(batch_size=2, horizon=W, steps=4, history_len=0, seed=6)  # one window of W new tokens
    outs = {}
    for name, u in (("pyramid", 0.1), ("pyramid", 2.0), ("autoregressive", 1.0)):
        ref = model.sample(scheduling=name, uncertainty_scale=u, **kw)
        outs[name, u] = model.sample(scheduling=name, uncertainty_scale=u, cache="rolling", **kw)
        assert close(outs[name, u], ref)
    assert not close(outs["pyramid", 0.1], outs["pyramid", 2.0], 1e-3)
    assert not close(outs["pyramid", 2.0], outs["autoregressive", 1.0], 1e-3)


@torch.no_grad()
def test_rolling_cache_memory_stays_flat():
    model = make_model()
    denoise = CachedDenoiser(model, mode="rolling")
    from dforce.sampling import iter_rollout, SamplingConfig

    lengths = []
    cfg = SamplingConfig(steps=1, chunk_size=1, history_len=W - 1)
    for _ in iter_rollout(denoise, token_shape=(3,), horizon=24, window=W, schedule=model.noise_schedule, config=cfg, batch_size=1):
        lengths.append(denoise.cache.length)
    assert max(lengths) == W - 1 and lengths[-10:] == [W - 1] * 10
    assert denoise.cache.nbytes() < 4 * 2 * 3 * 2 * 16 * 32 * 4  # depth x (k, v, rotated k) x capacity x width


def test_stream_yields_the_first_token_early_and_matches_sample():
    model = make_model(frame_stack=2, window=6, spy=True)
    kw = dict(steps=4, scheduling="pyramid", history_len=0, seed=5)  # one window of 6 tokens, pyramid inside it
    it = model.stream(batch_size=2, horizon=12, **kw)
    first = next(it)
    calls_at_first = len(model.backbone.calls)
    frames = [first, *it]
    assert len(frames) == 12 and first.shape == (2, 6 // 2 * 0 + 3)
    assert calls_at_first == 4 and len(model.backbone.calls) == 4 + 5  # pyramid u=1 over 6 tokens: 9 rows
    assert close(torch.stack(frames, 1), model.sample(batch_size=2, horizon=12, **kw))


def test_clear_errors():
    with pytest.raises(ValueError, match="cache='window' needs a causal backbone"):
        make_model(causal=False).sample(batch_size=1, horizon=2, steps=2, cache="window")
    with pytest.raises(ValueError, match="unknown cache 'kv'"):
        make_model().sample(batch_size=1, horizon=4, cache="kv")
    with pytest.raises(ValueError, match="cache='rolling' .* takes no guidance"):
        make_model().sample(batch_size=1, horizon=4, cache="rolling", guidance=HistoryGuidance.vanilla(2.0))
    with pytest.raises(TypeError, match="unknown sampling option"):
        make_model().sample(batch_size=1, horizon=4, stepz=3)


@pytest.mark.parametrize("cache", ["window", "rolling"])
def test_bf16_sampling_is_close_to_fp32(cache):
    model = make_model()
    kw = dict(batch_size=2, horizon=6, steps=3, chunk_size=1, history_len=W - 1, seed=0, cache=cache)
    fp32 = model.sample(**kw)
    bf16 = model.sample(precision="bf16", **kw)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert (bf16 - fp32).abs().max() < 0.1 * fp32.abs().max()

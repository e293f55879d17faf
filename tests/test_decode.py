"""The lean one-token decode step of the transformer backbones and its ``compile=True`` option."""

import functools

import pytest
import torch

import dforce.backbones.transformer as tr
from dforce import DiffusionForcing, Transformer
from dforce.backbones.concat_transformer import ConcatTransformer
from dforce.backbones.rnn import RNN
from dforce.testing import perturb_parameters


@functools.cache
def _compile_failure() -> str:
    """Why ``torch.compile`` cannot run on this machine (e.g. no C++ compiler), or '' where it can."""
    try:
        torch.compile(lambda x: x * 2 + 1, dynamic=False)(torch.ones(3))
        return ""
    except Exception as e:  # noqa: BLE001 - whatever the compiler raises
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}"


@pytest.fixture
def compiles() -> bool:
    """Whether ``torch.compile`` runs here; where it cannot, the tests check the one-line refusal instead."""
    return not _compile_failure()


def assert_refused(run) -> None:
    """Without a working compiler, ``compile=True`` fails in one line that names the way out."""
    with pytest.raises(RuntimeError, match=r"^compile=True: torch.compile of the decode step failed \(.*\); use compile=False$"):
        run()


def backbone(kind, cond_dim=0, depth=2):
    torch.manual_seed(0)
    if kind == "concat":
        return ConcatTransformer(3, width=32, depth=depth, heads=2, ffn=64, cond_dim=cond_dim).eval()
    return perturb_parameters(Transformer(3, width=32, depth=depth, heads=2, cond_dim=cond_dim)).eval()


@pytest.mark.parametrize("kind", ["concat", "adaln"])
@pytest.mark.parametrize("batch, cond_dim", [(1, 0), (3, 2)])
def test_one_token_steps_equal_forward_in_fixed_size_buffers(kind, batch, cond_dim):
    bb = backbone(kind, cond_dim)
    x, t = torch.randn(batch, 12, 3), torch.rand(batch, 12)
    c = torch.randn(batch, 12, 2) if cond_dim else None
    full = bb(x, t, c)
    cache = bb.new_cache()
    with torch.no_grad():
        bb.forward_cached(x[:, :4], t[:, :4], None if c is None else c[:, :4], cache=cache, commit=True)
        bufs = [id(b) for b in cache._val]
        outs = []
        for i in range(4, 12):
            sl = slice(i, i + 1)
            probe = bb.forward_cached(x[:, sl], t[:, sl] * 0.5, None if c is None else c[:, sl], cache=cache)  # not kept
            assert probe.shape == (batch, 1, 3) and cache.length == i
            outs.append(bb.forward_cached(x[:, sl], t[:, sl], None if c is None else c[:, sl], cache=cache, commit=True))
    assert [id(b) for b in cache._val] == bufs, "one-token steps must write into the preallocated buffers, not reallocate"
    torch.testing.assert_close(torch.cat(outs, 1), full[:, 4:], atol=2e-5, rtol=0)


def test_rolling_bound_and_truncate_with_one_token_steps():
    bb = backbone("concat", depth=1)
    x, t = torch.randn(2, 9, 3), torch.rand(2, 9)
    cache = bb.new_cache(max_len=3)
    with torch.no_grad():
        for i in range(8):
            bb.forward_cached(x[:, i : i + 1], t[:, i : i + 1], cache=cache, commit=True)
        assert cache.length == 3
        torch.testing.assert_close(bb.forward_cached(x[:, 8:9], t[:, 8:9], cache=cache), bb(x[:, 5:9], t[:, 5:9])[:, -1:], atol=2e-5, rtol=0)
        cache.truncate(1)
        torch.testing.assert_close(bb.forward_cached(x[:, 8:9], t[:, 8:9], cache=cache), bb(x[:, [5, 8]], t[:, [5, 8]])[:, -1:],
                                   atol=2e-5, rtol=0)


def test_compile_is_refused_where_it_does_not_apply():
    model = DiffusionForcing(backbone("concat"), window=6)
    with pytest.raises(ValueError, match="compile=True compiles the cached one-token step.*cache='none'"):
        model.sample(torch.randn(1, 2, 3), 2, steps=2, compile=True)
    rnn = DiffusionForcing(RNN(3, width=16), window=6)
    with pytest.raises(ValueError, match="compile=True .* RNN: use compile=False"):
        rnn.sample(torch.randn(1, 2, 3), 2, steps=2, cache="rolling", compile=True)
    with pytest.raises(ValueError, match="compile=True compiles the fp32 decode step; use precision='fp32'"):
        model.sample(torch.randn(1, 2, 3), 2, steps=2, chunk_size=1, cache="rolling", precision="bf16", compile=True)


def test_a_failing_compiler_raises_one_line(monkeypatch):
    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nlong traceback")
        return run

    monkeypatch.setattr(tr, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken)
    model = DiffusionForcing(backbone("adaln"), window=6)
    with pytest.raises(RuntimeError, match=r"^compile=True: torch.compile of the decode step failed \(RuntimeError: no C\+\+ compiler found\); "
                       r"use compile=False$"):
        model.sample(torch.randn(1, 2, 3), 2, steps=2, chunk_size=1, cache="rolling", compile=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["concat", "adaln"])
@pytest.mark.parametrize("batch", [1, 2])  # batch 1 compiles explicit attention instead of SDPA
def test_compiled_sampling_equals_eager(kind, batch, compiles):
    model = DiffusionForcing(backbone(kind), window=6)
    ctx = torch.randn(batch, 2, 3)
    kw = dict(steps=3, chunk_size=1, history_len=5, seed=1)
    if not compiles:
        return assert_refused(lambda: model.sample(ctx, 8, cache="rolling", compile=True, **kw))
    for cache in ("rolling", "window"):
        eager = model.sample(ctx, 8, cache=cache, **kw)
        torch.testing.assert_close(model.sample(ctx, 8, cache=cache, compile=True, **kw), eager, atol=1e-4, rtol=1e-4)
    frames = list(model.stream(ctx, 8, cache="window", compile=True, **kw))
    torch.testing.assert_close(torch.stack(frames, 1), eager, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_compiled_steps_of_two_models_of_one_class_stay_apart(compiles):
    # after its first, fully guarded call a model's compiled step skips dynamo's per-input guards;
    # a second model of another depth must still get (and keep) a graph of its own
    ctx = torch.randn(1, 2, 3)
    kw = dict(steps=3, chunk_size=1, history_len=5, seed=1, cache="rolling")
    models = [DiffusionForcing(backbone("concat", depth=d), window=6) for d in (2, 3)]
    if not compiles:
        return assert_refused(lambda: models[0].sample(ctx, 6, compile=True, **kw))
    eager = [m.sample(ctx, 6, **kw) for m in models]
    for _ in range(2):
        for m, ref in zip(models, eager):
            torch.testing.assert_close(m.sample(ctx, 6, compile=True, **kw), ref, atol=1e-4, rtol=1e-4)
    assert all(len(tr._GUARDED[m.backbone]) == 1 for m in models)  # one signature each: later calls skipped the guards

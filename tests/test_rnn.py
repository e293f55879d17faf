"""The recurrent (GRU) backbone: contract, cached steps, constant-memory rollout."""

import pytest
import torch

from dforce import DiffusionForcing
from dforce.backbones import build_backbone
from dforce.backbones.rnn import RNN
from dforce.testing import check_backbone


def test_rnn_honours_the_contract_and_is_registered():
    rep = check_backbone(RNN(dim=4, width=16, depth=2, cond_dim=3), tokens=9)
    assert rep["causal"] and rep["future_leak"] < 1e-6 and rep.get("cache") is True
    assert isinstance(build_backbone("rnn", dim=2, width=8), RNN)
    with pytest.raises(ValueError, match="expected tokens"):
        RNN(dim=4, width=8)(torch.randn(2, 5, 3), torch.rand(2, 5))


def test_rnn_cached_steps_match_forward_and_rewind():
    torch.manual_seed(0)
    net = RNN(dim=3, width=16, depth=2)
    x, t = torch.randn(2, 9, 3), torch.rand(2, 9)
    full = net(x, t)
    cache = net.new_cache()
    a = net.forward_cached(x[:, :5], t[:, :5], cache=cache, commit=True)
    b = net.forward_cached(x[:, 5:], t[:, 5:], cache=cache, commit=False)
    assert cache.length == 5
    assert (torch.cat([a, b], 1) - full).abs().max() < 1e-5
    cache.truncate(3)  # rewind: the state after token 3
    assert (net.forward_cached(x[:, 3:4], t[:, 3:4], cache=cache) - full[:, 3:4]).abs().max() < 1e-5


def make_rnn_model(window=6):
    torch.manual_seed(0)
    return DiffusionForcing(RNN(dim=3, width=16, depth=2), window=window)


def test_rnn_window_cache_equals_uncached():
    model = make_rnn_model()
    ctx = torch.randn(2, 2, 3)
    kw = dict(steps=3, chunk_size=1, history_len=5, history="noise", eta=1.0)
    ref = model.sample(ctx, 10, seed=0, **kw)
    assert (model.sample(ctx, 10, seed=0, cache="window", **kw) - ref).abs().max() < 1e-5


def test_rnn_rolling_rollout_is_the_recurrent_rollout():
    model = make_rnn_model()
    # the state carries every generated token: within the window the rolling rollout is exact
    relabel = dict(steps=2, chunk_size=1, history_len=5, history="relabel", seed=1)
    short = model.sample(batch_size=2, horizon=5, cache="rolling", **relabel)
    assert (short - model.sample(batch_size=2, horizon=5, **relabel)).abs().max() < 1e-5
    long = model.sample(batch_size=2, horizon=40, steps=1, chunk_size=1, history_len=5, cache="rolling", seed=0)
    assert long.shape == (2, 40, 3) and torch.isfinite(long).all()

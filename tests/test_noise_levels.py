"""Named training-noise patterns (autoregressive, pyramid) and weighted mixtures."""

import pytest
import torch

from dforce import DiffusionForcing
from dforce.diffusion import stack_frames, unstack_frames
from dforce.diffusion.noise_levels import HISTORY_LEVEL_MAX, parse_training_noise, training_noise_levels


class SpyBackbone(torch.nn.Module):
    """Records what the network is fed; predicts zeros (plus a learnable scalar)."""

    causal = True

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token_shape = (dim,)
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x, t, cond=None):
        self.calls.append({"x": x.detach().clone(), "t": t.detach().clone()})
        return torch.zeros_like(x) + self.bias


def test_autoregressive_pattern_clean_history_noisy_present_pure_future():
    g = torch.Generator().manual_seed(0)
    t, m = training_noise_levels("autoregressive", 512, 12, generator=g)
    # exactly one "present" token per row: the last one in the loss
    h = m.long().sum(1) - 1
    assert h.min() == 0 and h.max() == 11 and len(h.unique()) == 12  # boundary 0 (no history) included
    pos = torch.arange(12)[None]
    hist = pos < h[:, None]
    assert (t[hist] <= HISTORY_LEVEL_MAX).all() and t[hist].max() > 0.8 * HISTORY_LEVEL_MAX
    assert (t[pos > h[:, None]] == 1).all() and not m[pos > h[:, None]].any()
    present = t[torch.arange(512), h]
    assert 0.4 < present.mean() < 0.6 and present.min() < 0.05 and present.max() > 0.95
    t, m = training_noise_levels("autoregressive", 16, 12, history_len=5, generator=g)
    assert (t[:, :5] <= HISTORY_LEVEL_MAX).all() and (t[:, 6:] == 1).all() and m[:, :6].all() and not m[:, 6:].any()


def test_pyramid_pattern_is_monotone_up_to_jitter_and_spans_slopes():
    g = torch.Generator().manual_seed(0)
    t, m = training_noise_levels("pyramid", 2048, 16, generator=g)
    assert m.all() and t.min() >= 0 and t.max() <= 1
    assert (t[:, 1:] - t[:, :-1] >= -0.05 - 1e-6).all()  # rises along the window (jitter of +-0.025)
    steps = (t[:, 1:] - t[:, :-1]).clamp(min=0).max(1).values
    assert steps.max() > 0.6 and steps.min() < 0.15  # steep (near autoregressive) and slow rises
    assert ((t > 0.05) & (t < 0.95)).float().mean() > 0.2


def test_mixture_picks_one_component_per_sequence_with_its_weight():
    g = torch.Generator().manual_seed(0)
    t, m = training_noise_levels("full_sequence:3,teacher_forcing:1", 4000, 8, generator=g)
    is_tf = ~m.all(1)  # teacher forcing: one target token; full sequence: all of them
    assert abs(is_tf.float().mean() - 0.25) < 0.03
    assert (t[~is_tf] == t[~is_tf][:, :1]).all()  # full-sequence rows share one level
    assert (m[is_tf].sum(1) == 1).all()


def test_parse_and_validation():
    assert parse_training_noise("independent") == {"independent": 1.0}
    assert parse_training_noise("independent:1, autoregressive:3") == {"independent": 0.25, "autoregressive": 0.75}
    for bad, msg in [("indep:1", "unknown training noise"), ("independent:0", "positive"), ("independent:x", "not a number"),
                     ("independent:1,independent:2", "twice"), ("", "name or"), ("pyramid:-1", "positive")]:
        with pytest.raises(ValueError, match=msg):
            parse_training_noise(bad)
    with pytest.raises(ValueError, match="unknown training noise"):
        DiffusionForcing(SpyBackbone(dim=2), window=4, training_noise="independent:1,bogus:1")


def test_model_feeds_the_mixture_levels_to_the_network():
    spy = SpyBackbone(dim=2)
    model = DiffusionForcing(spy, window=10, training_noise="autoregressive")
    model.loss(torch.randn(64, 10, 2), generator=torch.Generator().manual_seed(0))
    t = spy.calls[-1]["t"]
    # every row: small levels, then one free level, then pure noise
    for row in t:
        ones = (row == 1).nonzero()
        first_one = int(ones[0]) if len(ones) else 10
        assert (row[: max(first_one - 1, 0)] <= HISTORY_LEVEL_MAX).all() and (row[first_one:] == 1).all()


def test_training_noise_levels_shapes_and_rules():
    g = torch.Generator().manual_seed(0)
    t, m = training_noise_levels("independent", 64, 10, generator=g)
    assert t.shape == (64, 10) and m.all() and t.min() >= 0 and t.max() <= 1
    assert t.std(1).mean() > 0.2  # tokens differ within a sequence

    t, m = training_noise_levels("full_sequence", 64, 10, generator=g)
    assert (t == t[:, :1]).all()

    t, m = training_noise_levels("teacher_forcing", 64, 10, history_len=6, generator=g)
    assert (t[:, :6] == 0).all() and (t[:, 7:] == 1).all() and m.sum(1).eq(1).all() and m[:, 6].all()
    assert (t[:, 6] > 0).all() and t[:, 6].min() < 0.1 and t[:, 6].max() > 0.9  # the target's own uniform level

    t, m = training_noise_levels("teacher_forcing", 256, 10, generator=g)
    hist = m.float().argmax(1)
    assert hist.min() >= 1 and hist.max() == 9 and len(hist.unique()) > 5

    t, m = training_noise_levels("uniform_future", 64, 10, history_len=4, generator=g)
    assert (t[:, 4:] == t[:, 4:5]).all() and m.all()
    assert t[:, :4].std() > 0.2 and (t[:, :4] != t[:, 4:5]).all()  # independent history levels


@pytest.mark.parametrize("kind", ["independent", "full_sequence", "teacher_forcing", "uniform_future", "autoregressive", "pyramid"])
def test_a_one_component_mixture_is_the_pattern_itself(kind):
    a = training_noise_levels(kind, 32, 8, generator=torch.Generator().manual_seed(1))
    b = training_noise_levels(f" {kind}:2.5", 32, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_training_noise_errors():
    with pytest.raises(ValueError, match="unknown training noise levels"):
        training_noise_levels("random", 2, 4)
    with pytest.raises(ValueError, match=r"^history_len=4 must be in \[0, 3\] for windows of 4 tokens$"):
        training_noise_levels("teacher_forcing", 2, 4, history_len=4)
    for tokens in (0, 1):
        with pytest.raises(ValueError, match="at least 2 tokens"):
            training_noise_levels("teacher_forcing", 2, tokens)


def test_a_single_pattern_draws_exactly_its_own_levels():
    """No mixture draw for a single pattern: ``independent`` is torch.rand of the window, nothing more."""
    t, _ = training_noise_levels("independent", 16, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(t, torch.rand((16, 8), generator=torch.Generator().manual_seed(3)))


def test_frame_stacking_round_trip():
    x = torch.arange(2 * 6 * 3).float().reshape(2, 6, 3)
    s = stack_frames(x, 3)
    assert s.shape == (2, 2, 9) and torch.equal(s[0, 1], x[0, 3:6].flatten())
    assert torch.equal(unstack_frames(s, 3), x)
    v = torch.randn(2, 4, 1, 5, 5)
    assert torch.equal(unstack_frames(stack_frames(v, 2), 2), v)
    with pytest.raises(ValueError, match="not divisible by frame_stack=4"):
        stack_frames(x, 4)


def test_known_start_redraws_token_zero_low_for_a_share_of_sequences():
    from dforce.diffusion.noise_levels import known_start_levels

    g = torch.Generator().manual_seed(0)
    t = torch.full((4000, 5), 0.9)
    out = known_start_levels(t, 0.3, 0.25, g)
    assert torch.equal(out[:, 1:], t[:, 1:]) and torch.equal(t, torch.full((4000, 5), 0.9))  # a new tensor
    low = out[:, 0] < 0.25
    assert abs(float(low.float().mean()) - 0.3) < 0.03
    assert torch.all(out[~low, 0] == 0.9) and float(out[low, 0].max()) < 0.25
    assert torch.equal(known_start_levels(out, 1.0, 0.0, g)[:, 0], torch.zeros(4000))  # clean start
    assert known_start_levels(t, 0.0, 0.25, g) is t
    assert (known_start_levels(torch.full((64, 1), 0.9), 1.0, 0.25, g) < 0.25).all()  # one-token windows too
    with pytest.raises(ValueError, match="probability must lie in"):
        known_start_levels(t, 1.5, 0.25)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="known-start level must lie in"):
            known_start_levels(t, 0.5, bad)
    assert (known_start_levels(t, 1.0, 1.0, g)[:, 0] < 1.0).all()  # the whole range is allowed


def test_model_known_start_option_reaches_the_network():
    spy = SpyBackbone(dim=2)
    m = DiffusionForcing(spy, window=4, training_noise="independent", known_start_prob=1.0, known_start_level=0.1)
    m.loss(torch.randn(64, 4, 2), generator=torch.Generator().manual_seed(0))
    t = spy.calls[0]["t"]
    assert float(t[:, 0].max()) < 0.1 and float(t[:, 1:].max()) > 0.5
    spy.calls.clear()
    m.loss(torch.randn(8, 4, 2), noise_levels=torch.full((8, 4), 0.5))
    assert torch.all(spy.calls[0]["t"] == 0.5)  # explicit levels are used as given
    with pytest.raises(ValueError, match="known_start_prob"):
        DiffusionForcing(SpyBackbone(dim=2), window=4, known_start_prob=2.0)

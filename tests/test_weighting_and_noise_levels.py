import math

import pytest
import torch

from dforce.diffusion import loss_weight, stack_frames, training_noise_levels, unstack_frames
from dforce.diffusion.weighting import fused_snr


def test_min_snr_closed_form():
    lam = torch.tensor([-4.0, 0.0, math.log(5.0), 4.0])
    snr = lam.exp()
    assert torch.allclose(loss_weight("min_snr", lam), torch.minimum(snr, torch.tensor(5.0)) / snr)


def test_sigmoid_weighting():
    lam = torch.tensor([-3.0, -1.0, 2.0])
    assert torch.allclose(loss_weight("sigmoid", lam), torch.sigmoid(-1.0 - lam))


def test_fused_snr_recurrence():
    lam = torch.tensor([[3.0, -2.0, 0.5, -10.0]])
    d = 0.8
    n = (lam.exp().clamp(max=5) / 5)[0]
    cum, expect = 0.0, []
    for i in range(4):
        cum_prev = cum
        fused = 1 - (1 - d * cum_prev) * (1 - n[i])
        expect.append(5 * fused / lam[0, i].exp())
        cum = d * cum + (1 - d) * n[i]
    assert torch.allclose(fused_snr(lam, decay=d)[0], torch.stack(expect), rtol=1e-5)
    # the first token has no history: the weight equals min-SNR
    assert torch.allclose(fused_snr(lam, decay=d)[0, 0], loss_weight("min_snr", lam)[0, 0])


def test_unknown_weighting():
    with pytest.raises(ValueError, match="unknown loss weighting"):
        loss_weight("snr", torch.zeros(3))


def test_training_noise_levels_shapes_and_rules():
    g = torch.Generator().manual_seed(0)
    t, m = training_noise_levels("independent", 64, 10, generator=g)
    assert t.shape == (64, 10) and m.all() and t.min() >= 0 and t.max() <= 1
    assert t.std(1).mean() > 0.2  # tokens differ within a sequence

    t, m = training_noise_levels("full_sequence", 64, 10, generator=g)
    assert (t == t[:, :1]).all()

    t, m = training_noise_levels("teacher_forcing", 64, 10, history_len=6, generator=g)
    assert (t[:, :6] == 0).all() and (t[:, 7:] == 1).all() and m.sum(1).eq(1).all() and m[:, 6].all()

    t, m = training_noise_levels("teacher_forcing", 256, 10, generator=g)
    hist = m.float().argmax(1)
    assert hist.min() >= 1 and hist.max() == 9 and len(hist.unique()) > 5

    t, m = training_noise_levels("uniform_future", 64, 10, history_len=4, generator=g)
    assert (t[:, 4:] == t[:, 4:5]).all() and m.all()


def test_training_noise_errors():
    with pytest.raises(ValueError, match="unknown training noise levels"):
        training_noise_levels("random", 2, 4)
    with pytest.raises(ValueError, match="history_len=4 must be in"):
        training_noise_levels("teacher_forcing", 2, 4, history_len=4)


def test_frame_stacking_round_trip():
    x = torch.arange(2 * 6 * 3).float().reshape(2, 6, 3)
    s = stack_frames(x, 3)
    assert s.shape == (2, 2, 9) and torch.equal(s[0, 1], x[0, 3:6].flatten())
    assert torch.equal(unstack_frames(s, 3), x)
    v = torch.randn(2, 4, 1, 5, 5)
    assert torch.equal(unstack_frames(stack_frames(v, 2), 2), v)
    with pytest.raises(ValueError, match="not divisible by frame_stack=4"):
        stack_frames(x, 4)

import pytest
import torch

from dforce.diffusion import stack_frames, training_noise_levels, unstack_frames


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

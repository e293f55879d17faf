import random

import pytest
import torch

from dforce.sampling import scheduling as S


def _check_invariants(m, steps):
    assert m.dtype == torch.long
    assert (m[0] == steps).all() and (m[-1] == 0).all()
    assert (m[1:] <= m[:-1]).all()
    assert ((m[:-1] - m[1:]) <= 1).all()  # one step per row at most
    S.validate(m, steps)


@pytest.mark.parametrize("seed", range(20))
def test_matrices_meet_invariants_for_random_sizes(seed):
    rng = random.Random(seed)
    h, steps, u = rng.randint(1, 24), rng.randint(1, 30), rng.choice([0.0, 0.5, 1.0, 2.0, 3.7])
    for m in (
        S.full_sequence(h, steps),
        S.pyramid(h, steps, u),
        S.autoregressive(h, steps),
        S.trapezoid(h, steps, u),
        S.chunked(h, steps, rng.randint(1, 5)),
    ):
        assert m.shape[1] == h
        _check_invariants(m, steps)


def test_full_sequence_formula():
    m = S.full_sequence(5, 7)
    assert m.shape == (8, 5)
    assert torch.equal(m, (7 - torch.arange(8))[:, None].expand(8, 5))


@pytest.mark.parametrize("h,steps,u", [(6, 10, 1.0), (8, 4, 2.5), (3, 5, 0.5)])
def test_pyramid_formula_and_height(h, steps, u):
    m = S.pyramid(h, steps, u)
    import math

    assert m.shape[0] == steps + math.floor((h - 1) * u) + 1
    for r in range(m.shape[0]):
        for c in range(h):
            assert m[r, c] == min(max(steps + math.floor(c * u) - r, 0), steps)


def test_autoregressive_one_token_at_a_time():
    m = S.autoregressive(4, 3)
    # a token starts only once the previous one is clean
    for c in range(1, 4):
        first_move = int((m[:, c] < 3).nonzero()[0])
        done_prev = int((m[:, c - 1] == 0).nonzero()[0])
        assert first_move == done_prev + 1  # its first step is the row transition right after


@pytest.mark.parametrize("h", [1, 2, 5, 8])
def test_trapezoid_symmetric_no_off_by_one(h):
    m = S.trapezoid(h, 6, 1.0)
    assert torch.equal(m, m.flip(1)), "both ends must be denoised in lock step"
    if h >= 3:
        mid = h // 2
        assert (m[:, mid] >= m[:, 0]).all()


def test_from_offsets_depends_only_on_relative_delays():
    assert torch.equal(S.from_offsets(torch.tensor([2, 3, 5]), 4), S.from_offsets(torch.tensor([0, 1, 3]), 4))
    assert S.from_offsets(torch.tensor([2, 3, 5]), 4).shape == (4 + 3 + 1, 3)


def test_validate_errors_name_the_rule():
    good = S.full_sequence(3, 4)
    bad = good.clone()
    bad[2, 1] = 4
    with pytest.raises(ValueError, match="non-increasing down each column; token 1 goes from 3 to 4 at row 2$"):
        S.validate(bad)
    bad = good.clone()
    bad[-1, 2] = 1
    with pytest.raises(ValueError, match="last row must be clean .*; token 2 ends at 1$"):
        S.validate(bad)
    with pytest.raises(ValueError, match="first row must be pure noise"):
        S.validate(good[1:], 4)
    with pytest.raises(ValueError, match="2-D"):
        S.validate(torch.zeros(4))
    with pytest.raises(ValueError, match="unknown scheduling matrix 'pyramidd'"):
        S.scheduling_matrix("pyramidd", 3, 4)


def test_custom_matrix_passes_through():
    m = torch.tensor([[2, 2], [1, 2], [0, 1], [0, 0]])
    assert torch.equal(S.scheduling_matrix(m, 2, 2), m)
    with pytest.raises(ValueError, match="2 columns but 3 tokens"):
        S.scheduling_matrix(m, 3, 2)


def test_level_grid():
    g = S.level_grid(10)
    assert g[0] == 0 and g[-1] == 1 and len(g) == 11
    from dforce.diffusion import get_schedule

    sched = get_schedule("cosine")
    gl = S.level_grid(10, sched, "logsnr")
    lam = sched.logsnr(gl[1:-1])
    assert torch.allclose(lam[1:] - lam[:-1], (lam[1] - lam[0]).expand(len(lam) - 1), atol=1e-3)
    for steps in (1, 5, 7):  # odd step counts too
        for spacing in ("uniform", "logsnr"):
            g = S.level_grid(steps, sched, spacing)
            assert len(g) == steps + 1 and g[0] == 0 and g[-1] == 1 and (g[1:] > g[:-1]).all()


def test_window_levels_place_the_matrix_and_pad_with_pure_noise():
    grid = S.level_grid(4)
    m = S.pyramid(3, 4, 1.0)  # [R = 7, 3]
    lv = S.window_levels(m, grid, window=6, start=1)
    assert lv.shape == (7, 6)
    r = torch.arange(7)[:, None]
    h = torch.arange(3)[None]
    assert torch.equal(lv[:, 1:4], (4 + h - r).clamp(0, 4) / 4)  # grid[M] with grid[m] = m / S
    assert torch.all(lv[:, [0, 4, 5]] == 1.0)
    with pytest.raises(ValueError, match="do not fit a window"):
        S.window_levels(m, grid, window=3, start=1)


def test_chunked_closed_form():
    assert torch.equal(S.chunked(5, 3, 2), S.from_offsets(torch.tensor([0, 0, 3, 3, 6]), 3))

"""Forward-process marginals and logSNR invariants of the noise schedules."""

import math

import pytest
import torch

from dforce.diffusion import SCHEDULES, get_schedule


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_q_sample_mean_and_variance_match_alpha_sigma(name):
    sched = get_schedule(name)
    t = torch.tensor([0.1, 0.5, 0.9])
    x0 = torch.tensor([1.5, -0.7, 2.0])
    n = 400_000
    eps = torch.randn(n, 3)
    xt = sched.q_sample(x0.expand(n, 3)[:, :, None], t.expand(n, 3), eps[:, :, None])[:, :, 0]
    alpha, sigma = sched.alpha_sigma(t)
    assert torch.allclose(xt.mean(0), alpha * x0, atol=4 * sigma.max().item() / math.sqrt(n) + 1e-6)
    assert torch.allclose(xt.var(0), sigma**2, rtol=0.02)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_endpoints_and_monotone_logsnr(name):
    sched = get_schedule(name)
    a0, s0 = sched.alpha_sigma(torch.zeros(()))
    assert a0 == 1 and s0 == 0  # level 0 is exactly clean
    t = torch.linspace(0.001, 0.999, 500)
    lam = sched.logsnr(t)
    assert torch.isfinite(lam).all()
    assert (lam[1:] <= lam[:-1] + 1e-5).all(), "logSNR must decrease with the level"
    a1, s1 = sched.alpha_sigma(torch.ones(()))
    assert a1 < 0.01 and s1 > 0.99  # level 1 is (numerically) pure noise
    if sched.variance_preserving:
        a, s = sched.alpha_sigma(t)
        assert torch.allclose(a**2 + s**2, torch.ones_like(t), atol=1e-5)


def test_cosine_closed_form_and_shift():
    t = torch.linspace(0.05, 0.95, 19)
    a, s = get_schedule("cosine").alpha_sigma(t)
    assert torch.allclose(a, torch.cos(math.pi * t / 2), atol=1e-5)
    assert torch.allclose(s, torch.sin(math.pi * t / 2), atol=1e-5)
    lam, lam_shift = get_schedule("cosine").logsnr(t), get_schedule("cosine", shift=0.125).logsnr(t)
    assert torch.allclose(lam_shift - lam, torch.full_like(t, 2 * math.log(0.125)), atol=1e-4)


@pytest.mark.parametrize("start,end,tau", [(-3.0, 3.0, 1.0), (-3.0, 3.0, 2.0), (0.0, 3.0, 0.5)])
def test_sigmoid_closed_form(start, end, tau):
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    v = lambda z: 1 / (1 + math.exp(-z / tau))  # noqa: E731
    alpha2 = (v(end) - torch.sigmoid((t * (end - start) + start) / tau)) / (v(end) - v(start))
    a, _ = get_schedule("sigmoid", start=start, end=end, tau=tau).alpha_sigma(t.float())
    assert torch.allclose(a.double() ** 2, alpha2, atol=1e-4)


def test_linear_beta_matches_discrete_ddpm():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    t = torch.tensor([0.1, 0.3, 0.6])
    a, _ = get_schedule("linear").alpha_sigma(t)
    idx = (t * 1000).long() - 1
    assert torch.allclose(a.double() ** 2, abar[idx], rtol=0.02)


def test_rectified_flow_is_linear_path():
    t = torch.tensor([0.2, 0.5, 0.8])
    a, s = get_schedule("rectified_flow").alpha_sigma(t)
    assert torch.allclose(a, 1 - t) and torch.allclose(s, t)


def test_t_from_logsnr_inverts():
    sched = get_schedule("cosine")
    t = torch.tensor([0.1, 0.4, 0.7])
    assert torch.allclose(sched.t_from_logsnr(sched.logsnr(t)), t, atol=1e-5)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="unknown noise schedule 'cosin'.*cosine"):
        get_schedule("cosin")


def test_linear_beta_continuous_closed_form():
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    alpha2 = torch.exp(-(0.1 * t + 0.5 * (20.0 - 0.1) * t**2))
    a, _ = get_schedule("linear").alpha_sigma(t.float())
    assert torch.allclose(a.double() ** 2, alpha2, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_levels_outside_the_unit_interval_are_clamped(name):
    sched = get_schedule(name)
    assert torch.equal(sched.logsnr(torch.tensor([-0.5, 1.5])), sched.logsnr(torch.tensor([0.0, 1.0])))

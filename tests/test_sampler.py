"""DDIM / ancestral steps against closed forms on Gaussian data, and sampler behaviour."""

import pytest
import torch

from dforce import testing
from dforce.diffusion import get_schedule
from dforce.sampling import ddim_step, level_grid, sample_window, scheduling_matrix

MU, S0 = 1.5, 0.5


def gaussian_denoiser(schedule):
    """Exact posterior-mean denoiser for data x0 ~ N(MU, S0^2) (elementwise)."""
    return testing.gaussian_denoiser(schedule, MU, S0)


@pytest.mark.parametrize("name", ["cosine", "linear", "sigmoid"])
def test_ddim_eta0_is_the_posterior_mean_of_the_ddim_coupling(name):
    # DDIM (eta = 0) couples x_s and x_t through the same (x0, eps); with the exact denoiser one
    # step must equal E[x_s | x_t], which for Gaussian data is the linear regression of x_s on x_t.
    sched = get_schedule(name)
    t, s = torch.tensor(0.7), torch.tensor(0.4)
    (a_t, s_t), (a_s, s_s) = sched.alpha_sigma(t), sched.alpha_sigma(s)
    n = 400_000
    x0 = MU + S0 * torch.randn(n, dtype=torch.float64)
    eps = torch.randn(n, dtype=torch.float64)
    xt, xs = a_t * x0 + s_t * eps, a_s * x0 + s_s * eps
    slope = ((xt - xt.mean()) * (xs - xs.mean())).mean() / xt.var()
    intercept = xs.mean() - slope * xt.mean()
    grid = torch.tensor([-1.0, 0.0, 1.0, 2.5])[:, None, None]
    tt, ss = t.expand(4, 1), s.expand(4, 1)
    x0h, epsh = gaussian_denoiser(sched)(grid, tt)
    out = ddim_step(grid, x0h, epsh, tt, ss, sched, eta=0.0)
    assert torch.allclose(out.flatten().double(), intercept + slope * grid.flatten().double(), atol=5e-3)


@pytest.mark.parametrize("name", ["cosine", "linear", "rectified_flow"])
def test_ddim_eta1_has_exact_posterior_moments(name):
    # with x0 known exactly, the eta = 1 step samples q(x_s | x_t, x0) of the Markov forward
    # process: mean and variance in closed form (for VP: DDPM's mu_tilde and beta_tilde).
    sched = get_schedule(name)
    t, s = torch.tensor(0.6), torch.tensor(0.35)
    (a_t, s_t), (a_s, s_s) = sched.alpha_sigma(t), sched.alpha_sigma(s)
    a_ts = a_t / a_s  # transition x_t = a_ts x_s + sqrt(s_t^2 - a_ts^2 s_s^2) e
    var_ts = s_t**2 - a_ts**2 * s_s**2
    post_var = var_ts * s_s**2 / s_t**2
    x0, xt = torch.tensor(0.8), torch.tensor(1.3)
    post_mean = (a_ts * s_s**2 / s_t**2) * xt + (a_s * var_ts / s_t**2) * x0
    if name != "rectified_flow":  # DDPM form in alphas_cumprod
        abar_t, abar_s = a_t**2, a_s**2
        beta_tilde = (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)
        assert torch.allclose(post_var, beta_tilde, rtol=1e-4)
    n = 200_000
    x = xt.expand(n, 1, 1)
    x0_hat = x0.expand(n, 1, 1)
    eps_hat = (x - a_t * x0_hat) / s_t
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, 1, 1, generator=g)
    out = ddim_step(x, x0_hat, eps_hat, t.expand(n, 1), s.expand(n, 1), sched, eta=1.0, noise=z)
    assert abs(out.mean() - post_mean) < 4 * post_var.sqrt() / n**0.5
    assert torch.allclose(out.var(), post_var, rtol=0.02)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_full_sampler_recovers_gaussian_data(eta):
    sched = get_schedule("cosine")
    steps = 100
    levels = level_grid(steps)[scheduling_matrix("full_sequence", 4, steps)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 4, 1, generator=g)
    out = sample_window(gaussian_denoiser(sched), x, levels, schedule=sched, eta=eta, generator=g)
    assert abs(out.mean() - MU) < 0.02
    assert abs(out.std() - S0) < 0.03


def test_unchanged_tokens_are_bit_identical():
    sched = get_schedule("cosine")
    steps = 6
    m = scheduling_matrix("autoregressive", 3, steps)
    levels = level_grid(steps)[m]
    x = torch.randn(2, 3, 2)
    calls = []

    def denoise(xx, t, cond=None):
        calls.append((xx.clone(), t.clone()))
        return torch.zeros_like(xx), xx.clone()

    sample_window(denoise, x, levels, schedule=sched, eta=1.0, generator=torch.Generator().manual_seed(0))
    # token 2 waits at pure noise until row 2 * steps: its value must not change before then
    for xx, t in calls[: 2 * steps]:
        assert torch.equal(xx[:, 2], x[:, 2])
    # once clean, token 0 never changes again
    first_clean = calls[steps][0][:, 0]
    for xx, _ in calls[steps:]:
        assert torch.equal(xx[:, 0], first_clean)


def test_known_tokens_are_restored_and_fed_as_asked():
    sched = get_schedule("cosine")
    steps = 4
    lv = level_grid(steps)[scheduling_matrix("full_sequence", 3, steps)]
    lv[:, 0] = 0.02
    x = torch.randn(1, 3, 2)
    known = torch.tensor([True, False, False])
    values = torch.randn(1, 3, 2)
    seen = []

    def denoise(xx, t, cond=None):
        seen.append(xx[:, 0].clone())
        return torch.zeros_like(xx), xx.clone()

    for mode in ("relabel", "noise", "replacement"):
        seen.clear()
        out = sample_window(denoise, x, lv, schedule=sched, known_mask=known, known_values=values, history=mode,
                            generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[:, 0], values[:, 0])
        if mode == "relabel":
            assert all(torch.equal(v, values[:, 0]) for v in seen)
        elif mode == "noise":
            assert all(torch.equal(v, seen[0]) for v in seen) and not torch.equal(seen[0], values[:, 0])
        else:
            assert not torch.equal(seen[0], seen[1])


def test_sampler_rejects_rising_levels():
    sched = get_schedule("cosine")
    lv = torch.tensor([[1.0, 1.0], [0.5, 0.8], [0.6, 0.0]])
    with pytest.raises(ValueError, match="non-increasing"):
        sample_window(lambda x, t, c: (x, x), torch.zeros(1, 2, 1), lv, schedule=sched)

"""DDIM / ancestral / DPM-Solver++(2M) steps against closed forms on Gaussian data, and sampler behaviour."""

import pytest
import torch

from dforce import testing
from dforce.diffusion import get_schedule
from dforce.sampling import SamplingConfig, ddim_step, level_grid, sample_window, scheduling_matrix

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


@pytest.mark.parametrize("solver, eta", [("ddim", 1.0), ("dpm++2m", 0.0)])
def test_unchanged_tokens_are_bit_identical(solver, eta):
    sched = get_schedule("cosine")
    steps = 6
    m = scheduling_matrix("autoregressive", 3, steps)
    levels = level_grid(steps)[m]
    x = torch.randn(2, 3, 2)
    calls = []

    def denoise(xx, t, cond=None):
        calls.append((xx.clone(), t.clone()))
        return torch.zeros_like(xx), xx.clone()

    sample_window(denoise, x, levels, schedule=sched, eta=eta, solver=solver, generator=torch.Generator().manual_seed(0))
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


# ---------------------------------------------------------------- DPM-Solver++(2M)


def pf_ode_on_interval(name, lam_lo=-4.0, lam_hi=4.0):
    """Levels [N + 1, 1] uniform in logSNR from ``lam_lo`` to ``lam_hi``, and the exact probability-flow
    ODE map of N(MU, S0^2) data between the two ends (it keeps the z-score of x_t)."""
    sched = get_schedule(name)

    def levels(n):
        return sched.t_from_logsnr(torch.linspace(lam_lo, lam_hi, n + 1))[:, None]

    (a0, s0), (a1, s1) = (sched.alpha_sigma(t) for t in levels(1)[:, 0])
    sd0, sd1 = (a0**2 * S0**2 + s0**2).sqrt(), (a1**2 * S0**2 + s1**2).sqrt()
    return sched, levels, lambda x: a1 * MU + sd1 * (x - a0 * MU) / sd0


@pytest.mark.parametrize("name", ["cosine", "linear", "rectified_flow"])
def test_dpmpp_2m_solves_the_probability_flow_ode_to_second_order(name):
    sched, levels, exact = pf_ode_on_interval(name)
    x = torch.linspace(-3, 3, 13).reshape(13, 1, 1)

    def err(solver, n):
        return (sample_window(gaussian_denoiser(sched), x, levels(n), schedule=sched, solver=solver) - exact(x)).abs().max().item()

    assert err("dpm++2m", 5) < err("ddim", 5) / 5
    assert err("dpm++2m", 5) < err("ddim", 25)
    e2m, eddim = [err("dpm++2m", n) for n in (20, 40, 80)], [err("ddim", n) for n in (20, 40, 80)]
    assert all(3.2 < a / b < 4.8 for a, b in zip(e2m, e2m[1:])), e2m  # halving h quarters the error
    assert all(1.8 < a / b < 2.2 for a, b in zip(eddim, eddim[1:])), eddim  # DDIM: first order


def test_dpmpp_2m_matches_the_multistep_formula_and_starts_with_ddim():
    sched = get_schedule("cosine")
    den = gaussian_denoiser(sched)
    lv = torch.tensor([[0.9], [0.6], [0.4], [0.0]])
    x = torch.randn(5, 1, 2, generator=torch.Generator().manual_seed(0))
    # first step: DDIM's, bit for bit
    assert torch.equal(sample_window(den, x, lv[:2], schedule=sched, solver="dpm++2m"), sample_window(den, x, lv[:2], schedule=sched))
    # second step by hand: D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev, x_s = sigma_s/sigma_t x_t - alpha_s (exp(-h) - 1) D
    (a0, s0), (a1, s1), (a2, s2) = (sched.alpha_sigma(lv[i, 0]) for i in range(3))
    lam = [torch.log(a / s) for a, s in ((a0, s0), (a1, s1), (a2, s2))]
    x0_prev = den(x, lv[0].expand(5, 1))[0]
    x1 = (s1 / s0) * x - a1 * torch.expm1(lam[0] - lam[1]) * x0_prev
    x0_t = den(x1, lv[1].expand(5, 1))[0]
    h, h_prev = lam[2] - lam[1], lam[1] - lam[0]
    d = (1 + h / (2 * h_prev)) * x0_t - h / (2 * h_prev) * x0_prev
    x2 = (s2 / s1) * x1 - a2 * torch.expm1(-h) * d
    out = sample_window(den, x, lv[:3], schedule=sched, solver="dpm++2m")
    assert torch.allclose(out, x2, atol=1e-5)
    assert not torch.allclose(out, sample_window(den, x, lv[:3], schedule=sched), atol=1e-3)
    # the final step to level 0 returns x0_hat, as DDIM does
    x0_last = den(out, lv[2].expand(5, 1))[0]
    assert torch.allclose(sample_window(den, x, lv, schedule=sched, solver="dpm++2m"), x0_last, atol=1e-6)


@pytest.mark.parametrize("scheduling, u", [("pyramid", 0.5), ("pyramid", 2.0), ("autoregressive", 1.0)])
def test_dpmpp_2m_is_per_token(scheduling, u):
    # tokens start and finish at different rows; with a denoiser that treats tokens independently
    # each token must end where its own level sequence, run alone, takes it
    sched, steps = get_schedule("cosine"), 5
    grid = level_grid(steps)
    m = scheduling_matrix(scheduling, 4, steps, **({"uncertainty_scale": u} if scheduling == "pyramid" else {}))
    x = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    out = sample_window(gaussian_denoiser(sched), x, grid[m], schedule=sched, solver="dpm++2m")
    alone = grid[scheduling_matrix("full_sequence", 1, steps)]
    for h in range(4):
        own = sample_window(gaussian_denoiser(sched), x[:, h : h + 1], alone, schedule=sched, solver="dpm++2m")
        assert torch.allclose(out[:, h : h + 1], own, atol=1e-6)


def test_dpmpp_2m_restarts_after_a_pause():
    # a token that sits still for a row takes a first-order step next: the same as DDIM on that row
    sched = get_schedule("cosine")
    den = gaussian_denoiser(sched)
    x = torch.randn(4, 1, 1, generator=torch.Generator().manual_seed(1))
    lv = torch.tensor([[1.0], [0.7], [0.7], [0.4]])
    mid = sample_window(den, x, lv[:3], schedule=sched, solver="dpm++2m")
    assert torch.equal(sample_window(den, x, lv, schedule=sched, solver="dpm++2m"), sample_window(den, mid, lv[2:], schedule=sched))


def test_unknown_solver_and_eta_are_refused():
    lv = level_grid(2)[scheduling_matrix("full_sequence", 1, 2)]
    args = (lambda x, t, c: (x, x), torch.zeros(1, 1, 1), lv)
    with pytest.raises(ValueError, match=r"unknown solver 'euler'; choose one of \['ddim', 'dpm\+\+2m'\]"):
        sample_window(*args, schedule=get_schedule("cosine"), solver="euler")
    with pytest.raises(ValueError, match="solver='dpm\\+\\+2m'.*eta=0"):
        sample_window(*args, schedule=get_schedule("cosine"), solver="dpm++2m", eta=0.5)
    with pytest.raises(ValueError, match="unknown solver"):
        SamplingConfig(solver="euler").check()
    with pytest.raises(ValueError, match="eta"):
        SamplingConfig(solver="dpm++2m", eta=1.0).check()


def test_clip_x0_steps_with_the_clipped_prediction_and_a_consistent_noise():
    sched = get_schedule("cosine")
    x = torch.randn(2, 3, 2)
    big = lambda x, t, cond=None: (torch.full_like(x, 5.0), torch.zeros_like(x))  # noqa: E731
    levels = torch.tensor([[0.6] * 3, [0.3] * 3])
    out = sample_window(big, x, levels, schedule=sched, clip_x0=1.0)
    (a_t, s_t), (a_s, s_s) = sched.alpha_sigma(torch.tensor(0.6)), sched.alpha_sigma(torch.tensor(0.3))
    eps = (x - a_t * 1.0) / s_t  # the noise that x_t implies for x0 = 1
    torch.testing.assert_close(out, a_s * 1.0 + s_s * eps, atol=1e-5, rtol=1e-5)


def test_row_loop_yields_each_row_once_and_checks_the_level_batch():
    from dforce.sampling import iter_sample_window

    sched, x = get_schedule("cosine"), torch.randn(2, 3, 2)
    den = gaussian_denoiser(sched)
    levels = level_grid(4)[scheduling_matrix("pyramid", 3, 4)]
    assert [r for r, _ in iter_sample_window(den, x, levels, schedule=sched)] == list(range(levels.shape[0] - 1))
    for bad in (levels[None].expand(1, -1, -1), levels[None].expand(3, -1, -1)):
        with pytest.raises(ValueError, match="do not match a window of 2 x 3 tokens"):
            sample_window(den, x, bad, schedule=sched)


def test_deterministic_steps_draw_no_noise():
    sched, x = get_schedule("cosine"), torch.randn(2, 3, 2)
    g = torch.Generator().manual_seed(5)
    sample_window(gaussian_denoiser(sched), x, level_grid(4)[scheduling_matrix("pyramid", 3, 4)], schedule=sched, eta=0.0,
                  history="relabel", generator=g)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(5)))


def test_fp32_switches_off_an_outer_autocast():
    from dforce.sampling import autocast

    w = torch.randn(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (w @ w).dtype == torch.bfloat16
        with autocast("cpu", "fp32"):
            assert (w @ w).dtype == torch.float32
        with autocast("cpu", "bf16"):
            assert (w @ w).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert (w @ w).dtype == torch.float32

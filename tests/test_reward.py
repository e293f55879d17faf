"""Reward guidance and Monte Carlo guidance against closed forms on a linear-Gaussian denoiser."""

import math

import pytest
import torch

from dforce import testing
from dforce.diffusion import get_schedule
from dforce.diffusion.schedules import expand_like
from dforce.guidance.reward import MonteCarloGuidance, RewardGuidance, guided_prediction
from dforce.planning.planner import goal_reward
from dforce.sampling import StepInfo, level_grid, sample_window, scheduling_matrix

MU, S0 = 0.5, 1.0


def gaussian_denoiser(schedule):
    """Exact posterior-mean denoiser for data x0 ~ N(MU, S0^2) (elementwise)."""
    return testing.gaussian_denoiser(schedule, MU, S0)


def _info(schedule, t, known=None):
    moving = torch.ones_like(t, dtype=torch.bool) if known is None else ~known
    return StepInfo(0, schedule, t, moving, known_mask=known, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("space", ["x0", "eps"])
def test_guided_prediction_stays_consistent_with_x_t(space):
    sched = get_schedule("cosine")
    t = torch.full((2, 3), 0.6)
    x, x0, eps, grad = (torch.randn(2, 3, 4) for _ in range(4))
    a, s = (expand_like(v, x) for v in sched.alpha_sigma(t))
    x = a * x0 + s * eps
    x0n, epsn = guided_prediction(x, t, x0, eps, grad, 2.0, sched, space=space)
    torch.testing.assert_close(a * x0n + s * epsn, x, atol=1e-5, rtol=1e-5)
    factor = 1.0 if space == "x0" else 1.0 / a
    torch.testing.assert_close(x0n - x0, 2.0 * s**2 * factor * grad, atol=1e-5, rtol=1e-5)


def test_reward_guidance_matches_the_closed_form_gradient():
    sched = get_schedule("cosine")
    den = gaussian_denoiser(sched)
    t = torch.full((1, 5), 0.5)
    x = torch.randn(1, 5, 2)
    c = torch.tensor([1.0, -2.0])
    reward = lambda x0, info: (x0 * c).sum((1, 2))  # noqa: E731
    a, s = (float(v) for v in sched.alpha_sigma(torch.tensor(0.5)))
    k = a * S0**2 / (a**2 * S0**2 + s**2)
    x0_plain, _ = den(x, t)
    x0_g, _ = RewardGuidance(reward, scale=3.0)(den, x, t, None, _info(sched, t))
    torch.testing.assert_close(x0_g - x0_plain, (3.0 * s**2 / a * k * c).expand(1, 5, 2), atol=1e-5, rtol=1e-5)  # eps space
    # Monte Carlo guidance: each re-noised draw x' = a x0_hat + s z adds d x0'/dx = k a k
    n = 4
    x0_mc, _ = MonteCarloGuidance(reward, scale=3.0, mc_samples=n)(den, x, t, None, _info(sched, t))
    expected = 3.0 * s**2 / a * c * (k + (n - 1) * k * a * k) / n
    torch.testing.assert_close(x0_mc - x0_plain, expected.expand(1, 5, 2), atol=1e-5, rtol=1e-5)


def test_scale_zero_and_known_tokens_are_untouched():
    sched = get_schedule("cosine")
    den = gaussian_denoiser(sched)
    t = torch.full((1, 4), 0.5)
    x = torch.randn(1, 4, 2)
    reward = lambda x0, info: x0.sum((1, 2))  # noqa: E731
    plain = den(x, t)
    for p, q in zip(RewardGuidance(reward, scale=0.0)(den, x, t, None, _info(sched, t)), plain):
        torch.testing.assert_close(p, q)
    known = torch.tensor([[True, False, False, False]])
    x0_g, _ = MonteCarloGuidance(reward, scale=2.0, mc_samples=3)(den, x, t, None, _info(sched, t, known))
    torch.testing.assert_close(x0_g[:, 0], plain[0][:, 0])
    assert (x0_g[:, 1:] > plain[0][:, 1:]).all()
    with pytest.raises(ValueError, match="mc_samples"):
        RewardGuidance(reward, mc_samples=0)


def test_scale_zero_is_one_plain_call_and_monte_carlo_draws_four_futures_by_default():
    sched = get_schedule("cosine")
    den, calls = gaussian_denoiser(sched), []

    def spy(x, t, cond=None):
        calls.append((x.shape[0], torch.is_grad_enabled() and x.requires_grad))
        return den(x, t)

    t, x = torch.full((2, 3), 0.5), torch.randn(2, 3, 2)
    reward = lambda x0, info: x0.sum((1, 2))  # noqa: E731
    RewardGuidance(reward, scale=0.0)(spy, x, t, None, _info(sched, t))
    assert calls == [(2, False)]  # no gradient, one call
    calls.clear()
    MonteCarloGuidance(reward, scale=1.0)(spy, x, t, None, _info(sched, t))
    assert [c[0] for c in calls] == [2, 2 * 3]  # the prediction, then 3 more futures in one batch


def test_grad_clip_bounds_the_gradient_on_both_sides():
    sched = get_schedule("cosine")
    den = gaussian_denoiser(sched)
    t, x = torch.full((1, 2), 0.5), torch.randn(1, 2, 2)
    c = torch.tensor([100.0, -100.0])
    reward = lambda x0, info: (x0 * c).sum((1, 2))  # noqa: E731
    plain, _ = den(x, t)
    x0_g, _ = RewardGuidance(reward, scale=1.0, grad_clip=0.5)(den, x, t, None, _info(sched, t))
    a, s = (float(v) for v in sched.alpha_sigma(torch.tensor(0.5)))
    expected = s**2 / a * torch.tensor([0.5, -0.5])  # eps space: x0 moves by scale sigma^2 / alpha * clipped grad
    torch.testing.assert_close(x0_g - plain, expected.expand(1, 2, 2), atol=1e-5, rtol=1e-5)


def test_goal_reward_value_and_normalization():
    x0 = torch.tensor([[[1.0, 1.0, 4.0, 5.0]]])  # one token of two 2-D frames (normalized)
    mean, std = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])
    goal = torch.tensor([[3.0, 3.0]])
    w = torch.tensor([[1.0, 0.5]])
    r = goal_reward(x0, goal, w, frame_stack=2, frame_dim=2, mean=mean, std=std)
    # frames in world units: (3, 3) and (9, 11): distances 0 and 10
    torch.testing.assert_close(r, torch.tensor([-5.0]), atol=1e-3, rtol=0)
    squashed = goal_reward(x0, goal, w, frame_stack=2, frame_dim=2, mean=mean, std=std, squash=2.0)
    torch.testing.assert_close(squashed, torch.tensor([-0.5 * 2 * math.tanh(10 / 2)]), atol=1e-3, rtol=0)  # bounded by 2 per frame


def test_goal_guided_sampling_moves_samples_to_the_goal():
    sched = get_schedule("cosine")
    den = gaussian_denoiser(sched)
    steps = 20
    lv = level_grid(steps)[scheduling_matrix("pyramid", 6, steps, uncertainty_scale=1.0)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, 1, generator=g)
    goal = 3.0
    reward = lambda x0, info: -((x0 - goal) ** 2).sum((1, 2))  # noqa: E731
    plain = sample_window(den, x, lv, schedule=sched)
    guided = sample_window(den, x, lv, schedule=sched, guidance=MonteCarloGuidance(reward, scale=1.0, mc_samples=2))
    assert abs(plain.mean() - MU) < 0.15
    assert guided.mean() > plain.mean() + 1.0
    assert (guided - goal).abs().mean() < (plain - goal).abs().mean()


def test_monte_carlo_draws_keep_known_tokens_and_renoise_the_rest():
    sched = get_schedule("cosine")
    base = gaussian_denoiser(sched)
    seen = []

    def den(x, t, cond=None):
        seen.append(x.detach().clone())
        return base(x, t, cond)

    t = torch.full((1, 4), 0.6)
    x = torch.randn(1, 4, 2)
    known = torch.tensor([[True, True, False, False]])
    MonteCarloGuidance(lambda x0, info: x0.sum((1, 2)), scale=1.0, mc_samples=3)(den, x, t, None, _info(sched, t, known))
    draws = seen[1].reshape(2, 1, 4, 2)  # the two extra futures, batched in one call
    assert len(seen) == 2 and all(torch.equal(d[:, :2], x[:, :2]) for d in draws)
    assert not torch.equal(draws[0][:, 2:], draws[1][:, 2:]) and not torch.equal(draws[0][:, 2:], x[:, 2:])


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_eps_space_guidance_samples_the_exactly_tilted_gaussian(eta):
    """x0 ~ N(0, 1) tilted by exp(R), R(x0) = x0, is N(1, 1): eps-space guidance at scale 1 is exact;
    the x0-space form anneals the scale by alpha_t and under-shoots."""
    sched = get_schedule("cosine")
    steps = 100
    lv = level_grid(steps)[scheduling_matrix("full_sequence", 1, steps)]
    means = {}
    for space in ("eps", "x0"):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(20_000, 1, 1, generator=g)
        guidance = RewardGuidance(lambda x0, info: x0.sum((1, 2)), scale=1.0, space=space)
        out = sample_window(testing.gaussian_denoiser(sched), x, lv, schedule=sched, guidance=guidance, eta=eta, generator=g)
        means[space] = out.mean().item()
        if space == "eps":
            assert abs(out.std().item() - 1.0) < 0.05
    assert abs(means["eps"] - 1.0) < 0.05 and means["x0"] < 0.8


def test_direct_monte_carlo_gradient_averages_the_draws_gradients_without_damping():
    sched = get_schedule("cosine")
    den = gaussian_denoiser(sched)
    t = torch.full((1, 5), 0.5)
    x = torch.randn(1, 5, 2)
    a, s = (float(v) for v in sched.alpha_sigma(torch.tensor(0.5)))
    k = a * S0**2 / (a**2 * S0**2 + s**2)
    x0_plain, _ = den(x, t)
    c = torch.tensor([1.0, -2.0])
    linear = lambda x0, info: (x0 * c).sum((1, 2))  # noqa: E731
    # a linear reward has one gradient everywhere: the draws leave the single-sample pull as it is
    x0_direct, _ = MonteCarloGuidance(linear, scale=3.0, mc_samples=4, mc_gradient="direct")(den, x, t, None, _info(sched, t))
    torch.testing.assert_close(x0_direct - x0_plain, (3.0 * s**2 / a * k * c).expand(1, 5, 2), atol=1e-5, rtol=1e-5)
    # a quadratic reward -|x0|^2 / 2: grad_x = k * mean over draws of (-x0_draw), the draws as the guidance drew them
    n = 3
    quad = lambda x0, info: -0.5 * (x0**2).sum((1, 2))  # noqa: E731
    x0_q, _ = MonteCarloGuidance(quad, scale=2.0, mc_samples=n, mc_gradient="direct")(den, x, t, None, _info(sched, t))
    g = _info(sched, t).generator
    draws = [x0_plain] + [den(a * x0_plain + s * torch.randn(x0_plain.shape, generator=g), t)[0] for _ in range(n - 1)]
    expected = 2.0 * s**2 / a * k * -torch.stack(draws).mean(0)
    torch.testing.assert_close(x0_q - x0_plain, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mc_gradient must be one of"):
        RewardGuidance(linear, mc_gradient="chain")


def test_direct_monte_carlo_draws_need_no_graph():
    sched = get_schedule("cosine")
    den, calls = gaussian_denoiser(sched), []

    def spy(x, t, cond=None):
        calls.append((x.shape[0], torch.is_grad_enabled()))
        return den(x, t)

    t, x = torch.full((2, 3), 0.5), torch.randn(2, 3, 2)
    MonteCarloGuidance(lambda x0, info: x0.sum((1, 2)), scale=1.0, mc_gradient="direct")(spy, x, t, None, _info(sched, t))
    assert calls == [(2, True), (2 * 3, False)]

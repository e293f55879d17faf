"""Parametrizations: round trips to (x0_hat, eps_hat) and the eps-MSE factor, for every schedule."""

import pytest
import torch

from dforce.diffusion import PARAMETRIZATIONS, SCHEDULES, get_schedule, target, to_x0_eps
from dforce.diffusion.parametrization import check_parametrization, eps_mse_factor
from dforce.diffusion.schedules import expand_like


@pytest.mark.parametrize("sched_name", sorted(SCHEDULES))
@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_parametrization_round_trip(kind, sched_name):
    sched = get_schedule(sched_name)
    x0, eps = torch.randn(4, 6, 3), torch.randn(4, 6, 3)
    t = torch.rand(4, 6) * 0.9 + 0.05
    a, s = (expand_like(v, x0) for v in sched.alpha_sigma(t))
    xt = a * x0 + s * eps
    x0_hat, eps_hat = to_x0_eps(kind, target(kind, x0, eps, a, s), xt, a, s)
    assert torch.allclose(x0_hat, x0, atol=1e-4) and torch.allclose(eps_hat, eps, atol=1e-4)


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_eps_mse_factor(kind):
    sched = get_schedule("cosine")
    x0, eps = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    t = torch.rand(2, 5) * 0.9 + 0.05
    a, s = (expand_like(v, x0) for v in sched.alpha_sigma(t))
    xt = a * x0 + s * eps
    eps_wrong = eps + 0.1 * torch.randn_like(eps)
    # the prediction that corresponds to eps_wrong at the same x_t
    x0_wrong = (xt - s * eps_wrong) / a
    pred_err = (target(kind, x0_wrong, eps_wrong, a, s) - target(kind, x0, eps, a, s)) ** 2
    eps_err = (eps_wrong - eps) ** 2
    factor = expand_like(eps_mse_factor(kind, *sched.alpha_sigma(t)), x0) if kind != "eps" else 1.0
    assert torch.allclose(pred_err, factor * eps_err, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kind", ["bogus", "zz"])  # sorted before and after every known name
def test_unknown_parametrization_is_refused_by_every_function(kind):
    a, s, x = torch.tensor(0.8), torch.tensor(0.6), torch.ones(2)
    for call in (lambda: eps_mse_factor(kind, a, s), lambda: target(kind, x, x, a, s), lambda: to_x0_eps(kind, x, x, a, s),
                 lambda: check_parametrization(kind)):
        with pytest.raises(ValueError, match=f"unknown parametrization '{kind}'"):
            call()


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_names_read_from_a_config_file_work(kind):
    """A name parsed from JSON is a new string object, not the interned literal: compare by value."""
    import json

    loaded = json.loads(json.dumps(kind))
    alpha, sigma = torch.tensor([0.8]), torch.tensor([0.6])
    x0, eps, pred = torch.tensor([1.0]), torch.tensor([-0.5]), torch.tensor([0.3])
    assert torch.equal(target(loaded, x0, eps, alpha, sigma), target(kind, x0, eps, alpha, sigma))
    for a, b in zip(to_x0_eps(loaded, pred, x0, alpha, sigma), to_x0_eps(kind, pred, x0, alpha, sigma)):
        assert torch.equal(a, b)
    assert torch.equal(eps_mse_factor(loaded, alpha, sigma), eps_mse_factor(kind, alpha, sigma))

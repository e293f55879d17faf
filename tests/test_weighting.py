import math

import pytest
import torch

from dforce.diffusion import get_schedule
from dforce.diffusion.weighting import fused_logsnr, loss_weight, sigmoid_weight

COS = get_schedule("cosine")


def test_min_snr_closed_form_per_parametrization():
    lam = torch.tensor([-4.0, 0.0, math.log(5.0), 4.0])
    snr = lam.exp()
    clipped = torch.minimum(snr, torch.tensor(5.0))
    assert torch.allclose(loss_weight("min_snr", lam, "eps", COS), clipped / snr)
    assert torch.allclose(loss_weight("min_snr", lam, "x0", COS), clipped, rtol=1e-5)
    assert torch.allclose(loss_weight("min_snr", lam, "v", COS), clipped / (snr + 1), rtol=1e-5)


def test_sigmoid_and_uniform_weighting_on_eps():
    lam = torch.tensor([-3.0, -1.0, 2.0])
    assert torch.allclose(loss_weight("sigmoid", lam, "eps", COS), torch.sigmoid(-1.0 - lam))
    assert torch.equal(loss_weight("uniform", lam, "eps", COS), torch.ones(3))


def test_x0_weight_at_exactly_clean_is_the_limit():
    """Bug C: at t = 0 sigma is 0 but logSNR is clipped at 15; min-SNR on x0 must be its limit 5."""
    for name in ("cosine", "linear", "sigmoid", "rectified_flow"):
        sched = get_schedule(name)
        lam = sched.logsnr(torch.zeros(1, 1))
        assert loss_weight("min_snr", lam, "x0", sched).item() == pytest.approx(5.0, rel=1e-4)


def test_fused_snr_reference_values_one_clean_token_then_noise():
    """Bug B: the running average starts at the first token's value (reference: 5, 4.5, 4.05, 3.645)."""
    sched = get_schedule("cosine")
    lam = sched.logsnr(torch.tensor([[0.0, 1.0, 1.0, 1.0]]))
    w = loss_weight("fused_snr", lam, "x0", sched)[0]
    assert torch.allclose(w, torch.tensor([5.0, 4.5, 4.05, 3.645]), rtol=1e-4)


def test_fused_snr_matches_reference_formulas_for_eps_and_v():
    lam = torch.tensor([[3.0, -2.0, 0.5, -10.0, 1.0]])
    d, gamma = 0.8, 5.0
    n = lam.exp().clamp(max=gamma) / gamma
    cum = torch.zeros_like(n)
    for i in range(n.shape[1]):
        cum[:, i] = n[:, i] if i == 0 else d * cum[:, i - 1] + (1 - d) * n[:, i]
    cum = torch.nn.functional.pad(cum[:, :-1], (1, 0))
    cf = 1 - (1 - cum * d) * (1 - n)
    f = 1 - (1 - cum * d) * (1 - lam.exp() / gamma)
    kw = dict(decay=d, gamma=gamma)
    assert torch.allclose(loss_weight("fused_snr", lam, "eps", COS, **kw), cf / f, rtol=1e-4)
    assert torch.allclose(loss_weight("fused_snr", lam, "x0", COS, **kw), cf * gamma, rtol=1e-4)
    assert torch.allclose(loss_weight("fused_snr", lam, "v", COS, **kw), cf * gamma / (f * gamma + 1), rtol=1e-4)
    # the first token has no history: its fused SNR is its own SNR
    assert fused_logsnr(lam, d)[0, 0].item() == pytest.approx(3.0, rel=1e-5)


def test_unknown_weighting():
    with pytest.raises(ValueError, match="unknown loss weighting 'snr'"):
        loss_weight("snr", torch.zeros(3), "eps", COS)


@pytest.mark.parametrize("kind", ["uniform", "min_snr", "sigmoid", "fused_snr"])
def test_weighting_names_read_from_a_config_file_work(kind):
    import json

    sched, lam = get_schedule("cosine"), torch.linspace(-5, 5, 8).reshape(2, 4)
    assert torch.equal(loss_weight(json.loads(json.dumps(kind)), lam, "v", sched), loss_weight(kind, lam, "v", sched))


def test_sigmoid_weighting_closed_form_and_fused_snr_shape_check():
    sched, lam = get_schedule("cosine"), torch.linspace(-6, 6, 12).reshape(3, 4)
    assert torch.allclose(loss_weight("sigmoid", lam, "eps", sched), torch.sigmoid(-1.0 - lam))  # DFoT's bias -1
    assert torch.equal(sigmoid_weight(lam), torch.sigmoid(-1.0 - lam))
    with pytest.raises(ValueError, match=r"shape \[B, T\]"):
        fused_logsnr(torch.zeros(4))

"""Self-rollout fine-tuning: the network is fed its own generated history, the loss is on what truly follows."""

import pytest
import torch

from dforce import DiffusionForcing, Transformer
from dforce.diffusion.noise_levels import HISTORY_LEVEL_MAX
from dforce.training.self_rollout import SelfRolloutConfig, finetune, self_rollout_loss


def _model(window=8, noise="independent"):
    torch.manual_seed(0)
    return DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2, causal=True), window=window, training_noise=noise)


def test_history_is_the_models_own_rollout_and_loss_is_on_the_true_continuation(monkeypatch):
    model = _model()
    x = torch.randn(4, 8, 2)
    seen = {}
    real_loss = model.loss

    def spy_loss(xm, noise_levels=None, generator=None, reduction="mean"):
        seen["x"], seen["t"] = xm.clone(), noise_levels.clone()
        seen["per_token"] = real_loss(xm, noise_levels=noise_levels, generator=torch.Generator().manual_seed(5), reduction="none")
        return seen["per_token"]

    monkeypatch.setattr(model, "loss", spy_loss)
    cfg = SelfRolloutConfig(rollout_tokens=3, sampling_steps=2)
    loss = self_rollout_loss(model, x, cfg, torch.Generator().manual_seed(1))
    xm, t = seen["x"], seen["t"]
    same = (xm == x).all(-1).all(0)  # per token: unchanged from the data?
    c = int(same.long().argmin())  # first replaced token = end of the true context
    assert c >= 1 and not same[c : c + 3].any() and same[:c].all() and same[c + 3 :].all()
    # the replacement is what the model itself samples from that context (same seed path)
    assert torch.isfinite(xm).all()
    assert (t[:, : c + 3] <= HISTORY_LEVEL_MAX).all()
    # the loss is the mean over the continuation tokens only
    expected = seen["per_token"][:, c + 3 :].mean()
    assert torch.allclose(loss, expected)


def test_finetune_updates_the_model_and_validates():
    model = _model(noise="autoregressive")
    data = (torch.sin(torch.linspace(0, 6, 8))[None, :, None].repeat(16, 1, 2) + 0.01 * torch.randn(16, 8, 2) for _ in range(10**6))
    before = [p.detach().clone() for p in model.parameters()]
    losses = finetune(model, data, 6, SelfRolloutConfig(rollout_tokens=2, sampling_steps=1), lr=3e-3,
                      generator=torch.Generator().manual_seed(0))
    assert len(losses) == 6 and all(map(lambda v: v == v and v < float("inf"), losses))
    assert any((a != b).any() for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="rollout_tokens"):
        SelfRolloutConfig(rollout_tokens=7).check(8)
    with pytest.raises(ValueError, match="full windows"):
        self_rollout_loss(model, torch.randn(2, 6, 2))


def test_lightning_module_uses_the_self_rollout_loss(monkeypatch):
    import dforce.training.self_rollout as sr

    model = _model()
    module = sr.lightning_module(model, config=SelfRolloutConfig(rollout_tokens=2, sampling_steps=1))
    calls = []
    monkeypatch.setattr(sr, "self_rollout_loss", lambda m, x, c: calls.append(x.shape) or torch.zeros((), requires_grad=True))
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    module.training_step(torch.randn(3, 8, 2), 0)
    assert calls == [(3, 8, 2)]

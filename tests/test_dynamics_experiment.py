"""How each method of the dynamics benchmark / demo is sampled, and the plain training loop."""

import numpy as np
import torch

from dforce.diffusion.noise_levels import DEFAULT_TRAINING_NOISE
from dforce.dynamics.experiment import SETTINGS, RunConfig, Trainer, batches, make_model, sample


def test_each_method_gets_its_recipe(monkeypatch):
    s, cfg = SETTINGS["lorenz63"], RunConfig(steps=3)
    model = make_model(3, s, DEFAULT_TRAINING_NOISE)
    seen = {}

    def spy(context, horizon, **kw):
        seen[None] = kw
        return torch.zeros(1, horizon, 3)

    monkeypatch.setattr(model, "sample", spy)
    got = {}
    for m in ("df_ar", "df_pyramid", "df_ar_no_stab", "df_self_rollout", "teacher_forcing", "full_sequence"):
        seen.clear()
        sample(model, np.zeros((1, s.context, 3), np.float32), 4, s, cfg, m, 0)
        got[m] = seen[None]
    # autoregressive: one token per window, so every generated history token is stabilized
    assert got["df_ar"]["chunk_size"] == 1 and got["df_ar"]["history_len"] == s.window - 1
    assert got["df_ar"]["stabilization_level"] == cfg.stabilization_level and got["df_ar"]["scheduling"] == "autoregressive"
    assert got["df_ar_no_stab"]["stabilization_level"] == 0.0 and got["teacher_forcing"]["stabilization_level"] == 0.0
    assert got["df_pyramid"]["scheduling"] == "pyramid" and got["df_pyramid"]["chunk_size"] == s.chunk
    assert got["full_sequence"]["history"] == "replacement" and got["full_sequence"]["scheduling"] == "full_sequence"
    assert all(g["cache"] == "window" for g in got.values())


def test_trainer_lowers_the_loss_and_keeps_an_ema():
    torch.set_num_threads(1)
    s = SETTINGS["lorenz63"]
    from dataclasses import replace

    s = replace(s, width=16, depth=1)
    t = torch.linspace(0, 50, 2000)
    train = torch.stack([torch.sin(t), torch.cos(t), torch.sin(2 * t)], -1)[None].repeat(2, 1, 1)
    tr = Trainer(make_model(3, s, "autoregressive"), RunConfig(lr=3e-3), 60, 0)
    data = batches(train, s.window, 16, torch.Generator().manual_seed(0))
    losses = [tr.step(next(data)) for _ in range(60)]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    # the EMA copies the weights during the 100 warm-up steps, then averages
    assert all(torch.equal(a, b) for a, b in zip(tr.ema.parameters(), tr.model.parameters()))
    tr.step_i = 200
    tr.step(next(data))
    assert any((a != b).any() for a, b in zip(tr.ema.parameters(), tr.model.parameters()))


class _ConstX0(torch.nn.Module):
    """A causal 'network' whose x0 prediction is always C (v-parametrization), recording its levels."""

    causal = True
    token_shape = (3,)

    def __init__(self, schedule, c: float) -> None:
        super().__init__()
        self.schedule, self.c, self.p, self.levels = schedule, c, torch.nn.Parameter(torch.zeros(())), []

    def forward(self, x, t, cond=None):
        self.levels.append(t.clone())
        a, s = (v[..., None] for v in self.schedule.alpha_sigma(t))
        eps = (x - a * self.c) / s.clamp_min(1e-8)
        return a * eps - s * self.c


def test_rollout_outputs_reach_level_zero_without_stabilization_noise():
    """What the jagged-rollout question needs from the sampler: the last step lands on x0_hat exactly,
    and the noise added to stabilized history never leaks into the generated tokens."""
    from dforce import DiffusionForcing
    from dforce.diffusion.schedules import get_schedule

    net = _ConstX0(get_schedule("cosine"), 0.5)
    model = DiffusionForcing(net, window=16, training_noise="autoregressive").eval()
    ctx = torch.randn(2, 8, 3)
    for variant in ("noise", "relabel"):
        for schedule, chunk in (("autoregressive", 1), ("pyramid", 4)):
            y = model.sample(context=ctx, horizon=24, steps=5, scheduling=schedule, history=variant, stabilization_level=0.3,
                             chunk_size=chunk, history_len=16 - chunk, seed=0)
            assert (y - 0.5).abs().max() < 1e-5
    # with one token per window every generated history token is fed at the stabilization level
    net.levels.clear()
    model.sample(context=ctx, horizon=12, steps=3, stabilization_level=0.05, chunk_size=1, history_len=15, seed=0)
    last = net.levels[-1][0]
    assert torch.allclose(last[:4], torch.zeros(4)) and torch.allclose(last[4:15], torch.full((11,), 0.05))

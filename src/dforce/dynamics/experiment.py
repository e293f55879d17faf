"""Shared pieces of the dynamics benchmark and ``dforce demo``: per-system settings, data,
a plain-PyTorch training loop, how each method is sampled, and the rollout metrics.

The recipe per method (``sample``): Diffusion Forcing rolls out autoregressively (or under a
pyramid matrix) over a sliding window of ``window`` tokens, ``chunk`` new tokens per window,
with stabilization; teacher forcing with clean history; full-sequence diffusion with
replacement conditioning. All with the KV cache (``cache="window"``, exact).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from dforce.diffusion.noise_levels import DEFAULT_TRAINING_NOISE
from dforce.dynamics.metrics import clip_diverged, crps_ensemble, diverged_fraction, marginal_w1, roughness_ratio, spectrum_distance
from dforce.dynamics.systems import generate
from dforce.model import DiffusionForcing
from dforce.backbones import Transformer

DEFAULT_NOISE = DEFAULT_TRAINING_NOISE


@dataclass
class SystemSetting:
    """Window (tokens), model size, training data size, context and chunk (tokens) for one system."""

    window: int = 16
    width: int = 64
    depth: int = 2
    train_traj: int = 32
    train_len: int = 4000
    context: int = 8
    chunk: int = 4


SETTINGS = {
    "lorenz63": SystemSetting(),
    "double_well": SystemSetting(),
    "kuramoto_sivashinsky": SystemSetting(width=96, train_len=3000),
}


@dataclass
class RunConfig:
    """Training and sampling options shared by every method."""

    train_steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    steps: int = 10
    stabilization_level: float = 0.02
    history: str = "noise"  # how generated history is fed at the stabilization level (SamplingConfig.history)
    rollout_windows: int = 10
    num_rollouts: int = 32
    short_contexts: int = 16
    short_ensemble: int = 8
    short_tokens: int = 8


# ---------------------------------------------------------------------------------------- data
def load_system(name: str, s: SystemSetting, cfg, seed: int):
    """Normalised training trajectories (tensor), test trajectories and a reference sample of the stationary law."""
    train = generate(name, s.train_traj, s.train_len, seed=1000 + seed)
    horizon = cfg.rollout_windows * s.window
    test = generate(name, max(cfg.num_rollouts, cfg.short_contexts), s.context + horizon, seed=2000 + seed)
    if name == "kuramoto_sivashinsky":  # a homogeneous field: one mean and std for every grid point
        mean, std = np.full(train.shape[-1], train.mean()), np.full(train.shape[-1], train.std())
    else:
        mean, std = train.reshape(-1, train.shape[-1]).mean(0), train.reshape(-1, train.shape[-1]).std(0)
    norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    train, test = norm(train), norm(test)
    rng = np.random.default_rng(seed)
    flat = train.reshape(-1, train.shape[-1])
    reference = flat[rng.choice(len(flat), min(len(flat), 20000), replace=False)]
    return torch.from_numpy(train), test, reference


def batches(train: torch.Tensor, length: int, batch: int, gen: torch.Generator):
    n_traj, n = train.shape[:2]
    while True:
        i = torch.randint(0, n_traj, (batch,), generator=gen)
        j = torch.randint(0, n - length + 1, (batch,), generator=gen)
        idx = j[:, None] + torch.arange(length)
        yield train[i[:, None], idx]


# ---------------------------------------------------------------------------------------- training
def make_model(dim: int, s: SystemSetting, training_noise: str) -> DiffusionForcing:
    backbone = Transformer(dim=dim, width=s.width, depth=s.depth, heads=4, causal=True)
    return DiffusionForcing(backbone, window=s.window, training_noise=training_noise, parametrization="v", weighting="min_snr")


class Trainer:
    """A plain-PyTorch loop (AdamW, linear warm-up, EMA of the weights): the ten-line API."""

    def __init__(self, model: DiffusionForcing, cfg, total_steps: int, seed: int) -> None:
        self.model, self.cfg, self.total = model, cfg, total_steps
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.ema = copy.deepcopy(model).eval()
        self.step_i = 0
        self.gen = torch.Generator().manual_seed(seed)

    def step(self, x: torch.Tensor, loss_fn=None) -> float:
        lr = self.cfg.lr * min(1.0, (self.step_i + 1) / 100) * (0.1 + 0.9 * max(0.0, 1 - self.step_i / self.total))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.model.train()
        loss = loss_fn(self.model, x) if loss_fn else self.model.loss(x, generator=self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            d = 0.99 if self.step_i > 100 else 0.0
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        self.step_i += 1
        return float(loss.detach())

    def fork(self) -> "Trainer":
        other = copy.copy(self)
        other.model = copy.deepcopy(self.model)
        other.ema = copy.deepcopy(self.ema)
        other.opt = torch.optim.AdamW(other.model.parameters(), lr=self.cfg.lr, weight_decay=0.0)
        other.opt.load_state_dict(self.opt.state_dict())
        other.gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.gen)))
        return other


# ---------------------------------------------------------------------------------------- evaluation
def sample(model, context: np.ndarray, horizon: int, s: SystemSetting, cfg, method: str, seed: int,
           **over) -> np.ndarray:
    # autoregressive rollouts generate one token per window (the recipe the benchmark measured);
    # pyramid rollouts need several tokens per window
    chunk = 1 if method in ("df_ar", "df_ar_no_stab", "df_self_rollout", "teacher_forcing") else s.chunk
    kw = dict(steps=cfg.steps, chunk_size=chunk, history_len=s.window - chunk, seed=seed, cache="window",
              history=cfg.history)
    if method in ("df_ar", "df_self_rollout"):
        kw.update(scheduling="autoregressive", stabilization_level=cfg.stabilization_level)
    elif method == "df_pyramid":
        kw.update(scheduling="pyramid", stabilization_level=cfg.stabilization_level)
    elif method in ("df_ar_no_stab", "teacher_forcing"):
        kw.update(scheduling="autoregressive", stabilization_level=0.0)
    elif method == "full_sequence":
        kw.update(scheduling="full_sequence", stabilization_level=0.0, history="replacement")
    else:
        raise ValueError(method)
    kw.update(over)
    with torch.inference_mode():
        y = model.sample(context=torch.from_numpy(context), horizon=horizon, **kw)
    return y.float().numpy()


def evaluate(pred: np.ndarray, truth: np.ndarray, reference: np.ndarray, seg: int, field_: bool) -> dict:
    n_seg = pred.shape[1] // seg
    p = clip_diverged(pred)
    w1 = [marginal_w1(p[:, i * seg : (i + 1) * seg], reference) for i in range(n_seg)]
    res = {"w1_per_segment": w1, "w1_last": w1[-1], "diverged_fraction": diverged_fraction(pred),
           "roughness_ratio": roughness_ratio(pred, truth)}
    if field_:
        res["spectrum_per_segment"] = [spectrum_distance(p[:, i * seg : (i + 1) * seg], reference) for i in range(n_seg)]
        res["spectrum_last"] = res["spectrum_per_segment"][-1]
    return res


def short_horizon(model, method, test, s, cfg, seed, **over) -> dict:
    """CRPS and ensemble-mean MSE over the first ``short_tokens`` tokens; ``over`` as in :func:`sample`."""
    n, e, h = cfg.short_contexts, cfg.short_ensemble, cfg.short_tokens
    ctx = np.repeat(test[:n, : s.context], e, 0)
    pred = clip_diverged(sample(model, ctx, h, s, cfg, method, seed + 7, **over)).reshape(n, e, h, -1)
    truth = test[:n, s.context : s.context + h]
    return {"crps_first8": crps_ensemble(pred, truth), "mse_first8": float(np.mean((pred.mean(1) - truth) ** 2))}



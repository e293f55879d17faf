"""Training on the model's own rollouts (beyond the Diffusion Forcing papers).

Exposure bias: in training the network conditions on true history, at sampling time on its own
outputs. Diffusion Forcing works around it by feeding generated history at a small noise level
(stabilization); Self Forcing (Huang et al. 2025) and CausVid (Yin et al. 2024) attack it
directly by rolling the model out during training. This module offers the simplest version that
needs no second network: a *rollout-conditioned denoising loss* (scheduled sampling for
diffusion models).

For each training window of ``T`` tokens:

1. the first ``c`` tokens are true context (``c`` random in ``[1, T - rollout_tokens - 1]``);
2. the model generates the next ``rollout_tokens`` tokens autoregressively from that context,
   without gradients, with the KV cache (``cache='window'``) and ``sampling_steps`` steps;
3. those generated tokens replace the true ones, and the whole history (true context plus the
   model's own tokens) is fed at levels uniform in ``[0, HISTORY_LEVEL_MAX]``, out of the loss;
4. the remaining tokens (the true continuation) get the model's own ``training_noise`` levels
   and carry the loss: the network learns to predict what truly follows *its own* history.

Plain PyTorch: :func:`self_rollout_loss` replaces ``model.loss(x)`` for some or all batches (see
``prob``); :func:`finetune` is a ten-line loop around it. The cost per batch is one extra
no-grad rollout of ``rollout_tokens x sampling_steps`` one-token network passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from torch import Tensor

from dforce.diffusion.noise_levels import HISTORY_LEVEL_MAX, training_noise_levels


@dataclass
class SelfRolloutConfig:
    """Options of the self-rollout fine-tuning stage.

    Attributes:
        rollout_tokens: tokens the model generates itself before the loss tokens (>= 1).
        sampling_steps: denoising steps per generated token (few are enough: the rollout only
            has to look like the model's own history).
        stabilization_level: level at which generated history is fed while rolling out.
        prob: fraction of batches that use the self-rollout loss (the rest: the plain loss).
    """

    rollout_tokens: int = 2
    sampling_steps: int = 10
    stabilization_level: float = 0.02
    prob: float = 1.0

    def check(self, window: int) -> "SelfRolloutConfig":
        if self.rollout_tokens < 1 or self.rollout_tokens > window - 2:
            raise ValueError(f"rollout_tokens must be in [1, window - 2] = [1, {window - 2}], got {self.rollout_tokens}")
        if self.sampling_steps < 1:
            raise ValueError(f"sampling_steps must be >= 1, got {self.sampling_steps}")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"prob must lie in [0, 1], got {self.prob}")
        return self


def self_rollout_loss(
    model, x: Tensor, config: Optional[SelfRolloutConfig] = None, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Rollout-conditioned loss on frames ``x`` [B, window * frame_stack, *frame_shape] (see the module doc)."""
    config = (config or SelfRolloutConfig()).check(model.window)
    k, b = model.frame_stack, x.shape[0]
    n = x.shape[1] // k
    if x.shape[1] % k or n != model.window:
        raise ValueError(f"self_rollout_loss needs full windows of {model.window * k} frames, got {x.shape[1]}")
    g = config.rollout_tokens
    c = int(torch.randint(1, n - g, (1,), generator=generator))
    was_training = model.training
    model.eval()
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.no_grad():
        own = model.sample(
            context=x[:, : c * k], horizon=g * k, steps=config.sampling_steps, scheduling="autoregressive",
            stabilization_level=config.stabilization_level, seed=seed, cache="window", chunk_size=1,
            history_len=model.window - 1,  # one token per window: every generated token is stabilized (see TODO(core) in dforce.dynamics.experiment)
        )
    model.train(was_training)
    xm = torch.cat([x[:, : c * k], own.to(x.dtype), x[:, (c + g) * k :]], 1)
    h = c + g
    rest_t, rest_mask = training_noise_levels(model.training_noise, b, n - h, history_len=None, device=x.device, generator=generator)
    hist_t = HISTORY_LEVEL_MAX * torch.rand(b, h, device=x.device, generator=generator)
    t = torch.cat([hist_t, rest_t], 1)
    mask = torch.cat([torch.zeros(b, h, dtype=torch.bool, device=x.device), rest_mask], 1).float()
    per_token = model.loss(xm, noise_levels=t, generator=generator, reduction="none")
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


def finetune(
    model,
    batches: Iterable[Tensor],
    steps: int,
    config: Optional[SelfRolloutConfig] = None,
    lr: float = 3e-4,
    generator: Optional[torch.Generator] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
) -> list[float]:
    """Fine-tune ``model`` for ``steps`` batches of frames with :func:`self_rollout_loss`; returns the losses."""
    config = (config or SelfRolloutConfig()).check(model.window)
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=lr)
    losses, it = [], iter(batches)
    model.train()
    for _ in range(steps):
        x = next(it)
        use = config.prob >= 1.0 or float(torch.rand((), generator=generator)) < config.prob
        loss = self_rollout_loss(model, x, config, generator) if use else model.loss(x, generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def lightning_module(model, train_config=None, config: Optional[SelfRolloutConfig] = None):
    """A :class:`~dforce.training.lightning.DiffusionForcingModule` whose training step uses
    :func:`self_rollout_loss` (with probability ``config.prob``; batches with conditions or masks
    fall back to the plain loss). Use it with a Lightning ``Trainer`` to fine-tune a trained model::

        module = lightning_module(model, TrainConfig(max_steps=300), SelfRolloutConfig())
        pl.Trainer(max_steps=300).fit(module, loader)
    """
    from dforce.training.lightning import DiffusionForcingModule, TrainConfig, unpack_batch

    sr = (config or SelfRolloutConfig()).check(model.window)

    class SelfRolloutModule(DiffusionForcingModule):
        def training_step(self, batch, batch_idx: int) -> Tensor:
            x, cond, mask = unpack_batch(batch)
            if cond is not None or mask is not None or (sr.prob < 1.0 and float(torch.rand(())) >= sr.prob):
                return super().training_step(batch, batch_idx)
            loss = self_rollout_loss(self.model, x, sr)
            self.log("train/self_rollout_loss", loss, prog_bar=True, batch_size=x.shape[0])
            return loss

    return SelfRolloutModule(model, train_config or TrainConfig())

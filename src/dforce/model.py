"""``DiffusionForcing``: a backbone plus the diffusion math, with the two-call API.

    model = DiffusionForcing(Transformer(dim=3), window=32)
    loss = model.loss(x)                               # x [B, T, 3]
    y = model.sample(context=x[:, :8], horizon=320)    # [B, 320, 3]

Plain PyTorch: train it with any loop. Frame stacking is handled here, so ``x``, ``context`` and
the result are in frames [B, N, *frame_shape] while the backbone sees tokens of ``frame_stack``
frames each.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn

from dforce.diffusion.noise_levels import (
    DEFAULT_TRAINING_NOISE,
    check_training_noise,
    stack_frames,
    training_noise_levels,
    unstack_frames,
)
from dforce.diffusion.parametrization import check_parametrization, eps_mse_factor, target, to_x0_eps
from dforce.diffusion.schedules import NoiseSchedule, expand_like, get_schedule
from dforce.diffusion.weighting import check_weighting, loss_weight
from dforce.sampling.rollout import SamplingConfig, rollout
from dforce.sampling.sampler import Guidance


class DiffusionForcing(nn.Module):
    """One denoiser trained with per-token noise levels.

    Args:
        backbone: module honouring the backbone contract; must expose ``token_shape`` (the shape
            of one *stacked* token) and ``causal``.
        window: tokens per training window (the sliding-window size at sampling time).
        noise_schedule: ``cosine``, ``linear``, ``sigmoid``, ``rectified_flow`` or an instance.
        schedule_kwargs: arguments of the noise schedule (e.g. ``{"shift": 0.125}``).
        parametrization: ``eps``, ``x0``, ``v`` or ``flow``.
        weighting: ``uniform``, ``min_snr``, ``sigmoid`` or ``fused_snr`` (on the eps-MSE).
        training_noise: ``independent`` (the Diffusion Forcing paper), ``full_sequence``,
            ``teacher_forcing``, ``uniform_future``, ``autoregressive``, ``pyramid`` or a weighted
            mixture ``"name:weight,..."``; the default ``DEFAULT_TRAINING_NOISE`` mixes independent
            levels with the autoregressive and pyramid patterns (see docs/guide.md, "Which recipe when").
        history_len: fixed history length for ``teacher_forcing`` / ``uniform_future``
            (None: random per sequence).
        frame_stack: frames packed into one token.
        cond_dropout: probability of zeroing a sequence's external condition (enables CFG).
        noise_clip: clamp training noise to ``[-noise_clip, noise_clip]`` (None: no clamp).
        padding_weight: loss weight of padding tokens (which are forced to pure noise).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        window: int,
        noise_schedule: Union[str, NoiseSchedule] = "cosine",
        schedule_kwargs: Optional[dict] = None,
        parametrization: str = "v",
        weighting: str = "min_snr",
        training_noise: str = DEFAULT_TRAINING_NOISE,
        history_len: Optional[int] = None,
        frame_stack: int = 1,
        cond_dropout: float = 0.0,
        noise_clip: Optional[float] = None,
        padding_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if not hasattr(backbone, "token_shape") or not hasattr(backbone, "causal"):
            raise TypeError("the backbone must expose `token_shape` and `causal` attributes (see dforce.testing.check_backbone)")
        if window < 1 or frame_stack < 1:
            raise ValueError(f"window and frame_stack must be >= 1, got {window} and {frame_stack}")
        token_shape = tuple(backbone.token_shape)
        if token_shape[0] % frame_stack:
            raise ValueError(f"token size {token_shape[0]} is not divisible by frame_stack={frame_stack}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must lie in [0, 1), got {cond_dropout}")
        self.backbone = backbone
        self.window = window
        self.noise_schedule = get_schedule(noise_schedule, **(schedule_kwargs or {}))
        self.parametrization = check_parametrization(parametrization)
        self.weighting = check_weighting(weighting)
        self.training_noise = check_training_noise(training_noise)
        self.history_len = history_len
        self.frame_stack = frame_stack
        self.cond_dropout = cond_dropout
        self.noise_clip = noise_clip
        self.padding_weight = padding_weight
        self.token_shape = token_shape
        self.frame_shape = (token_shape[0] // frame_stack, *token_shape[1:])

    @property
    def causal(self) -> bool:
        return bool(self.backbone.causal)

    # ------------------------------------------------------------------ prediction
    def denoise(self, x: Tensor, t: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
        """Tokens ``x`` [B, T, *token_shape] at levels ``t`` [B, T] -> ``(x0_hat, eps_hat)`` (fp32)."""
        pred = self.backbone(x, t, cond).float()
        alpha, sigma = self.noise_schedule.alpha_sigma(t)
        return to_x0_eps(self.parametrization, pred, x.float(), expand_like(alpha, pred), expand_like(sigma, pred))

    def denoiser(self, precision: str = "fp32") -> Callable[[Tensor, Tensor, Any], tuple[Tensor, Tensor]]:
        """:meth:`denoise` for the samplers, with the backbone under bf16 autocast when ``precision='bf16'``."""
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        device_type = next(self.parameters()).device.type

        def denoise(x: Tensor, t: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                return self.denoise(x, t, cond)

        return denoise

    # ------------------------------------------------------------------ training
    def _check_frames(self, x: Tensor, name: str) -> None:
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor [B, N, {', '.join(map(str, self.frame_shape))}]")
        if x.dim() != 2 + len(self.frame_shape) or tuple(x.shape[2:]) != self.frame_shape:
            raise ValueError(
                f"{name} must have shape [B, N, {', '.join(map(str, self.frame_shape))}] (frames), got {tuple(x.shape)}"
            )

    def loss(
        self,
        x: Tensor,
        cond: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
        noise_levels: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
        reduction: str = "mean",
    ) -> Tensor:
        """Diffusion Forcing loss on frames ``x`` [B, N, *frame_shape].

        Args:
            cond: per-frame external condition [B, N, C] (stacked with the frames).
            mask: [B, N] bool, False for padding or missing frames: such tokens are forced to pure
                noise and weigh ``padding_weight``; their values may be NaN.
            noise_levels: override the training levels, [B, N / frame_stack] in [0, 1].
            reduction: ``mean`` (a scalar) or ``none`` (per-token loss [B, T]).
        """
        self._check_frames(x, "x")
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(f"mask must have shape [B, N] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
            mask = mask.bool()
            x = torch.where(expand_like(mask, x), x, torch.zeros_like(x))
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf outside the mask; mark missing frames with mask=False")
        k = self.frame_stack
        tokens = stack_frames(x, k)
        b, n = tokens.shape[:2]
        if noise_levels is None:
            t, target_mask = training_noise_levels(
                self.training_noise, b, n, history_len=self.history_len, device=x.device, generator=generator
            )
        else:
            if noise_levels.shape != (b, n):
                raise ValueError(f"noise_levels must have shape [B, T] = {(b, n)}, got {tuple(noise_levels.shape)}")
            t, target_mask = noise_levels.float().clamp(0, 1), torch.ones(b, n, dtype=torch.bool, device=x.device)
        weight_el = torch.ones_like(tokens)
        if mask is not None:
            frame_valid = expand_like(mask, x).expand_as(x).to(tokens.dtype)
            weight_el = stack_frames(frame_valid, k)
            valid = mask.reshape(b, n, k).any(-1)
            t = torch.where(valid, t, torch.ones_like(t))
            target_w = torch.where(valid, target_mask.float(), self.padding_weight * target_mask.float())
            weight_el = torch.where(expand_like(valid, tokens), weight_el, torch.ones_like(weight_el))
        else:
            target_w = target_mask.float()
        eps = torch.randn(tokens.shape, generator=generator, device=x.device, dtype=torch.float32)
        if self.noise_clip is not None:
            eps = eps.clamp(-self.noise_clip, self.noise_clip)
        x_t = self.noise_schedule.q_sample(tokens.float(), t, eps).to(tokens.dtype)
        if cond is not None:
            if cond.shape[:2] != x.shape[:2]:
                raise ValueError(f"cond must have shape [B, N, ...] with [B, N] = {tuple(x.shape[:2])}, got {tuple(cond.shape)}")
            cond = stack_frames(cond, k)
            if self.training and self.cond_dropout > 0:
                keep = torch.rand(b, device=x.device, generator=generator) >= self.cond_dropout
                cond = cond * expand_like(keep, cond).to(cond.dtype)
        pred = self.backbone(x_t, t, cond).float()
        alpha, sigma = self.noise_schedule.alpha_sigma(t)
        tgt = target(self.parametrization, tokens.float(), eps, expand_like(alpha, tokens), expand_like(sigma, tokens))
        se = (pred - tgt) ** 2 * weight_el
        per_token = se.flatten(2).sum(-1) / weight_el.flatten(2).sum(-1).clamp_min(1.0)
        w = loss_weight(self.weighting, self.noise_schedule.logsnr(t))
        w = w / eps_mse_factor(self.parametrization, alpha, sigma).clamp_min(1e-8)
        per_token = per_token * torch.where(target_w > 0, w, torch.zeros_like(w)) * target_w
        if reduction == "none":
            return per_token
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        return per_token.sum() / target_w.sum().clamp_min(1.0)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        context: Optional[Tensor] = None,
        horizon: int = 1,
        *,
        context_mask: Optional[Tensor] = None,
        batch_size: Optional[int] = None,
        cond: Optional[Tensor] = None,
        guidance: Optional[Guidance] = None,
        config: Optional[SamplingConfig] = None,
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        precision: str = "fp32",
        progress: bool = False,
        cache: str = "none",
        **overrides: Any,
    ) -> Tensor:
        """Generate ``horizon`` frames after ``context`` [B, C, *frame_shape].

        Sampling options come from ``config`` (a :class:`SamplingConfig`) and keyword overrides of
        its fields, e.g. ``schedule="pyramid", steps=20, eta=1.0, stabilization_level=0.02``.
        ``cond`` [B, C + horizon, ...] gives external conditions for every frame; ``context_mask``
        [B, C] (bool) marks observed context frames (missing ones may hold NaN; a token with any
        missing frame is fed as pure noise). ``seed`` makes
        the draw reproducible. ``precision='bf16'`` runs the backbone under bf16 autocast.
        ``cache='window'`` (exact, same numbers) or ``'rolling'`` (each token encoded once, constant
        memory) samples with a KV cache for causal transformers: see ``dforce.sampling.cached``.
        Returns frames [B, horizon, *frame_shape].
        """
        if cache != "none":
            from dforce.sampling.cached import cached_rollout

            if context_mask is not None:
                raise ValueError("context_mask is not supported with a KV cache; use cache='none'")
            return cached_rollout(
                self, context, horizon, config, batch_size=batch_size, cond=cond, guidance=guidance, seed=seed,
                generator=generator, precision=precision, cache=cache, **overrides,
            )
        unknown = set(overrides) - {f.name for f in fields(SamplingConfig)}
        if unknown:
            raise TypeError(f"unknown sampling option(s) {sorted(unknown)}; see dforce.SamplingConfig")
        config = replace(config or SamplingConfig(), **overrides)
        k = self.frame_stack
        device = next(self.parameters()).device
        if context is not None:
            self._check_frames(context, "context")
            if context_mask is not None:
                if context_mask.shape != context.shape[:2]:
                    raise ValueError(f"context_mask must have shape [B, C] = {tuple(context.shape[:2])}, got {tuple(context_mask.shape)}")
                context_mask = context_mask.bool().to(device)
                context = torch.where(expand_like(context_mask, context).to(context.device), context, torch.zeros_like(context))
                context_mask = context_mask.reshape(context.shape[0], -1, k).all(-1) if context.shape[1] % k == 0 else context_mask
            if not torch.isfinite(context).all():
                raise ValueError("context contains NaN or inf; mark missing frames with context_mask=False")
            if context.shape[1] % k:
                raise ValueError(f"context length {context.shape[1]} is not a multiple of frame_stack={k}")
            context = stack_frames(context.to(device), k)
            if context.shape[1] == 0:
                batch_size, context, context_mask = context.shape[0], None, None
        if horizon < 1 or horizon % k:
            raise ValueError(f"horizon must be a positive multiple of frame_stack={k}, got {horizon}")
        if cond is not None:
            cond = stack_frames(cond.to(device), k) if cond.shape[1] % k == 0 else None
            if cond is None:
                raise ValueError(f"cond length must be a multiple of frame_stack={k}")
        if generator is None and seed is not None:
            generator = torch.Generator(device).manual_seed(seed)
        out = rollout(
            self.denoiser(precision),
            token_shape=self.token_shape,
            horizon=horizon // k,
            window=self.window,
            schedule=self.noise_schedule,
            config=config,
            context=context,
            context_mask=context_mask,
            batch_size=batch_size,
            cond=cond,
            guidance=guidance,
            causal=self.causal,
            generator=generator,
            device=device,
            progress=progress,
        )
        return unstack_frames(out, k)

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
from typing import Any, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from dforce.diffusion.noise_levels import (
    DEFAULT_TRAINING_NOISE,
    known_start_levels,
    parse_training_noise,
    stack_frames,
    training_noise_levels,
    unstack_frames,
)
from dforce.diffusion.parametrization import check_parametrization, target, to_x0_eps
from dforce.diffusion.schedules import NoiseSchedule, expand_like, get_schedule
from dforce.diffusion.weighting import check_weighting, loss_weight
from dforce.sampling.cached import CachedDenoiser, check_cacheable
from dforce.sampling.rollout import SamplingConfig, iter_rollout
from dforce.sampling.sampler import Denoiser, Guidance, autocast


class DiffusionForcing(nn.Module):
    """One denoiser trained with per-token noise levels.

    Args:
        backbone: honours the backbone contract (``dforce.testing.check_backbone``) and exposes
            ``token_shape`` (of one *stacked* token) and ``causal``.
        window: tokens per training window (the sliding window at sampling time).
        noise_schedule / schedule_kwargs: a name of ``dforce.diffusion.SCHEDULES`` and its options, or an instance.
        parametrization: ``eps``, ``x0``, ``v`` or ``flow``; weighting: ``uniform``, ``min_snr``,
            ``sigmoid`` or ``fused_snr`` (on the eps-MSE).
        training_noise: a pattern of ``dforce.diffusion.noise_levels`` or a mixture ``"name:weight,..."``.
        history_len: history length of ``teacher_forcing`` / ``uniform_future`` (None: random).
        frame_stack: frames packed into one token.
        cond_dropout: probability of zeroing a sequence's external condition (enables CFG).
        noise_clip: clamp training noise to ``[-noise_clip, noise_clip]``.
        padding_weight: loss weight of padding tokens (which are fed as pure noise).
        known_start_prob / known_start_level: share of sequences whose token 0 gets a level in
            ``[0, known_start_level)`` (``noise_levels.known_start_levels``; the planner: 0.5 / 0.25).
    """

    def __init__(
        self, backbone: nn.Module, *, window: int, noise_schedule: Union[str, NoiseSchedule] = "cosine",
        schedule_kwargs: Optional[dict] = None, parametrization: str = "v", weighting: str = "min_snr",
        training_noise: str = DEFAULT_TRAINING_NOISE, history_len: Optional[int] = None, frame_stack: int = 1, cond_dropout: float = 0.0,
        noise_clip: Optional[float] = None, padding_weight: float = 0.0, known_start_prob: float = 0.0, known_start_level: float = 0.25,
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
        if history_len is not None and not 0 <= history_len < window:
            raise ValueError(f"history_len must lie in [0, window - 1] = [0, {window - 1}] (or None for random), got {history_len}")
        if noise_clip is not None and not noise_clip > 0:
            raise ValueError(f"noise_clip must be > 0 (or None for no clamp), got {noise_clip}")
        if padding_weight < 0:
            raise ValueError(f"padding_weight must be >= 0, got {padding_weight}")
        if not 0.0 <= known_start_prob <= 1.0 or not 0.0 <= known_start_level <= 1.0:
            raise ValueError(f"known_start_prob and known_start_level must lie in [0, 1], got {known_start_prob} and {known_start_level}")
        self.backbone = backbone
        self.window = window
        self.noise_schedule = get_schedule(noise_schedule, **(schedule_kwargs or {}))
        self.parametrization = check_parametrization(parametrization)
        self.weighting = check_weighting(weighting)
        parse_training_noise(training_noise)  # validates
        self.training_noise = training_noise
        self.history_len = history_len
        self.frame_stack = frame_stack
        self.cond_dropout = cond_dropout
        self.noise_clip, self.padding_weight = noise_clip, padding_weight
        self.known_start_prob, self.known_start_level = known_start_prob, known_start_level
        self.token_shape = token_shape
        self.frame_shape = (token_shape[0] // frame_stack, *token_shape[1:])

    @property
    def causal(self) -> bool:
        return bool(self.backbone.causal)

    def prediction(self, out: Tensor, x: Tensor, t: Tensor, scales: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, Tensor]:
        """Raw backbone output ``out`` for tokens ``x`` at levels ``t`` -> ``(x0_hat, eps_hat)`` (fp32);
        ``scales``: ``(alpha, sigma)`` of ``t`` where the caller has them."""
        out = out.float()
        alpha, sigma = self.noise_schedule.alpha_sigma(t) if scales is None else scales
        return to_x0_eps(self.parametrization, out, x.float(), expand_like(alpha, out), expand_like(sigma, out))

    def denoise(self, x: Tensor, t: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
        """Tokens ``x`` [B, T, *token_shape] at levels ``t`` [B, T] -> ``(x0_hat, eps_hat)`` (fp32)."""
        return self.prediction(self.backbone(x, t, cond), x, t)

    def denoiser(self, precision: str = "fp32", cache: str = "none", compile: bool = False) -> Denoiser:
        """:meth:`denoise` for the sampler, under ``precision``, backed by ``cache`` and its decode step compiled (``dforce.sampling.cached``)."""
        check_cacheable(self, cache, compile)
        if cache != "none":
            return CachedDenoiser(self, precision, cache, compile)
        device = next(self.parameters()).device
        autocast(device, precision)  # validates precision

        def denoise(x: Tensor, t: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
            with autocast(device, precision):
                return self.denoise(x, t, cond)

        return denoise

    def _check_frames(self, x: Tensor, name: str) -> None:
        shape = f"[B, N, {', '.join(map(str, self.frame_shape))}]"
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor {shape}")
        if x.dim() != 2 + len(self.frame_shape) or tuple(x.shape[2:]) != self.frame_shape:
            raise ValueError(f"{name} must have shape {shape} (frames), got {tuple(x.shape)}")

    def loss(
        self, x: Tensor, cond: Optional[Tensor] = None, mask: Optional[Tensor] = None, noise_levels: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None, reduction: str = "mean",
    ) -> Tensor:
        """Diffusion Forcing loss on frames ``x`` [B, N, *frame_shape].

        Args:
            cond: per-frame external condition [B, N, C] (stacked with the frames).
            mask: [B, N] bool, False for padding or missing frames: such tokens are forced to pure
                noise and weigh ``padding_weight``; their values may be NaN.
            noise_levels: override the training levels, [B, N / frame_stack] in [0, 1] (used as
                given: ``known_start_prob`` does not apply).
            reduction: ``mean`` (a scalar) or ``none`` (per-token loss [B, T]).
        """
        self._check_frames(x, "x")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x is an empty batch (shape {tuple(x.shape)}); give at least one sequence of at least one frame")
        if noise_levels is not None and noise_levels.numel() and not bool(((noise_levels >= 0) & (noise_levels <= 1)).all()):
            raise ValueError(f"noise_levels must lie in [0, 1] (0 = clean, 1 = pure noise); got values in "
                             f"[{float(noise_levels.min()):.3g}, {float(noise_levels.max()):.3g}]: rescale them")
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
            t, target_mask = training_noise_levels(self.training_noise, b, n, history_len=self.history_len, device=x.device, generator=generator)
            t = known_start_levels(t, self.known_start_prob, self.known_start_level, generator)
        else:
            if noise_levels.shape != (b, n):
                raise ValueError(f"noise_levels must have shape [B, T] = {(b, n)}, got {tuple(noise_levels.shape)}")
            t, target_mask = noise_levels.float().clamp(0, 1), torch.ones(b, n, dtype=torch.bool, device=x.device)
        weight_el, target_w = torch.ones_like(tokens), target_mask.float()  # per element / per token
        if mask is not None:  # a padding token is pure noise, weighs padding_weight, and all its elements count
            valid = mask.reshape(b, n, k).any(-1)
            t = torch.where(valid, t, torch.ones_like(t))
            target_w = torch.where(valid, target_w, self.padding_weight * target_w)
            frames = stack_frames(expand_like(mask, x).expand_as(x).to(tokens.dtype), k)
            weight_el = torch.where(expand_like(valid, tokens), frames, weight_el)
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
        w = loss_weight(self.weighting, self.noise_schedule.logsnr(t), self.parametrization, self.noise_schedule)
        per_token = per_token * torch.where(target_w > 0, w, torch.zeros_like(w)) * target_w
        return per_token if reduction == "none" else per_token.sum() / target_w.sum().clamp_min(1.0)

    @torch.no_grad()
    def sample(self, context: Optional[Tensor] = None, horizon: int = 1, **kwargs: Any) -> Tensor:
        """Generate ``horizon`` frames after ``context`` [B, C, *frame_shape] -> [B, horizon, *frame_shape].

        Keyword arguments:
            batch_size: samples to draw without a context.
            context_mask: [B, C] bool, observed context frames (a token with a missing frame is
                fed as pure noise, as in training; missing values may be NaN).
            cond: [B, C + horizon, ...] external conditions for every frame.
            guidance: a guidance hook (``dforce.guidance``).
            config: a :class:`SamplingConfig`; keywords named after its fields override it.
            seed / generator, progress; precision: ``fp32`` or ``bf16``; cache: ``none``, ``window`` (exact)
                or ``rolling``; compile: ``torch.compile`` the cached one-token step (``dforce.sampling.cached``).
        """
        return torch.stack(list(self.stream(context, horizon, **kwargs)), 1)

    @torch.no_grad()
    def stream(self, context: Optional[Tensor] = None, horizon: int = 1, **kwargs: Any) -> Iterator[Tensor]:
        """:meth:`sample` frame by frame (same arguments and numbers): yields each frame
        [B, *frame_shape] as soon as its token is clean."""
        denoise, rollout_kwargs = self._sampling_inputs(context, horizon, **kwargs)
        for _, token in iter_rollout(denoise, **rollout_kwargs):
            yield from unstack_frames(token[:, None], self.frame_stack).unbind(1)

    def _sampling_inputs(
        self, context: Optional[Tensor], horizon: int, *, context_mask: Optional[Tensor] = None, batch_size: Optional[int] = None,
        cond: Optional[Tensor] = None, guidance: Optional[Guidance] = None, config: Optional[SamplingConfig] = None,
        seed: Optional[int] = None, generator: Optional[torch.Generator] = None, precision: str = "fp32", cache: str = "none",
        progress: bool = False, compile: bool = False, **overrides: Any,
    ) -> tuple[Denoiser, dict]:
        """The one input check of :meth:`sample` and :meth:`stream`: the denoiser and the validated
        arguments of :func:`dforce.sampling.iter_rollout`."""
        unknown = set(overrides) - {f.name for f in fields(SamplingConfig)}
        if unknown:
            raise TypeError(f"unknown sampling option(s) {sorted(unknown)}; see dforce.SamplingConfig")
        config = replace(config or SamplingConfig(), **overrides).check()
        k, device = self.frame_stack, next(self.parameters()).device
        if not isinstance(horizon, int) or horizon < 1 or horizon % k:
            raise ValueError(f"horizon must be a positive multiple of frame_stack={k}, got {horizon!r}")
        if context is not None:
            self._check_frames(context, "context")
            if batch_size is not None and batch_size != context.shape[0]:
                raise ValueError(f"batch_size={batch_size} disagrees with the context's batch of {context.shape[0]}; drop batch_size")
            if context.shape[1] % k:
                raise ValueError(f"context length {context.shape[1]} is not a multiple of frame_stack={k}")
            if context_mask is not None:
                if context_mask.shape != context.shape[:2]:
                    raise ValueError(f"context_mask must have shape [B, C] = {tuple(context.shape[:2])}, got {tuple(context_mask.shape)}")
                context_mask = context_mask.bool().to(context.device)
                context = torch.where(expand_like(context_mask, context), context, torch.zeros_like(context))
                context_mask = context_mask.reshape(context.shape[0], -1, k).all(-1).to(device)
            if not torch.isfinite(context).all():
                raise ValueError("context contains NaN or inf; mark missing frames with context_mask=False")
            batch_size = context.shape[0]
            context = stack_frames(context.to(device).float(), k) if context.shape[1] else None
        elif context_mask is not None:
            raise ValueError("context_mask needs a context")
        if batch_size is None or batch_size < 1:
            raise ValueError(f"give a context or a batch_size >= 1, got batch_size={batch_size}")
        n_ctx = 0 if context is None else context.shape[1]
        if cond is not None:
            if cond.shape[0] != batch_size or cond.shape[1] != (n_ctx + horizon // k) * k:
                raise ValueError(f"cond must have shape [B, C + horizon, ...] = [{batch_size}, {n_ctx * k + horizon}, ...], got {tuple(cond.shape)}")
            cond = stack_frames(cond.to(device), k)
        if cache == "rolling" and guidance is not None:
            raise ValueError("cache='rolling' encodes each history token once and takes no guidance; use cache='window'")
        if generator is None and seed is not None:
            generator = torch.Generator(device).manual_seed(seed)
        return self.denoiser(precision, cache, compile), dict(
            token_shape=self.token_shape, horizon=horizon // k, window=self.window, schedule=self.noise_schedule,
            config=config, context=context, context_mask=context_mask, batch_size=batch_size, cond=cond,
            guidance=guidance, causal=self.causal, generator=generator, device=device, progress=progress,
        )

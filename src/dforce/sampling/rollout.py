"""Sliding-window rollout: generate any number of tokens with a model trained on ``window`` tokens.

Each window holds up to ``window - chunk`` tokens of history (the most recent ones) followed by
``chunk`` new tokens, which are denoised along a scheduling matrix. Generated tokens become
history for later windows; they are fed at the *stabilization level* (a small noise level, so the
model treats its own outputs as slightly uncertain and errors do not compound), while observed
context stays at ``context_level`` (0 = clean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from dforce.diffusion.schedules import NoiseSchedule, expand_like
from dforce.sampling.sampler import Denoiser, Guidance, iter_sample_window
from dforce.sampling.scheduling import level_grid, scheduling_matrix

STABILIZATION = ("noise", "relabel")
CONDITIONING = ("clean", "replacement")


@dataclass
class SamplingConfig:
    """How to sample; every field is documented in ``docs/guide.md``.

    Attributes:
        schedule: scheduling matrix, ``autoregressive``, ``pyramid``, ``full_sequence``, ``trapezoid``, ``chunked``
            or a custom integer matrix [R, chunk].
        steps: sampling steps ``S`` per token.
        eta: 0 = deterministic DDIM, 1 = ancestral.
        uncertainty_scale: ``u`` of ``pyramid`` / ``trapezoid``.
        chunk_size: new tokens per window (default: ``window - history_len``).
        history_len: history tokens kept in each window after the first (default: the number of
            context tokens given, or ``window // 2`` with no context), at most ``window - 1``.
        stabilization_level: level ``t`` at which generated history is fed (0 disables).
        stabilization: ``noise`` (relabel and add the matching noise, consistent with training;
            the default) or ``relabel`` (only relabel, as the reference implementation does).
        context_level: level of observed context tokens (0 = clean).
        level_spacing: ``uniform`` in t or ``logsnr``.
        pad_to_window: fill short windows with pure-noise tokens (default: for non-causal models).
        clip_x0: clamp ``x0_hat`` to ``[-clip_x0, clip_x0]`` (None = no clamp).
        conditioning: ``clean`` (history fed at ``context_level`` / ``stabilization_level``; for
            Diffusion Forcing and teacher forcing) or ``replacement`` (history re-noised afresh to
            the generated tokens' level at every step; for full-sequence models, which never saw
            clean history in training).
    """

    schedule: Union[str, Tensor] = "autoregressive"
    steps: int = 50
    eta: float = 0.0
    uncertainty_scale: float = 1.0
    chunk_size: Optional[int] = None
    history_len: Optional[int] = None
    stabilization_level: float = 0.02
    stabilization: str = "noise"
    context_level: float = 0.0
    level_spacing: str = "uniform"
    pad_to_window: Optional[bool] = None
    clip_x0: Optional[float] = None
    conditioning: str = "clean"

    def check(self) -> "SamplingConfig":
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.stabilization not in STABILIZATION:
            raise ValueError(f"unknown stabilization {self.stabilization!r}; choose one of {list(STABILIZATION)}")
        if self.conditioning not in CONDITIONING:
            raise ValueError(f"unknown conditioning {self.conditioning!r}; choose one of {list(CONDITIONING)}")
        for name in ("stabilization_level", "context_level"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        return self


def plan_windows(context_len: int, horizon: int, window: int, chunk_size: Optional[int], history_len: Optional[int]) -> list[tuple[int, int, int]]:
    """The windows of a rollout as ``(start, history, new)`` triples in token indices.

    Window ``i`` covers tokens ``[start, start + history + new)``; the first ``history`` of them
    are already known.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 token, got {horizon}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if history_len is None:
        history_len = context_len if context_len > 0 else window // 2
    history_len = max(0, min(history_len, window - 1))
    chunk = chunk_size if chunk_size is not None else window - history_len
    if chunk < 1 or chunk > window:
        raise ValueError(f"chunk_size must be in [1, {window}] for a window of {window} tokens, got {chunk}")
    out, have, total = [], context_len, context_len + horizon
    while have < total:
        new = min(chunk, total - have)
        hist = min(have, window - new) if have == context_len else min(have, history_len, window - new)
        out.append((have - hist, hist, new))
        have += new
    return out


def rollout(
    denoise: Denoiser,
    *,
    token_shape: Sequence[int],
    horizon: int,
    window: int,
    schedule: NoiseSchedule,
    config: SamplingConfig,
    context: Optional[Tensor] = None,
    context_mask: Optional[Tensor] = None,
    batch_size: Optional[int] = None,
    cond: Optional[Tensor] = None,
    guidance: Optional[Guidance] = None,
    causal: bool = True,
    generator: Optional[torch.Generator] = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> Tensor:
    """Generate ``horizon`` tokens after ``context`` [B, C, *token_shape].

    ``cond`` [B, C + horizon, ...] holds external per-token conditions (covariates, actions) for
    every context and future token. ``context_mask`` [B, C] (bool) marks observed context tokens:
    missing ones are fed as pure noise (level 1), as masked tokens are in training, never imputed.
    Returns the new tokens [B, horizon, *token_shape].
    """
    return torch.stack([tok for _, tok in iter_rollout(
        denoise, token_shape=token_shape, horizon=horizon, window=window, schedule=schedule, config=config,
        context=context, context_mask=context_mask, batch_size=batch_size, cond=cond, guidance=guidance, causal=causal, generator=generator,
        device=device, dtype=dtype, progress=progress,
    )], 1)


def iter_rollout(
    denoise: Denoiser,
    *,
    token_shape: Sequence[int],
    horizon: int,
    window: int,
    schedule: NoiseSchedule,
    config: SamplingConfig,
    context: Optional[Tensor] = None,
    context_mask: Optional[Tensor] = None,
    batch_size: Optional[int] = None,
    cond: Optional[Tensor] = None,
    guidance: Optional[Guidance] = None,
    causal: bool = True,
    generator: Optional[torch.Generator] = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """:func:`rollout` token by token: yields ``(h, token [B, *token_shape])`` for ``h = 0..horizon-1``
    as soon as token ``h`` is clean (and all earlier ones are), with the same numbers as :func:`rollout`.

    With a pyramid or autoregressive scheduling matrix the first tokens arrive after their own
    ``steps`` rows, long before the window is finished. The yielded tensors are views of the
    rollout's buffer and are never written again.
    """
    config.check()
    if context is not None:
        if tuple(context.shape[2:]) != tuple(token_shape):
            raise ValueError(f"context tokens have shape {tuple(context.shape[2:])}, the model expects {tuple(token_shape)}")
        batch_size, ctx_len = context.shape[0], context.shape[1]
        device = context.device if device is None else device
    else:
        if batch_size is None:
            raise ValueError("give either context or batch_size")
        ctx_len = 0
    device = torch.device(device or "cpu")
    total = ctx_len + horizon
    if cond is not None and cond.shape[1] < total:
        raise ValueError(f"cond covers {cond.shape[1]} tokens but context + horizon = {total}; give conditions for every token")
    pad = (not causal) if config.pad_to_window is None else config.pad_to_window
    grid = level_grid(config.steps, schedule, config.level_spacing).to(device)

    seq = torch.empty(batch_size, total, *token_shape, device=device, dtype=dtype)
    generated = torch.zeros(batch_size, total, dtype=torch.bool, device=device)
    observed = torch.ones(batch_size, total, dtype=torch.bool, device=device)
    if ctx_len:
        seq[:, :ctx_len] = context.to(dtype)
        if context_mask is not None:
            if context_mask.shape != (batch_size, ctx_len):
                raise ValueError(f"context_mask must have shape [B, C] = {(batch_size, ctx_len)}, got {tuple(context_mask.shape)}")
            observed[:, :ctx_len] = context_mask.to(device).bool()
            seq[:, :ctx_len] = torch.where(expand_like(observed[:, :ctx_len], seq[:, :ctx_len]), seq[:, :ctx_len], 0.0)
    windows = plan_windows(ctx_len, horizon, window, config.chunk_size, config.history_len)
    iterator = windows
    if progress and len(windows) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(windows, desc="rollout", unit="window")
    if isinstance(config.schedule, str) and config.schedule == "chunked":
        raise ValueError("in rollouts use scheduling='full_sequence' with chunk_size instead of the 'chunked' matrix")
    kwargs = {"uncertainty_scale": config.uncertainty_scale} if config.schedule in ("pyramid", "trapezoid") else {}
    for start, hist, new in iterator:
        matrix = scheduling_matrix(config.schedule, new, config.steps, **kwargs)
        n_pad = window - hist - new if pad else 0
        w = hist + new + n_pad
        lv = torch.ones(matrix.shape[0], w, device=device)
        lv[:, hist : hist + new] = grid[matrix.to(device)]
        hist_gen = generated[:, start : start + hist]
        hist_obs = observed[:, start : start + hist]
        lv = lv[None].repeat(batch_size, 1, 1)
        if config.conditioning == "replacement":
            # one level for the whole window, as a full-sequence model was trained: history (and
            # padding) follow the generated tokens' current level
            level = lv[:, :, hist : hist + new].max(-1, keepdim=True).values
            lv[:, :, :hist] = level
            lv[:, :, hist + new :] = level
        else:
            lv[:, :, :hist] = torch.where(hist_gen, config.stabilization_level, config.context_level)[:, None, :]
        lv[:, :, :hist] = torch.where(hist_obs[:, None, :], lv[:, :, :hist], 1.0)  # missing: pure noise
        x = torch.randn(batch_size, w, *token_shape, generator=generator, device=device, dtype=dtype)
        known = torch.zeros(batch_size, w, dtype=torch.bool, device=device)
        known[:, :hist] = hist_obs
        known_values = torch.zeros_like(x)
        known_values[:, :hist] = seq[:, start : start + hist]
        gen_mask = torch.zeros_like(known)
        gen_mask[:, :hist] = hist_gen
        wcond = None
        if cond is not None:
            wcond = cond[:, start : start + hist + new]
            if n_pad:
                wcond = torch.cat([wcond, wcond.new_zeros(wcond.shape[0], n_pad, *wcond.shape[2:])], 1)
        final = lv[0, 1:, hist : hist + new] == 0  # [R-1, new]: token clean after row r
        emitted = 0
        for r, x in iter_sample_window(
            denoise,
            x,
            lv,
            schedule=schedule,
            eta=config.eta,
            guidance=guidance,
            cond=wcond,
            known_mask=known if hist else None,
            known_values=known_values,
            known_noise="fresh" if config.conditioning == "replacement" else ("fixed" if config.stabilization == "noise" else "relabel"),
            generated_mask=gen_mask,
            generator=generator,
            clip_x0=config.clip_x0,
            progress=progress and len(windows) == 1,
        ):
            done = final[r] if r >= 0 else torch.ones(new, dtype=torch.bool, device=device)
            while emitted < new and bool(done[emitted]):
                h = start + hist + emitted
                seq[:, h] = x[:, hist + emitted]
                generated[:, h] = True
                yield h - ctx_len, seq[:, h]
                emitted += 1

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

from dforce.diffusion.schedules import NoiseSchedule
from dforce.sampling.sampler import HISTORY, Denoiser, Guidance, check_solver, iter_sample_window
from dforce.sampling.scheduling import level_grid, scheduling_matrix, window_levels

ROLLOUT_SCHEDULING = ("autoregressive", "pyramid", "full_sequence", "trapezoid")
LEVEL_SPACING = ("uniform", "logsnr")


@dataclass
class SamplingConfig:
    """How to sample: the one options type of every sampling path and domain (``docs/guide.md``).

    Attributes:
        scheduling: ``autoregressive``, ``pyramid``, ``full_sequence``, ``trapezoid`` or a custom
            integer matrix [R, chunk] (``dforce.sampling.scheduling``).
        steps: sampling steps per token; eta: 0 = deterministic DDIM, 1 = ancestral.
        solver: ``ddim`` or ``dpm++2m`` (second order per token, ``eta = 0``; ``docs/guide.md``, "Solvers").
        uncertainty_scale: ``u`` of ``pyramid`` / ``trapezoid``.
        chunk_size: new tokens per window (default: ``window - history_len``).
        history_len: history tokens per window after the first, at most ``window - 1`` (default:
            the context length, or ``window // 2`` without context); the first window holds as
            much context as fits.
        stabilization_level: level at which generated history is fed (0 disables).
        context_level: level of observed context tokens (0 = clean).
        history: how history is fed: ``noise`` (noised to its level once per window, as in
            training), ``relabel`` (clean, labelled with the level) or ``replacement`` (the whole
            window at the new tokens' level, re-noised every step: for full-sequence models).
        level_spacing: integer levels map to ``t`` ``uniform``-ly or uniformly in ``logsnr``.
        pad_to_window: fill short windows with pure-noise tokens (default: for non-causal models).
        clip_x0: clamp ``x0_hat`` to ``[-clip_x0, clip_x0]``.
    """

    scheduling: Union[str, Tensor] = "autoregressive"
    steps: int = 50
    eta: float = 0.0
    solver: str = "ddim"
    uncertainty_scale: float = 1.0
    chunk_size: Optional[int] = None
    history_len: Optional[int] = None
    stabilization_level: float = 0.02
    context_level: float = 0.0
    history: str = "noise"
    level_spacing: str = "uniform"
    pad_to_window: Optional[bool] = None
    clip_x0: Optional[float] = None

    def check(self) -> "SamplingConfig":
        """Validate every field (``ValueError`` naming the option and its allowed values)."""
        if isinstance(self.scheduling, str):
            if self.scheduling == "chunked":
                raise ValueError("in rollouts use scheduling='full_sequence' with chunk_size instead of the 'chunked' matrix")
            if self.scheduling not in ROLLOUT_SCHEDULING:
                raise ValueError(f"unknown scheduling {self.scheduling!r}; choose one of {list(ROLLOUT_SCHEDULING)} or pass an integer matrix")
        elif not isinstance(self.scheduling, Tensor):
            raise TypeError(f"scheduling must be a name or an integer matrix tensor, got {type(self.scheduling).__name__}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta}")
        check_solver(self.solver, self.eta)
        if self.uncertainty_scale < 0:
            raise ValueError(f"uncertainty_scale must be >= 0, got {self.uncertainty_scale}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 (or None for window - history_len), got {self.chunk_size}")
        if self.history_len is not None and self.history_len < 0:
            raise ValueError(f"history_len must be >= 0 (or None for the context length), got {self.history_len}")
        for name in ("stabilization_level", "context_level"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        if self.history not in HISTORY:
            raise ValueError(f"unknown history {self.history!r}; choose one of {list(HISTORY)}")
        if self.level_spacing not in LEVEL_SPACING:
            raise ValueError(f"unknown level_spacing {self.level_spacing!r}; choose one of {list(LEVEL_SPACING)}")
        if self.clip_x0 is not None and self.clip_x0 <= 0:
            raise ValueError(f"clip_x0 must be > 0 (or None for no clamp), got {self.clip_x0}")
        return self


def plan_windows(context_len: int, horizon: int, window: int, chunk_size: Optional[int], history_len: Optional[int]) -> list[tuple[int, int, int]]:
    """The windows of a rollout as ``(start, history, new)``: tokens ``[start, start + history + new)``,
    of which the first ``history`` are known."""
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


def iter_rollout(
    denoise: Denoiser, *, token_shape: Sequence[int], horizon: int, window: int, schedule: NoiseSchedule, config: SamplingConfig,
    context: Optional[Tensor] = None, context_mask: Optional[Tensor] = None, batch_size: Optional[int] = None,
    cond: Optional[Tensor] = None, guidance: Optional[Guidance] = None, causal: bool = True, generator: Optional[torch.Generator] = None,
    device: torch.device | str | None = None, progress: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """Generate ``horizon`` tokens after ``context`` [B, C, *token_shape], yielding ``(h, token [B, ...])``
    as soon as token ``h`` and all earlier ones are clean (views never written again).

    ``cond`` [B, C + horizon, ...]: per-token conditions. ``context_mask`` [B, C]: observed context
    tokens; missing ones are fed as pure noise, as in training.
    """
    config.check()
    ctx_len = 0 if context is None else context.shape[1]
    batch_size = context.shape[0] if context is not None else batch_size
    if batch_size is None:
        raise ValueError("give either context or batch_size")
    device = torch.device(device or (context.device if context is not None else "cpu"))
    total = ctx_len + horizon
    pad = (not causal) if config.pad_to_window is None else config.pad_to_window
    grid = level_grid(config.steps, schedule, config.level_spacing).to(device)
    kwargs = {"uncertainty_scale": config.uncertainty_scale} if config.scheduling in ("pyramid", "trapezoid") else {}

    seq = torch.zeros(batch_size, total, *token_shape, device=device)
    generated = torch.zeros(batch_size, total, dtype=torch.bool, device=device)
    observed = torch.ones(batch_size, total, dtype=torch.bool, device=device)
    if ctx_len:
        seq[:, :ctx_len] = context.float()
        if context_mask is not None:
            observed[:, :ctx_len] = context_mask
    windows = plan_windows(ctx_len, horizon, window, config.chunk_size, config.history_len)
    iterator = windows
    if progress and len(windows) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(windows, desc="rollout", unit="window")
    for start, hist, new in iterator:
        matrix = scheduling_matrix(config.scheduling, new, config.steps, **kwargs).to(device)
        w = hist + new + (window - hist - new if pad else 0)
        lv = window_levels(matrix, grid, w, hist)[None].repeat(batch_size, 1, 1)
        hist_gen = generated[:, start : start + hist]
        hist_obs = observed[:, start : start + hist]
        if config.history == "replacement":
            # one level for the whole window, as a full-sequence model was trained: history (and
            # padding) follow the new tokens' current level
            level = lv[:, :, hist : hist + new].max(-1, keepdim=True).values
            lv[:, :, :hist] = level
            lv[:, :, hist + new :] = level
        else:
            lv[:, :, :hist] = torch.where(hist_gen, config.stabilization_level, config.context_level)[:, None, :]
        lv[:, :, :hist] = torch.where(hist_obs[:, None, :], lv[:, :, :hist], 1.0)  # missing: pure noise
        x = torch.randn(batch_size, w, *token_shape, generator=generator, device=device)
        known = torch.zeros(batch_size, w, dtype=torch.bool, device=device)
        known[:, :hist] = hist_obs
        known_values = torch.zeros_like(x)
        known_values[:, :hist] = seq[:, start : start + hist]
        gen_mask = torch.zeros_like(known)
        gen_mask[:, :hist] = hist_gen
        wcond = None
        if cond is not None:
            wcond = cond[:, start : start + hist + new]
            if w > hist + new:
                wcond = torch.cat([wcond, wcond.new_zeros(wcond.shape[0], w - hist - new, *wcond.shape[2:])], 1)
        final = lv[0, 1:, hist : hist + new] == 0  # [R-1, new]: token clean after row r
        emitted = 0
        finished = 0.0 if config.history == "replacement" else config.stabilization_level
        for r, x in iter_sample_window(
            denoise, x, lv, schedule=schedule, eta=config.eta, solver=config.solver, guidance=guidance, cond=wcond,
            known_mask=known if hist else None, known_values=known_values, history=config.history, generated_mask=gen_mask,
            generator=generator, finished_level=finished, clip_x0=config.clip_x0, start=start, progress=progress and len(windows) == 1,
        ):
            done = final[r]
            while emitted < new and bool(done[emitted]):
                h = start + hist + emitted
                seq[:, h] = x[:, hist + emitted]
                generated[:, h] = True
                yield h - ctx_len, seq[:, h]
                emitted += 1

"""Scheduling matrices: the integer noise level of every generated token at every iteration.

A matrix ``M`` [R, H] holds levels in ``{0..S}`` (``S`` steps = pure noise, 0 = clean): the first row
all ``S``, the last all 0, every column non-increasing. Each row transition is one network call;
a token whose level does not change is untouched. Every built-in matrix is
``M[r, h] = clip(S + offset[h] - r, 0, S)`` for a per-token delay ``offset`` (:func:`from_offsets`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def from_offsets(offsets: Tensor, steps: int) -> Tensor:
    """Matrix in which token ``h`` starts denoising ``offsets[h]`` iterations late."""
    offsets = torch.as_tensor(offsets, dtype=torch.long)
    if offsets.dim() != 1 or len(offsets) == 0:
        raise ValueError("offsets must be a non-empty 1-D tensor, one delay per token")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if (offsets < 0).any():
        raise ValueError("offsets must be non-negative")
    offsets = offsets - offsets.min()
    rows = steps + int(offsets.max()) + 1
    r = torch.arange(rows)[:, None]
    return (steps + offsets[None, :] - r).clamp(0, steps)


def full_sequence(tokens: int, steps: int) -> Tensor:
    """All tokens denoised together: ``M[r, h] = S - r``, ``R = S + 1``."""
    return from_offsets(torch.zeros(tokens, dtype=torch.long), steps)


def pyramid(tokens: int, steps: int, uncertainty_scale: float = 1.0) -> Tensor:
    """Later tokens stay noisier: ``M[r, h] = clip(S + floor(h u) - r, 0, S)``."""
    if uncertainty_scale < 0:
        raise ValueError(f"uncertainty_scale must be >= 0, got {uncertainty_scale}")
    h = torch.arange(tokens, dtype=torch.float64)
    return from_offsets(torch.floor(h * uncertainty_scale).long(), steps)


def autoregressive(tokens: int, steps: int) -> Tensor:
    """Each token starts when the previous one is clean: a pyramid with ``u = S``."""
    return pyramid(tokens, steps, float(steps))


def trapezoid(tokens: int, steps: int, uncertainty_scale: float = 1.0) -> Tensor:
    """Both ends first, the middle last; symmetric (no lag of the last token)."""
    h = torch.arange(tokens)
    dist = torch.minimum(h, tokens - 1 - h).double()
    return from_offsets(torch.floor(dist * uncertainty_scale).long(), steps)


def chunked(tokens: int, steps: int, chunk_size: int) -> Tensor:
    """Autoregressive over chunks of ``chunk_size`` tokens, full-sequence inside each chunk."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return from_offsets((torch.arange(tokens) // chunk_size) * steps, steps)


def validate(matrix: Tensor, steps: int | None = None) -> Tensor:
    """``matrix`` as a long tensor, or a ``ValueError`` naming the first rule it breaks."""
    m = torch.as_tensor(matrix)
    if m.dim() != 2 or m.shape[0] < 2 or m.shape[1] < 1:
        raise ValueError(f"a scheduling matrix must be 2-D [rows >= 2, tokens >= 1], got shape {tuple(m.shape)}")
    if m.is_floating_point():
        if not torch.equal(m, m.round()):
            raise ValueError("a scheduling matrix holds integer levels; got non-integer values")
    m = m.long()
    s = int(m.max()) if steps is None else steps
    if s < 1:
        raise ValueError("a scheduling matrix needs at least one step (max level >= 1)")
    if (m < 0).any() or (m > s).any():
        raise ValueError(f"levels must lie in [0, {s}]; got values in [{int(m.min())}, {int(m.max())}]")
    if (m[0] != s).any():
        bad = int((m[0] != s).nonzero()[0])
        raise ValueError(f"the first row must be pure noise (level {s}) for every token; token {bad} starts at {int(m[0, bad])}")
    if (m[-1] != 0).any():
        bad = int((m[-1] != 0).nonzero()[0])
        raise ValueError(f"the last row must be clean (level 0) for every token; token {bad} ends at {int(m[-1, bad])}")
    rises = (m[1:] > m[:-1]).nonzero()
    if len(rises):
        r, h = (int(v) for v in rises[0])
        raise ValueError(f"levels must be non-increasing down each column; token {h} goes from {int(m[r, h])} to {int(m[r + 1, h])} at row {r + 1}")
    return m


SCHEDULING: dict[str, Callable[..., Tensor]] = {
    "full_sequence": full_sequence, "autoregressive": autoregressive, "pyramid": pyramid, "trapezoid": trapezoid, "chunked": chunked,
}


def scheduling_matrix(name: str | Tensor, tokens: int, steps: int, **kwargs: float) -> Tensor:
    """A matrix of :data:`SCHEDULING` by name (with its options), or a validated custom tensor."""
    if isinstance(name, Tensor):
        m = validate(name, steps)
        if m.shape[1] != tokens:
            raise ValueError(f"custom scheduling matrix has {m.shape[1]} columns but {tokens} tokens are generated")
        return m
    if name not in SCHEDULING:
        raise ValueError(f"unknown scheduling matrix {name!r}; choose one of {sorted(SCHEDULING)} or pass a tensor")
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    return SCHEDULING[name](tokens, steps, **kwargs)


def level_grid(steps: int, schedule=None, spacing: str = "uniform") -> Tensor:
    """Continuous level ``t`` of each integer level ``0..S`` (``t[0] = 0``, ``t[S] = 1``), uniform in
    ``t`` or in logSNR over the range the schedule spans (so every grid point is a distinct level)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if spacing == "uniform":
        return torch.linspace(0.0, 1.0, steps + 1)
    if spacing == "logsnr":
        if schedule is None:
            raise ValueError("logsnr spacing needs the noise schedule")
        lo, hi = schedule.logsnr_range()
        t = schedule.t_from_logsnr(torch.linspace(hi, lo, steps + 1))
        t[0], t[-1] = 0.0, 1.0
        return t
    raise ValueError(f"unknown level spacing {spacing!r}; choose 'uniform' or 'logsnr'")


def window_levels(matrix: Tensor, grid: Tensor, window: int, start: int = 0) -> Tensor:
    """Continuous levels [R, window] of a window in which tokens ``start .. start + H - 1`` follow
    ``matrix`` [R, H] through ``grid`` [S + 1] (``grid[M[r, h]]``) and every other token stays at
    pure noise (level 1): padding, or tokens the caller sets itself (history, keyframes)."""
    rows, h = matrix.shape
    if start < 0 or start + h > window:
        raise ValueError(f"{h} scheduled tokens from token {start} do not fit a window of {window} tokens")
    levels = torch.ones(rows, window, device=grid.device, dtype=grid.dtype)
    levels[:, start : start + h] = grid[matrix.to(grid.device)]
    return levels


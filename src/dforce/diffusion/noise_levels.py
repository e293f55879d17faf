"""Training noise levels: which level ``t`` in [0, 1] each token of a training window gets.

- ``independent``: every token its own uniform level (Diffusion Forcing);
- ``full_sequence``: one level for the whole window (full-sequence diffusion baseline);
- ``teacher_forcing``: a clean history of ``history_len`` tokens (random per sequence when not
  given), one noisy target right after it, later tokens at pure noise and out of the loss
  (next-token diffusion with clean history);
- ``uniform_future``: history levels independent, all future tokens share one level (DFoT's
  simplified training).

Each function returns ``(t [B, T], loss_mask [B, T])``; the loss mask says which tokens are
training targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

TRAINING_NOISE = ("independent", "full_sequence", "teacher_forcing", "uniform_future")


def check_training_noise(kind: str) -> str:
    if kind not in TRAINING_NOISE:
        raise ValueError(f"unknown training noise levels {kind!r}; choose one of {list(TRAINING_NOISE)}")
    return kind


def _history_lengths(batch: int, tokens: int, history_len: int | None, device, generator) -> Tensor:
    if history_len is not None:
        if not 0 <= history_len < tokens:
            raise ValueError(f"history_len={history_len} must be in [0, {tokens - 1}] for windows of {tokens} tokens")
        return torch.full((batch,), history_len, device=device, dtype=torch.long)
    if tokens < 2:
        raise ValueError("teacher_forcing / uniform_future need windows of at least 2 tokens")
    return torch.randint(1, tokens, (batch,), device=device, generator=generator)


def training_noise_levels(
    kind: str,
    batch: int,
    tokens: int,
    *,
    history_len: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample training levels ``t`` [B, T] and the target mask [B, T] (bool)."""
    shape = (batch, tokens)
    ones = torch.ones(shape, dtype=torch.bool, device=device)
    if kind == "independent":
        return torch.rand(shape, device=device, generator=generator), ones
    if kind == "full_sequence":
        return torch.rand((batch, 1), device=device, generator=generator).expand(shape).contiguous(), ones
    pos = torch.arange(tokens, device=device).expand(shape)
    hist = _history_lengths(batch, tokens, history_len, device, generator)[:, None]
    if kind == "teacher_forcing":
        level = torch.rand((batch, 1), device=device, generator=generator)
        t = torch.where(pos < hist, 0.0, torch.where(pos == hist, level, 1.0))
        return t, pos == hist
    if kind == "uniform_future":
        shared = torch.rand((batch, 1), device=device, generator=generator)
        t = torch.where(pos < hist, torch.rand(shape, device=device, generator=generator), shared)
        return t, ones
    raise ValueError(f"unknown training noise levels {kind!r}; choose one of {list(TRAINING_NOISE)}")


def stack_frames(x: Tensor, k: int) -> Tensor:
    """Pack ``k`` consecutive frames into one token: [B, T*k, C, ...] -> [B, T, k*C, ...]."""
    if k == 1:
        return x
    b, n = x.shape[:2]
    if n % k:
        raise ValueError(f"sequence length {n} is not divisible by frame_stack={k}; crop or pad it to a multiple of {k}")
    x = x.reshape(b, n // k, k, *x.shape[2:])
    return x.reshape(b, n // k, k * x.shape[3], *x.shape[4:])


def unstack_frames(x: Tensor, k: int) -> Tensor:
    """Inverse of :func:`stack_frames`: [B, T, k*C, ...] -> [B, T*k, C, ...]."""
    if k == 1:
        return x
    b, n, kc = x.shape[:3]
    x = x.reshape(b, n, k, kc // k, *x.shape[3:])
    return x.reshape(b, n * k, kc // k, *x.shape[4:])

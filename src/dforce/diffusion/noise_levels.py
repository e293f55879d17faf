"""Training noise levels: the level ``t`` in [0, 1] of each token of a training window.

- ``independent``: every token its own uniform level (Diffusion Forcing);
- ``full_sequence``: one level for the whole window (full-sequence diffusion);
- ``teacher_forcing``: clean history of ``history_len`` tokens (random when None), one noisy target,
  later tokens pure noise and out of the loss;
- ``uniform_future``: independent history levels, one shared level for the future (DFoT);
- ``autoregressive`` (beyond the papers): what an autoregressive rollout feeds: before a random
  boundary, history at levels uniform in ``[0, HISTORY_LEVEL_MAX]`` (stabilized history); at it,
  a uniform level; after it, pure noise out of the loss;
- ``pyramid`` (beyond the papers): levels rising along the window, ``clip(t0 + (i - i0) / L, 0, 1)``
  with a random anchor ``(i0, t0)``, a log-uniform rise ``L`` in ``[1, T]`` tokens and a small jitter.

A mixture ``"name:weight,..."`` draws one pattern per sequence in proportion to the weights. Each
pattern returns ``(t [B, T], loss_mask [B, T])``. :func:`known_start_levels` redraws token 0 low
for a share of sequences, for models always conditioned on a current state (the reference
planner: probability 0.5, levels in [0, 0.25)).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

TRAINING_NOISE = ("independent", "full_sequence", "teacher_forcing", "uniform_future", "autoregressive", "pyramid")
DEFAULT_TRAINING_NOISE = "independent:0.25,autoregressive:0.5,pyramid:0.25"
"""The recipe the dynamics benchmark supports (``benchmarks/results/dynamics.md`` and its ablation)."""
HISTORY_LEVEL_MAX = 0.1  # covers every stabilization level up to 0.1


def parse_training_noise(kind: str) -> dict[str, float]:
    """``"independent"`` -> ``{"independent": 1.0}``; ``"a:1,b:3"`` -> ``{"a": 0.25, "b": 0.75}``."""
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"training noise must be a name or a 'name:weight,...' mixture, got {kind!r}")
    out: dict[str, float] = {}
    for part in kind.split(","):
        name, sep, weight = part.strip().partition(":")
        name = name.strip()
        if name not in TRAINING_NOISE:
            raise ValueError(f"unknown training noise levels {name!r} in {kind!r}; choose one of {list(TRAINING_NOISE)}")
        if name in out:
            raise ValueError(f"training noise {name!r} appears twice in {kind!r}")
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"weight {weight!r} of {name!r} in {kind!r} is not a number") from None
        if not (w > 0 and w < float("inf")):
            raise ValueError(f"weight of {name!r} in {kind!r} must be a positive number, got {weight!r}")
        out[name] = w
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


def _history_lengths(batch: int, tokens: int, history_len: int | None, device, generator, low: int = 1) -> Tensor:
    """[B, 1] history lengths: ``history_len``, or uniform in ``[low, tokens)``."""
    if history_len is not None:
        if not 0 <= history_len < tokens:
            raise ValueError(f"history_len={history_len} must be in [0, {tokens - 1}] for windows of {tokens} tokens")
        return torch.full((batch, 1), history_len, device=device, dtype=torch.long)
    if tokens <= low:
        raise ValueError("teacher_forcing / uniform_future need windows of at least 2 tokens")
    return torch.randint(low, tokens, (batch, 1), device=device, generator=generator)


def training_noise_levels(
    kind: str, batch: int, tokens: int, *, history_len: int | None = None, device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Training levels ``t`` [B, T] and the target mask [B, T] (bool) of a pattern or mixture ``kind``."""
    parts = parse_training_noise(kind)
    if len(parts) > 1:
        names = list(parts)
        probs = torch.tensor([parts[n] for n in names], device=device)
        pick = torch.multinomial(probs, batch, replacement=True, generator=generator)
        t = torch.empty(batch, tokens, device=device)
        mask = torch.empty(batch, tokens, dtype=torch.bool, device=device)
        for i, name in enumerate(names):
            rows = (pick == i).nonzero().flatten()
            if len(rows):
                t[rows], mask[rows] = _single(name, len(rows), tokens, history_len, device, generator)
        return t, mask
    return _single(next(iter(parts)), batch, tokens, history_len, device, generator)


def _single(kind: str, batch: int, tokens: int, history_len, device, generator) -> tuple[Tensor, Tensor]:
    shape = (batch, tokens)
    ones = torch.ones(shape, dtype=torch.bool, device=device)
    if kind == "independent":
        return torch.rand(shape, device=device, generator=generator), ones
    if kind == "full_sequence":
        return torch.rand((batch, 1), device=device, generator=generator).expand(shape).contiguous(), ones
    pos = torch.arange(tokens, device=device).expand(shape)
    if kind in ("teacher_forcing", "uniform_future", "autoregressive"):  # autoregressive: boundary 0 allowed too
        hist = _history_lengths(batch, tokens, history_len, device, generator, low=int(kind != "autoregressive"))
    if kind == "teacher_forcing":
        level = torch.rand((batch, 1), device=device, generator=generator)
        t = torch.where(pos < hist, 0.0, torch.where(pos == hist, level, 1.0))
        return t, pos == hist
    if kind == "uniform_future":
        shared = torch.rand((batch, 1), device=device, generator=generator)
        t = torch.where(pos < hist, torch.rand(shape, device=device, generator=generator), shared)
        return t, ones
    if kind == "autoregressive":
        level = torch.rand((batch, 1), device=device, generator=generator)
        past = HISTORY_LEVEL_MAX * torch.rand(shape, device=device, generator=generator)
        t = torch.where(pos < hist, past, torch.where(pos == hist, level, 1.0))
        return t, pos <= hist
    if kind == "pyramid":
        anchor = torch.randint(0, tokens, (batch, 1), device=device, generator=generator)
        t0 = torch.rand((batch, 1), device=device, generator=generator)
        rise = torch.exp(torch.rand((batch, 1), device=device, generator=generator) * torch.log(torch.tensor(float(max(tokens, 1)))))
        jitter = 0.05 * (torch.rand(shape, device=device, generator=generator) - 0.5)
        t = (t0 + (pos - anchor) / rise + jitter).clamp(0.0, 1.0)
        return t, ones
    raise ValueError(f"unknown training noise levels {kind!r}; choose one of {list(TRAINING_NOISE)}")


def known_start_levels(t: Tensor, prob: float, max_level: float, generator: torch.Generator | None = None) -> Tensor:
    """With probability ``prob`` per sequence, token 0 of ``t`` [B, T] gets a level uniform in
    ``[0, max_level)`` (0 = clean); returns a new [B, T]. ``prob = 0`` returns ``t`` and draws nothing."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"the known-start probability must lie in [0, 1], got {prob}")
    if not 0.0 <= max_level <= 1.0:
        raise ValueError(f"the known-start level must lie in [0, 1], got {max_level}")
    if prob == 0.0 or t.shape[1] == 0:
        return t
    b = t.shape[0]
    pick = torch.rand(b, device=t.device, generator=generator) < prob
    low = max_level * torch.rand(b, device=t.device, generator=generator)
    t = t.clone()
    t[:, 0] = torch.where(pick, low.to(t.dtype), t[:, 0])
    return t


def stack_frames(x: Tensor, k: int) -> Tensor:
    """Pack ``k`` consecutive frames into one token: [B, T*k, C, ...] -> [B, T, k*C, ...]."""
    if x.shape[1] % k:
        raise ValueError(f"sequence length {x.shape[1]} is not divisible by frame_stack={k}; crop or pad it to a multiple of {k}")
    return rearrange(x, "b (t k) c ... -> b t (k c) ...", k=k)


def unstack_frames(x: Tensor, k: int) -> Tensor:
    """Inverse of :func:`stack_frames`: [B, T, k*C, ...] -> [B, T*k, C, ...]."""
    return rearrange(x, "b t (k c) ... -> b (t k) c ...", k=k)

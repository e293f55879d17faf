"""Per-token samplers over a matrix of continuous noise levels.

The sampler walks the rows of a level matrix ``levels`` [R, W] (or [B, R, W]) of continuous
levels in [0, 1] for a window of ``W`` tokens. At every row transition it asks a *guidance*
object for ``(x0_hat, eps_hat)`` of the whole window (one or more network calls) and moves each
token whose level drops from ``t`` to ``s`` by the DDIM step

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
    c   = eta sigma_s sqrt(1 - alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2)).

``eta = 0`` is deterministic DDIM (and, for rectified flow, the Euler step of the flow ODE);
``eta = 1`` samples the exact posterior q(x_s | x_t, x0 = x0_hat) (ancestral / DDPM-like).
Tokens whose level does not drop are left bit-identical.

*Known* tokens (observed or previously generated history, keyframes) are never stepped: at each
row they are fed to the network at their level in ``levels`` with value either the clean token
(``known_noise='relabel'``), the clean token noised once with a fixed draw (``'fixed'``), or
noised afresh every row (``'fresh'``, replacement conditioning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Protocol

import torch
from torch import Tensor

from dforce.diffusion.schedules import NoiseSchedule, expand_like

Denoiser = Callable[[Tensor, Tensor, Any], "tuple[Tensor, Tensor]"]
"""``denoise(x [B, W, ...], t [B, W], cond) -> (x0_hat, eps_hat)``, each like ``x``."""

KNOWN_NOISE = ("relabel", "fixed", "fresh")


@dataclass
class StepInfo:
    """What a guidance object may use at one sampler step.

    ``known_mask`` [B, W] marks history / conditioning tokens, ``known_values`` [B, W, ...] holds
    their clean values, ``generated_mask`` [B, W] marks known tokens that the model generated
    itself (for stabilized guidance variants), ``next_t`` [B, W] the levels after this step.
    """

    row: int
    schedule: NoiseSchedule
    next_t: Tensor
    known_mask: Optional[Tensor] = None
    known_values: Optional[Tensor] = None
    generated_mask: Optional[Tensor] = None
    generator: Optional[torch.Generator] = None


class Guidance(Protocol):
    """The sampler's guidance hook: return ``(x0_hat, eps_hat)`` for the window ``x`` at ``t``.

    It may call ``denoise`` any number of times (batched conditions, gradients of a reward).
    """

    def __call__(self, denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]: ...


def conditional(denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]:
    """No guidance: one network call conditioned on everything known."""
    return denoise(x, t, cond)


def ddim_step(
    x_t: Tensor,
    x0_hat: Tensor,
    eps_hat: Tensor,
    t: Tensor,
    s: Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """One DDIM step from level ``t`` to ``s`` (both [B, W]), elementwise per token."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    a_t, s_t = schedule.alpha_sigma(t)
    a_s, s_s = schedule.alpha_sigma(s)
    if eta > 0:
        ratio = (a_t * s_s) ** 2 / ((a_s * s_t) ** 2).clamp_min(1e-20)
        c = eta * s_s * (1 - ratio).clamp_min(0).sqrt()
    else:
        c = torch.zeros_like(s_s)
    dir_scale = (s_s**2 - c**2).clamp_min(0).sqrt()
    a_s, dir_scale, c = (expand_like(v, x_t) for v in (a_s, dir_scale, c))
    out = a_s * x0_hat.float() + dir_scale * eps_hat.float()
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs a noise tensor")
        out = out + c * noise.float()
    return out.to(x_t.dtype)


def _known_inputs(
    values: Tensor, level: Tensor, mode: str, schedule: NoiseSchedule, fixed_eps: Optional[Tensor], generator
) -> Tensor:
    if mode == "relabel":
        return values
    eps = fixed_eps if mode == "fixed" else torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
    return schedule.q_sample(values, level, eps)


def sample_window(
    denoise: Denoiser,
    x: Tensor,
    levels: Tensor,
    *,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    guidance: Optional[Guidance] = None,
    cond: Any = None,
    known_mask: Optional[Tensor] = None,
    known_values: Optional[Tensor] = None,
    known_noise: str = "relabel",
    generated_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    clip_x0: Optional[float] = None,
    progress: bool = False,
) -> Tensor:
    """Denoise a window along the rows of ``levels``.

    Args:
        denoise: the model's ``(x, t, cond) -> (x0_hat, eps_hat)``.
        x: starting window [B, W, ...]; unknown tokens hold noise at their first-row level.
        levels: continuous levels [R, W] or [B, R, W]; non-increasing down each column.
        known_mask: [B, W] or [W] bool, tokens given as conditioning (never stepped).
        known_values: [B, W, ...] clean values for the known tokens (others ignored).
        known_noise: how known tokens are fed: ``relabel``, ``fixed`` or ``fresh`` (see module doc).
        generated_mask: [B, W] bool, known tokens that were generated (for guidance).

    Returns:
        The final window [B, W, ...]; known tokens hold their clean values.
    """
    for _, x in iter_sample_window(
        denoise, x, levels, schedule=schedule, eta=eta, guidance=guidance, cond=cond, known_mask=known_mask,
        known_values=known_values, known_noise=known_noise, generated_mask=generated_mask, generator=generator,
        clip_x0=clip_x0, progress=progress,
    ):
        pass
    return x


def iter_sample_window(
    denoise: Denoiser,
    x: Tensor,
    levels: Tensor,
    *,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    guidance: Optional[Guidance] = None,
    cond: Any = None,
    known_mask: Optional[Tensor] = None,
    known_values: Optional[Tensor] = None,
    known_noise: str = "relabel",
    generated_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    clip_x0: Optional[float] = None,
    progress: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """:func:`sample_window` step by step: yields ``(r, x)`` after each row ``r`` (``x`` at ``levels[:, r + 1]``).

    Tokens whose level has reached 0 are final from then on (streaming reads them early); the last
    yield holds the finished window with known tokens restored to their clean values.
    """
    if known_noise not in KNOWN_NOISE:
        raise ValueError(f"unknown known_noise {known_noise!r}; choose one of {list(KNOWN_NOISE)}")
    b, w = x.shape[:2]
    if levels.dim() == 2:
        levels = levels[None].expand(b, *levels.shape)
    if levels.shape[0] != b or levels.shape[2] != w:
        raise ValueError(f"levels of shape {tuple(levels.shape)} do not match a window of {b} x {w} tokens")
    levels = levels.to(device=x.device, dtype=torch.float32)
    if ((levels[:, 1:] - levels[:, :-1]) > 1e-6).any():
        raise ValueError("noise levels must be non-increasing down each column of the level matrix")
    guidance = guidance or conditional
    if known_mask is not None:
        if known_values is None:
            raise ValueError("known_mask needs known_values")
        known_mask = known_mask.to(x.device).bool()
        if known_mask.dim() == 1:
            known_mask = known_mask[None].expand(b, w)
        kmask = expand_like(known_mask, x)
        fixed_eps = (
            torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if known_noise == "fixed" else None
        )
    rows = levels.shape[1]
    iterator = range(rows - 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="denoising", leave=False)
    for r in iterator:
        t, s = levels[:, r], levels[:, r + 1]
        moving = s < t
        if known_mask is not None:
            moving = moving & ~known_mask
            x = torch.where(kmask, _known_inputs(known_values, t, known_noise, schedule, fixed_eps, generator), x)
        if not moving.any():
            if r < rows - 2:
                yield r, x
            continue
        info = StepInfo(r, schedule, s, known_mask, known_values, generated_mask, generator)
        x0_hat, eps_hat = guidance(denoise, x, t, cond, info)
        if clip_x0 is not None:
            a_t, s_t = schedule.alpha_sigma(t)
            x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
            eps_hat = (x.float() - expand_like(a_t, x) * x0_hat.float()) / expand_like(s_t, x).clamp_min(1e-6)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32) if eta > 0 else None
        x_new = ddim_step(x, x0_hat, eps_hat, t, s, schedule, eta, noise)
        x = torch.where(expand_like(moving, x), x_new, x)
        if r < rows - 2:
            yield r, x
    if known_mask is not None:
        x = torch.where(kmask, known_values, x)
    yield rows - 2, x

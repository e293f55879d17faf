"""The row loop: :func:`iter_sample_window`, the only sampling loop in dforce.

It walks the rows of a matrix ``levels`` [R, W] (or [B, R, W]) of continuous levels in [0, 1] for
a window of ``W`` tokens. At each row it asks the *guidance* hook for ``(x0_hat, eps_hat)`` of
the window and moves each token whose level drops from ``t`` to ``s`` by the DDIM step

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
    c   = eta sigma_s sqrt(1 - alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2))

(``eta = 0``: deterministic DDIM, the Euler step for rectified flow; ``eta = 1``: the exact
posterior q(x_s | x_t, x0_hat)), or by DPM-Solver++(2M) (:func:`dpmpp_2m_step`). Other tokens stay
bit-identical. *Known* tokens (history, keyframes) are never stepped and are fed at their level;
tokens finished earlier in the window are fed at ``finished_level`` (the stabilization level).
``history`` says how such a token's clean value is fed: ``noise`` (noised to its level with one
draw per window, as in training), ``relabel`` (unchanged, only labelled with the level;
Diffusion Forcing v1.5 also scales it by sqrt(alpha_bar)) or ``replacement`` (noised afresh at
every row). Caches and precision wrap the denoiser; a stateful denoiser may define
``begin_step(info)``, called before each network step.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Protocol

import torch
from torch import Tensor

from dforce.diffusion.schedules import NoiseSchedule, expand_like

Denoiser = Callable[[Tensor, Tensor, Any], "tuple[Tensor, Tensor]"]
"""``denoise(x [B, W, ...], t [B, W], cond) -> (x0_hat, eps_hat)``, each like ``x`` (float32)."""

HISTORY = ("noise", "relabel", "replacement")
SOLVERS = ("ddim", "dpm++2m")
PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """The one precision switch: bf16 autocast for ``precision='bf16'``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32" and not torch.is_autocast_enabled(kind):
        return contextlib.nullcontext()  # nothing to switch off; an autocast object costs ~20 us per network call
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class StepInfo:
    """One row transition, for guidance and stateful denoisers: levels fed ``t`` [B, W], tokens
    ``moving`` [B, W], history ``known_mask`` [B, W] with clean ``known_values`` [B, W, ...], the
    self-generated part of it ``generated_mask``; the window's first token ``start`` in the rollout,
    its count of leading history tokens ``history``, and ``scales = (alpha, sigma)`` of ``t``."""

    row: int
    schedule: NoiseSchedule
    t: Tensor
    moving: Tensor
    known_mask: Optional[Tensor] = None
    known_values: Optional[Tensor] = None
    generated_mask: Optional[Tensor] = None
    generator: Optional[torch.Generator] = None
    start: int = 0
    history: int = 0
    scales: Optional[tuple[Tensor, Tensor]] = None


class Guidance(Protocol):
    """The sampler's hook: ``(x0_hat, eps_hat)`` for the window ``x`` at ``t``, from any number of ``denoise`` calls."""

    def __call__(self, denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]: ...


def conditional(denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]:
    """No guidance: one network call conditioned on everything known."""
    return denoise(x, t, cond)


def ddim_step(
    x_t: Tensor, x0_hat: Tensor, eps_hat: Tensor, t: Tensor, s: Tensor, schedule: NoiseSchedule, eta: float = 0.0,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """One DDIM step from level ``t`` to ``s <= t`` (both [B, W]), elementwise per token."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if (s > t).any():
        raise ValueError("ddim_step moves tokens to a lower noise level; got a level that rises (s > t)")
    return ddim_update(x_t, x0_hat, eps_hat, schedule.alpha_sigma(t), schedule.alpha_sigma(s), eta, noise)


def ddim_update(
    x_t: Tensor, x0_hat: Tensor, eps_hat: Tensor, alpha_sigma_t: tuple[Tensor, Tensor], alpha_sigma_s: tuple[Tensor, Tensor],
    eta: float = 0.0, noise: Optional[Tensor] = None,
) -> Tensor:
    """:func:`ddim_step` given the scales ``(alpha, sigma)`` [B, W] of both levels (unchecked)."""
    (a_t, s_t), (a_s, s_s) = alpha_sigma_t, alpha_sigma_s
    if eta == 0:
        out = expand_like(a_s, x_t) * x0_hat.float() + expand_like(s_s, x_t) * eps_hat.float()
        return out.to(x_t.dtype)
    # r = alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2) <= 1; c^2 = eta^2 sigma_s^2 (1 - r) and the eps
    # coefficient sqrt(sigma_s^2 - c^2) = sigma_s sqrt((1 - eta^2) + eta^2 r), free of cancellation
    r = ((a_t * s_s) ** 2 / ((a_s * s_t) ** 2).clamp_min(1e-30)).clamp(0, 1)
    dir_scale = s_s * ((1 - eta**2) + eta**2 * r).sqrt()
    out = expand_like(a_s, x_t) * x0_hat.float() + expand_like(dir_scale, x_t) * eps_hat.float()
    if noise is None:
        raise ValueError("eta > 0 needs a noise tensor")
    out = out + expand_like(eta * s_s * (1 - r).sqrt(), x_t) * noise.float()
    return out.to(x_t.dtype)


def check_solver(solver: str, eta: float) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    if solver == "dpm++2m" and eta != 0:
        raise ValueError(f"solver='dpm++2m' is deterministic and needs eta=0, got eta={eta}; use eta=0 or solver='ddim'")


def dpmpp_2m_step(
    x_t: Tensor, x0_hat: Tensor, eps_hat: Tensor, t: Tensor, s: Tensor, schedule: NoiseSchedule, x0_prev: Optional[Tensor] = None,
    t_prev: Optional[Tensor] = None,
) -> Tensor:
    """One DPM-Solver++(2M) step (Lu et al. 2022; eta = 0) from ``t`` to ``s <= t`` (both [B, W]), per token.

    ``x0_prev`` is each token's ``x0_hat`` at its previous level ``t_prev`` (``t_prev == t``: no
    previous move). With ``lambda = log(alpha / sigma)``, ``h = lambda_s - lambda_t``, ``r = h_prev / h``,
    ``D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_prev`` and ``x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h) - 1) D``,
    written as DDIM plus ``alpha_s (1 - exp(-h)) (D - x0_hat)``: a first-order move (no previous
    move, or ``s = 0``) is DDIM bit for bit.
    """
    out = ddim_step(x_t, x0_hat, eps_hat, t, s, schedule)
    if x0_prev is None or t_prev is None:
        return out
    lam_prev, lam_t, lam_s = (schedule.logsnr(v) / 2 for v in (t_prev, t, s))
    h, h_prev = lam_s - lam_t, lam_t - lam_prev
    second = (h_prev > 0) & (h > 0) & (s > 0)
    # alpha_s (1 - exp(-h)) / (2 r), zero where the step is first order
    coef = torch.where(second, schedule.alpha_sigma(s)[0] * -torch.expm1(-h) * h / (2 * h_prev.clamp_min(1e-12)), torch.zeros_like(h))
    return (out.float() + expand_like(coef, x_t) * (x0_hat.float() - x0_prev.float())).to(x_t.dtype)


def _known_inputs(values: Tensor, scales: tuple[Tensor, Tensor], history: str, eps: Optional[Tensor], generator) -> Tensor:
    """How known tokens ``values`` are fed at levels with ``scales = (alpha, sigma)`` [B, W] (see ``history``)."""
    if history == "relabel":
        return values
    if history == "replacement":
        eps = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
    return (expand_like(scales[0], values) * values.float() + expand_like(scales[1], values) * eps.float()).to(values.dtype)


def iter_sample_window(
    denoise: Denoiser, x: Tensor, levels: Tensor, *, schedule: NoiseSchedule, eta: float = 0.0, solver: str = "ddim",
    guidance: Optional[Guidance] = None, cond: Any = None, known_mask: Optional[Tensor] = None, known_values: Optional[Tensor] = None,
    history: str = "noise", generated_mask: Optional[Tensor] = None, finished_level: float = 0.0,
    generator: Optional[torch.Generator] = None, clip_x0: Optional[float] = None, start: int = 0, progress: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """Denoise the window ``x`` [B, W, ...] (unknown tokens: noise at their first level) along the
    rows of ``levels`` (non-increasing down each column), yielding ``(r, x)`` after each row ``r``.

    ``known_mask`` ([B, W] or [W]) marks conditioning tokens with clean ``known_values``;
    ``generated_mask`` the self-generated ones (for guidance); ``clip_x0`` clamps ``x0_hat`` (and
    ``eps_hat`` follows); ``start`` is told to stateful denoisers. A token at level 0 is final
    from then on; the last yield holds the known tokens' clean values too.
    """
    if history not in HISTORY:
        raise ValueError(f"unknown history {history!r}; choose one of {list(HISTORY)}")
    check_solver(solver, eta)
    b, w = x.shape[:2]
    if levels.dim() == 2:
        levels = levels[None].expand(b, *levels.shape)
    if levels.shape[0] != b or levels.shape[2] != w:
        raise ValueError(f"levels of shape {tuple(levels.shape)} do not match a window of {b} x {w} tokens")
    levels = levels.to(device=x.device, dtype=torch.float32)
    if ((levels[:, 1:] - levels[:, :-1]) > 1e-6).any():
        raise ValueError("noise levels must be non-increasing down each column of the level matrix")
    guidance = guidance or conditional
    begin_step = getattr(denoise, "begin_step", None)
    known = torch.zeros(b, w, dtype=torch.bool, device=x.device) if known_mask is None else known_mask.to(x.device).bool()
    if known.dim() == 1:
        known = known[None].expand(b, w)
    if known_mask is not None and known_values is None:
        raise ValueError("known_mask needs known_values")
    n_hist = int(known.all(0).long().cumprod(0).sum())  # leading tokens known in every batch row
    fixed_eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if history == "noise" else None
    rows = levels.shape[1]
    # every row's masks and scales in one pass per window, not a dozen small ops per row
    t_all, s_all = levels[:, :-1], levels[:, 1:]  # [B, R - 1, W]
    alpha, sigma = schedule.alpha_sigma(levels)  # [B, R, W]
    alpha_fin, sigma_fin = schedule.alpha_sigma(torch.tensor(finished_level, device=x.device))
    moving_all = (s_all < t_all) & ~known[:, None]
    # what the network is fed: known tokens, and tokens finished in this window, at their level
    fed_all = known[:, None] | ((t_all == 0) & (finished_level > 0))
    at_level = known[:, None] | ~fed_all  # fed at their row's level; the others at finished_level
    t_in_all = torch.where(at_level, t_all, finished_level)
    alpha_in, sigma_in = torch.where(at_level, alpha[:, :-1], alpha_fin), torch.where(at_level, sigma[:, :-1], sigma_fin)
    alpha_s, sigma_s = torch.where(moving_all, alpha[:, 1:], alpha[:, :-1]), torch.where(moving_all, sigma[:, 1:], sigma[:, :-1])
    any_moving, any_fed = moving_all.any(2).any(0).tolist(), fed_all.any(2).any(0).tolist()
    known_x = expand_like(known, x)
    # dpm++2m: each token's x0_hat and level at its last move (t_prev == its level: no last move)
    x0_prev, t_prev = None, levels[:, 0]
    iterator = range(rows - 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="denoising", leave=False)
    for r in iterator:
        moving = moving_all[:, r]
        if any_moving[r]:
            t_in, scales_in = t_in_all[:, r], (alpha_in[:, r], sigma_in[:, r])
            x_in = x
            if any_fed[r]:
                values = x if known_mask is None else torch.where(known_x, known_values, x)
                x_in = torch.where(expand_like(fed_all[:, r], x), _known_inputs(values, scales_in, history, fixed_eps, generator), x)
            info = StepInfo(r, schedule, t_in, moving, known_mask, known_values, generated_mask, generator, start, n_hist, scales_in)
            if begin_step is not None:
                begin_step(info)
            x0_hat, eps_hat = guidance(denoise, x_in, t_in, cond, info)
            scales_t = alpha[:, r], sigma[:, r]
            if clip_x0 is not None:
                x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
                eps_hat = (x.float() - expand_like(scales_t[0], x) * x0_hat.float()) / expand_like(scales_t[1], x).clamp_min(1e-6)
            if solver == "dpm++2m":
                t, s = levels[:, r], levels[:, r + 1]
                stepped = dpmpp_2m_step(x, x0_hat, eps_hat, t, torch.where(moving, s, t), schedule, x0_prev, t_prev)
                x0_prev = x0_hat
            else:
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32) if eta > 0 else None
                stepped = ddim_update(x, x0_hat, eps_hat, scales_t, (alpha_s[:, r], sigma_s[:, r]), eta, noise)
            x = torch.where(expand_like(moving, x), stepped, x)
        if solver == "dpm++2m":
            t_prev = torch.where(moving, levels[:, r], levels[:, r + 1])
        if r < rows - 2:
            yield r, x
    if known_mask is not None:
        x = torch.where(known_x, known_values, x)
    yield rows - 2, x


def sample_window(denoise: Denoiser, x: Tensor, levels: Tensor, **kwargs: Any) -> Tensor:
    """:func:`iter_sample_window` run to the end: the final window [B, W, ...] (same arguments)."""
    for _, x in iter_sample_window(denoise, x, levels, **kwargs):
        pass
    return x

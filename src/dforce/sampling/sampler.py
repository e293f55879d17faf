"""The row loop: per-token sampling over a matrix of continuous noise levels.

:func:`iter_sample_window` is the only sampling loop in dforce. It walks the rows of a level
matrix ``levels`` [R, W] (or [B, R, W]) of continuous levels in [0, 1] for a window of ``W``
tokens. At every row transition it asks a *guidance* object for ``(x0_hat, eps_hat)`` of the
whole window (one or more network calls) and moves each token whose level drops from ``t`` to
``s`` by the DDIM step

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
    c   = eta sigma_s sqrt(1 - alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2)).

``eta = 0`` is deterministic DDIM (and, for rectified flow, the Euler step of the flow ODE);
``eta = 1`` samples the exact posterior q(x_s | x_t, x0 = x0_hat) (ancestral / DDPM-like).
Tokens whose level does not drop are left bit-identical.

``solver='dpm++2m'`` (eta = 0 only) replaces the first-order step by DPM-Solver++(2M) (Lu et al.
2022, multistep, data prediction), applied per token over that token's own levels: a token that
also moved in the previous row reuses the ``x0_hat`` of that move (:func:`dpmpp_2m_step`); its
first move in a window, a move after a row it sat still, and a move to level 0 are first order
(= DDIM). Any scheduling matrix works, since every token keeps its own history.

*Known* tokens (history, keyframes) are never stepped. At each row they are fed at their level
in ``levels``; tokens that became clean earlier in the same window (the first tokens of an
autoregressive or pyramid matrix) are generated history too and are fed at ``finished_level``
(the stabilization level), as the reference implementation relabels every finished token.
``history`` says with which value such tokens are fed:

- ``noise``: the clean value noised to that level with one draw per window (consistent with
  training, where a token at level t is always a noisy token);
- ``relabel``: the clean value itself, only *labelled* with the level (Diffusion Forcing v1.5
  under DDIM additionally scales it by sqrt(alpha_bar); dforce feeds it unscaled);
- ``replacement``: noised afresh at every row (replacement conditioning of full-sequence models).

Everything else -- KV caches, precision, guidance -- wraps the denoiser or the guidance hook. A
stateful denoiser (a KV cache) may define ``begin_step(info)``; the loop calls it before each
network step so that it knows which tokens move and which are history.
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
    """The one precision switch: bf16 autocast of the network for ``precision='bf16'``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class StepInfo:
    """What a guidance object (or a stateful denoiser) may use at one row transition.

    ``t`` [B, W] are the levels the network is fed this step, ``moving`` [B, W] the tokens the
    step moves; ``known_mask`` [B, W] marks history / conditioning tokens, ``known_values``
    [B, W, ...] holds their clean values, ``generated_mask`` [B, W] marks known tokens the model
    generated itself (for stabilized guidance). ``start`` is the window's first token in the whole
    rollout and ``history`` the number of leading tokens of the window that are history (for KV
    caches).
    """

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
    """One DDIM step from level ``t`` to ``s <= t`` (both [B, W]), elementwise per token."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if (s > t).any():
        raise ValueError("ddim_step moves tokens to a lower noise level; got a level that rises (s > t)")
    a_t, s_t = schedule.alpha_sigma(t)
    a_s, s_s = schedule.alpha_sigma(s)
    # r = alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2) <= 1; c^2 = eta^2 sigma_s^2 (1 - r) and the eps
    # coefficient sqrt(sigma_s^2 - c^2) = sigma_s sqrt((1 - eta^2) + eta^2 r), free of cancellation
    r = ((a_t * s_s) ** 2 / ((a_s * s_t) ** 2).clamp_min(1e-30)).clamp(0, 1)
    dir_scale = s_s * ((1 - eta**2) + eta**2 * r).sqrt()
    out = expand_like(a_s, x_t) * x0_hat.float() + expand_like(dir_scale, x_t) * eps_hat.float()
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs a noise tensor")
        out = out + expand_like(eta * s_s * (1 - r).sqrt(), x_t) * noise.float()
    return out.to(x_t.dtype)


def check_solver(solver: str, eta: float) -> None:
    """Raise a one-line error unless ``solver`` is known and supports ``eta``."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    if solver == "dpm++2m" and eta != 0:
        raise ValueError(f"solver='dpm++2m' is deterministic and needs eta=0, got eta={eta}; use eta=0 or solver='ddim'")


def dpmpp_2m_step(
    x_t: Tensor,
    x0_hat: Tensor,
    eps_hat: Tensor,
    t: Tensor,
    s: Tensor,
    schedule: NoiseSchedule,
    x0_prev: Optional[Tensor] = None,
    t_prev: Optional[Tensor] = None,
) -> Tensor:
    """One DPM-Solver++(2M) step (eta = 0) from level ``t`` to ``s <= t`` (both [B, W]), per token.

    ``x0_prev`` [B, W, ...] is each token's ``x0_hat`` at its previous level ``t_prev`` [B, W];
    where ``t_prev == t`` (no previous step) or ``s == 0`` the step is first order, i.e. DDIM.
    With ``lambda = log(alpha / sigma)``, ``h = lambda_s - lambda_t``, ``r = h_prev / h``:

        D   = (1 + 1/(2r)) x0_hat - 1/(2r) x0_prev,
        x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h) - 1) D,

    computed as the DDIM step plus ``alpha_s (1 - exp(-h)) (D - x0_hat)`` (equal when ``x_t =
    alpha_t x0_hat + sigma_t eps_hat``), so the first-order case is DDIM's bit for bit.
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


def _known_inputs(values: Tensor, level: Tensor, history: str, schedule: NoiseSchedule, eps: Optional[Tensor], generator) -> Tensor:
    if history == "relabel":
        return values
    if history == "replacement":
        eps = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
    return schedule.q_sample(values, level, eps)


def iter_sample_window(
    denoise: Denoiser,
    x: Tensor,
    levels: Tensor,
    *,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    solver: str = "ddim",
    guidance: Optional[Guidance] = None,
    cond: Any = None,
    known_mask: Optional[Tensor] = None,
    known_values: Optional[Tensor] = None,
    history: str = "noise",
    generated_mask: Optional[Tensor] = None,
    finished_level: float = 0.0,
    generator: Optional[torch.Generator] = None,
    clip_x0: Optional[float] = None,
    start: int = 0,
    progress: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """Denoise a window along the rows of ``levels``, yielding ``(r, x)`` after each row ``r``.

    Args:
        denoise: ``(x, t, cond) -> (x0_hat, eps_hat)``, e.g. ``model.denoiser()``.
        x: starting window [B, W, ...]; unknown tokens hold noise at their first-row level.
        levels: continuous levels [R, W] or [B, R, W]; non-increasing down each column.
        solver: ``ddim`` (any ``eta``) or ``dpm++2m`` (``eta = 0``; module doc).
        known_mask: [B, W] or [W] bool, tokens given as conditioning (never stepped).
        known_values: [B, W, ...] clean values for the known tokens (others ignored).
        history: how known tokens are fed: ``noise``, ``relabel`` or ``replacement`` (module doc).
        generated_mask: [B, W] bool, known tokens that were generated (for guidance).
        finished_level: level at which tokens that became clean in this window are fed while
            later tokens are still denoised (0: fed clean).
        clip_x0: clamp ``x0_hat`` to ``[-clip_x0, clip_x0]`` (``eps_hat`` follows).
        start: the window's first token in a longer rollout (told to stateful denoisers).

    Tokens whose level has reached 0 are final from then on (streaming reads them early); the
    last yield holds the finished window with the known tokens' clean values.
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
    # dpm++2m: each token's x0_hat and level at its last move (t_prev == its level: no last move)
    x0_prev, t_prev = None, levels[:, 0]
    iterator = range(rows - 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="denoising", leave=False)
    for r in iterator:
        t, s = levels[:, r], levels[:, r + 1]
        moving = (s < t) & ~known
        if moving.any():
            # what the network is fed: known tokens, and tokens finished in this window, at their level
            fed = known | ((t == 0) & (finished_level > 0))
            t_in = torch.where(known | ~fed, t, torch.full_like(t, finished_level))
            values = x if known_mask is None else torch.where(expand_like(known, x), known_values, x)
            x_in = torch.where(expand_like(fed, x), _known_inputs(values, t_in, history, schedule, fixed_eps, generator), x)
            info = StepInfo(r, schedule, t_in, moving, known_mask, known_values, generated_mask, generator, start, n_hist)
            if begin_step is not None:
                begin_step(info)
            x0_hat, eps_hat = guidance(denoise, x_in, t_in, cond, info)
            if clip_x0 is not None:
                a_t, s_t = schedule.alpha_sigma(t)
                x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
                eps_hat = (x.float() - expand_like(a_t, x) * x0_hat.float()) / expand_like(s_t, x).clamp_min(1e-6)
            s_in = torch.where(moving, s, t)
            if solver == "dpm++2m":
                stepped = dpmpp_2m_step(x, x0_hat, eps_hat, t, s_in, schedule, x0_prev, t_prev)
                x0_prev = x0_hat
            else:
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32) if eta > 0 else None
                stepped = ddim_step(x, x0_hat, eps_hat, t, s_in, schedule, eta, noise)
            x = torch.where(expand_like(moving, x), stepped, x)
        t_prev = torch.where(moving, t, s)
        if r < rows - 2:
            yield r, x
    if known_mask is not None:
        x = torch.where(expand_like(known, x), known_values, x)
    yield rows - 2, x


def sample_window(denoise: Denoiser, x: Tensor, levels: Tensor, **kwargs: Any) -> Tensor:
    """:func:`iter_sample_window` run to the end: the final window [B, W, ...] (same arguments)."""
    for _, x in iter_sample_window(denoise, x, levels, **kwargs):
        pass
    return x

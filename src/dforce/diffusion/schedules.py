"""Noise schedules on a continuous per-token level ``t`` in [0, 1]: ``x_t = alpha(t) x0 + sigma(t) eps``.

Level 0 is clean (alpha = 1, sigma = 0 exactly), level 1 (numerically) pure noise. A schedule is
its logSNR ``lambda(t) = 2 log(alpha / sigma)``, clipped to ``[logsnr_min, logsnr_max]`` so both
ends stay finite. Tensors of any shape; float32 even under autocast (bf16 is too coarse here).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

LOGSNR_MIN = -15.0
LOGSNR_MAX = 15.0


class NoiseSchedule:
    """Subclasses implement :meth:`_logsnr` (unclipped) and, if not variance preserving, :meth:`alpha_sigma_from_logsnr`."""

    name = "base"
    variance_preserving = True

    def __init__(self, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX) -> None:
        if not logsnr_min < logsnr_max:
            raise ValueError(f"logsnr_min ({logsnr_min}) must be below logsnr_max ({logsnr_max})")
        self.logsnr_min = logsnr_min
        self.logsnr_max = logsnr_max

    def _logsnr(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logsnr(self, t: Tensor) -> Tensor:
        """``lambda(t)`` clipped to the finite range; same shape as ``t``."""
        t = torch.as_tensor(t, dtype=torch.float32).clamp(0, 1)
        return self._logsnr(t).clamp(self.logsnr_min, self.logsnr_max)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Signal and noise scales at level ``t``; level 0 gives exactly (1, 0)."""
        t = torch.as_tensor(t, dtype=torch.float32)
        alpha, sigma = self.alpha_sigma_from_logsnr(self.logsnr(t))
        clean = t <= 0
        return torch.where(clean, torch.ones_like(alpha), alpha), torch.where(clean, torch.zeros_like(sigma), sigma)

    def alpha_sigma_from_logsnr(self, lam: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha, sigma)`` of this process at logSNR ``lam`` (variance preserving here)."""
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def logsnr_range(self) -> tuple[float, float]:
        """``(lambda(1), lambda(0+))``: the logSNR range the schedule actually spans, within the clip."""
        ends = self.logsnr(torch.tensor([1.0, 0.0]))
        return float(ends[0]), float(ends[1])

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Draw ``x_t`` given ``x0`` [B, T, ...], levels ``t`` [B, T] and noise ``eps``."""
        alpha, sigma = self.alpha_sigma(t)
        alpha, sigma = expand_like(alpha, x0), expand_like(sigma, x0)
        return (alpha * x0.float() + sigma * eps.float()).to(x0.dtype)

    def t_from_logsnr(self, lam: Tensor, iters: int = 60) -> Tensor:
        """Invert ``lambda(t)`` by bisection (every schedule here is decreasing in ``t``)."""
        lam = torch.as_tensor(lam, dtype=torch.float32)
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = self._logsnr(mid) > lam
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def config(self) -> dict:
        """JSON-serialisable: ``get_schedule(**cfg)`` rebuilds the schedule."""
        return {"name": self.name, **vars(self)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in vars(self).items() if not k.startswith('logsnr'))})"


class CosineSchedule(NoiseSchedule):
    """``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``; ``shift`` adds ``2 log(shift)`` to
    lambda (shift < 1 makes every level noisier, as DFoT does with 0.125 at high resolution)."""

    name = "cosine"

    def __init__(self, shift: float = 1.0, **kw: float) -> None:
        super().__init__(**kw)
        if shift <= 0:
            raise ValueError(f"cosine shift must be positive, got {shift}")
        self.shift = shift

    def _logsnr(self, t: Tensor) -> Tensor:
        half_pi_t = t * (math.pi / 2)  # t in [0, 1]: logsnr() clamps it
        # cos(pi/2) is slightly negative in float32: clamp before the logs
        log_ratio = torch.log(torch.cos(half_pi_t).clamp_min(1e-20)) - torch.log(torch.sin(half_pi_t).clamp_min(1e-20))
        return 2.0 * log_ratio + 2.0 * math.log(self.shift)


class LinearBetaSchedule(NoiseSchedule):
    """DDPM's linear betas in continuous time: ``alpha^2 = exp(-(b0 t + (b1 - b0) t^2 / 2))``,
    ``b0 = num_steps beta_start``, ``b1 = num_steps beta_end``."""

    name = "linear"

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = 1000, **kw: float) -> None:
        super().__init__(**kw)
        self.beta_start, self.beta_end, self.num_steps = beta_start, beta_end, num_steps

    def _logsnr(self, t: Tensor) -> Tensor:
        b0, b1 = self.beta_start * self.num_steps, self.beta_end * self.num_steps
        log_alpha2 = -(b0 * t + 0.5 * (b1 - b0) * t * t)
        # lambda = log(a2 / (1 - a2)), computed stably
        return log_alpha2 - torch.log(-torch.expm1(log_alpha2))


class SigmoidSchedule(NoiseSchedule):
    """Chen (2023): ``alpha^2 = (v_end - sigmoid((t (e - s) + s) / tau)) / (v_end - v_start)``."""

    name = "sigmoid"

    def __init__(self, start: float = -3.0, end: float = 3.0, tau: float = 1.0, **kw: float) -> None:
        super().__init__(**kw)
        if not start < end or tau <= 0:
            raise ValueError(f"sigmoid schedule needs start < end and tau > 0, got {start}, {end}, {tau}")
        self.start, self.end, self.tau = start, end, tau

    def _logsnr(self, t: Tensor) -> Tensor:
        v_start = 1.0 / (1.0 + math.exp(-self.start / self.tau))
        v_end = 1.0 / (1.0 + math.exp(-self.end / self.tau))
        s = torch.sigmoid((t * (self.end - self.start) + self.start) / self.tau)
        alpha2 = ((v_end - s) / (v_end - v_start)).clamp(1e-12, 1.0)
        return torch.log(alpha2) - torch.log1p(-alpha2 + 1e-12)


class RectifiedFlowSchedule(NoiseSchedule):
    """Rectified flow: ``alpha = 1 - t``, ``sigma = t`` (not variance preserving)."""

    name = "rectified_flow"
    variance_preserving = False

    def _logsnr(self, t: Tensor) -> Tensor:
        return 2.0 * (torch.log1p(-t) - torch.log(t))

    def alpha_sigma_from_logsnr(self, lam: Tensor) -> tuple[Tensor, Tensor]:
        # sigma / alpha = exp(-lam / 2) and alpha + sigma = 1; the clipped logSNR keeps alpha > 0
        return torch.sigmoid(lam / 2), torch.sigmoid(-lam / 2)


SCHEDULES: dict[str, Callable[..., NoiseSchedule]] = {
    "cosine": CosineSchedule, "linear": LinearBetaSchedule, "sigmoid": SigmoidSchedule, "rectified_flow": RectifiedFlowSchedule,
}


def get_schedule(name: str | NoiseSchedule, **kwargs: float) -> NoiseSchedule:
    """Build a schedule by name (``cosine``, ``linear``, ``sigmoid``, ``rectified_flow``)."""
    if isinstance(name, NoiseSchedule):
        if kwargs:
            raise ValueError("schedule options go to the schedule's constructor, not with an instance")
        return name
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)


def expand_like(v: Tensor, x: Tensor) -> Tensor:
    """Append singleton dims so that per-token values ``v`` [B, T] broadcast over ``x`` [B, T, ...]."""
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim()))

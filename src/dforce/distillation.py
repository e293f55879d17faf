"""Progressive distillation (Salimans & Ho 2022) of a Diffusion Forcing model into a few-step student.

A student step from level ``t`` to ``s`` learns to land where ``m`` teacher DDIM steps (eta 0) land:
with the student grid of ``S`` steps nested in the teacher's grid of ``m S`` steps (both
``level_grid``), a token at student level ``k`` moves from ``t = g_S[k]`` to ``s = g_S[k - 1]``
through the teacher's levels ``g_mS[mk], ..., g_mS[m(k - 1)]``. The student regresses the clean
token that makes its own DDIM step exact,

    x0* = (x_s - (sigma_s / sigma_t) x_t) / (alpha_s - (sigma_s / sigma_t) alpha_t)     (x0* = x_s at s = 0),

in its parametrization, with its loss weighting. Per token, as Diffusion Forcing samples: each
training window has a known prefix of random length (history, fed unchanged at a random level in
``[0, max_history_level]``, never stepped) and moving tokens after it, each at its own random student
level; the teacher's ``m`` steps run through the one row loop (:func:`dforce.sampling.sample_window`)
with the same inputs, so the student learns every scheduling matrix on its grid (autoregressive,
pyramid, full sequence). Sample the student with ``steps=S`` and the same ``level_spacing``.

    student = copy.deepcopy(teacher)
    loss = distillation_loss(student, teacher, x, teacher_steps=50, student_steps=10)

Repeat with the student as the next teacher (e.g. 50 -> 10 -> 5 steps).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dforce.diffusion.noise_levels import stack_frames
from dforce.diffusion.parametrization import target
from dforce.diffusion.schedules import expand_like
from dforce.diffusion.weighting import loss_weight
from dforce.model import DiffusionForcing
from dforce.sampling.sampler import sample_window
from dforce.sampling.scheduling import level_grid


def x0_for_step(x_t: Tensor, x_s: Tensor, alpha_sigma_t: tuple[Tensor, Tensor], alpha_sigma_s: tuple[Tensor, Tensor]) -> Tensor:
    """The ``x0`` with which one DDIM step (eta 0) moves ``x_t`` [B, T, ...] to ``x_s``: per token
    ``(x_s - r x_t) / (alpha_s - r alpha_t)``, ``r = sigma_s / sigma_t``; alphas and sigmas [B, T],
    ``s < t`` (so ``sigma_t > 0``; a token with ``s = t`` gets 0 / 0)."""
    (a_t, s_t), (a_s, s_s) = alpha_sigma_t, alpha_sigma_s
    r = s_s / s_t
    return (x_s - expand_like(r, x_t) * x_t) / expand_like(a_s - r * a_t, x_t)


def distillation_levels(
    batch: int, tokens: int, teacher_steps: int, student_steps: int, *, max_history_level: float = 0.25, level_spacing: str = "uniform",
    schedule=None, device: torch.device | str = "cpu", generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """The teacher's level matrix [B, m + 1, T] of one student step per token (``m = teacher_steps /
    student_steps``), and the moving tokens [B, T] (bool): a known prefix of uniform random length in
    ``[0, T - 1]`` at a constant level in ``[0, max_history_level]``, then tokens at independent uniform
    student levels ``1..S``."""
    if student_steps < 1 or teacher_steps % student_steps or teacher_steps <= student_steps:
        raise ValueError(f"teacher_steps must be a multiple of student_steps larger than it, got {teacher_steps} and {student_steps}")
    if not 0.0 <= max_history_level < 1.0:
        raise ValueError(f"max_history_level must lie in [0, 1), got {max_history_level}")
    m = teacher_steps // student_steps
    grid = level_grid(teacher_steps, schedule, level_spacing).to(device)
    prefix = torch.randint(0, tokens, (batch, 1), generator=generator, device=device)
    moving = torch.arange(tokens, device=device)[None] >= prefix
    k = torch.randint(1, student_steps + 1, (batch, tokens), generator=generator, device=device)
    rows = grid[m * k[:, None, :] - torch.arange(m + 1, device=device)[None, :, None]]  # [B, m + 1, T]
    history = torch.rand(batch, 1, 1, generator=generator, device=device) * max_history_level
    return torch.where(moving[:, None, :], rows, history.expand_as(rows)), moving


def distillation_loss(
    student: DiffusionForcing, teacher: DiffusionForcing, x: Tensor, *, teacher_steps: int, student_steps: int,
    cond: Optional[Tensor] = None, level_spacing: str = "uniform", max_history_level: float = 0.25,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Progressive-distillation loss (a scalar) of ``student`` on frames ``x`` [B, N, *frame_shape]:
    one student step on a grid of ``student_steps`` matches ``teacher_steps / student_steps`` steps
    of ``teacher`` (see the module docstring). Both models share the noise schedule and frame stacking."""
    if teacher.noise_schedule.config() != student.noise_schedule.config() or teacher.frame_stack != student.frame_stack:
        raise ValueError("student and teacher must share the noise schedule and frame_stack; start the student as a copy of the teacher")
    student._check_frames(x, "x")
    schedule, k = student.noise_schedule, student.frame_stack
    tokens = stack_frames(x.float(), k)
    if cond is not None:
        cond = stack_frames(cond, k)
    b, n = tokens.shape[:2]
    levels, moving = distillation_levels(b, n, teacher_steps, student_steps, max_history_level=max_history_level,
                                         level_spacing=level_spacing, schedule=schedule, device=x.device, generator=generator)
    t, s = levels[:, 0], levels[:, -1]
    eps = torch.randn(tokens.shape, generator=generator, device=x.device)
    x_t = schedule.q_sample(tokens, t, eps)
    with torch.no_grad():
        x_s = sample_window(teacher.denoise, x_t, levels, schedule=schedule, cond=cond, known_mask=~moving, known_values=x_t,
                            history="relabel", generator=generator)
    a_t, s_t = schedule.alpha_sigma(t)
    # known tokens do not move (s = t): their x0* is 0 / 0 (and eps* too at level 0); they take the
    # clean token and its noise, and carry no loss
    moving_x = expand_like(moving, x_t)
    x0 = torch.where(moving_x, x0_for_step(x_t, x_s, (a_t, s_t), schedule.alpha_sigma(s)), tokens)
    eps_star = torch.where(moving_x, (x_t - expand_like(a_t, x_t) * x0) / expand_like(s_t, x_t), eps)
    tgt = target(student.parametrization, x0, eps_star, expand_like(a_t, x_t), expand_like(s_t, x_t))
    pred = student.backbone(x_t, t, cond).float()
    per_token = ((pred - tgt) ** 2).flatten(2).mean(-1) * loss_weight(student.weighting, schedule.logsnr(t), student.parametrization, schedule)
    return torch.where(moving, per_token, torch.zeros_like(per_token)).sum() / moving.sum()

"""Scheduling matrices, the row loop (per-token DDIM or DPM-Solver++(2M)), sliding-window rollout, KV-cached denoisers."""

from dforce.sampling import scheduling
from dforce.sampling.cached import CACHES, CachedDenoiser
from dforce.sampling.rollout import SamplingConfig, iter_rollout, plan_windows
from dforce.sampling.sampler import (
    SOLVERS, Guidance, StepInfo, autocast, conditional, ddim_step, dpmpp_2m_step, iter_sample_window, sample_window,
)
from dforce.sampling.scheduling import level_grid, scheduling_matrix, validate, window_levels

__all__ = [
    "CACHES", "CachedDenoiser", "Guidance", "SOLVERS", "SamplingConfig", "StepInfo", "autocast", "conditional", "ddim_step",
    "dpmpp_2m_step", "iter_rollout", "iter_sample_window", "level_grid", "plan_windows", "sample_window",
    "scheduling", "scheduling_matrix", "validate", "window_levels",
]

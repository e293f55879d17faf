"""Core diffusion math: noise schedules, parametrizations, loss weightings, training noise levels."""

from dforce.diffusion.noise_levels import (
    DEFAULT_TRAINING_NOISE,
    TRAINING_NOISE,
    parse_training_noise,
    stack_frames,
    training_noise_levels,
    unstack_frames,
)
from dforce.diffusion.parametrization import PARAMETRIZATIONS, target, to_x0_eps
from dforce.diffusion.schedules import (
    SCHEDULES,
    CosineSchedule,
    LinearBetaSchedule,
    NoiseSchedule,
    RectifiedFlowSchedule,
    SigmoidSchedule,
    get_schedule,
)
from dforce.diffusion.weighting import WEIGHTINGS, loss_weight

__all__ = [
    "DEFAULT_TRAINING_NOISE", "PARAMETRIZATIONS", "SCHEDULES", "TRAINING_NOISE", "WEIGHTINGS", "CosineSchedule", "LinearBetaSchedule",
    "NoiseSchedule", "RectifiedFlowSchedule", "SigmoidSchedule", "get_schedule", "loss_weight", "parse_training_noise", "stack_frames",
    "target", "to_x0_eps", "training_noise_levels", "unstack_frames",
]

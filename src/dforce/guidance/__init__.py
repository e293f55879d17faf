"""Guidance objects plug into the sampler's hook (:class:`dforce.sampling.sampler.Guidance`)."""

from dforce.guidance.cfg import ClassifierFreeGuidance, batched_denoise, combine
from dforce.guidance.history import EMPTY, FULL, History, HistoryGuidance
from dforce.guidance.reward import MonteCarloGuidance, RewardGuidance
from dforce.sampling.sampler import Guidance, StepInfo, conditional

__all__ = [
    "EMPTY", "FULL", "ClassifierFreeGuidance", "Guidance", "History", "HistoryGuidance", "MonteCarloGuidance",
    "RewardGuidance", "StepInfo", "batched_denoise", "combine", "conditional",
]

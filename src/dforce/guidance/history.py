"""History guidance (Song, Chen et al., *History-Guided Video Diffusion*, arXiv 2502.06764).

Classifier-free guidance whose condition is the history (the known tokens of the window) and whose
null condition is the history at pure noise ("empty"). A :class:`History` condition says at which
level each history token is fed; the general form ``p(base) + sum_i w_i [p(a_i) - p(b_i)]`` has
weights summing to 1, so it stays consistent with ``x_t``. Named forms:

- vanilla:    ``p(empty) + w [p(h) - p(empty)]``
- fractional: ``p(h) + (w - 1) [p(h at level k_f) - p(empty)]``  (guides on low frequencies)
- temporal:   ``p(empty) + sum_i w_i [p(h_{S_i}) - p(empty)]`` over history subsets ``S_i``

*Stabilized* guidance noises only generated history and keeps observed context. Conditions with
equal level matrices are evaluated once, all of them in one batch; predictions are combined before
the sampler step, so eta > 0 stays exact.

    frames = model.sample(context, horizon=80, guidance=HistoryGuidance.vanilla(2.0), chunk_size=4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from dforce.diffusion.schedules import expand_like
from dforce.guidance.cfg import batched_denoise, combine
from dforce.sampling.sampler import Denoiser, StepInfo


@dataclass(frozen=True)
class History:
    """History tokens ``frames`` (time order: 0 = oldest, -1 = newest; None = all) fed at level
    ``max(t, level)`` (0 = as the sampler gives them, 1 = the empty history), the others at level 1."""

    level: float = 0.0
    frames: Optional[tuple[int, ...]] = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.level <= 1.0:
            raise ValueError(f"a history level must lie in [0, 1], got {self.level}")
        if self.frames is not None:
            object.__setattr__(self, "frames", tuple(int(f) for f in self.frames))


FULL = History(0.0)
EMPTY = History(1.0)


def history_levels(cond: History, t: Tensor, known_mask: Tensor, noisable: Tensor) -> Tensor:
    """Levels [B, W] that ``cond`` gives a window at levels ``t`` [B, W] with history ``known_mask``
    [B, W], of which it may change the ``noisable`` tokens (all, or the generated ones if stabilized)."""
    selected = known_mask.clone()
    if cond.frames is not None:
        rank = known_mask.long().cumsum(1) - 1  # index of each history token in time order
        count = known_mask.long().sum(1, keepdim=True)
        selected = torch.zeros_like(known_mask)
        for f in cond.frames:
            target = torch.full_like(count, f) if f >= 0 else count + f
            selected |= known_mask & (rank == target)
    level = torch.where(selected, torch.full_like(t, cond.level), torch.ones_like(t))
    return torch.where(known_mask & noisable, torch.maximum(t, level), t)


class HistoryGuidance:
    """General segment form ``p(base) + sum_i w_i [p(a_i) - p(b_i)]`` over history conditions.

    Args:
        terms: ``(w_i, a_i, b_i)`` triples of a weight and two :class:`History` conditions.
        base: the condition the terms are added to (default: the empty history).
        stabilized: noise only generated history; observed context keeps its level in every condition.
    """

    def __init__(self, terms: Sequence[tuple[float, History, History]], base: History = EMPTY, stabilized: bool = False) -> None:
        self.base, self.stabilized = base, stabilized
        self.terms = [(float(w), a, b) for w, a, b in terms]

    @classmethod
    def vanilla(cls, scale: float, stabilized: bool = False) -> "HistoryGuidance":
        """``p(empty) + w [p(h) - p(empty)]``; ``scale = 1`` is plain conditional sampling."""
        return cls([(scale, FULL, EMPTY)], base=EMPTY, stabilized=stabilized)

    @classmethod
    def fractional(cls, scale: float, level: float = 0.5, stabilized: bool = False) -> "HistoryGuidance":
        """``p(h) + (w - 1) [p(h at level) - p(empty)]``."""
        return cls([(scale - 1.0, History(level), EMPTY)], base=FULL, stabilized=stabilized)

    @classmethod
    def temporal(cls, scales: Sequence[float], subsets: Sequence[Sequence[int]], stabilized: bool = False) -> "HistoryGuidance":
        """``p(empty) + sum_i w_i [p(h_{S_i}) - p(empty)]``; ``subsets`` index the history (0 = oldest, -1 = newest)."""
        if len(scales) != len(subsets):
            raise ValueError(f"temporal history guidance needs one scale per subset, got {len(scales)} and {len(subsets)}")
        return cls([(w, History(0.0, tuple(s)), EMPTY) for w, s in zip(scales, subsets)], base=EMPTY, stabilized=stabilized)

    def weights(self) -> list[tuple[History, float]]:
        """Each distinct condition with its total weight (they sum to 1)."""
        out: dict[History, float] = {self.base: 1.0}
        for w, a, b in self.terms:
            out[a] = out.get(a, 0.0) + w
            out[b] = out.get(b, 0.0) - w
        return list(out.items())

    def __call__(self, denoise: Denoiser, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]:
        known = info.known_mask
        if known is None or not known.any():
            return denoise(x, t, cond)
        if self.stabilized and info.generated_mask is not None:
            noisable = info.generated_mask.to(known.device).bool() & known
        else:
            noisable = known
        # group conditions by their level matrix: identical levels -> one evaluation
        groups: list[tuple[Tensor, float]] = []
        for c, w in self.weights():
            lv = history_levels(c, t, known, noisable)
            for i, (lv2, w2) in enumerate(groups):
                if torch.equal(lv, lv2):
                    groups[i] = (lv2, w2 + w)
                    break
            else:
                groups.append((lv, w))
        groups = [(lv, w) for lv, w in groups if abs(w) > 1e-12]
        eps = None
        xs = []
        for lv, _ in groups:
            changed = lv != t
            if changed.any():
                if eps is None:
                    eps = torch.randn(x.shape, generator=info.generator, device=x.device, dtype=torch.float32)
                noised = info.schedule.q_sample(info.known_values.float(), lv, eps).to(x.dtype)
                xs.append(torch.where(expand_like(changed, x), noised, x))
            else:
                xs.append(x)
        preds = batched_denoise(denoise, xs, [lv for lv, _ in groups], [cond] * len(groups))
        return combine(preds, [w for _, w in groups])

    def __repr__(self) -> str:
        return f"HistoryGuidance(base={self.base}, terms={self.terms}, stabilized={self.stabilized})"

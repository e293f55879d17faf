"""KV caches as state of the denoiser.

An uncached autoregressive rollout costs ``window x steps x length`` token evaluations. A backbone
with the cache contract (``new_cache()``, ``forward_cached(x, t, cond, *, cache, commit)``; see
:func:`dforce.testing.check_backbone`) lets :class:`CachedDenoiser` skip most of them. It is an
ordinary denoiser for the one row loop, told through ``begin_step`` which tokens move.

``mode="window"`` (exact): remembers the inputs, outputs and keys/values of the window; a call
re-runs only the tokens from the first one whose value, level or condition changed, up to the last
moving token. A causal model's outputs for an unchanged prefix are unchanged, so the numbers are
the uncached ones for every schedule, history mode, eta and guidance (up to kernel rounding).

``mode="rolling"``: each history token is encoded once, when it enters a window, and kept until
the window slides past it; memory and time per token stay constant. Past the window this is a
cheaper, different computation (a token's keys/values saw *its own* history, so information
reaches back ``depth x (window - 1)`` tokens, and ``history='noise'`` keeps its first window's
noise). It equals the exact rollout while every token is encoded with the same history
(``context + horizon <= window``, one new token per window, ``history='relabel'``). Guidance is
refused: it feeds the same history at several levels.

Gradient guidance (reward, Monte Carlo, reconstruction) runs full uncached passes.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from dforce.sampling.sampler import StepInfo, autocast

CACHES = ("none", "window", "rolling")


def check_cacheable(model: Any, mode: str, compile: bool = False) -> None:
    """Raise a one-line error unless ``model`` can sample with ``cache=mode`` (and ``compile``)."""
    if mode not in CACHES:
        raise ValueError(f"unknown cache {mode!r}; choose one of {list(CACHES)}")
    if compile and (mode == "none" or not getattr(model.backbone, "compiled_decode", False)):
        raise ValueError(f"compile=True compiles the cached one-token step of a Transformer or ConcatTransformer (cache='window' or 'rolling'); got cache={mode!r} and {type(model.backbone).__name__}: use compile=False")
    if mode == "none":
        return
    bb = model.backbone
    if not model.causal:
        raise ValueError(f"cache={mode!r} needs a causal backbone; use cache='none' for bidirectional ones")
    if not hasattr(bb, "forward_cached") or not hasattr(bb, "new_cache"):
        raise TypeError(f"{type(bb).__name__} has no forward_cached/new_cache (the cache contract); use cache='none'")


def _first_change(a: Tensor, b: Tensor) -> int:
    """Index of the first token (dim 1) where ``a`` and ``b`` differ in any batch element; len if none."""
    idx = (a != b).reshape(a.shape[0], a.shape[1], -1).any(-1).any(0).nonzero()
    return int(idx[0]) if len(idx) else a.shape[1]


class CachedDenoiser:
    """``denoise(x [B, W, ...], t [B, W], cond) -> (x0_hat, eps_hat)`` backed by a KV cache;
    ``evaluated_tokens`` counts the tokens run through the network (batch rows x tokens)."""

    def __init__(self, model: Any, precision: str = "fp32", mode: str = "window", compile: bool = False) -> None:
        check_cacheable(model, mode, compile)
        if mode == "none":
            raise ValueError("CachedDenoiser needs mode 'window' or 'rolling'")
        if compile and precision != "fp32":
            raise ValueError("compile=True compiles the fp32 decode step; use precision='fp32' (bf16 does not pay at this size on a CPU)")
        self.model, self.precision, self.mode = model, precision, mode
        self.cache = model.backbone.new_cache(compile=True) if compile else model.backbone.new_cache()
        self.inputs: Optional[tuple[Tensor, Tensor, Optional[Tensor]]] = None  # window mode: what the cache holds
        self.pred: Optional[Tensor] = None
        self.cache_start = 0  # rolling mode: rollout index of the first cached token
        self.upto: Optional[int] = None
        self.history, self.start, self.evaluated_tokens = 0, 0, 0
        self.info: Optional[StepInfo] = None

    def begin_step(self, info: StepInfo) -> None:
        """Called by the row loop: only tokens up to the last moving one are needed this step."""
        idx = info.moving.any(0).nonzero()
        self.upto = int(idx[-1]) + 1 if len(idx) else info.t.shape[1]
        self.history, self.start, self.info = info.history, info.start, info

    def _run(self, x: Tensor, t: Tensor, cond: Optional[Tensor], a: int, b: int, commit: bool) -> Tensor:
        with autocast(x.device, self.precision):
            out = self.model.backbone.forward_cached(x[:, a:b], t[:, a:b], None if cond is None else cond[:, a:b], cache=self.cache, commit=commit)
        self.evaluated_tokens += x.shape[0] * (b - a)
        return out.float()

    def _window(self, x: Tensor, t: Tensor, cond: Optional[Tensor], q: int) -> Tensor:
        p = 0
        if self.inputs is not None and self.inputs[0].shape[0] == x.shape[0] and (self.inputs[2] is None) == (cond is None):
            m = min(self.inputs[0].shape[1], x.shape[1])
            p = min(_first_change(x[:, :m], self.inputs[0][:, :m]), _first_change(t[:, :m], self.inputs[1][:, :m]))
            if cond is not None:
                p = min(p, _first_change(cond[:, :m], self.inputs[2][:, :m]))
        p = min(p, self.cache.length)
        if p < q:
            self.cache.truncate(p)  # the buffers stay allocated: a window slide reuses them
            new = self._run(x, t, cond, p, q, commit=True)
            keep = (lambda prev, cur: cur) if p == 0 else (lambda prev, cur: torch.cat([prev[:, :p], cur], 1))
            self.pred = keep(self.pred, new)
            self.inputs = (keep(self.inputs and self.inputs[0], x[:, p:q]), keep(self.inputs and self.inputs[1], t[:, p:q]),
                           None if cond is None else keep(self.inputs and self.inputs[2], cond[:, p:q]))
        return self.pred[:, :q]

    def _rolling(self, x: Tensor, t: Tensor, cond: Optional[Tensor], q: int) -> Tensor:
        drop = self.start - self.cache_start
        if drop < 0 or drop >= self.cache.length:
            self.cache.clear()
        elif drop:
            self.cache.drop_front(drop)
        self.cache_start = self.start
        self.cache.truncate(self.history)
        if self.cache.length < self.history:  # history tokens seen for the first time: encode them once
            self._run(x, t, cond, self.cache.length, self.history, commit=True)
        head = x.new_zeros(x.shape[0], self.history, *x.shape[2:], dtype=torch.float32)  # history does not move
        return torch.cat([head, self._run(x, t, cond, self.history, q, commit=False)], 1)

    def __call__(self, x: Tensor, t: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
        w = x.shape[1]
        if torch.is_grad_enabled() and x.requires_grad:
            # gradient guidance differentiates through every token: cached outputs carry no graph
            self.evaluated_tokens += x.shape[0] * w
            with autocast(x.device, self.precision):
                return self.model.denoise(x, t, cond)
        q = w if self.upto is None else max(1, min(self.upto, w))
        pred = self._window(x, t, cond, q) if self.mode == "window" else self._rolling(x, t, cond, q)
        if q < w:
            pred = torch.cat([pred, pred.new_zeros(pred.shape[0], w - q, *pred.shape[2:])], 1)
        scales = self.info.scales if self.info is not None and t is self.info.t else None  # the row loop's, for these levels
        return self.model.prediction(pred, x, t, scales)

"""Cached and streaming sampling for causal backbones (plain PyTorch).

Research implementations re-run the whole window for every denoising step of every token, so
an autoregressive rollout costs ``window x steps x length`` token evaluations. With a causal
backbone that offers ``forward_cached`` (:class:`dforce.backbones.Transformer`) two caches avoid
that:

``cache="window"`` (exact, the default)
    :class:`CachedDenoiser` wraps the model's ``denoise`` for the ordinary sliding-window
    :func:`~dforce.sampling.rollout`. It remembers the inputs, outputs and keys/values of the
    tokens it has seen in the current window; on the next call it re-runs only the tokens from the
    first one whose input (value, level or condition) changed, and (without guidance) only up to
    the last token that is still being denoised. A causal model's outputs for an unchanged prefix
    are unchanged, so the numbers are the uncached rollout's (same random draws, same windows,
    same positions) for every schedule, chunk size and stabilization variant; only kernel rounding
    differs (~1e-7). With ``chunk_size=1`` each new token costs one pass over its history plus
    ``steps - 1`` one-token passes instead of ``steps`` window passes.

``cache="rolling"`` (streaming, each token encoded once)
    Each finished token is encoded once, at its history level (``stabilization_level`` for
    generated tokens, ``context_level`` for context), into a :class:`~dforce.backbones.transformer.KVCache`
    that keeps the last ``window - 1`` tokens; each denoising step runs only the new token.
    Memory and time per token are constant however long the rollout. It is a different (and
    cheaper) computation than re-encoding the window: past the window, a token's cached
    keys/values were computed with *its own* history, so in a depth-``L`` model information
    reaches back ``L (window - 1)`` tokens (as in sliding-window-attention language models).
    It equals the uncached rollout exactly while ``context + horizon <= window`` with one token
    per window (``chunk_size=1``, ``history_len=window-1``) and ``stabilization='relabel'``; with
    ``stabilization='noise'`` a history token keeps the noise drawn for its first window, where the
    uncached rollout draws fresh noise for every window.

``stream`` yields each frame as soon as it is clean (pyramid and autoregressive schedules
deliver the first token after its own ``steps`` rows); ``cached_rollout`` collects the stream.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields, replace
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

from dforce.diffusion.noise_levels import stack_frames
from dforce.diffusion.parametrization import to_x0_eps
from dforce.diffusion.schedules import expand_like
from dforce.sampling.rollout import SamplingConfig, iter_rollout
from dforce.sampling.sampler import Guidance, StepInfo, ddim_step
from dforce.sampling.scheduling import level_grid, scheduling_matrix

CACHES = ("window", "rolling", "none")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _x0_eps(model: Any, pred: Tensor, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Raw network output -> ``(x0_hat, eps_hat)``, exactly as ``DiffusionForcing.denoise``."""
    pred = pred.float()
    alpha, sigma = model.noise_schedule.alpha_sigma(t)
    return to_x0_eps(model.parametrization, pred, x.float(), expand_like(alpha, pred), expand_like(sigma, pred))


def _maybe_compile(fn: Callable, compile: bool) -> Callable:
    """``torch.compile(fn, dynamic=True)`` when asked (cache lengths vary, so shapes are dynamic)."""
    return torch.compile(fn, dynamic=True) if compile else fn


def _check_cacheable(model: Any) -> None:
    bb = model.backbone
    if not model.causal:
        raise ValueError("cached sampling needs a causal backbone; use model.sample (or cache='none') for bidirectional ones")
    if not hasattr(bb, "forward_cached") or not hasattr(bb, "new_cache"):
        raise TypeError(
            f"{type(bb).__name__} has no forward_cached/new_cache; cached sampling supports dforce.backbones.Transformer "
            "(use cache='none', or the 'rnn' backbone's own constant-memory rollout)"
        )


def _first_change(a: Tensor, b: Tensor) -> int:
    """Index of the first token (dim 1) where ``a`` and ``b`` differ in any batch element; len if none."""
    diff = (a != b).reshape(a.shape[0], a.shape[1], -1).any(-1).any(0)
    idx = diff.nonzero()
    return int(idx[0]) if len(idx) else a.shape[1]


class CachedDenoiser:
    """``denoise(x [B, W, ...], t [B, W], cond) -> (x0_hat, eps_hat)`` that re-runs only changed tokens.

    Drop-in for ``model.denoise`` in :func:`~dforce.sampling.rollout` (exact for causal models:
    see the module doc). ``upto=q`` asks only for the first ``q`` tokens' predictions (the rest
    come back as zeros); :class:`TrimTrailing` sets it from the sampler's step info.
    """

    def __init__(self, model: Any, precision: str = "fp32", compile: bool = False) -> None:
        _check_cacheable(model)
        self.model, self.precision = model, precision
        self.forward_cached = _maybe_compile(model.backbone.forward_cached, compile)
        self.cache = model.backbone.new_cache()
        self.inputs: Optional[tuple[Tensor, Tensor, Optional[Tensor]]] = None
        self.pred: Optional[Tensor] = None
        self.evaluated_tokens = 0  # tokens run through the network (for benchmarks and tests)

    def reset(self) -> None:
        self.cache.clear()
        self.inputs, self.pred = None, None

    def _prefix(self, x: Tensor, t: Tensor, cond: Optional[Tensor]) -> int:
        if self.inputs is None:
            return 0
        cx, ct, cc = self.inputs
        if cx.shape[0] != x.shape[0] or cx.shape[2:] != x.shape[2:] or (cc is None) != (cond is None):
            return 0
        m = min(cx.shape[1], x.shape[1])
        p = min(_first_change(x[:, :m], cx[:, :m]), _first_change(t[:, :m], ct[:, :m]))
        if cond is not None:
            p = min(p, _first_change(cond[:, :m], cc[:, :m]))
        return p

    def __call__(self, x: Tensor, t: Tensor, cond: Any = None, upto: Optional[int] = None) -> tuple[Tensor, Tensor]:
        w = x.shape[1]
        if torch.is_grad_enabled() and x.requires_grad:
            # gradient guidance differentiates through every token: cached outputs carry no graph
            with _autocast(x.device, self.precision):
                pred = self.model.backbone(x, t, cond)
            self.evaluated_tokens += x.shape[0] * w
            return _x0_eps(self.model, pred, x, t)
        q = w if upto is None else max(1, min(int(upto), w))
        p = min(self._prefix(x, t, cond), self.cache.length)
        if p < q:
            self.cache.truncate(p)
            with _autocast(x.device, self.precision):
                new = self.forward_cached(
                    x[:, p:q], t[:, p:q], None if cond is None else cond[:, p:q], cache=self.cache, commit=True
                )
            self.evaluated_tokens += x.shape[0] * (q - p)
            new = new.float()
            old = self.inputs if p else (None, None, None)
            keep = lambda prev, cur: cur if p == 0 else torch.cat([prev[:, :p], cur], 1)  # noqa: E731
            self.pred = keep(self.pred, new)
            self.inputs = (
                keep(old[0], x[:, p:q]),
                keep(old[1], t[:, p:q]),
                None if cond is None else keep(old[2], cond[:, p:q]),
            )
        pred = self.pred[:, :q]
        if q < w:
            pred = torch.cat([pred, pred.new_zeros(pred.shape[0], w - q, *pred.shape[2:])], 1)
        return _x0_eps(self.model, pred, x, t)


class TrimTrailing:
    """Guidance hook that asks a :class:`CachedDenoiser` only for tokens up to the last moving one.

    Tokens after it do not move this row and, in a causal model, do not affect earlier tokens.
    """

    def __init__(self, denoiser: CachedDenoiser) -> None:
        self.denoiser = denoiser

    def __call__(self, denoise: Callable, x: Tensor, t: Tensor, cond: Any, info: StepInfo) -> tuple[Tensor, Tensor]:
        moving = info.next_t < t
        if info.known_mask is not None:
            moving = moving & ~info.known_mask
        idx = moving.any(0).nonzero()
        upto = int(idx[-1]) + 1 if len(idx) else x.shape[1]
        return self.denoiser(x, t, cond, upto=upto)


def _iter_rolling(
    model: Any,
    *,
    horizon: int,
    config: SamplingConfig,
    context: Optional[Tensor],
    batch_size: int,
    cond: Optional[Tensor],
    generator: Optional[torch.Generator],
    device: torch.device,
    precision: str,
    stats: Optional[dict] = None,
    compile: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """One new token per step, history in a rolling KV cache of ``window - 1`` tokens (tokens [B, D])."""
    window, bb, sched = model.window, model.backbone, model.noise_schedule
    if config.chunk_size not in (None, 1):
        raise ValueError(f"cache='rolling' generates one token at a time; set chunk_size=1 (or None), got {config.chunk_size}")
    if config.history_len not in (None, window - 1):
        raise ValueError(f"cache='rolling' keeps window - 1 = {window - 1} tokens of history; set history_len=None")
    if window < 2:
        raise ValueError("cache='rolling' needs window >= 2 (one token of history plus the new one)")
    kwargs = {"uncertainty_scale": config.uncertainty_scale} if config.schedule in ("pyramid", "trapezoid") else {}
    grid = level_grid(config.steps, sched, config.level_spacing).to(device)
    levels = grid[scheduling_matrix(config.schedule, 1, config.steps, **kwargs).to(device)][:, 0]  # [R] for the new token
    token_shape = tuple(model.token_shape)
    ctx_len = 0 if context is None else context.shape[1]
    cache = bb.new_cache(max_len=window - 1)
    run = _maybe_compile(bb.forward_cached, compile)
    noise_mode = config.stabilization == "noise"
    prev: Optional[Tensor] = None
    evaluated = 0

    def commit(x: Tensor, level: float, eps: Optional[Tensor], c: Optional[Tensor]) -> None:
        nonlocal evaluated
        tt = torch.full(x.shape[:2], level, device=device)
        if eps is not None:
            x = sched.q_sample(x, tt, eps)
        with _autocast(device, precision):
            run(x, tt, c, cache=cache, commit=True)
        evaluated += x.shape[0] * x.shape[1]

    for i in range(horizon):
        have = ctx_len + i
        hist = min(have, window - 1)
        w = hist + 1
        # the same random draws as the sliding-window rollout (one window of `w` tokens per new token)
        x = torch.randn(batch_size, w, *token_shape, generator=generator, device=device)[:, -1:]
        fixed = torch.randn(batch_size, w, *token_shape, generator=generator, device=device) if noise_mode and hist else None
        if i == 0 and hist:
            ctx = context[:, ctx_len - hist :]
            eps = None if fixed is None else fixed[:, :hist]
            commit(ctx, config.context_level, eps, None if cond is None else cond[:, ctx_len - hist : ctx_len])
        elif prev is not None:  # the previous token is finished: encode it once, at the stabilization level
            eps = None if fixed is None else fixed[:, hist - 1 : hist]
            commit(prev, config.stabilization_level, eps, None if cond is None else cond[:, have - 1 : have])
        c = None if cond is None else cond[:, have : have + 1]
        for r in range(len(levels) - 1):
            t_val, s_val = levels[r], levels[r + 1]
            if not s_val < t_val:
                continue
            t = t_val.expand(batch_size, 1).contiguous()
            s = s_val.expand(batch_size, 1).contiguous()
            with _autocast(device, precision):
                pred = run(x, t, c, cache=cache, commit=False)
            evaluated += batch_size
            x0_hat, eps_hat = _x0_eps(model, pred, x, t)
            if config.clip_x0 is not None:
                a_t, s_t = sched.alpha_sigma(t)
                x0_hat = x0_hat.clamp(-config.clip_x0, config.clip_x0)
                eps_hat = (x.float() - expand_like(a_t, x) * x0_hat) / expand_like(s_t, x).clamp_min(1e-6)
            noise = torch.randn(batch_size, w, *token_shape, generator=generator, device=device)[:, -1:] if config.eta > 0 else None
            x = ddim_step(x, x0_hat, eps_hat, t, s, sched, config.eta, noise)
        prev = x
        if stats is not None:
            stats.update(evaluated_tokens=evaluated, cache_tokens=cache.length, cache_bytes=cache.nbytes())
        yield i, x[:, 0]


def _guarded(gen: Iterator, make_ctx: Callable[[], contextlib.AbstractContextManager]) -> Iterator:
    """Run each step of ``gen`` inside ``make_ctx()`` without leaking it into the consumer's code."""
    while True:
        with make_ctx():
            try:
                item = next(gen)
            except StopIteration:
                return
        yield item


def stream(
    model: Any,
    context: Optional[Tensor] = None,
    horizon: int = 1,
    config: Optional[SamplingConfig] = None,
    *,
    batch_size: Optional[int] = None,
    cond: Optional[Tensor] = None,
    guidance: Optional[Guidance] = None,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    precision: str = "fp32",
    cache: str = "window",
    stats: Optional[dict] = None,
    compile: bool = False,
    **overrides: Any,
) -> Iterator[Tensor]:
    """Yield the ``horizon`` frames after ``context`` [B, C, *frame_shape] one by one, each [B, *frame_shape].

    A frame is yielded as soon as it is clean (with ``frame_stack`` k, the k frames of a token
    together). Arguments are those of ``model.sample``; ``cache`` is ``window`` (exact, default),
    ``rolling`` (each token encoded once, constant memory: see the module doc) or ``none`` (the
    uncached sliding window). ``stats`` (a dict) receives ``evaluated_tokens`` (network token
    evaluations) as sampling goes. ``compile=True`` runs the network through
    ``torch.compile(dynamic=True)`` (first calls are slow while it compiles). Runs under
    ``torch.inference_mode`` unless a guidance object is given (guidance may need gradients).
    """
    if cache not in CACHES:
        raise ValueError(f"unknown cache {cache!r}; choose one of {list(CACHES)}")
    unknown = set(overrides) - {f.name for f in fields(SamplingConfig)}
    if unknown:
        raise TypeError(f"unknown sampling option(s) {sorted(unknown)}; see dforce.SamplingConfig")
    config = replace(config or SamplingConfig(), **overrides).check()
    k = model.frame_stack
    device = next(model.parameters()).device
    if cache != "none":
        _check_cacheable(model)
    if context is not None:
        model._check_frames(context, "context")
        if not torch.isfinite(context).all():
            raise ValueError("context contains NaN or inf")
        if context.shape[1] % k:
            raise ValueError(f"context length {context.shape[1]} is not a multiple of frame_stack={k}")
        context = stack_frames(context.to(device), k)
        if context.shape[1] == 0:
            batch_size, context = context.shape[0], None
        else:
            batch_size = context.shape[0]
    if batch_size is None:
        raise ValueError("give either context or batch_size")
    if horizon < 1 or horizon % k:
        raise ValueError(f"horizon must be a positive multiple of frame_stack={k}, got {horizon}")
    if cond is not None:
        if cond.shape[1] % k:
            raise ValueError(f"cond length must be a multiple of frame_stack={k}")
        cond = stack_frames(cond.to(device), k)
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)

    if cache == "rolling":
        if guidance is not None:
            raise ValueError("cache='rolling' runs one token at a time and takes no guidance; use cache='window'")
        gen = _iter_rolling(
            model, horizon=horizon // k, config=config, context=context, batch_size=batch_size, cond=cond,
            generator=generator, device=device, precision=precision, stats=stats, compile=compile,
        )
    else:
        if cache == "window":
            denoise = CachedDenoiser(model, precision, compile)
            hook = guidance if guidance is not None else TrimTrailing(denoise)
        else:
            net = _maybe_compile(model.denoise, compile)

            def denoise(x: Tensor, t: Tensor, c: Any) -> tuple[Tensor, Tensor]:
                with _autocast(device, precision):
                    if stats is not None:
                        stats["evaluated_tokens"] = stats.get("evaluated_tokens", 0) + x.shape[0] * x.shape[1]
                    return net(x, t, c)

            hook = guidance
        gen = iter_rollout(
            denoise, token_shape=model.token_shape, horizon=horizon // k, window=model.window, schedule=model.noise_schedule,
            config=config, context=context, batch_size=batch_size, cond=cond, guidance=hook, causal=model.causal,
            generator=generator, device=device,
        )
        if cache == "window" and stats is not None:
            gen = _with_stats(gen, denoise, stats)
    ctx = torch.inference_mode if guidance is None else contextlib.nullcontext  # guidance may need gradients
    frame_shape = tuple(model.frame_shape)
    for _, token in _guarded(gen, ctx):
        frames = token.reshape(token.shape[0], k, *frame_shape) if k > 1 else token[:, None]
        for j in range(k):
            yield frames[:, j]


def _with_stats(gen: Iterator, denoise: CachedDenoiser, stats: dict) -> Iterator:
    for item in gen:
        stats["evaluated_tokens"] = denoise.evaluated_tokens
        stats["cache_tokens"] = denoise.cache.length
        stats["cache_bytes"] = denoise.cache.nbytes()
        yield item


def cached_rollout(
    model: Any,
    context: Optional[Tensor] = None,
    horizon: int = 1,
    config: Optional[SamplingConfig] = None,
    **kwargs: Any,
) -> Tensor:
    """``model.sample`` with a KV cache: the frames [B, horizon, *frame_shape] after ``context``.

    Same arguments as :func:`stream` (``cache='window'`` gives the uncached numbers; ``'rolling'``
    is cheaper still, with constant memory). Example::

        y = cached_rollout(model, context=x[:, :16], horizon=1024, steps=20, chunk_size=1,
                           history_len=model.window - 1, cache="rolling", seed=0)
    """
    frames = list(stream(model, context, horizon, config, **kwargs))
    return torch.stack(frames, 1)

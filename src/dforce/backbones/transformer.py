"""A transformer denoiser for vector tokens, readable top to bottom.

Backbone contract (every dforce backbone honours it, see :func:`dforce.testing.check_backbone`)::

    forward(x [B, T, *token_shape], t [B, T], cond [B, T, cond_dim] | None) -> [B, T, *token_shape]
    .causal: bool   # True: output at token i depends only on tokens <= i

Each token's noise level ``t`` is embedded (sinusoidal, then an MLP), an optional per-token
external condition is added to it, and the sum modulates every block through adaLN-Zero
(shift, scale and gate per token). Attention uses rotary time positions (relative, so a model
slides along sequences longer than its training window) and
``torch.nn.functional.scaled_dot_product_attention``.

Causal models also offer :meth:`Transformer.forward_cached`: new tokens attend to the keys and
values of earlier tokens kept in a :class:`KVCache`, so a sampler runs only the tokens it is
still denoising (see ``dforce.sampling.cached``). ``forward`` itself never touches a cache.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Any, Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel


def timestep_embedding(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of noise levels ``t`` [...] -> [..., dim] (``t`` scaled to 0..1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * scale)[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return F.pad(emb, (0, dim % 2))


class NoiseLevelEmbedding(nn.Module):
    """Noise level [B, T] (+ optional condition [B, T, C]) -> per-token modulation vector [B, T, D]."""

    def __init__(self, width: int, cond_dim: int = 0, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width) if cond_dim else None

    def forward(self, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        c = self.mlp(timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))
        if self.cond is not None:
            if cond is None:
                cond = c.new_zeros(*c.shape[:-1], self.cond.in_features)  # zeros = the null condition
            c = c + self.cond(cond.to(c.dtype))
        elif cond is not None:
            raise ValueError("this backbone was built with cond_dim=0 but received a condition; set cond_dim")
        return c


def check_sizes(name: str, **sizes: float) -> None:
    """Raise ``ValueError`` for a size argument <= 0 (or a dropout outside [0, 1)), naming it."""
    for key, value in sizes.items():
        if key == "dropout":
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}: dropout must lie in [0, 1), got {value}")
        elif key == "cond_dim":
            if value < 0:
                raise ValueError(f"{name}: cond_dim must be >= 0 (0 = no condition), got {value}")
        elif not value > 0:
            raise ValueError(f"{name}: {key} must be > 0, got {value}")


def rotary_cos_sin(positions: Tensor, dh: int, dtype: torch.dtype, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the rotary angles for ``positions`` [T] or [B, T]: each [T, Dh/2] or [B, 1, T, Dh/2]."""
    freqs = base ** (-torch.arange(0, dh, 2, device=positions.device, dtype=torch.float32) / dh)
    ang = positions.float()[..., None] * freqs  # [T, Dh/2] or [B, T, Dh/2]
    if ang.dim() == 3:
        ang = ang[:, None]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


# ------------------------------------------------------------------------ the lean decode step
# One new token after the cached ones is the hot loop of a cached rollout (``steps`` calls per
# token). At batch 1 it is bound by per-operation overhead, so it has its own short path: no
# nn.Module calls, matrix-vector products at batch 1, one rotary op for q and k together, keys
# and values written in place into fixed-size buffers and attended with a mask (static shapes:
# ``torch.compile`` with ``dynamic=False`` compiles it once per batch size and capacity).


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``F.linear`` for ``x`` [B, in]; a matrix-vector product when B = 1 (twice as fast on a CPU)."""
    if x.shape[0] != 1 or bias is None:
        return F.linear(x, weight, bias)
    if torch.compiler.is_compiling():  # inductor turns addmv into a slow addmm; mv becomes a fused loop
        return (torch.mv(weight, x[0]) + bias)[None]
    return torch.addmv(bias, weight, x[0])[None]


def rotate_pairs(x: Tensor, cos2: Tensor, sin2: Tensor) -> Tensor:
    """:func:`apply_rotary` with tables ``cos2 = [c, c]``, ``sin2 = [-s, s]`` interleaved per pair [..., Dh]."""
    return torch.addcmul(x * cos2, x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2), sin2)


def decode_attention(attn: "Attention", y: Tensor, step: "DecodeStep", layer: int) -> Tensor:
    """One new token ``y`` [B, D] through ``attn`` against the cached keys/values; writes its keys and
    values into slot ``step.pos`` of the cache buffers (kept only if the caller commits). -> [B, D]."""
    b, d = y.shape
    qkv = linear(y, attn.qkv.weight, attn.qkv.bias).view(b, 3, attn.heads, 1, d // attn.heads)
    step.raw[layer].index_copy_(2, step.pos, qkv[:, 1])
    step.val[layer].index_copy_(2, step.pos, qkv[:, 2])
    qk = rotate_pairs(qkv[:, :2], step.cos2, step.sin2)
    step.rot[layer].index_copy_(2, step.pos, qk[:, 1])
    if b == 1 and torch.compiler.is_compiling():
        # inductor fuses explicit attention into its loops (SDPA stays an extern call): 1.3x at B = 1, slower at B = 16
        scores = (qk[:, 0] @ step.rot[layer].transpose(-1, -2)) * attn.head_dim**-0.5 + step.bias
        out = torch.softmax(scores, -1) @ step.val[layer]
    else:
        out = F.scaled_dot_product_attention(qk[:, 0], step.rot[layer], step.val[layer], attn_mask=step.bias)
    return linear(out.reshape(b, d), attn.proj.weight, attn.proj.bias)


class DecodeStep(NamedTuple):
    """The inputs of a lean decode step (see :meth:`KVCache.decode_step`): the new token's slot
    ``pos`` [1], additive attention mask ``bias`` [1, capacity] (0 up to ``pos``, -inf after),
    rotary tables [1, Dh] and the per-layer buffers [B, heads, capacity, Dh]."""

    pos: Tensor
    bias: Tensor
    cos2: Tensor
    sin2: Tensor
    rot: list
    raw: list
    val: list


def lean_decode(backbone: nn.Module, x: Tensor, t: Tensor, cond: Optional[Tensor], cache: "KVCache") -> bool:
    """Whether a one-token ``forward_cached`` call may take the lean decode step: well-formed inputs
    (otherwise the general path raises the error), flat tokens, no autocast."""
    if torch.is_autocast_enabled(x.device.type):
        return False
    ok_cond = cond is None or (backbone.cond_dim > 0 and cond.shape[:2] == x.shape[:2])
    return x.dim() == 3 and x.shape[-1] == backbone.dim and t.shape == x.shape[:2] and ok_cond and cache.apply is apply_rotary


_COMPILED: dict = {}
_GUARDED: "weakref.WeakKeyDictionary[nn.Module, set]" = weakref.WeakKeyDictionary()  # per backbone: signatures seen


def _signature(fn: Callable, backbone: nn.Module, args: tuple) -> tuple:
    """What selects a compiled graph besides the backbone's identity: its mode, the grad mode, and
    the shape, dtype and device of every tensor (of a :class:`DecodeStep`: of its buffers)."""
    def leaf(a: Any) -> Any:
        if isinstance(a, DecodeStep):
            return (len(a.rot),) + leaf(a.rot[0]) + leaf(a.bias)
        return (a.shape, a.dtype, a.device) if isinstance(a, Tensor) else (type(a),)

    modes = (backbone.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
    return (fn, modes) + tuple(leaf(a) for a in args)


def run_decode(fn: Callable, cache: "KVCache", *args: Any) -> Tensor:
    """``fn(*args)`` (``args[0]``: the backbone), through ``torch.compile(fn, dynamic=False)`` if the cache asks for it (compiled
    once per process and function); a failing compiler raises one line that names the way out.

    Checking dynamo's guards on some 200 parameter and buffer inputs costs as much as the step
    itself at batch 1, so only the first call with a new :func:`_signature` checks them all; later
    calls with a signature already seen check only the guards that tell compiled graphs apart.
    """
    if not cache.compile:
        return fn(*args)
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=False, options={"size_asserts": False})  # shapes: see _signature
    # slices of a window have its strides (even in size-1 dims), which would recompile: copy to standard strides
    args = tuple(a.clone(memory_format=torch.contiguous_format) if isinstance(a, Tensor) else a for a in args)
    seen, key = _GUARDED.setdefault(args[0], set()), _signature(fn, args[0], args[1:])
    try:
        if key in seen:
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                return _COMPILED[fn](*args)
        out = _COMPILED[fn](*args)
        seen.add(key)
        return out
    except Exception as e:  # noqa: BLE001 - the compiler's many failure types
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise RuntimeError(f"compile=True: torch.compile of the decode step failed ({type(e).__name__}: {msg}); use compile=False") from e


def decode_one(backbone: nn.Module, x: Tensor, t: Tensor, cond: Optional[Tensor], cache: "KVCache", commit: bool) -> Optional[Tensor]:
    """The output [B, 1, dim] of one new token through ``backbone._decode`` (the lean step, compiled if
    the cache asks for it), or None where the general path must run (see :func:`lean_decode`)."""
    if x.shape[1] != 1 or not lean_decode(backbone, x, t, cond, cache):
        return None
    a = backbone.blocks[0].attn
    step = cache.decode_step(x.shape[0], a.heads, a.head_dim, x.dtype, x.device)
    out = run_decode(type(backbone)._decode, cache, backbone, x, t, cond, step)
    if commit:
        cache.advance(1)
    return out


MATH_ATTENTION_MAX_TOKENS = 128


def math_attention(q: Tensor) -> bool:
    """Whether bf16 training on a CPU should use SDPA's math kernel for queries ``q`` [B, H, n, Dh]: the
    CPU flash kernel's bf16 backward is slow on short windows (training steps 1.26-1.5x faster at
    n <= 128, 0.95x at 256; fp32 gains nothing; ``docs/speed.md``)."""
    return (q.device.type == "cpu" and q.dtype == torch.bfloat16 and torch.is_grad_enabled() and q.requires_grad
            and q.shape[-2] <= MATH_ATTENTION_MAX_TOKENS)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], causal: bool) -> Tensor:
        """``x`` [B, n, D] with rotary tables ``rope`` (:func:`rotary_cos_sin` of the positions, made once per forward)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(qkv[:2], *(r.to(qkv.dtype) for r in rope))
        v = qkv[2]
        with sdpa_kernel(SDPBackend.MATH) if math_attention(q) else contextlib.nullcontext():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


    def forward_cached(self, x: Tensor, cache: "KVCache", layer: int, commit: bool) -> Tensor:
        """``x`` [B, n, D] attends to the tokens in ``cache`` and causally to itself (see :meth:`KVCache.attention`)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(cache.attention(layer, q, k, v, commit).transpose(1, 2).reshape(b, n, d))


class KVCache:
    """Keys and values of already encoded tokens, per layer, in buffers [B, heads, capacity, head_dim].

    Keys are kept both before the rotary embedding and rotated with positions ``0..L-1`` counted
    from the oldest cached token; new tokens are written into spare slots of the buffers, so a
    step does not copy the cache. ``max_len`` bounds the cache: committing past it drops the
    oldest tokens (a rolling window; the rest are re-rotated once), so memory stays flat in
    unbounded rollouts. Tokens enter the cache only through ``forward_cached(..., commit=True)``.
    """

    def __init__(self, depth: int, max_len: Optional[int] = None, apply: Callable = apply_rotary, compile: bool = False) -> None:
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1 (or None for an unbounded cache), got {max_len}")
        self.depth, self.max_len, self.apply = depth, max_len, apply  # apply(x, cos, sin): the rotary pairing
        self.compile = compile  # run the one-token decode step through torch.compile (static shapes)
        self.clear()

    def clear(self) -> None:
        self._len = [0] * self.depth
        self._raw: list[Optional[Tensor]] = [None] * self.depth  # keys before rotary
        self._rot: list[Optional[Tensor]] = [None] * self.depth  # rotated keys
        self._val: list[Optional[Tensor]] = [None] * self.depth
        self._cs_key: Optional[tuple] = None
        self._step_key: Optional[tuple] = None

    @property
    def length(self) -> int:
        """Cached tokens (equal for all layers between forward calls)."""
        return self._len[-1]

    @property
    def batch_size(self) -> Optional[int]:
        return None if self._val[0] is None else self._val[0].shape[0]

    def layer_length(self, layer: int) -> int:
        return self._len[layer]

    def cos_sin(self, start: int, n: int, dh: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """Rotary tables for positions ``start..start+n-1``, memoised (the same for every layer and step)."""
        key = (start, n, dh, dtype, device)
        if self._cs_key != key:
            self._cs_key, self._cs = key, rotary_cos_sin(torch.arange(start, start + n, device=device), dh, dtype)
        return self._cs

    def nbytes(self) -> int:
        """Bytes held by the cache buffers."""
        return sum(t.numel() * t.element_size() for ts in (self._raw, self._rot, self._val) for t in ts if t is not None)

    def _reserve(self, layer: int, like: Tensor, size: int) -> None:
        buf = self._val[layer]
        cap = 0 if buf is None else buf.shape[2]
        same_rows = buf is not None and buf.shape[:2] == like.shape[:2]
        if size <= cap and buf.dtype == like.dtype and same_rows:
            return
        if not same_rows and self._len[layer]:
            raise ValueError(f"the cache holds {buf.shape[0]} rows but the new tokens have {like.shape[0]}; use one cache per batch")
        new_cap = max(size, 2 * cap, 64)  # few distinct capacities: few compiled decode steps
        if self.max_len is not None:
            new_cap = max(size, min(new_cap, self.max_len + (size - self._len[layer])))
        n = self._len[layer]
        for store in (self._raw, self._rot, self._val):
            old = store[layer]
            store[layer] = like.new_zeros(*like.shape[:2], new_cap, like.shape[3])  # finite: masked slots are read
            if n and old is not None:
                store[layer][:, :, :n] = old[:, :, :n]

    def attend(self, layer: int, k_rot: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write the new tokens' rotated keys and values after the cached ones; views of all [B, H, L+n, Dh]."""
        n, past = k_rot.shape[2], self._len[layer]
        self._reserve(layer, v, past + n)
        self._rot[layer][:, :, past : past + n] = k_rot
        self._val[layer][:, :, past : past + n] = v
        return self._rot[layer][:, :, : past + n], self._val[layer][:, :, : past + n]

    def attention(self, layer: int, q: Tensor, k: Tensor, v: Tensor, commit: bool) -> Tensor:
        """New tokens' ``q, k, v`` [B, H, n, Dh] attend to the cached tokens and causally to themselves.

        Positions are relative to the cache start: cached tokens sit at ``0..L-1`` and the new
        ones at ``L..L+n-1``. Keys are kept before the rotary embedding too, so the cache may drop
        its oldest tokens without the positions growing without bound. ``commit`` keeps the new
        tokens. Returns [B, H, n, Dh].
        """
        n, past = q.shape[2], self._len[layer]
        cos, sin = self.cos_sin(past, n, q.shape[-1], q.dtype, q.device)
        q_rot, k_rot = self.apply(torch.stack([q, k]), cos, sin)  # one rotary op for both
        k_all, v_all = self.attend(layer, k_rot, v)
        mask = None if n == 1 else torch.ones(n, past + n, dtype=torch.bool, device=q.device).tril(past)
        out = F.scaled_dot_product_attention(q_rot, k_all, v_all, attn_mask=mask)
        if commit:
            self.commit(layer, k)
        return out

    def decode_step(self, batch: int, heads: int, dh: int, dtype: torch.dtype, device: torch.device) -> DecodeStep:
        """Buffers with a spare slot for one new token after the cached ones, and that slot's mask
        and rotary tables (memoised: the same for every step at the same position)."""
        past = self.length
        if any(n != past for n in self._len):
            raise RuntimeError("the cache's layers hold different lengths; a forward_cached call was interrupted")
        buf = self._val[0]
        if buf is None or buf.shape[2] <= past or buf.dtype != dtype or buf.shape[:2] != (batch, heads):
            if buf is not None and buf.shape[:2] != (batch, heads):
                self.clear()
            like = torch.empty(batch, heads, 1, dh, dtype=dtype, device=device)
            for i in range(self.depth):
                self._reserve(i, like, past + 1)
        cap = self._val[0].shape[2]
        key = (past, cap, dh, dtype, device)
        if self._step_key != key:
            cos, sin = rotary_cos_sin(torch.tensor([past], device=device), dh, dtype)
            bias = torch.zeros(1, cap, dtype=dtype, device=device)
            bias[:, past + 1 :] = float("-inf")
            pos = torch.tensor([past], device=device)
            self._step_key, self._step = key, (pos, bias, torch.stack([cos, cos], -1).flatten(-2), torch.stack([-sin, sin], -1).flatten(-2))
        return DecodeStep(*self._step, self._rot, self._raw, self._val)

    def advance(self, n: int = 1) -> None:
        """Keep the ``n`` tokens a decode step wrote after the cached ones (the lean ``commit``)."""
        self._len = [length + n for length in self._len]
        if self.max_len is not None and self.length > self.max_len:
            self.drop_front(self.length - self.max_len)

    def commit(self, layer: int, k: Tensor) -> None:
        """Keep the tokens last passed to :meth:`attend` (``k``: their keys before rotary)."""
        n, past = k.shape[2], self._len[layer]
        self._raw[layer][:, :, past : past + n] = k
        self._len[layer] = past + n
        if layer == self.depth - 1 and self.max_len is not None and self.length > self.max_len:
            self.drop_front(self.length - self.max_len)

    def drop_front(self, n: int) -> None:
        """Forget the ``n`` oldest tokens (positions of the rest shift down by ``n``)."""
        if n <= 0:
            return
        for i in range(self.depth):
            keep = self._len[i] - n
            if keep <= 0:
                self._len[i] = 0
                continue
            self._raw[i][:, :, :keep] = self._raw[i][:, :, n : n + keep].clone()
            self._val[i][:, :, :keep] = self._val[i][:, :, n : n + keep].clone()
            cos, sin = rotary_cos_sin(torch.arange(keep, device=self._raw[i].device), self._raw[i].shape[-1], self._raw[i].dtype)
            self._rot[i][:, :, :keep] = self.apply(self._raw[i][:, :, :keep], cos, sin)
            self._len[i] = keep

    def truncate(self, n: int) -> None:
        """Keep only the ``n`` oldest tokens."""
        self._len = [max(0, min(n, length)) for length in self._len]


class Block(nn.Module):
    """Pre-norm transformer block with per-token adaLN-Zero modulation."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor, rope: tuple[Tensor, Tensor], causal: bool) -> Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, -1)
        x = x + g1 * self.attn(modulate(self.norm1(x), sh1, sc1), rope, causal)
        return x + g2 * self.mlp(modulate(self.norm2(x), sh2, sc2))

    def forward_cached(self, x: Tensor, c: Tensor, cache: KVCache, layer: int, commit: bool) -> Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, -1)
        x = x + g1 * self.attn.forward_cached(modulate(self.norm1(x), sh1, sc1), cache, layer, commit)
        return x + g2 * self.mlp(modulate(self.norm2(x), sh2, sc2))


class Transformer(nn.Module):
    """Denoiser over vector tokens [B, T, dim].

    Args:
        dim: token size (after frame stacking).
        width, depth, heads, mlp_ratio: transformer size.
        causal: causal (True) or bidirectional attention.
        cond_dim: size of the optional per-token external condition (0 = none).
    """

    registry_name = "transformer"
    compiled_decode = True  # new_cache(compile=True): one-token forward_cached calls run a torch.compile-d step

    def __init__(
        self,
        dim: int,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        causal: bool = True,
        cond_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_sizes("Transformer", dim=dim, width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, cond_dim=cond_dim, dropout=dropout)
        if width % heads:
            raise ValueError(f"Transformer: width {width} must be divisible by heads {heads}")
        self.config = dict(dim=dim, width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, causal=causal, cond_dim=cond_dim, dropout=dropout)
        self.dim, self.causal, self.cond_dim = dim, causal, cond_dim
        self.token_shape = (dim,)
        self.embed = nn.Linear(dim, width)
        self.noise_embed = NoiseLevelEmbedding(width, cond_dim)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, dim)
        for m in (self.final_ada[1], self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None, positions: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected tokens [B, T, {self.dim}], got {tuple(x.shape)}")
        if t.shape != x.shape[:2]:
            raise ValueError(f"noise levels must have shape [B, T] = {tuple(x.shape[:2])}, got {tuple(t.shape)}")
        if positions is None:
            positions = torch.arange(x.shape[1], device=x.device)
        rope = rotary_cos_sin(positions, self.blocks[0].attn.head_dim, torch.float32)
        c = self.noise_embed(t, cond)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, c, rope, self.causal)
        shift, scale = self.final_ada(c).chunk(2, -1)
        return self.out(modulate(self.norm(h), shift, scale))

    def new_cache(self, max_len: Optional[int] = None, compile: bool = False) -> KVCache:
        """An empty :class:`KVCache` for :meth:`forward_cached` (``max_len``: rolling bound;
        ``compile``: one-token calls run a ``torch.compile``-d decode step)."""
        return KVCache(len(self.blocks), max_len, compile=compile)

    def _decode(self, x: Tensor, t: Tensor, cond: Optional[Tensor], step: DecodeStep) -> Tensor:
        """One new token per batch row (``x`` [B, 1, dim]): the lean decode step, pure tensor code.
        The noise-level embedding and its SiLU are computed once for all blocks."""
        c = F.silu(self.noise_embed(t, cond)[:, 0])
        h = linear(x[:, 0], self.embed.weight, self.embed.bias)
        for i, blk in enumerate(self.blocks):
            sh1, sc1, g1, sh2, sc2, g2 = linear(c, blk.ada[1].weight, blk.ada[1].bias).chunk(6, -1)
            h = h + g1 * decode_attention(blk.attn, modulate(F.layer_norm(h, h.shape[-1:], eps=1e-6), sh1, sc1), step, i)
            f1, f2 = blk.mlp[0], blk.mlp[3]
            y = F.gelu(linear(modulate(F.layer_norm(h, h.shape[-1:], eps=1e-6), sh2, sc2), f1.weight, f1.bias), approximate="tanh")
            h = h + g2 * linear(F.dropout(y, blk.mlp[2].p, self.training), f2.weight, f2.bias)
        shift, scale = linear(c, self.final_ada[1].weight, self.final_ada[1].bias).chunk(2, -1)
        return linear(modulate(F.layer_norm(h, h.shape[-1:], eps=1e-6), shift, scale), self.out.weight, self.out.bias)[:, None]

    def forward_cached(
        self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None, *, cache: KVCache, commit: bool = False
    ) -> Tensor:
        """Run new tokens ``x`` [B, n, dim] (levels ``t`` [B, n]) after the tokens in ``cache``.

        Equals the last ``n`` outputs of ``forward`` on the cached tokens followed by ``x`` (with
        positions counted from the oldest cached token). ``commit=True`` appends the new tokens'
        keys and values to the cache (do it once a token's value and level are final).
        """
        if not self.causal:
            raise ValueError("forward_cached needs a causal transformer (causal=True): a bidirectional one re-reads the whole window")
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected tokens [B, n, {self.dim}], got {tuple(x.shape)}")
        if t.shape != x.shape[:2]:
            raise ValueError(f"noise levels must have shape [B, n] = {tuple(x.shape[:2])}, got {tuple(t.shape)}")
        if cache.length and cache.batch_size != x.shape[0]:
            raise ValueError(f"the cache holds a batch of {cache.batch_size} but x has {x.shape[0]}; use one cache per batch")
        if (out := decode_one(self, x, t, cond, cache, commit)) is not None:
            return out
        c = self.noise_embed(t, cond)
        h = self.embed(x)
        for i, block in enumerate(self.blocks):
            h = block.forward_cached(h, c, cache, i, commit)
        shift, scale = self.final_ada(c).chunk(2, -1)
        return self.out(modulate(self.norm(h), shift, scale))

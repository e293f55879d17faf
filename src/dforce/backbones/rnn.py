"""The recurrent denoiser of the original Diffusion Forcing paper (Chen et al., 2024, Sec. 3).

A latent state ``z`` summarises the past; every token, noisy or clean, updates it together with
its own noise level::

    u_t = [embed(x_t), emb(k_t) + cond_t]           # the noisy token and its level
    z_t = GRU(z_{t-1}, u_t)                          # stacked single-layer GRUs
    out_t = head([z_t, u_t])                         # the prediction (eps / x0 / v / flow)

Causal by construction. At sampling time a new token is denoised by re-running the last step
from the fixed ``z_{t-1}``; once it is finished it advances the state, so an unbounded rollout
needs constant memory (``forward_cached`` with an :class:`RNNCache`, used by
``dforce.sampling.cached``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from dforce.backbones.transformer import NoiseLevelEmbedding


class RNNCache:
    """States of the recurrent layers after each cached token, per layer [B, L, width].

    The same interface as :class:`~dforce.backbones.transformer.KVCache`. ``max_len`` bounds how
    many per-token states are kept (for rewinding); the newest state always summarises *every*
    committed token, so dropping old entries forgets nothing and memory stays constant.
    """

    def __init__(self, depth: int, max_len: Optional[int] = None) -> None:
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1 (or None), got {max_len}")
        self.depth, self.max_len = depth, max_len
        self.states: list[Optional[Tensor]] = [None] * depth

    @property
    def length(self) -> int:
        return 0 if self.states[0] is None else self.states[0].shape[1]

    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.states if s is not None)

    def last(self, layer: int) -> Optional[Tensor]:
        """The state after the newest cached token, [1, B, width] (None: the zero initial state)."""
        s = self.states[layer]
        return None if s is None else s[:, -1][None].contiguous()

    def append(self, layer: int, seq: Tensor) -> None:
        s = self.states[layer]
        self.states[layer] = seq if s is None else torch.cat([s, seq], 1)
        if layer == self.depth - 1 and self.max_len is not None and self.length > self.max_len:
            self.drop_front(self.length - self.max_len)

    def drop_front(self, n: int) -> None:
        if n > 0:
            self.states = [None if s is None else s[:, n:].contiguous() for s in self.states]

    def truncate(self, n: int) -> None:
        """Rewind to the state after the ``n``-th oldest cached token."""
        if n <= 0:
            self.clear()
        elif n < self.length:
            self.states = [s[:, :n] for s in self.states]

    def clear(self) -> None:
        self.states = [None] * self.depth


class RNN(nn.Module):
    """GRU denoiser over vector tokens [B, T, dim].

    Args:
        dim: token size (after frame stacking).
        width: state and embedding size.
        depth: stacked GRU layers.
        cond_dim: size of the optional per-token external condition (0 = none).
    """

    registry_name = "rnn"
    causal = True

    def __init__(self, dim: int, width: int = 256, depth: int = 2, cond_dim: int = 0) -> None:
        super().__init__()
        from dforce.backbones.transformer import check_sizes

        check_sizes("RNN", dim=dim, width=width, depth=depth, cond_dim=cond_dim)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.dim, self.cond_dim, self.width = dim, cond_dim, width
        self.token_shape = (dim,)
        self.config = dict(dim=dim, width=width, depth=depth, cond_dim=cond_dim)
        self.embed = nn.Linear(dim, width)
        self.noise_embed = NoiseLevelEmbedding(width, cond_dim)
        self.grus = nn.ModuleList(nn.GRU(2 * width if i == 0 else width, width, batch_first=True) for i in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(3 * width), nn.Linear(3 * width, width), nn.SiLU(), nn.Linear(width, dim))

    def _check(self, x: Tensor, t: Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected tokens [B, T, {self.dim}], got {tuple(x.shape)}")
        if t.shape != x.shape[:2]:
            raise ValueError(f"noise levels must have shape [B, T] = {tuple(x.shape[:2])}, got {tuple(t.shape)}")

    def _run(self, x: Tensor, t: Tensor, cond: Optional[Tensor], cache: Optional[RNNCache], commit: bool) -> Tensor:
        u = torch.cat([self.embed(x), self.noise_embed(t, cond).to(self.embed.weight.dtype)], -1)
        h = u
        for i, gru in enumerate(self.grus):
            h0 = None if cache is None else cache.last(i)
            h, _ = gru(h, None if h0 is None else h0.to(h.dtype))
            if commit:
                cache.append(i, h)
        return self.head(torch.cat([h, u.to(h.dtype)], -1))

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        self._check(x, t)
        return self._run(x, t, cond, None, False)

    def new_cache(self, max_len: Optional[int] = None) -> RNNCache:
        """An empty :class:`RNNCache` (the zero initial state)."""
        return RNNCache(len(self.grus), max_len)

    def forward_cached(
        self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None, *, cache: RNNCache, commit: bool = False
    ) -> Tensor:
        """Run new tokens ``x`` [B, n, dim] from the state after the cached tokens; ``commit`` advances it."""
        self._check(x, t)
        if cache.length and cache.states[0].shape[0] != x.shape[0]:
            raise ValueError(f"the cache holds a batch of {cache.states[0].shape[0]} but x has {x.shape[0]}")
        return self._run(x, t, cond, cache, commit)

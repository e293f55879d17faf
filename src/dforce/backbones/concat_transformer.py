"""The Diffusion Forcing v1.5 planning network's layout, with the cache contract.

The official planning model conditions on the noise level by *concatenation*: each token's input
is ``[x, sinusoidal level embedding (width/2), cond]`` mapped to the width by a two-layer MLP,
followed by a post-LayerNorm ReLU transformer encoder and a linear read-out. It has about 2/3 of
the parameters of :class:`dforce.backbones.transformer.Transformer` at the same width and depth
(no adaLN-Zero modulation in the blocks), which makes it the "equal model" of the speed
benchmark. Positions are rotary (relative) instead of absolute, so it slides past its training
window and honours the same :class:`~dforce.backbones.transformer.KVCache` contract.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

import torch.nn.functional as F

from dforce.backbones.transformer import (
    Attention, DecodeStep, KVCache, check_sizes, decode_attention, decode_one, linear, rotary_cos_sin, timestep_embedding,
)


class PostNormBlock(nn.Module):
    """``h = LN(h + attn(h)); h = LN(h + ffn(h))`` with a ReLU feed-forward (PyTorch's encoder layer)."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = Attention(width, heads)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, width))

    def forward(self, h: Tensor, rope: tuple[Tensor, Tensor], causal: bool) -> Tensor:
        h = self.norm1(h + self.attn(h, rope, causal))
        return self.norm2(h + self.ffn(h))

    def forward_cached(self, h: Tensor, cache: KVCache, layer: int, commit: bool) -> Tensor:
        h = self.norm1(h + self.attn.forward_cached(h, cache, layer, commit))
        return self.norm2(h + self.ffn(h))


class ConcatTransformer(nn.Module):
    """Denoiser over vector tokens [B, T, dim], noise level concatenated at the input.

    Args:
        dim: token size (after frame stacking).
        width, depth, heads, ffn: encoder size (the reference planner: 128, 12, 4, 512).
        causal: causal (True) or bidirectional attention.
        cond_dim: size of the optional per-token external condition (0 = none).
    """

    registry_name = "concat_transformer"
    compiled_decode = True  # new_cache(compile=True): one-token forward_cached calls run a torch.compile-d step

    def __init__(
        self,
        dim: int,
        width: int = 128,
        depth: int = 12,
        heads: int = 4,
        ffn: int = 512,
        causal: bool = True,
        cond_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_sizes("ConcatTransformer", dim=dim, width=width, depth=depth, heads=heads, ffn=ffn, cond_dim=cond_dim, dropout=dropout)
        if width % heads:
            raise ValueError(f"ConcatTransformer: width {width} must be divisible by heads {heads}")
        self.config = dict(dim=dim, width=width, depth=depth, heads=heads, ffn=ffn, causal=causal, cond_dim=cond_dim, dropout=dropout)
        self.dim, self.causal, self.cond_dim = dim, causal, cond_dim
        self.token_shape = (dim,)
        self.level_dim = width // 2
        self.embed = nn.Sequential(nn.Linear(dim + self.level_dim + cond_dim, width), nn.ReLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(PostNormBlock(width, heads, ffn, dropout) for _ in range(depth))
        self.out = nn.Linear(width, dim)

    def _input(self, x: Tensor, t: Tensor, cond: Optional[Tensor]) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected tokens [B, T, {self.dim}], got {tuple(x.shape)}")
        if t.shape != x.shape[:2]:
            raise ValueError(f"noise levels must have shape [B, T] = {tuple(x.shape[:2])}, got {tuple(t.shape)}")
        parts = [x, timestep_embedding(t, self.level_dim).to(x.dtype)]
        if self.cond_dim:
            parts.append(x.new_zeros(*x.shape[:2], self.cond_dim) if cond is None else cond.to(x.dtype))
        elif cond is not None:
            raise ValueError("this backbone was built with cond_dim=0 but received a condition; set cond_dim")
        return self.embed(torch.cat(parts, -1))

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None, positions: Optional[Tensor] = None) -> Tensor:
        h = self._input(x, t, cond)
        if positions is None:
            positions = torch.arange(x.shape[1], device=x.device)
        rope = rotary_cos_sin(positions, self.blocks[0].attn.head_dim, torch.float32)
        for block in self.blocks:
            h = block(h, rope, self.causal)
        return self.out(h)

    def new_cache(self, max_len: Optional[int] = None, compile: bool = False) -> KVCache:
        """An empty :class:`KVCache` for :meth:`forward_cached` (``max_len``: rolling bound;
        ``compile``: one-token calls run a ``torch.compile``-d decode step)."""
        return KVCache(len(self.blocks), max_len, compile=compile)

    def _decode(self, x: Tensor, t: Tensor, cond: Optional[Tensor], step: DecodeStep) -> Tensor:
        """One new token per batch row (``x`` [B, 1, dim]): the lean decode step, pure tensor code."""
        parts = [x[:, 0], timestep_embedding(t[:, 0], self.level_dim).to(x.dtype)]
        if self.cond_dim:
            parts.append(x.new_zeros(x.shape[0], self.cond_dim) if cond is None else cond[:, 0].to(x.dtype))
        e1, e2 = self.embed[0], self.embed[2]
        h = linear(torch.relu(linear(torch.cat(parts, -1), e1.weight, e1.bias)), e2.weight, e2.bias)
        for i, blk in enumerate(self.blocks):
            n1, n2, f1, f2 = blk.norm1, blk.norm2, blk.ffn[0], blk.ffn[3]
            h = F.layer_norm(h + decode_attention(blk.attn, h, step, i), n1.normalized_shape, n1.weight, n1.bias, n1.eps)
            y = F.dropout(torch.relu(linear(h, f1.weight, f1.bias)), blk.ffn[2].p, self.training)
            h = F.layer_norm(h + linear(y, f2.weight, f2.bias), n2.normalized_shape, n2.weight, n2.bias, n2.eps)
        return linear(h, self.out.weight, self.out.bias)[:, None]

    def forward_cached(
        self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None, *, cache: KVCache, commit: bool = False
    ) -> Tensor:
        """New tokens ``x`` [B, n, dim] after the tokens in ``cache`` (see ``Transformer.forward_cached``)."""
        if not self.causal:
            raise ValueError("forward_cached needs a causal backbone (causal=True): a bidirectional one re-reads the whole window")
        if cache.length and cache.batch_size != x.shape[0]:
            raise ValueError(f"the cache holds a batch of {cache.batch_size} but x has {x.shape[0]}; use one cache per batch")
        if (out := decode_one(self, x, t, cond, cache, commit)) is not None:
            return out
        h = self._input(x, t, cond)
        for i, block in enumerate(self.blocks):
            h = block.forward_cached(h, cache, i, commit)
        return self.out(h)

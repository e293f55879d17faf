"""A transformer denoiser for vector tokens, readable top to bottom.

Backbone contract (every dforce backbone honours it, see :func:`dforce.testing.check_backbone`)::

    forward(x [B, T, *token_shape], t [B, T], cond [B, T, cond_dim] | None) -> [B, T, *token_shape]
    .causal: bool   # True: output at token i depends only on tokens <= i

Each token's noise level ``t`` is embedded (sinusoidal, then an MLP), an optional per-token
external condition is added to it, and the sum modulates every block through adaLN-Zero
(shift, scale and gate per token). Attention uses rotary time positions (relative, so a model
slides along sequences longer than its training window) and
``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


def rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate pairs of channels of ``x`` [B, H, T, Dh] by angles ``positions * freq``."""
    dh = x.shape[-1]
    freqs = base ** (-torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh)
    ang = positions.float()[..., None] * freqs  # [T, Dh/2] or [B, T, Dh/2]
    if ang.dim() == 3:
        ang = ang[:, None]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, positions: Tensor, causal: bool) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, positions), rotary(k, positions)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


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

    def forward(self, x: Tensor, c: Tensor, positions: Tensor, causal: bool) -> Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, -1)
        x = x + g1 * self.attn(modulate(self.norm1(x), sh1, sc1), positions, causal)
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
        c = self.noise_embed(t, cond)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, c, positions, self.causal)
        shift, scale = self.final_ada(c).chunk(2, -1)
        return self.out(modulate(self.norm(h), shift, scale))

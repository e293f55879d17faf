"""A video transformer denoiser: patchified frames, factorized space-time attention.

Backbone contract (see :func:`dforce.testing.check_backbone`)::

    forward(x [B, T, C*frame_stack, H, W], t [B, T], cond [B, T, cond_dim] | None) -> like x

Each frame (token) is cut into ``patch_size`` x ``patch_size`` patches. A frame's noise level ``t``
is embedded (plus its optional external condition, e.g. actions) and modulates every patch of that
frame through adaLN-Zero. Each block runs spatial attention (bidirectional, over the patches of
one frame, 2-D rotary positions), temporal attention (over the frames at one patch location,
causal or bidirectional, 1-D rotary positions: relative, so the model slides past its training
window) and an MLP. Frames never mix inside spatial attention, so a causal model stays causal.

    net = VideoTransformer(channels=1, image_size=32, patch_size=4, width=128, depth=4, heads=4)
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dforce.backbones.transformer import Attention, KVCache, NoiseLevelEmbedding, modulate


def rope_tables(angles: Tensor) -> tuple[Tensor, Tensor]:
    """cos / sin tables of rotation angles [..., n, dh/2] (computed once per forward)."""
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary positions, channel ``i`` paired with ``i + dh/2``: x [..., n, dh], cos/sin [..., n, dh/2]."""
    x1, x2 = x.chunk(2, -1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def _freqs(n: int, device, base: float = 10000.0) -> Tensor:
    return base ** (-torch.arange(n, device=device, dtype=torch.float32) / n)


def time_angles(positions: Tensor, dh: int) -> Tensor:
    """Angles [..., T, dh/2] of 1-D rotary positions (positions [T] or [N, T])."""
    ang = positions.float()[..., None] * _freqs(dh // 2, positions.device)
    return ang if ang.dim() == 2 else ang[:, None]  # [N, 1, T, dh/2] broadcasts over heads


def space_angles(gh: int, gw: int, dh: int, device) -> Tensor:
    """Angles [gh*gw, dh/2] of 2-D rotary positions: first half of the pairs by row, second by column."""
    rows = torch.arange(gh, device=device).repeat_interleave(gw).float()
    cols = torch.arange(gw, device=device).repeat(gh).float()
    f = _freqs(dh // 4, device)
    return torch.cat([rows[:, None] * f, cols[:, None] * f], -1)


class _Attention(Attention):
    """Attention with rotary tables given per call (channel ``i`` paired with ``i + dh/2``)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__(width, heads)
        if (width // heads) % 4:
            raise ValueError(f"head size width/heads = {width // heads} must be a multiple of 4 (2-D rotary positions)")

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], causal: bool) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        qk = apply_rope(qkv[:2], *rope)  # q and k rotated together
        out = F.scaled_dot_product_attention(qk[0], qk[1], qkv[2], is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SpaceTimeBlock(nn.Module):
    """Spatial attention, temporal attention and an MLP, each with per-frame adaLN-Zero."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False, eps=1e-6) for _ in range(3))
        self.spatial = _Attention(width, heads)
        self.temporal = _Attention(width, heads)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 9 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, h: Tensor, c: Tensor, space_rope, temporal: Callable[[Tensor], Tensor]) -> Tensor:
        """``h`` [B, T, P, D], ``c`` [B, T, D] (broadcast over the P patches of a frame); ``temporal``
        runs the temporal attention on [B*P, T, D] (plain, or through a KV cache)."""
        b, t, p, d = h.shape
        mods = self.ada(c)[:, :, None].chunk(9, -1)
        sh, sc, g = mods[0:3]
        y = modulate(self.norms[0](h), sh, sc).reshape(b * t, p, d)
        h = h + g * self.spatial(y, space_rope, False).reshape(b, t, p, d)
        sh, sc, g = mods[3:6]
        y = modulate(self.norms[1](h), sh, sc).transpose(1, 2).reshape(b * p, t, d)
        h = h + g * temporal(y).reshape(b, p, t, d).transpose(1, 2)
        sh, sc, g = mods[6:9]
        return h + g * self.mlp(modulate(self.norms[2](h), sh, sc))


class VideoTransformer(nn.Module):
    """Denoiser over frame tokens [B, T, channels * frame_stack, H, W].

    Args:
        channels: channels of one frame (1 for the sprite videos).
        image_size: frame side ``H = W`` in pixels, or an ``(H, W)`` pair.
        patch_size: side of a square patch; must divide H and W.
        width, depth, heads, mlp_ratio, dropout: transformer size (``depth`` space-time blocks).
        causal: causal temporal attention (True) or bidirectional (needed for keyframe infilling).
        cond_dim: size of the optional per-token external condition (e.g. one-hot actions times
            ``frame_stack``); 0 = none. Zeros are the null condition (classifier-free guidance).
        frame_stack: frames packed into one token (the channel axis holds ``frame_stack * channels``).
    """

    registry_name = "video_transformer"

    def __init__(
        self,
        channels: int = 1,
        image_size: int | tuple[int, int] = 32,
        patch_size: int = 4,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        causal: bool = True,
        cond_dim: int = 0,
        frame_stack: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from dforce.backbones.transformer import check_sizes

        hh, ww = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        check_sizes("VideoTransformer", channels=channels, image_height=hh, image_width=ww, patch_size=patch_size, width=width,
                    depth=depth, heads=heads, mlp_ratio=mlp_ratio, cond_dim=cond_dim, frame_stack=frame_stack, dropout=dropout)
        if hh % patch_size or ww % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the frame size {hh}x{ww}")
        self.config = dict(
            channels=channels, image_size=image_size if isinstance(image_size, int) else [hh, ww], patch_size=patch_size,
            width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, causal=causal, cond_dim=cond_dim,
            frame_stack=frame_stack, dropout=dropout,
        )
        self.causal, self.cond_dim, self.patch_size = causal, cond_dim, patch_size
        self.width, self.heads = width, heads
        c = channels * frame_stack
        self.token_shape = (c, hh, ww)
        self.grid = (hh // patch_size, ww // patch_size)
        self._space_rope: dict[torch.device, tuple[Tensor, Tensor]] = {}
        patch_dim = c * patch_size * patch_size
        self.embed = nn.Linear(patch_dim, width)
        self.noise_embed = NoiseLevelEmbedding(width, cond_dim)
        self.blocks = nn.ModuleList(SpaceTimeBlock(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, patch_dim)
        for m in (self.final_ada[1], self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def patchify(self, x: Tensor) -> Tensor:
        """[B, T, C, H, W] -> [B, T, P, C*p*p]."""
        b, t, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, t, (h // p) * (w // p), c * p * p)

    def unpatchify(self, x: Tensor) -> Tensor:
        """[B, T, P, C*p*p] -> [B, T, C, H, W]."""
        b, t = x.shape[:2]
        c, h, w = self.token_shape
        p = self.patch_size
        x = x.reshape(b, t, h // p, w // p, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, t, c, h, w)

    def _check(self, x: Tensor, t: Tensor, cond: Optional[Tensor]) -> None:
        if x.dim() != 5 or tuple(x.shape[2:]) != self.token_shape:
            raise ValueError(f"expected frame tokens [B, T, {', '.join(map(str, self.token_shape))}], got {tuple(x.shape)}")
        if t.shape != x.shape[:2]:
            raise ValueError(f"noise levels must have shape [B, T] = {tuple(x.shape[:2])}, got {tuple(t.shape)}")
        if cond is not None and self.cond_dim and cond.shape[-1] != self.cond_dim:
            raise ValueError(f"cond must have {self.cond_dim} features per token, got shape {tuple(cond.shape)}")

    def _run(self, x: Tensor, t: Tensor, cond: Optional[Tensor], temporal: Callable[[int], Callable[[Tensor], Tensor]]) -> Tensor:
        if x.device not in self._space_rope:  # the patch grid's 2-D rotary tables, made once per device
            with torch.inference_mode(False):  # plain tensors even when first made under inference_mode: training may reuse them
                self._space_rope[x.device] = rope_tables(space_angles(*self.grid, self.width // self.heads, x.device))
        space_rope = self._space_rope[x.device]
        c = self.noise_embed(t, cond)  # [B, T, D]
        h = self.embed(self.patchify(x))
        for i, block in enumerate(self.blocks):
            h = block(h, c, space_rope, temporal(i))
        shift, scale = self.final_ada(c)[:, :, None].chunk(2, -1)
        return self.unpatchify(self.out(modulate(self.norm(h), shift, scale)))

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None, positions: Optional[Tensor] = None) -> Tensor:
        self._check(x, t, cond)
        if positions is None:
            positions = torch.arange(x.shape[1], device=x.device)
        elif positions.dim() == 2:  # per-sequence positions [B, T] -> one row per (sequence, patch)
            positions = positions.repeat_interleave(self.grid[0] * self.grid[1], 0)
        time_rope = rope_tables(time_angles(positions, self.width // self.heads))
        return self._run(x, t, cond, lambda i: lambda y: self.blocks[i].temporal(y, time_rope, self.causal))

    def new_cache(self, max_len: Optional[int] = None) -> KVCache:
        """An empty cache of the temporal attention's keys/values (one row per sequence and patch)."""
        return KVCache(len(self.blocks), max_len, apply=apply_rope)

    def forward_cached(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None, *, cache: KVCache, commit: bool = False) -> Tensor:
        """Run new frames ``x`` [B, n, C, H, W] after the frames in ``cache``: equals the last ``n``
        outputs of ``forward`` on the cached frames followed by ``x``; ``commit`` keeps them."""
        if not self.causal:
            raise ValueError("forward_cached needs causal temporal attention (causal=True)")
        self._check(x, t, cond)
        return self._run(x, t, cond, lambda i: lambda y: self.blocks[i].temporal.forward_cached(y, cache, i, commit))


__all__ = ["SpaceTimeBlock", "VideoTransformer"]

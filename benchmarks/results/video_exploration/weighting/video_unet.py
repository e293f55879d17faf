"""A convolutional video denoiser: a small U-Net per frame with causal temporal convolutions.

Backbone contract (see :func:`dforce.testing.check_backbone`)::

    forward(x [B, T, C*frame_stack, H, W], t [B, T], cond [B, T, cond_dim] | None) -> like x

Convolutions carry the prior that suits moving sprites: a shift is a local operation, and the
velocity of a sprite is a local difference between neighbouring frames. Every residual block is a
3x3 spatial convolution, per-frame FiLM from the frame's noise level (plus its optional external
condition, e.g. actions), a temporal convolution over ``time_kernel`` frames at each pixel (causal:
it sees only the current and earlier frames), and a second 3x3 convolution. Normalisation is per
frame, so a causal model stays causal. Pixels are first folded ``stem`` x ``stem`` into channels
(pixel unshuffle), which makes the model cheap enough for a CPU.

    net = VideoUNet(channels=1, image_size=32, width=32, mults=(1, 2), causal=True)
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dforce.backbones.transformer import NoiseLevelEmbedding, check_sizes


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch, eps=1e-6)


class TemporalConv(nn.Module):
    """Convolution over frames at each pixel: [B, T, C, H, W] -> same, ``kernel`` frames wide;
    causal pads only on the past side."""

    def __init__(self, ch: int, kernel: int, causal: bool) -> None:
        super().__init__()
        self.pad = (kernel - 1, 0) if causal else ((kernel - 1) // 2, kernel // 2)
        self.conv = nn.Conv2d(ch, ch, (kernel, 1))

    def forward(self, h: Tensor) -> Tensor:
        b, t, c, hh, ww = h.shape
        y = h.permute(0, 2, 1, 3, 4).reshape(b, c, t, hh * ww)
        y = self.conv(F.pad(y, (0, 0, *self.pad)))
        return y.reshape(b, c, t, hh, ww).permute(0, 2, 1, 3, 4)


class ResBlock(nn.Module):
    """Spatial conv, per-frame FiLM, temporal conv, spatial conv, on [B, T, C, H, W]."""

    def __init__(self, cin: int, cout: int, emb: int, kernel: int, causal: bool) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.norm_t, self.temporal = _norm(cout), TemporalConv(cout, kernel, causal)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``x`` [B, T, C, H, W], ``c`` [B, T, emb]."""
        b, t = x.shape[:2]
        flat = lambda v: v.reshape(b * t, *v.shape[2:])  # noqa: E731
        h = self.conv1(F.silu(self.norm1(flat(x))))
        scale, shift = self.film(c).reshape(b * t, -1, 1, 1).chunk(2, 1)
        h = (h * (1 + scale) + shift).reshape(b, t, *h.shape[1:])
        h = h + self.temporal(F.silu(self.norm_t(flat(h))).reshape(h.shape))
        h = self.conv2(F.silu(self.norm2(flat(h))))
        return (self.skip(flat(x)) + h).reshape(b, t, *h.shape[1:])


class VideoUNet(nn.Module):
    """Denoiser over frame tokens [B, T, channels * frame_stack, H, W].

    Args:
        channels: channels of one frame (1 for the sprite videos).
        image_size: frame side ``H = W`` in pixels, or an ``(H, W)`` pair.
        width: channels at the first level; ``mults``: channel multiplier per level (each further
            level halves the resolution); ``blocks``: residual blocks per level on the way down
            (one more on the way up, which takes the skip connection).
        time_kernel: frames each temporal convolution sees.
        stem: pixels folded into channels before the first level (1 = none); must divide H and W.
        causal: causal temporal convolutions (True) or centred ones (bidirectional).
        cond_dim: size of the optional per-token external condition; 0 = none. Zeros are the null
            condition (classifier-free guidance).
        frame_stack: frames packed into one token (the channel axis holds ``frame_stack * channels``).
    """

    registry_name = "video_unet"

    def __init__(
        self, channels: int = 1, image_size: int | tuple[int, int] = 32, width: int = 32, mults: Sequence[int] = (1, 2),
        blocks: int = 1, time_kernel: int = 3, stem: int = 2, causal: bool = True, cond_dim: int = 0, frame_stack: int = 1,
    ) -> None:
        super().__init__()
        hh, ww = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        mults = list(mults)
        check_sizes("VideoUNet", channels=channels, image_height=hh, image_width=ww, width=width, levels=len(mults), blocks=blocks,
                    time_kernel=time_kernel, stem=stem, cond_dim=cond_dim, frame_stack=frame_stack)
        if any(m < 1 for m in mults):
            raise ValueError(f"VideoUNet: mults must be positive integers, got {mults}")
        scale = stem * 2 ** (len(mults) - 1)
        if hh % scale or ww % scale:
            raise ValueError(f"VideoUNet: the frame size {hh}x{ww} must be divisible by stem x 2^(levels - 1) = {scale}")
        self.config = dict(channels=channels, image_size=image_size if isinstance(image_size, int) else [hh, ww], width=width,
                           mults=mults, blocks=blocks, time_kernel=time_kernel, stem=stem, causal=causal, cond_dim=cond_dim,
                           frame_stack=frame_stack)
        self.causal, self.cond_dim, self.stem = causal, cond_dim, stem
        c = channels * frame_stack
        self.token_shape = (c, hh, ww)
        emb = 4 * width
        self.noise_embed = NoiseLevelEmbedding(emb, cond_dim)
        self.conv_in = nn.Conv2d(c * stem * stem, width, 3, padding=1)
        chans = [width * m for m in mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, cur = [], width
        for i, ch in enumerate(chans):
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(cur, ch, emb, time_kernel, causal))
                cur = ch
            self.down.append(level)
            skips.append(cur)
            if i < len(chans) - 1:
                self.downsample.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
        self.mid = ResBlock(cur, cur, emb, time_kernel, causal)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            self.up.append(nn.ModuleList([ResBlock(cur + skips[i], ch, emb, time_kernel, causal)]
                                         + [ResBlock(ch, ch, emb, time_kernel, causal) for _ in range(blocks - 1)]))
            cur = ch
            if i > 0:
                self.upsample.append(nn.Conv2d(cur, cur, 3, padding=1))
        self.norm_out = _norm(cur)
        self.conv_out = nn.Conv2d(cur, c * stem * stem, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 5 or tuple(x.shape[2:]) != self.token_shape:
            raise ValueError(f"expected frame tokens [B, T, {', '.join(map(str, self.token_shape))}], got {tuple(x.shape)}")
        if t.shape != x.shape[:2]:
            raise ValueError(f"noise levels must have shape [B, T] = {tuple(x.shape[:2])}, got {tuple(t.shape)}")
        if cond is not None and self.cond_dim and cond.shape[-1] != self.cond_dim:
            raise ValueError(f"cond must have {self.cond_dim} features per token, got shape {tuple(cond.shape)}")
        b, n = x.shape[:2]
        per_frame = lambda f, v: f(v.flatten(0, 1)).unflatten(0, (b, n))  # noqa: E731  (a 2-D op on every frame)
        c = self.noise_embed(t, cond)
        h = per_frame(lambda v: self.conv_in(F.pixel_unshuffle(v, self.stem)), x.to(self.conv_in.weight.dtype))
        skips = []
        for i, level in enumerate(self.down):
            for block in level:
                h = block(h, c)
            skips.append(h)
            if i < len(self.downsample):
                h = per_frame(self.downsample[i], h)
        h = self.mid(h, c)
        for j, level in enumerate(self.up):
            skip = skips[len(skips) - 1 - j]
            if h.shape[-2:] != skip.shape[-2:]:
                h = per_frame(lambda v: self.upsample[j - 1](F.interpolate(v, scale_factor=2.0, mode="nearest")), h)
            h = level[0](torch.cat([h, skip], 2), c)
            for block in level[1:]:
                h = block(h, c)
        return per_frame(lambda v: F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(v))), self.stem), h)


__all__ = ["VideoUNet"]

"""Denoiser backbones honouring ``forward(x [B,T,...], t [B,T], cond=None) -> [B,T,...]`` and ``.causal``."""

from dforce.backbones.transformer import Transformer

__all__ = ["Transformer"]

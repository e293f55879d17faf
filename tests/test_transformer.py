"""Attention kernel choice of the transformer backbones."""

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from dforce import Transformer
from dforce.backbones import transformer
from dforce.testing import perturb_parameters
from dforce.backbones.transformer import MATH_ATTENTION_MAX_TOKENS, math_attention


def test_math_attention_only_for_short_bf16_cpu_training():
    q = torch.randn(2, 4, MATH_ATTENTION_MAX_TOKENS, 8, dtype=torch.bfloat16, requires_grad=True)
    assert math_attention(q)
    assert not math_attention(q.detach())  # inference
    assert not math_attention(q.float().detach().requires_grad_())  # fp32
    assert not math_attention(torch.randn(2, 4, MATH_ATTENTION_MAX_TOKENS + 1, 8, dtype=torch.bfloat16, requires_grad=True))
    with torch.no_grad():
        assert not math_attention(q)


def test_bf16_training_gradients_match_the_flash_kernel(monkeypatch):
    torch.manual_seed(0)
    bb = perturb_parameters(Transformer(dim=3, width=32, depth=2, heads=4))  # adaLN-Zero starts with no gradient to attention
    x, t = torch.randn(2, 16, 3), torch.rand(2, 16)

    def grads():
        bb.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = bb(x, t)
        out.float().pow(2).mean().backward()
        return torch.cat([p.grad.flatten() for p in bb.parameters() if p.grad is not None])

    math = grads()
    monkeypatch.setattr(transformer, "MATH_ATTENTION_MAX_TOKENS", 0)  # the default kernel choice again
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        flash = grads()
    assert not torch.equal(math, flash)  # two kernels ran
    assert torch.allclose(math, flash, rtol=0.05, atol=1e-3)

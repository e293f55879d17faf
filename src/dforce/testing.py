"""``check_backbone``: verify that a module honours the dforce backbone contract.

    forward(x [B, T, *token_shape], t [B, T], cond [B, T, cond_dim] | None) -> [B, T, *token_shape]
    .causal: bool, .token_shape: tuple

Checks, each failing with an ``AssertionError`` that names what is wrong:

1. shapes: the output has the input's shape and is finite;
2. per-token noise conditioning: changing one token's level changes that token's output;
3. causality (when ``causal``): changing token j (its value and level) leaves the outputs of
   tokens before j unchanged; for a bidirectional backbone, it does change some earlier output;
4. conditions (when ``cond_dim`` > 0): a per-token condition changes the output.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def _perturb_last_layers(module: nn.Module, seed: int) -> None:
    # zero-initialised output layers (adaLN-Zero) make an untrained backbone constant; give every
    # parameter a little noise so that the checks see real dependencies.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(p))


def check_backbone(
    module: nn.Module,
    tokens: int = 8,
    batch: int = 2,
    cond_dim: Optional[int] = None,
    atol: float = 1e-5,
    seed: int = 0,
    perturb: bool = True,
) -> dict:
    """Run the contract checks on a copy of ``module``; returns a dict of what was verified."""
    import copy

    for attr in ("causal", "token_shape"):
        assert hasattr(module, attr), f"backbone has no `{attr}` attribute; the contract needs it"
    net = copy.deepcopy(module).float().eval()
    if perturb:
        _perturb_last_layers(net, seed)
    token_shape = tuple(net.token_shape)
    cond_dim = getattr(net, "cond_dim", 0) if cond_dim is None else cond_dim
    g = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    x = torch.randn(batch, tokens, *token_shape, generator=g).to(device)
    t = torch.rand(batch, tokens, generator=g).to(device)
    cond = torch.randn(batch, tokens, cond_dim, generator=g).to(device) if cond_dim else None
    report = {"causal": bool(net.causal), "token_shape": token_shape}
    with torch.no_grad():
        out = net(x, t, cond)
        assert out.shape == x.shape, f"output shape {tuple(out.shape)} differs from input shape {tuple(x.shape)}"
        assert torch.isfinite(out).all(), "output contains NaN or inf"
        report["shapes"] = True

        j = tokens // 2
        t2 = t.clone()
        t2[:, j] = (t2[:, j] + 0.5) % 1.0
        out2 = net(x, t2, cond)
        assert not torch.allclose(out2[:, j], out[:, j], atol=atol), (
            f"changing token {j}'s noise level did not change its output: the backbone ignores per-token levels"
        )
        report["per_token_noise"] = True

        x3, t3 = x.clone(), t.clone()
        x3[:, j:] = torch.randn(x3[:, j:].shape, generator=g).to(device)
        t3[:, j:] = torch.rand(t3[:, j:].shape, generator=g).to(device)
        out3 = net(x3, t3, cond)
        leak = (out3[:, :j] - out[:, :j]).abs().max().item()
        if net.causal:
            assert leak <= atol, f"causal backbone leaks the future: outputs before token {j} changed by {leak:.3g}"
        else:
            assert leak > atol, "bidirectional backbone ignores later tokens; set causal=True if that is intended"
        report["future_leak"] = leak

        if cond is not None:
            out4 = net(x, t, cond + 1.0)
            assert not torch.allclose(out4, out, atol=atol), "changing the condition did not change the output"
            report["cond"] = True
    return report

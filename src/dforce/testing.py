"""``check_backbone``: verify that a module honours the dforce backbone contract.

    forward(x [B, T, *token_shape], t [B, T], cond [B, T, cond_dim] | None) -> [B, T, *token_shape]
    .causal: bool, .token_shape: tuple

Checks, each failing with an ``AssertionError`` that names what is wrong:

1. shapes: the output has the input's shape and is finite;
2. per-token noise conditioning: changing one token's level changes that token's output;
3. causality (when ``causal``): changing token j (its value and level) leaves the outputs of
   tokens before j unchanged; for a bidirectional backbone, it does change some earlier output;
4. conditions (when ``cond_dim`` > 0): a per-token condition changes the output;
5. the cache contract (when a causal backbone has ``forward_cached`` / ``new_cache``): running the
   tokens in pieces through a cache equals ``forward`` on all of them, and ``truncate`` rewinds.

:class:`SpyBackbone` wraps a backbone and records what every call feeds it, so a test can pin a
sampling option by the levels and inputs the network actually receives. :func:`gaussian_denoiser`
is the exact denoiser of Gaussian data, for closed-form checks of samplers and guidance.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def perturb_parameters(module: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Add ``scale`` x N(0, 1) noise to every parameter (in place; returns ``module``).

    Zero-initialised output layers (adaLN-Zero) make an untrained backbone constant; the noise
    gives it real dependencies on every input, for checks and tests.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g).to(p))
    return module


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
        perturb_parameters(net, seed)
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

        if net.causal and hasattr(net, "forward_cached") and hasattr(net, "new_cache"):
            cache, cuts = net.new_cache(), [0, j, tokens - 1, tokens]
            parts = [
                net.forward_cached(x[:, a:b], t[:, a:b], None if cond is None else cond[:, a:b], cache=cache, commit=True)
                for a, b in zip(cuts, cuts[1:])
            ]
            err = (torch.cat(parts, 1) - out).abs().max().item()
            assert err <= 10 * atol, f"forward_cached in pieces differs from forward by {err:.3g}"
            assert cache.length == tokens, f"the cache holds {cache.length} tokens after committing {tokens}"
            cache.truncate(j)
            again = net.forward_cached(x[:, j:], t[:, j:], None if cond is None else cond[:, j:], cache=cache)
            err = (again - out[:, j:]).abs().max().item()
            assert err <= 10 * atol, f"after truncate({j}) forward_cached differs from forward by {err:.3g}"
            report["cache"] = True
    return report


class SpyBackbone(nn.Module):
    """A backbone wrapper that records every call: ``calls`` is a list of dicts with ``kind``
    (``forward`` / ``forward_cached``), ``x``, ``t``, ``cond`` (clones) and ``commit``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.inner = backbone
        self.calls: list[dict] = []
        self.token_shape, self.causal = backbone.token_shape, backbone.causal
        self.cond_dim = getattr(backbone, "cond_dim", 0)
        if hasattr(backbone, "forward_cached"):
            self.new_cache = backbone.new_cache
            self.forward_cached = self._forward_cached

    def _record(self, kind: str, x, t, cond, commit: bool = False) -> None:
        clone = lambda v: None if v is None else v.detach().clone()  # noqa: E731
        self.calls.append(dict(kind=kind, x=clone(x), t=clone(t), cond=clone(cond), commit=commit))

    def forward(self, x, t, cond=None):
        self._record("forward", x, t, cond)
        return self.inner(x, t, cond)

    def _forward_cached(self, x, t, cond=None, *, cache, commit=False):
        self._record("forward_cached", x, t, cond, commit)
        return self.inner.forward_cached(x, t, cond, cache=cache, commit=commit)

    def tokens_evaluated(self) -> int:
        """Batch rows x tokens run through the network so far."""
        return sum(c["x"].shape[0] * c["x"].shape[1] for c in self.calls)


def gaussian_denoiser(schedule, mu: float = 0.0, std: float = 1.0):
    """The exact posterior-mean denoiser of data ``x0 ~ N(mu, std^2)`` (elementwise):
    ``x0_hat = mu + k (x - alpha mu)``, ``k = alpha std^2 / (alpha^2 std^2 + sigma^2)``."""
    from dforce.diffusion.schedules import expand_like

    def denoise(x, t, cond=None):
        a, s = (expand_like(v, x) for v in schedule.alpha_sigma(t))
        k = a * std**2 / (a**2 * std**2 + s**2)
        x0 = mu + k * (x - a * mu)
        return x0, (x - a * x0) / s.clamp_min(1e-12)

    return denoise

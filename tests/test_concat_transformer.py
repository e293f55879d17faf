"""The reference-layout backbone: contract, parameter count, export and cached sampling."""

import pytest
import torch

from dforce import DiffusionForcing
from dforce.backbones import build_backbone
from dforce.backbones.concat_transformer import ConcatTransformer
from dforce.testing import check_backbone


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("cond_dim", [0, 2])
def test_concat_transformer_honours_the_contract(causal, cond_dim):
    report = check_backbone(ConcatTransformer(3, width=32, depth=2, heads=2, ffn=64, causal=causal, cond_dim=cond_dim))
    assert report["per_token_noise"] and report.get("cache", False) == causal


def test_parameter_count_is_the_reference_planners():
    # input MLP (20 + 64 -> 128 -> 128), 12 post-LN layers (QKV, out, FFN 512, two LayerNorms), read-out 128 -> 20
    d, w, f, depth = 20, 128, 512, 12
    expected = (d + w // 2) * w + w + w * w + w + depth * (3 * w * w + 3 * w + w * w + w + w * f + f + f * w + w + 4 * w) + w * d + d
    assert expected == 2_409_236
    assert sum(p.numel() for p in ConcatTransformer(d, width=w, depth=depth, heads=4, ffn=f).parameters()) == expected


def test_registered_and_rebuilt_from_its_config():
    net = ConcatTransformer(3, width=32, depth=2, heads=2, ffn=64)
    again = build_backbone(net.registry_name, **net.config)
    assert type(again) is ConcatTransformer and again.config == net.config


def test_window_cache_sampling_equals_uncached():
    torch.manual_seed(0)
    model = DiffusionForcing(ConcatTransformer(3, width=32, depth=2, heads=2, ffn=64), window=6).eval()
    ctx = torch.randn(2, 2, 3)
    kw = dict(horizon=7, steps=3, chunk_size=2, seed=1)
    torch.testing.assert_close(model.sample(ctx, cache="window", **kw), model.sample(ctx, **kw), atol=1e-5, rtol=1e-5)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="width 30 must be divisible by heads 4"):
        ConcatTransformer(3, width=30, heads=4)
    with pytest.raises(ValueError, match="cond_dim=0 but received a condition"):
        ConcatTransformer(3, width=32, depth=1, heads=2)(torch.randn(1, 2, 3), torch.rand(1, 2), torch.randn(1, 2, 1))

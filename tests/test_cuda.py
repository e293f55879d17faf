"""The CUDA path: every sampling path, guidance, training, export and both backbones on a GPU.

Skipped on machines without CUDA (CI); run on a GPU machine with
``PYTHONPATH=src python -m pytest tests/test_cuda.py``.
"""

import pytest
import torch

from dforce import DiffusionForcing, Transformer
from dforce.backbones.concat_transformer import ConcatTransformer
from dforce.guidance import HistoryGuidance, RewardGuidance
from dforce.testing import check_backbone, perturb_parameters

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gpu_model(backbone="transformer"):
    torch.manual_seed(0)
    bb = Transformer(dim=3, width=32, depth=2, heads=2) if backbone == "transformer" else ConcatTransformer(3, width=32, depth=2, heads=2, ffn=64)
    return DiffusionForcing(perturb_parameters(bb), window=8).cuda().eval()


@pytest.mark.parametrize("backbone", ["transformer", "concat_transformer"])
def test_backbones_honour_the_contract_on_cuda(backbone):
    report = check_backbone(gpu_model(backbone).backbone, atol=1e-4)
    assert report["cache"] and report["future_leak"] <= 1e-4


@pytest.mark.parametrize("scheduling", ["autoregressive", "pyramid", "full_sequence"])
def test_window_cache_equals_uncached_on_cuda(scheduling):
    model = gpu_model()
    ctx = torch.randn(2, 3, 3, device="cuda")
    kw = dict(horizon=10, steps=4, scheduling=scheduling, chunk_size=2, seed=0)
    ref = model.sample(ctx, **kw)
    assert ref.device.type == "cuda" and torch.isfinite(ref).all()
    torch.testing.assert_close(model.sample(ctx, cache="window", **kw), ref, atol=1e-4, rtol=1e-4)


def test_cuda_prediction_matches_cpu():
    model = gpu_model()
    x, t = torch.randn(2, 8, 3), torch.rand(2, 8)
    on_gpu = model.denoise(x.cuda(), t.cuda())[0].cpu()
    torch.testing.assert_close(on_gpu, model.cpu().denoise(x, t)[0], atol=1e-4, rtol=1e-4)


def test_rolling_cache_history_guidance_and_bf16_on_cuda():
    model = gpu_model()
    ctx = torch.randn(2, 3, 3, device="cuda")
    rolled = model.sample(ctx, horizon=12, steps=3, chunk_size=1, cache="rolling", seed=0)
    guided = model.sample(ctx, horizon=4, steps=2, chunk_size=2, history_len=2, guidance=HistoryGuidance.vanilla(2.0), cache="window", seed=0)
    half = model.sample(ctx, horizon=4, steps=2, precision="bf16", seed=0)
    for out in (rolled, guided, half):
        assert out.device.type == "cuda" and torch.isfinite(out).all()


def test_reward_guidance_moves_samples_on_cuda():
    model = gpu_model()
    reward = lambda x0, info: x0[..., 0].mean(1)  # noqa: E731
    plain = model.sample(batch_size=64, horizon=4, steps=4, seed=0)
    pushed = model.sample(batch_size=64, horizon=4, steps=4, seed=0, guidance=RewardGuidance(reward, scale=5.0))
    assert pushed[..., 0].mean() > plain[..., 0].mean() + 0.1


def test_training_export_and_load_on_cuda(tmp_path):
    from dforce.training import RandomWindows, TrainConfig, export_model, load_model, train

    series = torch.sin(torch.arange(600.0)[:, None] * torch.tensor([0.1, 0.2, 0.3])).numpy()
    model = DiffusionForcing(Transformer(dim=3, width=32, depth=1, heads=2), window=8)
    cfg = TrainConfig(max_steps=6, batch_size=8, warmup_steps=2, accelerator="gpu", precision="bf16-mixed", progress=False,
                      out_dir=str(tmp_path / "run"), checkpoint_every=3)
    trained = train(model, RandomWindows(series, 8), cfg)
    export_model(trained, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m", map_location="cuda")
    assert next(loaded.parameters()).device.type == "cuda"
    out = loaded.sample(torch.randn(1, 2, 3, device="cuda"), horizon=3, steps=2, cache="window", seed=0)
    assert out.device.type == "cuda" and torch.isfinite(out).all()

import pytest
import torch

from dforce import DiffusionForcing
from dforce.backbones import build_backbone
from dforce.backbones.video_transformer import VideoTransformer
from dforce.diffusion.schedules import get_schedule
from dforce.guidance import StepInfo
from dforce.guidance.reconstruction import ReconstructionGuidance
from dforce.testing import check_backbone
from dforce.video.sampling import interpolate, replacement_rollout


def _net(**kw):
    base = dict(image_size=8, patch_size=4, width=16, depth=1, heads=2)
    base.update(kw)
    return VideoTransformer(**base)


def _perturbed(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("causal", [True, False])
def test_video_transformer_honours_the_contract(causal):
    rep = check_backbone(_net(causal=causal, cond_dim=5, width=32, depth=2, heads=2))
    assert rep["token_shape"] == (1, 8, 8)  # check_backbone raises on any broken rule
    assert rep.get("cache", False) == causal  # the KV-cache contract, checked by check_backbone
    assert (rep["future_leak"] == 0) if causal else rep["future_leak"] > 0


def test_video_transformer_trains_after_sampling_under_inference_mode():
    net = _perturbed(_net())
    x, t = torch.randn(2, 3, 1, 8, 8), torch.rand(2, 3)
    with torch.inference_mode():
        ref = net(x, t)  # the first call makes the memoised rotary tables
    out = net(x, t)
    out.square().sum().backward()  # fails if the tables are inference tensors
    assert torch.equal(out.detach(), ref) and net.embed.weight.grad is not None


def test_registry_config_frame_stack_and_relative_positions():
    net = build_backbone("video_transformer", image_size=[8, 12], patch_size=4, width=16, depth=1, heads=2, frame_stack=2, causal=False)
    assert net.token_shape == (2, 8, 12) and net.registry_name == "video_transformer"
    assert VideoTransformer(**net.config).config == net.config
    m = DiffusionForcing(net, window=3, frame_stack=2)
    assert m.frame_shape == (1, 8, 12) and torch.isfinite(m.loss(torch.randn(2, 6, 1, 8, 12)))
    _perturbed(net)
    x, t = torch.randn(2, 3, 2, 8, 12), torch.rand(2, 3)
    with torch.no_grad():
        a = net(x, t)
        b = net(x, t, positions=torch.arange(3) + 7)  # rotary positions are relative
        c = net(x, t, positions=(torch.arange(3) + 7)[None].repeat(2, 1))
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)
    with pytest.raises(ValueError, match="must divide"):
        VideoTransformer(image_size=10, patch_size=4)
    with pytest.raises(ValueError, match="expected frame tokens"):
        net(torch.randn(2, 3, 1, 8, 12), t)


def test_export_roundtrip(tmp_path):
    from dforce.training import export_model, load_model

    m = DiffusionForcing(_perturbed(_net(causal=False)), window=4)
    export_model(m, tmp_path / "m")
    m2, _ = load_model(tmp_path / "m")
    x, t = torch.randn(1, 4, 1, 8, 8), torch.rand(1, 4)
    with torch.no_grad():
        assert torch.allclose(m.backbone(x, t), m2.backbone(x, t))


def test_keyframe_interpolation_keeps_keyframes_and_needs_a_bidirectional_model():
    m = DiffusionForcing(_perturbed(_net(causal=False)), window=6).eval()
    frames = torch.randn(2, 5, 1, 8, 8)
    frames[:, 1:4] = float("nan")
    known = torch.tensor([True, False, False, False, True])
    out = interpolate(m, frames, known, steps=4, seed=0)
    assert out.shape == frames.shape and torch.isfinite(out).all()
    assert torch.equal(out[:, 0], frames[:, 0]) and torch.equal(out[:, 4], frames[:, 4])
    assert torch.equal(out, interpolate(m, frames, known, steps=4, seed=0))
    with pytest.raises(ValueError, match="exceed the model's window"):
        interpolate(m, torch.randn(1, 7, 1, 8, 8), torch.ones(7, dtype=torch.bool), steps=2)
    causal = DiffusionForcing(_net(causal=True), window=6)
    with pytest.raises(ValueError, match="bidirectional"):
        interpolate(causal, frames, known, steps=2)


def test_replacement_rollout_extends_past_the_window():
    m = DiffusionForcing(_perturbed(_net(causal=False)), window=4, training_noise="full_sequence").eval()
    ctx = torch.randn(2, 2, 1, 8, 8)
    out = replacement_rollout(m, ctx, 7, chunk_size=2, history_len=2, steps=3, seed=0)
    assert out.shape == (2, 7, 1, 8, 8) and torch.isfinite(out).all()
    guided = replacement_rollout(m, ctx, 7, chunk_size=2, history_len=2, steps=3, seed=0, reconstruction_scale=5.0)
    assert guided.shape == out.shape and not torch.allclose(guided, out)


def test_reconstruction_guidance_closed_form():
    # x0_hat = window mean of x broadcast to every token, eps_hat = 0
    def denoise(x, t, c):
        return x.mean(1, keepdim=True).expand_as(x), torch.zeros_like(x)

    b, w = 1, 3
    x, t = torch.randn(b, w, 2), torch.full((b, w), 0.5)
    known = torch.tensor([[True, False, False]])
    values = torch.randn(b, w, 2)
    sch = get_schedule("cosine")
    info = StepInfo(0, sch, t, ~known, known, values, None, None)
    x0, eps = ReconstructionGuidance(2.0)(denoise, x, t, None, info)
    m = x.mean(1, keepdim=True)
    grad = -2 * (values[:, :1] - m) / w  # d/dx_j of ||v_0 - mean(x)||^2, same for every j
    alpha, sigma = sch.alpha_sigma(torch.tensor(0.5))
    expect = m - 2.0 * alpha / 2 * grad
    assert torch.allclose(x0[:, 1:], expect.expand(b, 2, 2), atol=1e-5)
    assert torch.allclose(x0[:, :1], m, atol=1e-6)  # known tokens are not corrected
    assert torch.allclose(x[:, 1:], alpha * x0[:, 1:] + sigma * eps[:, 1:], atol=1e-5)  # consistent pair


def test_video_window_cache_equals_uncached_rollout():
    from dforce.testing import SpyBackbone, perturb_parameters

    torch.manual_seed(0)
    net = SpyBackbone(perturb_parameters(VideoTransformer(channels=1, image_size=8, patch_size=4, width=16, depth=2, heads=2)))
    model = DiffusionForcing(net, window=4)
    ctx = torch.randn(2, 2, 1, 8, 8)
    kw = dict(steps=3, chunk_size=1, history_len=3, eta=1.0, seed=0)
    ref = model.sample(ctx, 6, **kw)
    uncached = net.tokens_evaluated()
    net.calls.clear()
    out = model.sample(ctx, 6, cache="window", **kw)
    assert (out - ref).abs().max() < 1e-4 and net.tokens_evaluated() < uncached / 2

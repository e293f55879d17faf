import torch

from dforce.diffusion.weighting import loss_weight
from dforce.video.experiment import METHODS, build_video_model


def _weights(model, levels):
    t = torch.tensor([levels])
    return loss_weight(model.weighting, model.noise_schedule.logsnr(t), model.parametrization, model.noise_schedule)[0]


def test_video_models_weigh_a_noisy_frame_after_clean_history_like_a_clean_frame():
    # the frame whose x0 must come from the history (motion) keeps most of a clean frame's weight under
    # fused SNR; min-SNR gives it min(SNR, 5) ~ 0, so the motion is barely trained (docs/video.md)
    for method in METHODS:
        model = build_video_model(method, frame_size=16, window=4)
        assert model.weighting == "fused_snr" and model.parametrization == "x0"
        w = _weights(model, [0.0, 0.0, 0.0, 1.0])
        assert w[3] > 0.85 * w[0], (method, w)
    w = _weights(build_video_model("df", frame_size=16, window=4, weighting="min_snr"), [0.0, 0.0, 0.0, 1.0])
    assert w[3] < 1e-3 * w[0]

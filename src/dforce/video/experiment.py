"""Building, training, rolling out and scoring video models (shared by the CLI and the benchmark).

Three training methods on the same backbone (:class:`~dforce.backbones.VideoTransformer`):

- ``df``: Diffusion Forcing (independent per-frame noise), causal; rolled out in chunks with
  stabilized generated history, optionally with history guidance;
- ``tf``: teacher forcing (clean history, one noisy target), causal; rolled out one frame at a
  time on its own clean outputs;
- ``fs``: full-sequence diffusion (one noise level per clip), bidirectional; conditioned on
  history by replacement (:func:`dforce.video.sampling.replacement_rollout`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from torch import Tensor

from dforce.backbones.video_transformer import VideoTransformer
from dforce.guidance.history import HistoryGuidance
from dforce.model import DiffusionForcing
from dforce.sampling import SamplingConfig
from dforce.video import metrics as M
from dforce.video.data import SpriteConfig, SpriteStream
from dforce.video.sampling import replacement_rollout

METHODS = {"df": "independent", "tf": "teacher_forcing", "fs": "full_sequence"}
PRESETS = {
    # CPU: ~0.2 s per step of 32 clips x 8 frames at 32x32 on one core
    "tiny": dict(patch_size=8, width=64, depth=3, heads=4),
    "small": dict(patch_size=4, width=128, depth=4, heads=4),
    "base": dict(patch_size=4, width=384, depth=8, heads=6),  # GPU
}
GUIDANCE = ("none", "vanilla", "fractional", "temporal")


def build_video_model(
    method: str,
    frame_size: int = 32,
    window: int = 8,
    preset: str = "tiny",
    action_dim: int = 0,
    causal: Optional[bool] = None,
    cond_dropout: float = 0.1,
    parametrization: str = "x0",
    weighting: str = "fused_snr",
) -> DiffusionForcing:
    """A model for ``method`` (``df``, ``tf`` or ``fs``) with a :data:`PRESETS` backbone.

    ``x0`` parametrization is the default: small patch transformers struggle to output the exact
    noise of a large patch (``eps`` / ``v``), which leaves speckle in the samples. ``fused_snr``
    weighting (the reference's video default) is the default: min-SNR weighs a frame's x0 error by
    ``min(SNR, 5)``, nearly 0 for a noisy frame after clean history, which is where the motion is
    learned (docs/video.md, "Loss weighting").
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)} (df = Diffusion Forcing)")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    causal = (method != "fs") if causal is None else causal
    net = VideoTransformer(channels=1, image_size=frame_size, causal=causal, cond_dim=action_dim, **PRESETS[preset])
    return DiffusionForcing(
        net, window=window, training_noise=METHODS[method], cond_dropout=cond_dropout if action_dim else 0.0,
        parametrization=parametrization, weighting=weighting,
    )


def train_video_model(model: DiffusionForcing, sprites: SpriteConfig, steps: int, *, batch_size: int = 32, lr: float = 1e-3,
                      ema_decay: float = 0.99, seed: int = 0, out_dir: Optional[str] = None, precision: str = "32-true",
                      progress: bool = False, log_every: int = 50) -> DiffusionForcing:
    """Train on an endless :class:`SpriteStream` of ``model.window``-frame clips with ``dforce.training.train``."""
    from dforce.training import TrainConfig, train

    data = SpriteStream(sprites, model.window * model.frame_stack, seed=seed)
    cfg = TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps // 10), ema_decay=ema_decay,
                      precision=precision, out_dir=out_dir, seed=seed, progress=progress, log_every=log_every,
                      logger="csv" if out_dir else "none", checkpoint_every=max(steps // 4, 50))
    return train(model, data, cfg)


def _video_sampling() -> SamplingConfig:
    return SamplingConfig(scheduling="full_sequence", steps=20, chunk_size=4, history_len=4)


@dataclass
class RolloutConfig:
    """How a rollout is sampled: the core's sampling options plus the video-specific choices.

    Attributes:
        method: how the model was trained (``df``, ``tf``, ``fs``): picks the rollout procedure.
        sampling: the core's :class:`~dforce.SamplingConfig` (default: full-sequence windows of 4
            new frames after 4 history frames, 20 steps); ``tf`` generates one frame at a time
            after clean history, ``fs`` conditions by replacement.
        guidance: history guidance for ``df``: ``none``, ``vanilla``, ``fractional``, ``temporal``.
        guidance_scale: history guidance scale ``w`` (1 = plain conditional sampling).
        fractional_level: noise level ``k_f`` of the history in fractional history guidance.
        stabilized: history guidance noises only generated history, never the observed context.
        reconstruction_scale: reconstruction guidance for ``fs`` (0 = plain replacement).
        cfg_scale: classifier-free guidance on actions (1 = none).
        precision: ``fp32`` or ``bf16`` (autocast of the network).
        extra: free-form notes kept with the config.
    """

    method: str = "df"
    sampling: SamplingConfig = field(default_factory=_video_sampling)
    guidance: str = "none"
    guidance_scale: float = 1.5
    fractional_level: float = 0.5
    stabilized: bool = False
    reconstruction_scale: float = 0.0
    cfg_scale: float = 1.0
    precision: str = "fp32"
    extra: dict = field(default_factory=dict)


def make_guidance(rc: RolloutConfig):
    if rc.guidance not in GUIDANCE:
        raise ValueError(f"unknown guidance {rc.guidance!r}; choose one of {list(GUIDANCE)}")
    if rc.guidance != "none" and rc.cfg_scale != 1.0:
        raise ValueError("combine history guidance and classifier-free guidance on actions one at a time")
    if rc.cfg_scale != 1.0:
        from dforce.guidance import ClassifierFreeGuidance

        return ClassifierFreeGuidance(rc.cfg_scale)
    if rc.guidance == "vanilla":
        return HistoryGuidance.vanilla(rc.guidance_scale, stabilized=rc.stabilized)
    if rc.guidance == "fractional":
        return HistoryGuidance.fractional(rc.guidance_scale, rc.fractional_level, stabilized=rc.stabilized)
    if rc.guidance == "temporal":  # the most recent frame and the whole history, half the weight each
        w = rc.guidance_scale / 2
        return HistoryGuidance.temporal([w, w], [[-1], list(range(rc.sampling.history_len or 1))], stabilized=rc.stabilized)
    return None


def generate(model: DiffusionForcing, context: Tensor, horizon: int, rc: RolloutConfig, *, cond: Optional[Tensor] = None,
             seed: int = 0) -> Tensor:
    """Roll ``model`` out ``horizon`` frames after ``context`` [B, C, 1, H, W] the way ``rc.method`` prescribes."""
    model.eval()
    s = rc.sampling
    if rc.method == "fs":
        return replacement_rollout(model, context, horizon, config=s, reconstruction_scale=rc.reconstruction_scale, cond=cond,
                                   seed=seed, precision=rc.precision)
    if rc.method == "tf":  # next-frame diffusion after clean history, as it was trained
        s = replace(s, chunk_size=1, history_len=model.window - 1, stabilization_level=0.0)
        return model.sample(context, horizon, cond=cond, config=s, seed=seed, precision=rc.precision,
                            guidance=make_guidance(rc) if rc.cfg_scale != 1.0 else None)
    if rc.method != "df":
        raise ValueError(f"unknown method {rc.method!r}; choose one of {sorted(METHODS)}")
    return model.sample(context, horizon, cond=cond, config=s, guidance=make_guidance(rc), seed=seed, precision=rc.precision)


def score(pred: Tensor, truth: Tensor, reference: Tensor, segment: int, true_counts: Optional[Tensor] = None, *,
          labels: Optional[Tensor] = None, centroids: Optional[Tensor] = None, sprites: Optional[SpriteConfig] = None) -> dict:
    """Fidelity per horizon bucket (PSNR, SSIM, MSE) and drift per segment for ``pred`` [B, N, C, H, W].

    With the clips' ``labels`` [B, K] and ``centroids`` [B, N, K, 2] (of the frames in ``truth``; see
    :func:`dforce.video.data.fixed_split`) and their ``sprites`` config, also what a person sees, per
    segment: ``identity`` (accuracy of the sprite classifier on the sprites found in ``pred``, on
    ``truth``, and their ratio ``rel``), ``centroid_err`` (pixels) and ``frechet`` (Fréchet distance to
    the true frames of the segment in the classifier's feature space; ``frechet_data``: to as many
    ``reference`` frames, which on the ground truth is the floor of ``frechet`` at this sample size).
    Identity and Fréchet need labelled sprites (digits, fashion).
    """
    out = {
        "psnr": M.by_horizon(M.psnr(pred, truth), segment),
        "ssim": M.by_horizon(M.ssim(pred, truth), segment),
        "mse": M.by_horizon(M.mse(pred, truth), segment),
        "drift": M.drift_by_segment(pred, reference, segment, true_counts),
    }
    if sprites is None:
        return out
    kmax = sprites.num_sprites[1]
    max_pixels = kmax * sprites.size**2  # larger components are clutter (noise), not sprites
    if centroids is not None:
        out["centroid_err"] = M.by_horizon(M.centroid_errors(pred, centroids, max_pixels=max_pixels), segment)
    if labels is not None and sprites.sprite in ("digits", "fashion"):
        from dforce.video.classifier import sprite_classifier

        clf = sprite_classifier(sprites.sprite, sprites.size)
        out["identity"] = M.identity_by_segment(pred, truth, labels, clf, segment, max_pixels=max_pixels)
        out["frechet"] = M.frechet_by_segment(pred, truth, clf, segment)
        # the same number of independent data frames as a segment has: on the ground truth, the floor of the
        # Fréchet distance at this sample size (two samples of one distribution do not score 0)
        ref = M.classifier_features(reference, clf)
        ref = ref.reshape(-1, ref.shape[-1])
        feats = M.classifier_features(pred, clf)
        fd_data = {}
        for k, s in zip(out["psnr"], range(0, pred.shape[1], segment)):
            f = feats[:, s : s + segment].reshape(-1, feats.shape[-1])
            fd_data[k] = M.frechet_distance(*M.gaussian_fit(f), *M.gaussian_fit(ref[: len(f)]))
        out["frechet_data"] = fd_data
        out["classifier_heldout_accuracy"] = clf.heldout_accuracy
    return out


def summarize(result: dict) -> dict:
    """The headline numbers of a :func:`score` result and every metric per segment.

    ``psnr_A_B`` and ``centroid_err_A_B`` over the first segment (frames A-B, e.g. 1-8),
    ``identity_rel_C_D``, ``hist_tv_C_D``, ``frechet_C_D`` and ``frechet_data_C_D`` over the last one (e.g. 73-80), and
    ``per_segment``: ``{"1-8": {"psnr": ..., "ssim": ..., "hist_tv": ..., ...}, ...}``. Metrics the
    result lacks are left out.
    """
    drift = {d["frames"]: d for d in result["drift"]}
    segs = list(drift)
    per = {}
    for sg in segs:
        row = {k: result[k][sg] for k in ("psnr", "ssim", "mse", "centroid_err", "frechet", "frechet_data") if k in result}
        if "identity" in result:
            row.update(identity_acc=result["identity"]["acc"][sg], identity_acc_truth=result["identity"]["acc_truth"][sg],
                       identity_rel=result["identity"]["rel"][sg])
        row.update({k: v for k, v in drift[sg].items() if k != "frames"})
        per[sg] = row
    first, last = segs[0], segs[-1]
    tag = lambda sg: sg.replace("-", "_")  # noqa: E731
    out = {}
    for key, sg in (("psnr", first), ("centroid_err", first), ("identity_rel", last), ("hist_tv", last), ("frechet", last),
                    ("frechet_data", last)):
        if key in per[sg]:
            out[f"{key}_{tag(sg)}"] = per[sg][key]
    out["per_segment"] = per
    return out


__all__ = ["GUIDANCE", "METHODS", "PRESETS", "RolloutConfig", "build_video_model", "generate", "make_guidance", "score",
           "summarize", "train_video_model"]

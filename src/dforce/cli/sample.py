"""``dforce sample MODEL_DIR --horizon N``: roll out an exported model and save the samples."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dforce.cli.common import UserError, add_overwrite, check_outputs, given_keys, normalize_argv, parser
from dforce.sampling import SamplingConfig


def build_parser():
    p = parser("dforce sample", "Sample from a model exported by `dforce train` (its model/ folder). Sampling options "
               "default to those saved with the model; every --sample.* option you type wins (even one equal to the default). "
               "--sample.scheduling also takes a .npy / .csv file holding a custom scheduling matrix [rows, tokens].")
    p.add_argument("checkpoint", type=str, help="exported model folder (config.json + model.safetensors)")
    p.add_argument("--horizon", type=int, required=True, help="frames to generate (>= 1)")
    p.add_argument("--context", type=Optional[str], default=None,
                   help="optional .npy / .npz / .csv context frames [C, D] or [B, C, D] (unnormalised; a CSV may have a header row)")
    p.add_argument("--num_samples", type=int, default=1, help="samples per context (or in total without context), >= 1")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same samples)")
    p.add_argument("--precision", type=str, default="fp32", help="fp32 or bf16 (autocast)")
    p.add_argument("--out", type=str, default="samples.npy", help="output .npy [num_samples * B, horizon, D] (unnormalised)")
    p.add_argument("--plot", type=Optional[str], default=None, help="also save a PNG of the first samples")
    add_overwrite(p)
    p.add_class_arguments(SamplingConfig, "sample")
    return p


def main(argv: list[str]) -> int:
    argv = normalize_argv(argv)
    a = build_parser().parse_args(argv)
    if a.horizon < 1:
        raise UserError(f"--horizon must be >= 1 frame, got {a.horizon}")
    if a.num_samples < 1:
        raise UserError(f"--num_samples must be >= 1, got {a.num_samples}")
    if a.precision not in ("fp32", "bf16"):
        raise UserError(f"--precision must be fp32 or bf16, got {a.precision!r}")
    check_outputs(a.overwrite, out=a.out, plot=a.plot)
    if not a.out.endswith(".npy"):
        raise UserError(f"--out {a.out} must end in .npy (numpy.save writes that format)")
    if a.plot and not a.plot.endswith(".png"):
        raise UserError(f"--plot {a.plot} must end in .png")
    from dforce.cli import sampling_options
    from dforce.cli.arrays import check_frames, read_array
    from dforce.training import load_model
    from dforce.training.files import atomic_write

    model, extra = load_model(a.checkpoint)
    typed = sampling_options.given(vars(a.sample), given_keys(argv, "sample"))
    config = sampling_options.merge(extra.get("sample", {}), typed, "dforce sample")
    dim = model.frame_shape[0] if len(model.frame_shape) == 1 else None
    if dim is None:
        raise UserError(f"{a.checkpoint} holds a model of frames {model.frame_shape}; dforce sample handles vector frames only "
                        "(use dforce rollout for video models)")
    mean = np.asarray(extra.get("mean", 0.0), dtype=np.float32)
    std = np.asarray(extra.get("std", 1.0), dtype=np.float32)
    k = model.frame_stack
    if a.horizon % k:
        raise UserError(f"--horizon must be a multiple of the model's frame_stack={k}, got {a.horizon}")
    context = None
    if a.context:
        arr = check_frames(read_array(a.context), dim, a.context)
        if arr.shape[1] % k:
            raise UserError(f"--context {a.context} has {arr.shape[1]} frames, not a multiple of the model's frame_stack={k}; "
                            f"drop the first {arr.shape[1] % k} frame(s)")
        context = torch.from_numpy((arr - mean) / std).repeat_interleave(a.num_samples, 0)
    out = model.sample(context=context, horizon=a.horizon, batch_size=None if context is not None else a.num_samples,
                       config=config, seed=a.seed, precision=a.precision, progress=True)
    samples = out.numpy() * std + mean
    if not np.isfinite(samples).all():
        raise UserError(f"sampling produced NaN / inf values (model {a.checkpoint}); nothing was written: "
                        "try --precision fp32, or retrain the model")
    path = Path(a.out)
    atomic_write(path, lambda tmp: np.save(tmp, samples), suffix=".npy")
    print(f"wrote {path} with shape {samples.shape}")
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(samples.shape[-1], 1, figsize=(10, 2 * samples.shape[-1]), squeeze=False)
        for d, ax in enumerate(axes[:, 0]):
            for s in samples[:4]:
                ax.plot(s[:, d], lw=0.8)
            ax.set_ylabel(f"dim {d}")
        axes[-1, 0].set_xlabel("frame")
        fig.tight_layout()
        atomic_write(a.plot, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), suffix=".png")
        plt.close(fig)
        print(f"wrote {a.plot}")
    return 0

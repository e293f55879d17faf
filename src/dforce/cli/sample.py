"""``dforce sample MODEL_DIR --horizon N``: roll out an exported model and save the samples."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dforce.cli.common import normalize_argv, parser
from dforce.sampling import SamplingConfig


def main(argv: list[str]) -> int:
    p = parser("dforce sample", "Sample from a model exported by `dforce train` (its model/ folder). Sampling options "
               "default to those saved with the model and can be overridden with --sample.*.")
    p.add_argument("checkpoint", type=str, help="exported model folder (config.json + model.safetensors)")
    p.add_argument("--horizon", type=int, required=True, help="frames to generate")
    p.add_argument("--context", type=Optional[str], default=None, help="optional .npy [C, D] or [B, C, D] / .csv context frames (unnormalised)")
    p.add_argument("--num_samples", type=int, default=1, help="samples per context (or in total without context)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same samples)")
    p.add_argument("--precision", type=str, default="fp32", help="fp32 or bf16 (autocast)")
    p.add_argument("--out", type=str, default="samples.npy", help="output .npy [num_samples * B, horizon, D] (unnormalised)")
    p.add_argument("--plot", type=Optional[str], default=None, help="also save a PNG of the first samples")
    p.add_class_arguments(SamplingConfig, "sample")
    a = p.parse_args(normalize_argv(argv))
    from dforce.training import load_model

    model, extra = load_model(a.checkpoint)
    saved = extra.get("sample", {})
    given = {k: v for k, v in vars(a.sample).items() if v != getattr(SamplingConfig(), k)}
    config = SamplingConfig(**{**saved, **given})
    mean = np.asarray(extra.get("mean", 0.0), dtype=np.float32)
    std = np.asarray(extra.get("std", 1.0), dtype=np.float32)
    context = None
    if a.context:
        arr = np.loadtxt(a.context, delimiter=",", dtype=np.float32, ndmin=2) if a.context.endswith(".csv") else np.load(a.context).astype(np.float32)
        arr = arr[None] if arr.ndim == 2 else arr
        context = torch.from_numpy((arr - mean) / std).repeat_interleave(a.num_samples, 0)
    out = model.sample(context=context, horizon=a.horizon, batch_size=None if context is not None else a.num_samples,
                       config=config, seed=a.seed, precision=a.precision, progress=True)
    samples = out.numpy() * std + mean
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, samples)
    tmp.replace(path)
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
        fig.savefig(a.plot, dpi=100)
        plt.close(fig)
        print(f"wrote {a.plot}")
    return 0

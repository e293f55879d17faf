"""``dforce demo``: train Diffusion Forcing and teacher forcing the same way on Lorenz-63, roll
both out 10x past the training window, and compare with the true attractor.

Writes to ``out_dir``: ``rollout.png`` (phase portraits, a time series against ground truth, the
per-segment distance), ``metrics.json`` and the two exported models.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dforce import DiffusionForcing, Transformer
from dforce.demo.lorenz import lorenz63, marginal_distance
from dforce.training import RandomWindows, TrainConfig, export_model, train


@dataclass
class DemoConfig:
    """Options of ``dforce demo``.

    Attributes:
        out_dir: where the PNG, the metrics JSON and the models go.
        train_steps: optimizer steps per model (both models get the same budget).
        batch_size: training sequences per step.
        width: transformer width.
        depth: transformer blocks.
        window: training window in tokens.
        frame_stack: Lorenz states per token.
        stride: RK4 steps (dt = 0.01) between consecutive states.
        rollout_windows: rollout length in training windows (10 = 10x the training length).
        context_frames: ground-truth states given before the rollout.
        num_rollouts: rollouts per model (each from a different test trajectory).
        steps: sampling steps per token.
        stabilization_level: level at which DF feeds its own generated history.
        precision: ``32-true`` or ``bf16-mixed`` for training and sampling (bf16 pays off for wider models than
            this one on CPU; see benchmarks/results/core.md and speed.md).
        seed: seeds data, initialisation and sampling.
        threads: torch CPU threads (0 = torch's default).
    """

    out_dir: str = "dforce_demo"
    train_steps: int = 1200
    batch_size: int = 64
    width: int = 64
    depth: int = 3
    window: int = 32
    frame_stack: int = 2
    stride: int = 2
    rollout_windows: int = 10
    context_frames: int = 16
    num_rollouts: int = 16
    steps: int = 16
    stabilization_level: float = 0.05
    precision: str = "32-true"
    seed: int = 0
    threads: int = 0


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_model(cfg: DemoConfig, training_noise: str) -> DiffusionForcing:
    backbone = Transformer(dim=3 * cfg.frame_stack, width=cfg.width, depth=cfg.depth, heads=4, causal=True)
    return DiffusionForcing(backbone, window=cfg.window, frame_stack=cfg.frame_stack, training_noise=training_noise,
                            parametrization="v", weighting="min_snr")


def segment_distances(rollout: np.ndarray, reference: np.ndarray, segment: int) -> list[float]:
    """Marginal W1 distance to the attractor for each consecutive ``segment`` frames of the rollout."""
    n = rollout.shape[1] // segment
    return [marginal_distance(rollout[:, i * segment : (i + 1) * segment], reference) for i in range(n)]


def run_demo(cfg: DemoConfig, log=print) -> dict:
    """Run the demo; returns the metrics dict (also written to ``out_dir/metrics.json``)."""
    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames_per_window = cfg.window * cfg.frame_stack
    horizon = cfg.rollout_windows * frames_per_window

    log("generating Lorenz-63 trajectories ...")
    train_traj = lorenz63(32, 6000, stride=cfg.stride, seed=cfg.seed)
    test_traj = lorenz63(cfg.num_rollouts, cfg.context_frames + horizon, stride=cfg.stride, seed=cfg.seed + 1)
    mean, std = train_traj.reshape(-1, 3).mean(0), train_traj.reshape(-1, 3).std(0)
    norm = lambda a: (a - mean) / std  # noqa: E731
    reference = norm(train_traj).reshape(-1, 3)

    results: dict = {"config": asdict(cfg), "segment_frames": frames_per_window, "methods": {}}
    rollouts = {}
    for name, noise in (("diffusion_forcing", "independent"), ("teacher_forcing", "teacher_forcing")):
        torch.manual_seed(cfg.seed)
        model = make_model(cfg, noise)
        t0 = time.time()
        log(f"training {name} ({cfg.train_steps} steps) ...")
        model = train(
            model,
            RandomWindows(list(norm(train_traj)), frames_per_window, seed=cfg.seed),
            TrainConfig(max_steps=cfg.train_steps, batch_size=cfg.batch_size, lr=1e-3, warmup_steps=100, ema_decay=0.99,
                        precision=cfg.precision, out_dir=str(out / "runs" / name), resume=False, progress=False, log_every=50,
                        checkpoint_every=cfg.train_steps, accelerator="cpu"),
        )
        train_s = time.time() - t0
        context = torch.from_numpy(norm(test_traj[:, : cfg.context_frames])).float()
        stab = cfg.stabilization_level if noise == "independent" else 0.0
        truth = norm(test_traj[:, cfg.context_frames :])
        # the same trained model under two scheduling matrices: token by token, and a pyramid
        for schedule in ("autoregressive", "pyramid"):
            t0 = time.time()
            pred = model.sample(context=context, horizon=horizon, steps=cfg.steps, stabilization_level=stab, seed=cfg.seed,
                                scheduling=schedule, precision="bf16" if cfg.precision.startswith("bf16") else "fp32",
                                cache="window")  # KV cache: the numbers of uncached sampling (exact in fp32), faster
            sample_s = time.time() - t0
            pred = pred.numpy()
            key = name if schedule == "autoregressive" else f"{name}_pyramid"
            rollouts[key] = pred
            seg = segment_distances(pred, reference, frames_per_window)
            first = min(25, horizon)
            results["methods"][key] = {
                "schedule": schedule,
                "train_seconds": round(train_s, 1),
                "sample_seconds": round(sample_s, 1),
                "marginal_w1_per_segment": [round(v, 4) for v in seg],
                "marginal_w1_mean": round(float(np.mean(seg)), 4),
                "marginal_w1_last_segment": round(seg[-1], 4),
                "short_term_mse": round(float(np.mean((pred[:, :first] - truth[:, :first]) ** 2)), 4),
                "finite": bool(np.isfinite(pred).all()),
            }
            log(f"  {key}: W1 to the attractor per segment {results['methods'][key]['marginal_w1_per_segment']}")
        export_model(model, out / "models" / name, extra={"mean": mean.tolist(), "std": std.tolist()})
    # the ground truth's own distance: what a perfect model would score with this many samples
    results["ground_truth_w1_per_segment"] = [round(v, 4) for v in segment_distances(norm(test_traj[:, cfg.context_frames :]), reference, frames_per_window)]
    results["total_seconds"] = round(time.time() - t_start, 1)
    _atomic_write(out / "metrics.json", json.dumps(results, indent=2).encode())
    plot_demo(out / "rollout.png", norm(test_traj), rollouts, results, cfg)
    return results


def plot_demo(path: Path, truth: np.ndarray, rollouts: dict, results: dict, cfg: DemoConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 8.5))
    grid = fig.add_gridspec(2, 3)
    names = [("ground truth", truth[:, cfg.context_frames :]), *((k.replace("_", " "), v) for k, v in rollouts.items() if "pyramid" not in k)]
    for i, (title, data) in enumerate(names):
        ax = fig.add_subplot(grid[0, i])
        d = np.clip(data[0], -4, 4)
        ax.plot(d[:, 0], d[:, 2], lw=0.5)
        ax.set(title=f"{title}: x-z phase portrait", xlabel="x (normalised)", ylabel="z (normalised)", xlim=(-3, 3), ylim=(-3, 3))
    ax = fig.add_subplot(grid[1, :2])
    tt = np.arange(truth.shape[1]) - cfg.context_frames
    ax.plot(tt, truth[0, :, 0], "k", lw=1, label="ground truth")
    for k, v in rollouts.items():
        if "pyramid" not in k:
            ax.plot(tt[cfg.context_frames :], np.clip(v[0, :, 0], -5, 5), lw=0.8, label=k.replace("_", " "))
    ax.axvline(0, color="grey", ls=":")
    for w in range(1, cfg.rollout_windows):
        ax.axvline(w * cfg.window * cfg.frame_stack, color="grey", lw=0.3)
    ax.set(xlabel="frame (0 = end of context; grey lines: training-window lengths)", ylabel="x (normalised)", ylim=(-5, 5))
    ax.legend(loc="upper right", fontsize=8)
    ax = fig.add_subplot(grid[1, 2])
    seg = np.arange(1, cfg.rollout_windows + 1)
    ax.plot(seg, results["ground_truth_w1_per_segment"], "k--", label="ground truth")
    for k, m in results["methods"].items():
        ax.plot(seg, np.minimum(m["marginal_w1_per_segment"], 10), "o-" if m["schedule"] == "autoregressive" else "s--",
                label=k.replace("_", " ") + ("" if m["schedule"] == "pyramid" else " (AR)"))
    ax.set(xlabel="rollout segment (training windows)", ylabel="W1 to the attractor's marginals", yscale="log", title="drift per segment")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def quick_config(out_dir: str, **kw) -> DemoConfig:
    """Tiny settings for tests (seconds, not minutes)."""
    base = dict(out_dir=out_dir, train_steps=30, batch_size=8, width=32, depth=1, window=8, rollout_windows=10,
                context_frames=4, num_rollouts=2, steps=2, precision="32-true")
    base.update(kw)
    return DemoConfig(**base)


def main_demo(cfg: Optional[DemoConfig] = None) -> dict:
    cfg = cfg or DemoConfig()
    res = run_demo(cfg)
    out = Path(cfg.out_dir).resolve()
    print(f"\nwrote {out / 'rollout.png'}\n      {out / 'metrics.json'}\n      {out / 'models'}/{{diffusion_forcing,teacher_forcing}}")
    print(f"total {res['total_seconds']} s")
    return res

"""Core speed benchmark: training steps/s and sampled tokens/s for the demo config, and training
steps/s for the maze planner's backbone, fp32 vs bf16 (what ``TrainConfig(precision="auto")`` picks from).

    python benchmarks/core.py [--repeats 5]

fp32 and bf16 are measured alternately in the same run (median of repeats), so the speed-up is a
ratio of numbers taken under the same machine load. Writes benchmarks/results/core.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

from dforce.demo.run import DemoConfig, demo_setting, make_model  # noqa: E402
from dforce.dynamics.systems import SYSTEM_DIMS  # noqa: E402
from dforce.planning.planner import PlannerConfig  # noqa: E402
from dforce.planning.planner import build_model as build_planner  # noqa: E402


def train_rate(model, batch, bf16: bool, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


def sample_rate(model, context, horizon: int, cfg: DemoConfig, bf16: bool) -> float:
    t0 = time.perf_counter()
    out = model.sample(context=context, horizon=horizon, steps=cfg.steps, stabilization_level=cfg.stabilization_level,
                       precision="bf16" if bf16 else "fp32", seed=0)
    dt = time.perf_counter() - t0
    return out.shape[0] * out.shape[1] / dt  # tokens per second (one frame per token)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train_steps", type=int, default=10, help="timed steps per repeat")
    ap.add_argument("--horizon_windows", type=int, default=2, help="rollout length in windows for the sampling rate")
    args = ap.parse_args()
    cfg = DemoConfig()
    torch.manual_seed(0)
    model = make_model(cfg, "independent")
    setting, dim = demo_setting(cfg), SYSTEM_DIMS[cfg.system]
    frames = setting.window
    batch = torch.randn(cfg.batch_size, frames, dim)
    context = torch.randn(cfg.num_rollouts, setting.context, dim)
    horizon = args.horizon_windows * frames
    plan_cfg = PlannerConfig(maze="medium")
    planner = build_planner(plan_cfg)
    plan_batch = torch.randn(32, plan_cfg.window() * plan_cfg.frame_stack, plan_cfg.frame_dim())
    rates = {"train": {"fp32": [], "bf16": []}, "sample": {"fp32": [], "bf16": []}, "train_planner": {"fp32": [], "bf16": []}}
    for _ in range(args.repeats):
        for name, bf16 in (("fp32", False), ("bf16", True)):
            rates["train"][name].append(train_rate(model, batch, bf16, args.train_steps))
            rates["sample"][name].append(sample_rate(model, context, horizon, cfg, bf16))
            rates["train_planner"][name].append(train_rate(planner, plan_batch, bf16, args.train_steps))
    med = {k: {n: statistics.median(v) for n, v in d.items()} for k, d in rates.items()}
    data = {
        "machine": machine(),
        "config": {"system": cfg.system, "width": setting.width, "depth": setting.depth, "window_tokens": setting.window, "frame_stack": 1,
                   "batch_size": cfg.batch_size, "sampling_steps": cfg.steps, "rollouts": cfg.num_rollouts,
                   "schedule": "autoregressive", "repeats": args.repeats},
        "train_steps_per_s": {k: round(v, 3) for k, v in med["train"].items()},
        "bf16_speedup": round(med["train"]["bf16"] / med["train"]["fp32"], 3),
        "sample_tokens_per_s": {k: round(v, 2) for k, v in med["sample"].items()},
        "sample_bf16_speedup": round(med["sample"]["bf16"] / med["sample"]["fp32"], 3),
        "planner": {"width": plan_cfg.width, "depth": plan_cfg.depth, "frames": plan_batch.shape[1], "batch_size": 32},
        "train_planner_steps_per_s": {k: round(v, 3) for k, v in med["train_planner"].items()},
        "planner_bf16_speedup": round(med["train_planner"]["bf16"] / med["train_planner"]["fp32"], 3),
        "raw": rates,
    }
    md = (
        "# Core speed (demo config, and the planner's training)\n\n"
        f"Machine: {data['machine']['cpu_count']} CPU cores, torch {data['machine']['torch']}, "
        f"{data['machine']['date']}, 1-min load average at the end {data['machine']['load_avg_1min']:.1f}. "
        f"CPU capability {data['machine']['cpu_capability']}, native bf16 (AVX512-BF16 or AMX): "
        f"{'yes' if data['machine']['cpu_native_bf16'] else 'no'}. Median of {args.repeats} alternating repeats.\n\n"
        "| measure | fp32 | bf16 autocast | bf16 / fp32 |\n|---|---|---|---|\n"
        f"| training steps/s (batch {cfg.batch_size} x {frames} frames) | {med['train']['fp32']:.2f} | {med['train']['bf16']:.2f} | {data['bf16_speedup']:.2f}x |\n"
        f"| sampled tokens/s (AR, {cfg.steps} steps, {cfg.num_rollouts} rollouts) | {med['sample']['fp32']:.1f} | {med['sample']['bf16']:.1f} | {data['sample_bf16_speedup']:.2f}x |\n"
        f"| planner training steps/s (medium, width {plan_cfg.width}, batch 32 x {plan_batch.shape[1]} frames) | "
        f"{med['train_planner']['fp32']:.2f} | {med['train_planner']['bf16']:.2f} | {data['planner_bf16_speedup']:.2f}x |\n"
    )
    j, m = write_results("core", data, md)
    print(md)
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()

"""Core speed benchmark: training steps/s and sampled tokens/s for the demo config, fp32 vs bf16.

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
    rates = {"train": {"fp32": [], "bf16": []}, "sample": {"fp32": [], "bf16": []}}
    for _ in range(args.repeats):
        for name, bf16 in (("fp32", False), ("bf16", True)):
            rates["train"][name].append(train_rate(model, batch, bf16, args.train_steps))
            rates["sample"][name].append(sample_rate(model, context, horizon, cfg, bf16))
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
        "raw": rates,
    }
    md = (
        "# Core speed (demo config)\n\n"
        f"Machine: {data['machine']['cpu_count']} CPU cores, torch {data['machine']['torch']}, "
        f"{data['machine']['date']}, 1-min load average at the end {data['machine']['load_avg_1min']:.1f}. "
        f"Median of {args.repeats} alternating repeats.\n\n"
        "| measure | fp32 | bf16 autocast | bf16 / fp32 |\n|---|---|---|---|\n"
        f"| training steps/s (batch {cfg.batch_size} x {frames} frames) | {med['train']['fp32']:.2f} | {med['train']['bf16']:.2f} | {data['bf16_speedup']:.2f}x |\n"
        f"| sampled tokens/s (AR, {cfg.steps} steps, {cfg.num_rollouts} rollouts) | {med['sample']['fp32']:.1f} | {med['sample']['bf16']:.1f} | {data['sample_bf16_speedup']:.2f}x |\n"
    )
    j, m = write_results("core", data, md)
    print(md)
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()

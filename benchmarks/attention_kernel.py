"""Ablation behind ``math_attention``: training steps/s with SDPA's default (flash) kernel and its math kernel on a CPU.

    PYTHONPATH=src python benchmarks/attention_kernel.py     # ~3 min -> results/attention_kernel.{json,md}

The reference workload's equal model (``ConcatTransformer``: 12 layers, width 128, 4 heads, FFN
512), AdamW, ``model.loss``; one torch thread; the same number of tokens per step (B x T = 4096)
at T = 32, 64, 128, 256; fp32 and bf16 autocast; the kernel forced with
``torch.nn.attention.sdpa_kernel`` and ``math_attention`` switched off, so each row runs exactly
one kernel. Each cell: best of 3 timings of 2 steps after 2 warm-up steps; the two kernels of a
cell run alternately. ``math / flash`` > 1 where the math kernel is faster.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, provenance, write_results  # noqa: E402
from reference_workload import dforce_model, train_step_fn  # noqa: E402

from dforce.backbones import transformer  # noqa: E402

SHAPES = ((128, 32), (64, 64), (32, 128), (16, 256))  # (B, T)
KERNELS = {"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}


def steps_per_s(batch: int, seq: int, precision: str, kernel: str, steps: int, reps: int) -> float:
    model = dforce_model("equal", "cpu").train()
    step = train_step_fn(model, "equal", batch, seq, "cpu", precision)
    with sdpa_kernel(KERNELS[kernel]):
        for _ in range(2):
            step()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            best = min(best, (time.perf_counter() - t0) / steps)
    return 1 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="seconds; writes nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = provenance()
    transformer.MATH_ATTENTION_MAX_TOKENS = 0  # the forced kernel decides, not the default choice
    shapes, steps, reps = (((8, 8),), 1, 1) if args.quick else (SHAPES, 2, 3)
    rows = []
    for precision in ("fp32", "bf16"):
        for batch, seq in shapes:
            sps = {k: steps_per_s(batch, seq, precision, k, steps, reps) for k in KERNELS}
            rows.append({"precision": precision, "B": batch, "T": seq, "flash_steps_per_s": sps["flash"], "math_steps_per_s": sps["math"],
                         "math_over_flash": sps["math"] / sps["flash"]})
            print(f"{precision} B={batch} T={seq}: flash {sps['flash']:.2f}, math {sps['math']:.2f} steps/s", flush=True)
    res = {**start, "machine": machine(), "rows": rows, "math_attention_max_tokens": 128}
    lines = ["# SDPA kernel for training on a CPU", "",
             "Equal model of the reference workload (12 layers, width 128), AdamW, `model.loss`, one thread; steps/s, best of 3.", "",
             "| precision | B | T | flash steps/s | math steps/s | math / flash |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['precision']} | {r['B']} | {r['T']} | {r['flash_steps_per_s']:.2f} | {r['math_steps_per_s']:.2f} | "
              f"{r['math_over_flash']:.2f} |" for r in rows]
    lines += ["", "dforce's choice (`math_attention`): the math kernel for bf16 training with T <= 128, the default kernel otherwise."]
    md = "\n".join(lines)
    print(md)
    if not args.quick:
        write_results("attention_kernel", res, md)


if __name__ == "__main__":
    main()

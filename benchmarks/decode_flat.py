"""Time per token of the cached one-token decode step along a long rolling-cache rollout (issue 15).

    python benchmarks/decode_flat.py --tokens 1024 --batch 1            # eager and compiled, ~4 min

The equal model of ``reference_workload.py`` (12 layers, width 128, 50 DDIM steps, window 64); prints
the wall and process-CPU milliseconds per token for tokens 1-64, 65-256 and each later quarter, so a
flat rollout shows the same numbers from L = 64 on. Writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_workload import dforce_model, dforce_rollout  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = dforce_model("equal", "cpu")
    for mode in args.modes:
        compiled = mode == "compiled"
        with torch.inference_mode():
            w0 = time.perf_counter()
            for _ in dforce_rollout(model, args.batch, 1, "autoregressive", 1, "cpu", "rolling", "fp32", compiled):
                pass
            warm = time.perf_counter() - w0
            stamps = [(time.perf_counter(), time.process_time())]
            for _ in dforce_rollout(model, args.batch, args.tokens, "autoregressive", 1, "cpu", "rolling", "fp32", compiled):
                stamps.append((time.perf_counter(), time.process_time()))
        n = args.tokens
        cuts = sorted({0, min(64, n), min(256, n)} | {n * k // 4 for k in range(1, 5) if n * k // 4 > 256})
        parts = []
        for a, b in zip(cuts, cuts[1:]):
            wall = (stamps[b][0] - stamps[a][0]) / (b - a) * 1000
            cpu = (stamps[b][1] - stamps[a][1]) / (b - a) * 1000
            parts.append(f"tokens {a + 1}-{b}: {wall:.1f} ms wall / {cpu:.1f} ms CPU")
        total = stamps[-1][0] - stamps[0][0]
        print(f"{mode} (warm-up {warm:.1f} s), B={args.batch}: {n * args.batch / total:.2f} tokens/s overall; " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()

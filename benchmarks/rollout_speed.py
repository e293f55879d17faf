"""Speed benchmark: cached vs uncached rollout, time to first token, training MFU.

    PYTHONPATH=src python benchmarks/rollout_speed.py            # ~10-15 min on the 2-core dev machine
    PYTHONPATH=src python benchmarks/rollout_speed.py --quick    # smoke run, ~1 min

Writes ``benchmarks/results/rollout_speed.{json,md}``. Every ratio is
measured in the same process, on the same thread count. See ``docs/speed.md`` for the method.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

from dforce import DiffusionForcing, Transformer
from dforce.sampling import SamplingConfig, iter_rollout


@torch.no_grad()  # on a generator function: entered and left around each step, never leaks
def stream(model, *, batch_size, horizon, cache, seed, stats=None, precision="fp32", **options):
    """``model.stream`` for an unconditional rollout, with the network-token counters in ``stats``:
    ``evaluated_tokens``, and for a cache ``cache_tokens`` / ``cache_bytes``."""
    stats = {} if stats is None else stats
    net = model.denoiser(precision, cache)
    if cache == "none":
        inner = net

        def net(x, t, cond=None):
            stats["evaluated_tokens"] = stats.get("evaluated_tokens", 0) + x.shape[0] * x.shape[1]
            return inner(x, t, cond)

    tokens = iter_rollout(net, token_shape=model.token_shape, horizon=horizon, window=model.window, schedule=model.noise_schedule,
                          config=SamplingConfig(**options), batch_size=batch_size, causal=model.causal,
                          generator=torch.Generator().manual_seed(seed))
    for _, token in tokens:
        if cache != "none":
            stats.update(evaluated_tokens=net.evaluated_tokens, cache_tokens=net.cache.length, cache_bytes=net.cache.nbytes())
        yield token

RESULTS = Path(__file__).resolve().parent / "results"


def rss_peak_mb() -> float:
    """High-water mark of this process's resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------- matmul peak
def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` FLOP/s of an ``n x n`` matmul in ``dtype`` (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# ---------------------------------------------------------------------------------- training
def linear_params(module: torch.nn.Module) -> int:
    """Matmul weights applied per token: every ``nn.Linear``, and the fused QKV of ``nn.MultiheadAttention``."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear)) + sum(
        m.in_proj_weight.numel() for m in module.modules() if isinstance(m, torch.nn.MultiheadAttention))


def train_flops(model: DiffusionForcing, batch: int, seq: int) -> float:
    """FLOPs of one training step: ``6 N B T + 12 L d B T^2``.

    ``N`` = weights of every matmul (nn.Linear) applied per token, ``L`` = depth, ``d`` = width:
    forward 2 N per token plus 2 T d per token per layer for each of ``QK^T`` and ``AV`` (counted
    without the causal half, as in the PaLM MFU convention); backward twice the forward.
    """
    bb = model.backbone
    n = linear_params(bb)
    depth, width = len(bb.blocks), bb.embed.out_features
    return 6 * n * batch * seq + 12 * depth * width * batch * seq**2


def bench_training(precision: str, width: int, depth: int, seq: int, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = DiffusionForcing(Transformer(dim=16, width=width, depth=depth, heads=width // 64), window=seq)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, seq, 16)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    best, mean = min(times), sum(times) / len(times)
    flops = train_flops(model, batch, seq)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "matmul_params": linear_params(model.backbone),
        "flops_per_step": flops,
        "step_s_best": best,
        "step_s_mean": mean,
        "tokens_per_s": batch * seq / best,
        "achieved_flops_per_s": flops / best,
    }


# ---------------------------------------------------------------------------------- rollout
def rollout_model(width: int, depth: int, window: int) -> DiffusionForcing:
    torch.manual_seed(0)
    bb = Transformer(dim=16, width=width, depth=depth, heads=4)
    with torch.no_grad():  # adaLN-Zero: give the untrained model non-trivial weights (speed only)
        for p in bb.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return DiffusionForcing(bb, window=window).eval()


def timed_stream(model, marks: list[int], batch: int, steps: int, cache: str, window: int, precision: str = "fp32") -> dict:
    """One rollout of ``max(marks)`` tokens; wall time and RSS high-water at each mark.

    A rollout of ``L`` tokens is exactly the first ``L`` tokens of a longer one (same seed, one
    token per window), so the time to reach mark ``L`` is the time of a length-``L`` rollout.
    """
    # warm-up (allocator, kernels) on a short rollout, then the baseline memory
    for _ in stream(model, batch_size=batch, horizon=4, steps=steps, chunk_size=1, history_len=window - 1, cache=cache, seed=1, precision=precision):
        pass
    base = rss_peak_mb()
    stats: dict = {}
    out, marks_left = {}, sorted(marks)
    stamps, cpu_stamps = [], []
    t0, c0 = time.perf_counter(), time.process_time()
    it = stream(model, batch_size=batch, horizon=max(marks), steps=steps, chunk_size=1, history_len=window - 1, cache=cache, seed=0, stats=stats, precision=precision)
    for i, _ in enumerate(it, 1):
        now, cpu = time.perf_counter() - t0, time.process_time() - c0
        stamps.append(now)
        cpu_stamps.append(cpu)
        if i == marks_left[0]:
            out[i] = {"seconds": now, "cpu_seconds": cpu, "peak_rss_delta_mb": rss_peak_mb() - base, "cache_bytes": stats.get("cache_bytes", 0), "evaluated_tokens": stats.get("evaluated_tokens")}
            marks_left.pop(0)
            if not marks_left:
                break
    return {"marks": out, "stamps": stamps, "cpu_stamps": cpu_stamps}


def interleaved(model, limits: dict[str, int], marks: list[int], batch: int, steps: int, window: int) -> dict:
    """Run one rollout per cache mode, advancing them in turn one token at a time.

    Each ``next()`` is timed on its own (wall and process CPU time), so a mode's time for ``L``
    tokens is the sum of its own token times, and the modes share the machine's load while they
    run side by side. A mode stops at its limit (``limits[mode]`` tokens).
    """
    gens, stats = {}, {}
    for mode in limits:  # warm-up each path, then start the measured rollouts
        for _ in stream(model, batch_size=batch, horizon=4, steps=steps, chunk_size=1, history_len=window - 1, cache=mode, seed=1):
            pass
    base = rss_peak_mb()
    for mode, n in limits.items():
        stats[mode] = {}
        gens[mode] = stream(model, batch_size=batch, horizon=n, steps=steps, chunk_size=1, history_len=window - 1,
                            cache=mode, seed=0, stats=stats[mode])
    wall = {m: [] for m in limits}
    cpu = {m: [] for m in limits}
    mem = {}
    for i in range(1, max(limits.values()) + 1):
        for mode, n in limits.items():
            if i > n:
                continue
            w0, c0 = time.perf_counter(), time.process_time()
            next(gens[mode])
            wall[mode].append(time.perf_counter() - w0)
            cpu[mode].append(time.process_time() - c0)
        if i in marks:
            mem[i] = {"peak_rss_delta_mb": rss_peak_mb() - base, "cache_bytes": stats["rolling"].get("cache_bytes", 0),
                      "active": [m for m, n in limits.items() if i <= n]}
            print(f"  {i} tokens: " + ", ".join(f"{m} {1e3 * sum(wall[m][:i]) / min(i, len(wall[m])):.1f} ms/token" for m in limits), flush=True)
    return {"wall": wall, "cpu": cpu, "mem": mem}


def bench_rollout(args) -> dict:
    model = rollout_model(args.width, args.roll_depth, args.window)
    lengths = args.lengths
    kw = dict(batch=args.batch, steps=args.steps, window=args.window)
    res = {"config": {"width": args.width, "depth": args.roll_depth, "heads": 4, "token_dim": 16, "window": args.window,
                      "steps": args.steps, "batch": args.batch, "schedule": "autoregressive", "chunk_size": 1,
                      "history_len": args.window - 1, "precision": "fp32"}}
    limits = {"rolling": max(lengths), "window": args.window_max, "none": args.uncached_max}
    print(f"rollout: interleaved, token limits {limits} ...", flush=True)
    r = interleaved(model, limits, lengths, **kw)
    wall, cpu = r["wall"], r["cpu"]

    def total(mode: str, n: int, times: dict) -> tuple[float, str]:
        """Seconds for the first ``n`` tokens: measured, or measured + steady-state per-token time x the rest."""
        ts = times[mode]
        if n <= len(ts):
            return sum(ts[:n]), "measured"
        lo = args.window  # past the first window every token of a path costs the same
        steady = sum(ts[lo:]) / (len(ts) - lo)
        return sum(ts) + (n - len(ts)) * steady, f"measured {len(ts)} + {n - len(ts)} x steady {1e3 * steady:.0f} ms/token (tokens {lo + 1}-{len(ts)})"

    rows = []
    for n in lengths:
        c_s, _ = total("rolling", n, wall)
        w_s, w_how = total("window", n, wall)
        u_s, u_how = total("none", n, wall)
        c_cpu, _ = total("rolling", n, cpu)
        u_cpu, _ = total("none", n, cpu)
        m = r["mem"][n]
        rows.append({
            "length": n,
            "cached_tokens_per_s": n / c_s,
            "uncached_tokens_per_s": n / u_s,
            "speedup": u_s / c_s,
            "cached_peak_mem_mb": m["peak_rss_delta_mb"],
            "cached_cache_mb": m["cache_bytes"] / 2**20,
            "modes_running_at_this_length": m["active"],
            "cached_seconds": c_s,
            "uncached_seconds": u_s,
            "uncached_how": u_how,
            "window_cached_tokens_per_s": n / w_s,
            "window_speedup": u_s / w_s,
            "window_how": w_how,
            "cached_cpu_seconds": c_cpu,
            "uncached_cpu_seconds": u_cpu,
            "speedup_cpu_time": u_cpu / c_cpu,
        })
        print(f"  L={n}: rolling {n / c_s:.1f} tok/s, window {n / w_s:.1f}, uncached {n / u_s:.2f} ({u_how}); "
              f"speedup {u_s / c_s:.1f}x / {u_s / w_s:.1f}x (CPU time {u_cpu / c_cpu:.1f}x); peak RSS +{m['peak_rss_delta_mb']:.1f} MB", flush=True)
    res["rows"] = rows
    # the cleanest ratio: steady state, same tokens, side by side
    lo, hi = args.window, args.uncached_max
    side = {mode: 1e3 * sum(wall[mode][lo:hi]) / (hi - lo) for mode in limits}
    side_cpu = {mode: 1e3 * sum(cpu[mode][lo:hi]) / (hi - lo) for mode in limits}
    res["side_by_side"] = {"tokens": [lo + 1, hi], "wall_ms_per_token": side, "cpu_ms_per_token": side_cpu,
                           "speedup_rolling": side["none"] / side["rolling"], "speedup_window": side["none"] / side["window"],
                           "speedup_rolling_cpu": side_cpu["none"] / side_cpu["rolling"], "speedup_window_cpu": side_cpu["none"] / side_cpu["window"]}
    for key, times in (("rolling_ms_per_token_by_quarter", wall), ("rolling_cpu_ms_per_token_by_quarter", cpu)):
        rs, q = times["rolling"], len(times["rolling"]) // 4
        res[key] = [1e3 * sum(rs[k * q : (k + 1) * q]) / q for k in range(4)]
    # bf16 autocast for the cached rollout (same model)
    n = args.bf16_len
    prec = {}
    for p in ("fp32", "bf16"):
        t = timed_stream(model, [n], cache="rolling", precision=p, **kw)
        prec[p] = {"tokens": n, "seconds": t["marks"][n]["seconds"], "cpu_seconds": t["marks"][n]["cpu_seconds"]}
        print(f"  rolling {p}: {n / t['marks'][n]['seconds']:.1f} tok/s (cpu {n / t['marks'][n]['cpu_seconds']:.1f})", flush=True)
    res["precision"] = prec
    return res


# ---------------------------------------------------------------------------------- time to first token
def bench_ttft(args) -> list[dict]:
    model = rollout_model(args.width, args.roll_depth, args.window)
    h = args.ttft_horizon
    cases = [
        ("full_sequence", dict(scheduling="full_sequence", history_len=0), "window"),
        ("pyramid (u=1)", dict(scheduling="pyramid", history_len=0), "window"),
        ("autoregressive, in one window", dict(scheduling="autoregressive", history_len=0), "window"),
        ("autoregressive, one token per window", dict(scheduling="autoregressive", chunk_size=1, history_len=args.window - 1), "rolling"),
    ]
    out = []
    for name, kw, cache in cases:
        for c in (cache, "none"):
            stats: dict = {}
            t0 = time.perf_counter()
            it = stream(model, batch_size=args.batch, horizon=h, steps=args.steps, cache=c, seed=0, stats=stats, **kw)
            next(it)
            first = time.perf_counter() - t0
            first_evals = stats.get("evaluated_tokens", 0)
            for _ in it:
                pass
            total = time.perf_counter() - t0
            out.append({"schedule": name, "cache": c, "tokens": h, "ttft_s": first, "total_s": total,
                        "ttft_fraction": first / total, "evaluated_tokens_at_first": first_evals})
            print(f"  ttft {name} [{c}]: first {first:.2f}s of {total:.2f}s", flush=True)
    return out


def markdown(res: dict) -> str:
    m = res["meta"]
    lines = [
        "# dforce speed benchmark",
        "",
        f"Machine: {m['machine']}; {m['threads']} torch thread(s); {m['date']}; torch {m['torch']}. "
        f"Shared machine: {m['note']} Wall time of this run: {m['wall_s'] / 60:.1f} min. No GPU was lent to this task, so there are no GPU numbers.",
        "",
        f"## Autoregressive rollout, window {res['rollout']['config']['window']}",
        "",
        "Config: " + ", ".join(f"{k}={v}" for k, v in res["rollout"]["config"].items()) + ". "
        "`cached` = rolling KV cache (each token encoded once, constant memory); `window` = exact window cache "
        "(same numbers as uncached). The three rollouts run side by side, one token each in turn, every token timed on its own; "
        "a path's time for L tokens is the sum of its own token times. Peak memory = growth of the process RSS high-water mark "
        "(`getrusage ru_maxrss`) over a warmed-up baseline; up to the uncached/window limits the other paths run in the same "
        "process, so it is an upper bound there; `cache MB` = bytes held by the KV cache (exact).",
        "",
        "| length | cached tok/s | window-cache tok/s | uncached tok/s | speedup (cached) | speedup (window) | speedup (cached, CPU time) | cached peak RSS MB | cache MB | uncached measured? |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rollout"]["rows"]:
        lines.append(
            f"| {r['length']} | {r['cached_tokens_per_s']:.1f} | {r['window_cached_tokens_per_s']:.1f} | {r['uncached_tokens_per_s']:.2f} | "
            f"{r['speedup']:.1f}x | {r['window_speedup']:.1f}x | {r['speedup_cpu_time']:.1f}x | {r['cached_peak_mem_mb']:.1f} | {r['cached_cache_mb']:.2f} | {r['uncached_how']}; window: {r['window_how']} |"
        )
    q = res["rollout"]["rolling_ms_per_token_by_quarter"]
    qc = res["rollout"]["rolling_cpu_ms_per_token_by_quarter"]
    pr = res["rollout"]["precision"]
    sb = res["rollout"]["side_by_side"]
    lines += ["", f"**Side by side, steady state (tokens {sb['tokens'][0]}-{sb['tokens'][1]}, all three paths interleaved):** "
              f"uncached {sb['wall_ms_per_token']['none']:.0f} ms/token, window cache {sb['wall_ms_per_token']['window']:.0f}, "
              f"rolling cache {sb['wall_ms_per_token']['rolling']:.0f}: speedup {sb['speedup_rolling']:.1f}x (rolling), "
              f"{sb['speedup_window']:.1f}x (window); in CPU time {sb['speedup_rolling_cpu']:.1f}x and {sb['speedup_window_cpu']:.1f}x."]
    lines += ["", "Speedups and tokens/s are wall-clock; the CPU-time speedup uses this process's CPU time "
              "(`time.process_time`), which other users of the shared cores disturb less.", "",
              f"Cached ms/token in each quarter of the longest rollout (flat = time linear in length): wall {', '.join(f'{v:.1f}' for v in q)}; "
              f"CPU time {', '.join(f'{v:.1f}' for v in qc)}.", "",
              f"bf16 autocast, cached rollout of {pr['fp32']['tokens']} tokens: fp32 {pr['fp32']['tokens'] / pr['fp32']['seconds']:.1f} tok/s "
              f"(CPU time {pr['fp32']['cpu_seconds']:.1f} s), bf16 {pr['bf16']['tokens'] / pr['bf16']['seconds']:.1f} tok/s (CPU time {pr['bf16']['cpu_seconds']:.1f} s).", ""]
    lines += ["## Time to first token (streaming)", "", f"{res['ttft'][0]['tokens']} tokens, batch {res['rollout']['config']['batch']}, {res['rollout']['config']['steps']} steps.", "",
              "| schedule | cache | first token s | all tokens s | first / all |", "|---|---|---:|---:|---:|"]
    for r in res["ttft"]:
        lines.append(f"| {r['schedule']} | {r['cache']} | {r['ttft_s']:.2f} | {r['total_s']:.2f} | {r['ttft_fraction']:.2f} |")
    tr = res["training"]
    lines += ["", "## Training throughput and MFU", "",
              f"Transformer width {tr['config']['width']}, depth {tr['config']['depth']}, {tr['config']['seq']} tokens per sequence, batch {tr['config']['batch']}, AdamW; "
              "FLOPs per step = 6 N B T + 12 L d B T^2 (N = matmul weights, L = depth, d = width; attention counted in full). "
              "Peak = best 2048x2048 matmul in the same dtype, same run, same threads.", "",
              "| precision | tokens/s | achieved GFLOP/s | matmul peak GFLOP/s | MFU |", "|---|---:|---:|---:|---:|"]
    for p in ("fp32", "bf16"):
        r = tr[p]
        lines.append(f"| {p} | {r['tokens_per_s']:.0f} | {r['achieved_flops_per_s'] / 1e9:.1f} | {r['peak_flops_per_s'] / 1e9:.1f} | {100 * r['mfu']:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for everything (peak included)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # rollout settings
    args.width, args.roll_depth, args.window, args.steps, args.batch = 128, 4, 64, 10, 8
    args.lengths = [64, 256, 1024, 4096]
    args.window_max, args.uncached_max, args.ttft_horizon, args.bf16_len = 1024, 128, 64, 128
    tr_cfg = dict(width=512, depth=8, seq=256, batch=4, steps=4)
    if args.quick:
        args.lengths, args.window_max, args.uncached_max, args.steps = [16, 32, 64], 64, 24, 3
        args.window, args.ttft_horizon, args.bf16_len = 8, 8, 16
        tr_cfg = dict(width=128, depth=2, seq=64, batch=2, steps=2)
    start = time.perf_counter()
    res: dict = {}
    print("rollout ...", flush=True)
    res["rollout"] = bench_rollout(args)
    print("time to first token ...", flush=True)
    res["ttft"] = bench_ttft(args)
    print("training ...", flush=True)
    res["training"] = {"config": tr_cfg}
    for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = matmul_peak(dtype)
        r = bench_training(p, **tr_cfg)
        peak = max(peak, matmul_peak(dtype))  # best of before and after, so load spikes do not inflate MFU
        r["peak_flops_per_s"] = peak
        r["mfu"] = r["achieved_flops_per_s"] / peak
        res["training"][p] = r
        print(f"  {p}: {r['tokens_per_s']:.0f} tok/s, {r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s of peak {peak / 1e9:.1f}: MFU {100 * r['mfu']:.1f}%", flush=True)
    res["meta"] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
        "note": f"2 cores shared by several engineers (load average {os.getloadavg()[0]:.1f} at the end); absolute numbers vary run to run, ratios within one run are the result.",
        "wall_s": time.perf_counter() - start,
        "quick": args.quick,
        "gpu": "not available to this task",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "rollout_speed_quick" if args.quick else "rollout_speed"
    from common import provenance

    res.update(provenance())
    atomic_write(args.out / f"{name}.json", json.dumps(res, indent=2))
    atomic_write(args.out / f"{name}.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()

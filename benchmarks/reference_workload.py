"""Speed on the official Diffusion Forcing v1.5 planning workload, side by side with the reference.

    python benchmarks/reference_workload.py --reference DIR     # ~15 min on the 2-core dev machine
    python benchmarks/reference_workload.py --quick             # smoke run, no results written
    python benchmarks/reference_workload.py --device cuda --reference DIR   # the same table on a GPU
    python benchmarks/reference_workload.py --threads 1 --batches 1 16 --models equal --caches window rolling \
        --no-training --out speed_subset       # a few rows, eager and compiled (~10 min)

The workload (issue 15): 20-float tokens; 12 layers, width 128, 4 heads, FFN 512; x0 objective,
linear betas over 1000 steps; 50 DDIM steps, eta 0; window 64; one context token; autoregressive
rollout with chunk 1 unless a row says otherwise; tokens/s = generated tokens x batch / wall time.

Models: ``equal`` = :class:`dforce.backbones.ConcatTransformer`, the reference network's layout and
parameter count (2.41 M: level embedding concatenated at the input, post-LN, ReLU); ``default`` =
dforce's :class:`Transformer` at the same width and depth (adaLN-Zero, 3.65 M).

``--reference DIR`` points at a checkout of github.com/buoyancy99/diffusion-forcing (branch
``main``; its commit is read from ``git`` or from ``DIR/COMMIT``). Its ``Diffusion`` module is
imported from ``DIR/algorithms/diffusion_forcing/models`` and driven as its ``validation_step``
drives it (one ``sample_step`` per scheduling-matrix row on the last ``n_tokens`` frames). The
modules it imports only for its video network (``omegaconf``, ``diffusers``,
``rotary_embedding_torch``) are replaced by empty stand-ins when they are not installed. None of
its code is part of dforce.

Long rows are partly extrapolated: a rollout of 64 tokens (plus a few with a full window) is
timed, and the remaining ``L - 64`` tokens are charged at the measured full-window cost per
token; each row says which (``measured_tokens``). Cached paths of the equal model also run with
``compile=True`` (``compiled: true`` rows): the compile happens in the warm-up run, whose wall time
is reported as ``warmup_s`` and excluded from tokens/s. Without ``--reference`` the reference's
tokens/s are quoted from ``results/speed.json`` (``reference_source``), and there is no CPU-time ratio. Writes ``benchmarks/results/speed.{json,md}``
(``speed_cuda`` on a GPU): ``reference_workload``, ``training``, and ``equal_quality`` quoted from
``results/solvers.json`` (``benchmarks/solvers.py``) with that file's own ``git_sha`` / ``command``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, provenance, write_results  # noqa: E402
from rollout_speed import linear_params  # noqa: E402

from dforce import DiffusionForcing, Transformer  # noqa: E402
from dforce.backbones.concat_transformer import ConcatTransformer  # noqa: E402
from dforce.sampling.scheduling import scheduling_matrix  # noqa: E402
from dforce.testing import perturb_parameters  # noqa: E402

DIM, WIDTH, DEPTH, HEADS, FFN, WINDOW, STEPS = 20, 128, 12, 4, 512, 64, 50
STABILIZATION = 10  # the reference's planning stabilization level (integer, of 50)


# ------------------------------------------------------------------------------------ models
def dforce_model(kind: str, device: str) -> DiffusionForcing:
    torch.manual_seed(0)
    if kind == "equal":
        bb = ConcatTransformer(DIM, width=WIDTH, depth=DEPTH, heads=HEADS, ffn=FFN)
    else:
        bb = perturb_parameters(Transformer(DIM, width=WIDTH, depth=DEPTH, heads=HEADS, mlp_ratio=FFN / WIDTH))
    return DiffusionForcing(bb, window=WINDOW, noise_schedule="linear", parametrization="x0").to(device).eval()


def reference_commit(repo: Path) -> str:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if out.returncode == 0:
        return out.stdout.strip()
    commit = repo / "COMMIT"
    return commit.read_text().strip() if commit.exists() else "unknown"


def _stand_ins() -> None:
    """Empty modules for what the reference imports only for its video network."""
    for name, attrs in (("omegaconf", ("DictConfig",)), ("rotary_embedding_torch", ("RotaryEmbedding",)),
                        ("diffusers", ()), ("diffusers.models", ()), ("diffusers.models.embeddings", ("TimestepEmbedding",))):
        try:
            importlib.import_module(name)
        except ImportError:
            mod = types.ModuleType(name)
            for a in attrs:
                setattr(mod, a, type(a, (), {}))
            sys.modules[name] = mod


def reference_model(repo: Path, device: str) -> torch.nn.Module:
    """The reference's ``Diffusion`` module with its planning configuration (causal attention)."""
    _stand_ins()
    path = repo / "algorithms" / "diffusion_forcing" / "models"
    spec = importlib.util.spec_from_file_location("dfref_models", path / "__init__.py", submodule_search_locations=[str(path)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["dfref_models"] = mod
    spec.loader.exec_module(mod)
    ns = types.SimpleNamespace
    cfg = ns(timesteps=1000, sampling_timesteps=STEPS, beta_schedule="linear", schedule_fn_kwargs={}, objective="pred_x0",
             use_fused_snr=True, snr_clip=5.0, cum_snr_decay=0.96, ddim_sampling_eta=0.0, clip_noise=20.0,
             stabilization_level=STABILIZATION,
             architecture=ns(network_size=WIDTH, num_layers=DEPTH, attn_heads=HEADS, dim_feedforward=FFN))
    torch.manual_seed(0)
    return mod.Diffusion(torch.Size([DIM]), external_cond_dim=0, is_causal=True, cfg=cfg).to(device).eval()


# ---------------------------------------------------------------------------------- rollouts
def reference_rollout(diffusion, batch: int, horizon: int, scheduling: str, chunk: int, device: str) -> Iterator[int]:
    """The reference's sampling loop (time-major [T, B, C]); yields the tokens finished so far."""
    xs = torch.randn(1, batch, DIM, device=device)
    done = 0
    while done < horizon:
        h = min(chunk, horizon - done)
        m = scheduling_matrix(scheduling, h, STEPS).numpy()
        xs = torch.cat([xs, torch.randn(h, batch, DIM, device=device).clamp(-20, 20)], 0)
        cur = xs.shape[0] - h
        start = max(0, xs.shape[0] - WINDOW)
        zeros = torch.zeros(cur, dtype=torch.long)
        for r in range(m.shape[0] - 1):
            lv = [torch.cat([zeros, torch.from_numpy(m[k])])[:, None].repeat(1, batch).to(device) for k in (r, r + 1)]
            xs[start:] = diffusion.sample_step(xs[start:], None, lv[0][start:], lv[1][start:])
        done += h
        yield done


def dforce_rollout(model: DiffusionForcing, batch: int, horizon: int, scheduling: str, chunk: int, device: str,
                   cache: str, precision: str, compile: bool = False) -> Iterator[int]:
    """dforce's rollout through ``model.stream``; yields the tokens finished so far, per chunk."""
    context = torch.randn(batch, 1, DIM, device=device)
    stream = model.stream(context, horizon, scheduling=scheduling, steps=STEPS, chunk_size=chunk, history_len=WINDOW - chunk,
                          stabilization_level=STABILIZATION / STEPS, cache=cache, precision=precision, seed=0,
                          **({"compile": True} if compile else {}))
    for i, _ in enumerate(stream, 1):
        if i % chunk == 0 or i == horizon:
            yield i


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(run: Callable[[int], Iterator[int]], horizon: int, chunk: int, device: str) -> dict:
    """Wall and process-CPU seconds at each yield of ``run(horizon)`` (tokens finished -> (wall, cpu)),
    after a one-chunk warm-up run (its wall seconds under the key ``"warmup_s"``: the compile time)."""
    out = {}
    with torch.inference_mode():
        w0 = time.perf_counter()
        for _ in run(chunk):
            pass
        sync(device)
        out["warmup_s"] = time.perf_counter() - w0
        w0, c0 = time.perf_counter(), time.process_time()
        for n in run(horizon):
            sync(device)
            out[n] = (time.perf_counter() - w0, time.process_time() - c0)
    return out


def at_length(times: dict[int, tuple[float, float]], length: int, chunk: int) -> tuple[float, float, int]:
    """(wall, cpu, measured tokens) for ``length`` tokens: measured, or the first 64 plus the rest
    at the cost per token of the last measured chunks (whose windows are full)."""
    times = {k: v for k, v in times.items() if k != "warmup_s"}
    if length in times:
        return (*times[length], length)
    last = max(times)
    base = max(n for n in times if n <= WINDOW)
    steady = [(times[last][i] - times[base][i]) / (last - base) for i in (0, 1)]
    return times[base][0] + (length - base) * steady[0], times[base][1] + (length - base) * steady[1], last


# ---------------------------------------------------------------------------------- training
def train_step_fn(model, kind: str, batch: int, seq: int, device: str, precision: str) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, seq, DIM, device=device, generator=g)

    def loss():
        if kind == "reference":  # time-major, per-token levels as the reference's training draws them
            k = torch.randint(0, 1000, (seq, batch), device=device, generator=g)
            return model(x.transpose(0, 1), None, k)[1].mean()
        return model.loss(x, generator=g)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            value = loss()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    return step


def train_flops(module: torch.nn.Module, batch: int, seq: int) -> float:
    """``6 N B T + 12 L d B T^2`` (N = matmul weights applied per token; see ``benchmarks/rollout_speed.py``)."""
    return 6 * linear_params(module) * batch * seq + 12 * DEPTH * WIDTH * batch * seq**2


def matmul_peak(device: str, precision: str) -> float:
    """FLOP/s of a large square matmul on this device and thread count (the MFU denominator)."""
    n = 2048 if device == "cpu" else 8192
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 3 if device == "cpu" else 20
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def bench_training(args, repo: Optional[Path]) -> dict:
    batch, seq, steps = (8, 16, 2) if args.quick else (64, 64, 5 if args.device == "cpu" else 30)
    out = {"batch": batch, "seq": seq, "steps_timed": steps, "optimizer": "AdamW", "rows": []}
    kinds = ["equal", "default"] + (["reference"] if repo else [])
    for precision in ("fp32", "bf16"):
        peak = matmul_peak(args.device, precision)
        for kind in kinds:
            model = reference_model(repo, args.device).train() if kind == "reference" else dforce_model(kind, args.device).train()
            step = train_step_fn(model, kind, batch, seq, args.device, precision)
            for _ in range(2):
                step()
            sync(args.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            sync(args.device)
            sec = (time.perf_counter() - t0) / steps
            net = model.model if kind == "reference" else model.backbone
            flops = train_flops(net, batch, seq)
            out["rows"].append({"model": kind, "precision": precision, "params": sum(p.numel() for p in net.parameters()),
                                "steps_per_s": 1 / sec, "flops_per_step": flops, "matmul_peak_flops": peak, "mfu": flops / sec / peak})
            print(f"  train {kind:9s} {precision}: {1 / sec:.2f} steps/s, MFU {flops / sec / peak:.1%}", flush=True)
    for row in out["rows"]:
        ref = [r for r in out["rows"] if r["model"] == "reference" and r["precision"] == row["precision"]]
        row["ratio"] = row["steps_per_s"] / ref[0]["steps_per_s"] if ref else None
    return out


# ---------------------------------------------------------------------------------- workloads
def workloads(quick: bool, batches: Optional[list[int]] = None) -> list[dict]:
    """Each: one timed rollout per path, reported at ``lengths``; ``batches``: only the autoregressive
    rows of these batch sizes."""
    if quick:
        return [dict(scheduling="autoregressive", chunk=1, batch=2, horizon=4, lengths=[4], caches=["none", "window", "rolling"])]
    ar = dict(scheduling="autoregressive", chunk=1, horizon=WINDOW + 8, lengths=[64, 256], caches=["none", "window", "rolling"])
    if batches:
        return [{**ar, "batch": b} for b in batches]
    return [
        {**ar, "batch": 1},
        {**ar, "batch": 16},
        dict(scheduling="pyramid", chunk=16, batch=16, horizon=80, lengths=[256], caches=["none", "window"]),
        dict(scheduling="full_sequence", chunk=16, batch=16, horizon=80, lengths=[256], caches=["none", "window"]),
    ]


def quoted_reference() -> tuple[dict, Optional[str]]:
    """The reference's tokens/s per (L, B, scheduling, chunk) from ``results/speed.json`` (a side-by-side run)."""
    path = RESULTS / "speed.json"
    if not path.exists():
        return {}, None
    res = json.loads(path.read_text())
    rows = res.get("reference_workload", {}).get("rows", [])
    table = {(r["L"], r["B"], r["scheduling"], r["chunk"]): r["reference_tokens_per_s"] for r in rows if r.get("reference_tokens_per_s")}
    return table, f"quoted from benchmarks/results/speed.json (git_sha {res.get('git_sha', '?')[:7]}, {res.get('machine', {}).get('date')})"


def bench_rollouts(args, repo: Optional[Path]) -> list[dict]:
    rows = []
    models = {kind: dforce_model(kind, args.device) for kind in args.models}
    ref = reference_model(repo, args.device) if repo else None
    quoted, source = ({}, None) if repo else quoted_reference()
    for w in workloads(args.quick, args.batches):
        sch, chunk, b, h = w["scheduling"], w["chunk"], w["batch"], w["horizon"]
        print(f"== {sch} chunk {chunk} B={b}", flush=True)
        ref_times = timed(lambda n: reference_rollout(ref, b, n, sch, chunk, args.device), h, chunk, args.device) if ref else None
        caches = [c for c in w["caches"] if not args.caches or c in args.caches]
        paths = [(kind, cache, "fp32", False) for kind in models for cache in caches]
        if args.short:
            paths = [p for p in paths if p[0] == "equal" or p[1] == caches[-1]]
        elif b > 1 and sch == "autoregressive" and not args.caches:
            paths += [(kind, cache, "bf16", False) for kind in models for cache in ("window", "rolling")]
        if args.compiled and chunk == 1:  # the compiled one-token decode step (compile=True)
            paths += [(kind, cache, "fp32", True) for kind in models if kind == "equal" for cache in caches if cache != "none"]
        for kind, cache, precision, compiled in paths:
            times = timed(lambda n: dforce_rollout(models[kind], b, n, sch, chunk, args.device, cache, precision, compiled), h, chunk,
                          args.device)
            for length in w["lengths"]:
                wall, cpu, measured = at_length(times, length, chunk)
                row = {"L": length, "B": b, "scheduling": sch, "chunk": chunk, "model": kind, "cache": cache, "precision": precision,
                       "compiled": compiled, "tokens_per_s": length * b / wall, "measured_tokens": measured,
                       "cpu_ms_per_token": 1000 * cpu / (length * b), "warmup_s": times["warmup_s"],
                       "reference_tokens_per_s": None, "ratio": None, "cpu_time_ratio": None}
                if ref_times:
                    rwall, rcpu, _ = at_length(ref_times, length, chunk)
                    row.update(reference_tokens_per_s=length * b / rwall, ratio=rwall / wall, cpu_time_ratio=rcpu / cpu)
                elif (length, b, sch, chunk) in quoted:
                    ref_tps = quoted[(length, b, sch, chunk)]
                    row.update(reference_tokens_per_s=ref_tps, ratio=row["tokens_per_s"] / ref_tps, reference_source=source)
                rows.append(row)
                ratio = f"{row['ratio']:.2f}x ref" if row["ratio"] else ""
                tag = "compiled" if compiled else "eager"
                print(f"  L={length:4d} {kind:7s} {cache:7s} {precision} {tag:8s}: {row['tokens_per_s']:8.2f} tok/s {ratio} "
                      f"(warm-up {times['warmup_s']:.1f} s)", flush=True)
    return rows


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# Speed on the reference's own workload",
        "",
        f"Device {res['device']}; {m['cpu_count']} CPUs, {m['torch_threads']} torch threads; torch {m['torch']}; {m['date']}; "
        f"load average {m['load_avg_1min']:.1f} at the end. Reference: buoyancy99/diffusion-forcing `{res['reference_commit']}`.",
        "",
        "Workload: 20-float tokens, 12 layers, width 128, 4 heads, FFN 512, x0 objective, linear betas (1000), 50 DDIM steps "
        "(eta 0), window 64, one context token, stabilization; inference mode. `equal` = `ConcatTransformer` (the reference's "
        "layout, 2.41 M parameters), `default` = dforce's adaLN-Zero `Transformer` (3.65 M). `measured` = tokens actually "
        "generated; longer rows add the rest at the measured full-window cost per token.",
        "",
        "| scheduling | L | B | model | cache | precision | compiled | tokens/s | reference tokens/s | ratio | CPU-time ratio | measured | warm-up s |",
        "|---|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in res["reference_workload"]["rows"]:
        lines.append(f"| {r['scheduling']} (chunk {r['chunk']}) | {r['L']} | {r['B']} | {r['model']} | {r['cache']} | {r['precision']} | "
                     f"{'yes' if r.get('compiled') else 'no'} | {r['tokens_per_s']:.2f} | {fmt(r['reference_tokens_per_s'], '.2f')} | "
                     f"{fmt(r['ratio'], '.2f')} | {fmt(r['cpu_time_ratio'], '.2f')} | {r['measured_tokens']} | {fmt(r.get('warmup_s'), '.1f')} |")
    sources = {r["reference_source"] for r in res["reference_workload"]["rows"] if r.get("reference_source")}
    lines += [f"\nReference tokens/s {s}." for s in sorted(sources)]
    t = res.get("training")
    if not t:
        return "\n".join(lines)
    lines += ["", f"## Training (B {t['batch']} x T {t['seq']}, AdamW, {t['steps_timed']} timed steps after 2 warm-up)", "",
              "| model | precision | params | steps/s | / reference | MFU |", "|---|---|---:|---:|---:|---:|"]
    for r in t["rows"]:
        lines.append(f"| {r['model']} | {r['precision']} | {r['params'] / 1e6:.2f} M | {r['steps_per_s']:.2f} | {fmt(r['ratio'], '.2f')} | "
                     f"{r['mfu']:.1%} |")
    lines += ["", "MFU = (6 N B T + 12 L d B T^2) FLOPs per step / step time / the FLOP/s of a large square matmul measured "
              "in the same run and precision."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, default=None, help="checkout of buoyancy99/diffusion-forcing (main) to run side by side")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the issue's workload: 2)")
    ap.add_argument("--quick", action="store_true", help="seconds; writes nothing")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="only the autoregressive rows of these batch sizes")
    ap.add_argument("--models", nargs="+", default=["equal", "default"], choices=["equal", "default"])
    ap.add_argument("--caches", nargs="+", default=None, choices=["none", "window", "rolling"], help="only these caches")
    ap.add_argument("--no-compiled", dest="compiled", action="store_false", help="skip the compile=True rows")
    ap.add_argument("--no-training", dest="training", action="store_false", help="skip the training table")
    ap.add_argument("--out", default=None, help="results name (default speed, or speed_cuda on a GPU)")
    ap.add_argument("--short", action="store_true", help="fewer rows (a lent GPU's time budget): the default model only with "
                    "its best cache, no bf16 rollouts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = provenance()
    repo = args.reference.resolve() if args.reference else None
    if repo and not (repo / "algorithms" / "diffusion_forcing" / "models" / "diffusion.py").exists():
        raise SystemExit(f"error: {repo} is not a checkout of buoyancy99/diffusion-forcing (no algorithms/diffusion_forcing/models)")
    t0 = time.time()
    rows = bench_rollouts(args, repo)
    training = bench_training(args, repo) if args.training else None
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    res = {"device": device, "machine": machine(), "reference_commit": reference_commit(repo) if repo else None,
           "reference_workload": {"rows": rows}, "training": training, "wall_s": time.time() - t0}
    if args.quick:
        print(markdown(res))
        return
    solvers = RESULTS / "solvers.json"  # the equal-quality table of benchmarks/solvers.py, quoted with its provenance
    if solvers.exists():
        quoted = json.loads(solvers.read_text())
        res["equal_quality"] = quoted.get("equal_quality", quoted.get("rows", []))
        res["equal_quality_source"] = {k: quoted.get(k) for k in ("git_sha", "command")}
    write_results(args.out or ("speed" if args.device == "cpu" else "speed_cuda"), {**res, **start}, markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()

"""Solver benchmark: how few network calls per token reach 50-step DDIM quality? DDIM, DPM-Solver++(2M), distilled students.

The dynamics benchmark's Lorenz-63 setting (``dforce.dynamics.experiment``): one Diffusion Forcing
model is trained once (default recipe and training noise, as ``benchmarks/dynamics.py`` trains its
``df`` model), then rolled out autoregressively (``df_ar``: one new token per window, stabilization,
KV cache ``cache="window"``) from true context with each sampler below, for several sampling seeds.
Then progressive distillation (``dforce.distillation``): a 10-step student of the model's 50-step
DDIM, a 5-step student of that one and a 1-step student of the 5-step one (``distill_steps``
training steps each, the training loop of the benchmark), each sampled with DDIM on its own grid.

Metrics, as ``benchmarks/dynamics.py`` computes them: ``w1`` = W1 of the last rollout segment (one
training window, all rollouts) to the true stationary marginals; ``crps`` = ensemble CRPS over the
first 8 tokens. ``calls_per_token`` = denoiser invocations (one per scheduling-matrix row, each a
backbone pass over the window's changed tokens) per generated token; ``tokens_per_token`` = tokens
the backbone evaluated (batch rows excluded) per generated token, which the KV cache makes smaller
than ``calls x window``. Both are counted, not assumed.

    python benchmarks/solvers.py           # ~12 min -> results/solvers.{json,md}
    python benchmarks/solvers.py --quick   # seconds, a smoke test (writes nothing)
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, provenance, write_results  # noqa: E402

from dforce.distillation import distillation_loss  # noqa: E402
from dforce.dynamics.experiment import (  # noqa: E402
    DEFAULT_NOISE,
    SETTINGS,
    RunConfig,
    Trainer,
    batches,
    evaluate,
    load_system,
    make_model,
    sample,
    short_horizon,
)

SYSTEM = "lorenz63"
REFERENCE = ("ddim", 50, "uniform")
# (solver, steps, level_spacing): the default uniform-in-t grid, then the logSNR-uniform grid DPM-Solver is made for
SAMPLERS = (REFERENCE, ("ddim", 25, "uniform"), ("ddim", 10, "uniform"), ("ddim", 5, "uniform"), ("dpm++2m", 10, "uniform"),
            ("dpm++2m", 5, "uniform"), ("dpm++2m", 3, "uniform"), ("ddim", 10, "logsnr"), ("ddim", 5, "logsnr"),
            ("dpm++2m", 10, "logsnr"), ("dpm++2m", 5, "logsnr"))
CONVERGENCE_STEPS = (5, 10, 20, 40, 80)
CONVERGENCE_REFERENCE_STEPS = 1000
TOLERANCE = 0.05
DISTILLATION = ((50, 10), (10, 5), (5, 1))  # (teacher steps, student steps), each student the next teacher


@dataclass
class BenchConfig(RunConfig):
    """``RunConfig`` of the dynamics benchmark (1500 training steps, 32 rollouts of 10 windows) plus
    the training seed and the sampling seeds."""

    train_seed: int = 0
    seeds: tuple = (0, 1, 2, 3, 4)
    distill_steps: int = 1500


def quick(cfg: BenchConfig) -> BenchConfig:
    cfg.train_steps, cfg.num_rollouts, cfg.short_contexts, cfg.short_ensemble, cfg.seeds = 20, 4, 2, 2, (0, 1)
    cfg.distill_steps = 5
    return cfg


class CallCounter:
    """Counts backbone passes and the tokens they evaluate (per batch row) on a cached model, while entered."""

    def __init__(self, model) -> None:
        self.backbone, self.calls, self.tokens = model.backbone, 0, 0

    def __enter__(self) -> "CallCounter":
        inner = self.backbone.forward_cached

        def counted(x, *a, **k):
            self.calls += 1
            self.tokens += x.shape[1]
            return inner(x, *a, **k)

        self.backbone.forward_cached = counted
        return self

    def __exit__(self, *exc) -> None:
        del self.backbone.forward_cached  # the class's method again


def run(cfg: BenchConfig, log) -> dict:
    s = SETTINGS[SYSTEM]
    train, test, reference = load_system(SYSTEM, s, cfg, cfg.train_seed)
    torch.manual_seed(cfg.train_seed)
    tr = Trainer(make_model(train.shape[-1], s, DEFAULT_NOISE), cfg, cfg.train_steps, cfg.train_seed)
    data = batches(train, s.window, cfg.batch_size, torch.Generator().manual_seed(cfg.train_seed))
    t0 = time.time()
    for _ in range(cfg.train_steps):
        tr.step(next(data))
    train_seconds = round(time.time() - t0, 1)
    log(f"trained {SYSTEM} in {train_seconds}s")
    model = tr.ema
    horizon = cfg.rollout_windows * s.window
    ctx, truth = test[: cfg.num_rollouts, : s.context], test[: cfg.num_rollouts, s.context :]

    def measure(model, solver: str, steps: int, spacing: str, name: str) -> dict:
        per_seed = []
        over = dict(steps=steps, solver=solver, level_spacing=spacing)
        for seed in cfg.seeds:
            t1 = time.time()
            with CallCounter(model) as counter:
                pred = sample(model, ctx, horizon, s, cfg, "df_ar", seed, **over)
            calls, tokens = counter.calls / horizon, counter.tokens / horizon
            r = evaluate(pred, truth, reference, s.window, False)
            crps = short_horizon(model, "df_ar", test, s, cfg, seed, **over)["crps_first8"]
            per_seed.append({"seed": seed, "w1": float(r["w1_last"]), "crps": float(crps), "calls_per_token": calls,
                             "tokens_per_token": tokens, "diverged_fraction": float(r["diverged_fraction"]),
                             "seconds": round(time.time() - t1, 1)})
            log(f"  {name:9s} {steps:2d} steps {spacing:7s} seed {seed}: W1 {r['w1_last']:.4f} CRPS {crps:.4f} "
                f"calls/token {calls:.2f} ({per_seed[-1]['seconds']}s)")
        return {"sampler": name, "steps": steps, "level_spacing": spacing, "per_seed": per_seed}

    rows = [measure(model, solver, steps, spacing, solver) for solver, steps, spacing in SAMPLERS]
    # progressive distillation: each student starts as a copy of its teacher and learns one of its
    # steps from `teacher_steps / student_steps` teacher DDIM steps (dforce.distillation)
    teacher, data = model, batches(train, s.window, cfg.batch_size, torch.Generator().manual_seed(cfg.train_seed + 1))
    for teacher_steps, student_steps in DISTILLATION:
        student = Trainer(copy.deepcopy(teacher), cfg, cfg.distill_steps, cfg.train_seed)
        t1 = time.time()
        for _ in range(cfg.distill_steps):
            student.step(next(data), loss_fn=lambda m, x: distillation_loss(m, teacher, x, teacher_steps=teacher_steps,
                                                                            student_steps=student_steps, generator=student.gen))
        seconds = round(time.time() - t1, 1)
        log(f"distilled {teacher_steps} -> {student_steps} steps in {seconds}s")
        teacher = student.ema
        rows.append({**measure(teacher, "ddim", student_steps, "uniform", "distilled"), "distilled_from_steps": teacher_steps,
                     "distill_seconds": seconds})
    summarize(rows)
    return {"rows": rows, "convergence": convergence(model, ctx, s, log), "train_seconds": train_seconds}


def convergence(model, ctx: np.ndarray, s, log) -> dict:
    """ODE-solver error alone: the first token after true context, mean |x - x_ref| against
    ``CONVERGENCE_REFERENCE_STEPS``-step DDIM with the same noise, per solver, spacing and steps."""
    out: dict = {}
    context = torch.from_numpy(ctx)
    for spacing in ("uniform", "logsnr"):
        one = lambda steps, solver: model.sample(context, 1, steps=steps, solver=solver, level_spacing=spacing, seed=0,  # noqa: E731
                                                 history_len=s.window - 1)
        with torch.inference_mode():
            ref = one(CONVERGENCE_REFERENCE_STEPS, "ddim")
            out[spacing] = {solver: [float((one(n, solver) - ref).abs().mean()) for n in CONVERGENCE_STEPS] for solver in ("ddim", "dpm++2m")}
        log(f"  convergence {spacing}: {out[spacing]}")
    return out


def stats(v: list) -> dict:
    return {"mean": float(np.mean(v)), "std": float(np.std(v))}


def summarize(rows: list) -> None:
    """Mean ± std over seeds, the change against 50-step DDIM (paired by seed) and the 5% verdict."""
    ref = next(r for r in rows if (r["sampler"], r["steps"], r["level_spacing"]) == REFERENCE)
    for r in rows:
        for k in ("calls_per_token", "tokens_per_token"):  # the same for every seed
            r[k] = float(np.mean([p[k] for p in r["per_seed"]]))
        for k in ("w1", "crps"):
            r[k] = stats([p[k] for p in r["per_seed"]])
        change = {}
        for k in ("w1", "crps"):
            rel = [p[k] / q[k] - 1 for p, q in zip(r["per_seed"], ref["per_seed"])]
            r[f"{k}_rel_to_reference"] = stats(rel)
            change[k] = r[k]["mean"] / ref[k]["mean"] - 1
        r["within_5pct_of_ddim50"] = bool(all(abs(v) <= TOLERANCE for v in change.values()))
        r["equal_quality"] = bool(abs(change["crps"]) <= TOLERANCE and change["w1"] <= TOLERANCE)


def markdown(res: dict) -> str:
    c, rows = res["config"], res["rows"]
    ref = rows[0]
    noise = {k: ref[k]["std"] / ref[k]["mean"] for k in ("w1", "crps")}
    distilled = [r for r in rows if "distill_seconds" in r]
    lines = ["# Solvers: DDIM, DPM-Solver++(2M) and distilled students at equal quality", "",
             f"{SYSTEM}, one Diffusion Forcing model ({c['train_steps']} training steps, seed {c['train_seed']}, "
             f"{res['train_seconds']} s), autoregressive rollouts of {c['rollout_windows']}x the window (one new token per "
             f"window, stabilization {c['stabilization_level']}, KV cache), {c['num_rollouts']} rollouts per sampling seed, "
             f"sampling seeds {list(c['seeds'])}. Wall time {res['total_seconds']:.0f} s on {res['machine']['cpu_count']} "
             f"cores, 1 torch thread.", "",
             "- **distilled**: progressive distillation (`dforce.distillation`) from the row above it, "
             + ", ".join(f"{r['distilled_from_steps']} -> {r['steps']} steps in {r['distill_seconds']} s" for r in distilled)
             + f" ({c['distill_steps']} steps of the training loop each); sampled with DDIM on the student's grid.",
             "- **W1**: last rollout segment against the true stationary marginals (as `benchmarks/dynamics.py`).",
             f"- **CRPS**: first 8 tokens, {c['short_ensemble']}-member ensembles from {c['short_contexts']} contexts.",
             "- **calls/token**: denoiser invocations (network passes; one per scheduling-matrix row) per generated "
             "token, counted. **tokens/token**: tokens the backbone evaluated per generated token (the KV cache "
             "re-runs only changed tokens).",
             "- **within 5%**: mean W1 and mean CRPS over seeds both within ±5% of 50-step DDIM's (two-sided: a sampler "
             "that has not converged can also score lower, e.g. less spread lowers CRPS). **equal quality**: CRPS within "
             "±5% (two-sided: this ensemble estimator rewards a narrower ensemble) and W1 at most 5% above the reference's "
             "(W1 is the distance to the true law: lower is better, whatever the spread). "
             "**Δ vs ref**: the per-seed relative change against 50-step DDIM with the same sampling seed, mean ± std.", "",
             "| sampler | steps | level spacing | calls/token | tokens/token | W1 last segment | Δ W1 vs ref | CRPS first 8 | Δ CRPS vs ref | within 5% | equal quality |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    pct = lambda v: f"{100 * v['mean']:+.1f}% ± {100 * v['std']:.1f}%"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['level_spacing']} | {r['calls_per_token']:.1f} | {r['tokens_per_token']:.1f} | "
                     f"{r['w1']['mean']:.4f} ± {r['w1']['std']:.4f} | {pct(r['w1_rel_to_reference'])} | "
                     f"{r['crps']['mean']:.4f} ± {r['crps']['std']:.4f} | {pct(r['crps_rel_to_reference'])} | "
                     f"{'yes' if r['within_5pct_of_ddim50'] else 'no'} | {'yes' if r['equal_quality'] else 'no'} |")
    lines += ["", f"Seed noise of the reference (std / mean over sampling seeds): W1 {100 * noise['w1']:.1f}%, "
              f"CRPS {100 * noise['crps']:.1f}%. " + " ".join(
                  f"{k.upper()}'s seed noise exceeds the 5% tolerance, so its verdicts are within noise, not a resolved difference."
                  for k, v in noise.items() if v > TOLERANCE),
              "", "## Solver error alone", "",
              f"The first token after true context ({c['num_rollouts']} contexts, the same noise), mean |x - x_ref| against "
              f"{CONVERGENCE_REFERENCE_STEPS}-step DDIM on the same level grid: the ODE-solver error without rollout chaos.", "",
              "| level spacing | solver | " + " | ".join(f"{n} steps" for n in CONVERGENCE_STEPS) + " |",
              "|---|---|" + "---|" * len(CONVERGENCE_STEPS)]
    for spacing, by_solver in res["convergence"].items():
        for solver, errs in by_solver.items():
            lines.append(f"| {spacing} | {solver} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds, for a smoke test (writes nothing)")
    ap.add_argument("--seeds", nargs="*", type=int, default=None, help="sampling seeds (default 0 1 2 3 4)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = quick(BenchConfig()) if args.quick else BenchConfig()
    if args.seeds:
        cfg.seeds = tuple(args.seeds)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    t0, start = time.time(), provenance()  # the code that runs, even if the tree changes meanwhile
    res = {**start, "config": asdict(cfg), "machine": machine(), **run(cfg, log)}
    res["total_seconds"] = round(time.time() - t0, 1)
    md = markdown(res)
    print(md)
    if not args.quick:
        log("wrote", *write_results("solvers", res, md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

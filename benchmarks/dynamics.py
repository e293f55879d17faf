"""Dynamical-systems benchmark: where does Diffusion Forcing stay in distribution over long rollouts?

For each system (generated on the spot, see ``dforce.dynamics.systems``) and seed, the same causal
transformer is trained with equal optimizer steps as

- ``df``: Diffusion Forcing with the library's default training noise (``DEFAULT_NOISE`` below),
  sampled autoregressively with stabilization (``df_ar``), under a pyramid matrix
  (``df_pyramid``) and autoregressively without stabilization (``df_ar_no_stab``);
- ``df_self_rollout``: the ``df`` run's snapshot ``finetune_steps`` before the end, fine-tuned on
  its own rollouts (``dforce.training.self_rollout``) for the same wall-clock time as the plain
  model's last ``finetune_steps`` steps (equal compute, measured);
- ``teacher_forcing``: next-token diffusion with clean history;
- ``full_sequence``: one noise level per window, sampled with replacement conditioning.

Every model rolls out 10x the training window (sliding window, KV cache ``cache="window"``) from
true context; metrics per rollout segment (one training window each): W1 to the true stationary
marginals (mean over dimensions, values clipped to +-50 so a diverged rollout gives a large
finite number), for the field also a log power-spectrum distance; the fraction of diverged
rollouts (any |x| > 10 in normalised units or non-finite); the roughness ratio (mean squared
second difference in time of the rollout over that of the true continuation, 1.0 = as smooth as
the system); short-horizon CRPS (ensemble estimator) and MSE of the ensemble mean over the first
8 tokens against the true continuation.

    python benchmarks/dynamics.py                      # full run, 3 seeds -> results/dynamics.{json,md}
    python benchmarks/dynamics.py --quick              # seconds, for a smoke test
    python benchmarks/dynamics.py --ablation lorenz63  # training-noise / stabilization / steps sweeps
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_results  # noqa: E402

from dforce.dynamics.experiment import (  # noqa: E402
    DEFAULT_NOISE,
    SETTINGS,
    SystemSetting,
    Trainer,
    batches,
    evaluate,
    load_system,
    make_model,
    sample,
    short_horizon,
)
from dforce.training.self_rollout import SelfRolloutConfig, self_rollout_loss  # noqa: E402


@dataclass
class BenchConfig:
    systems: tuple = ("lorenz63", "double_well", "kuramoto_sivashinsky")
    seeds: tuple = (0, 1, 2)
    train_steps: int = 1500
    finetune_steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    steps: int = 10
    stabilization_level: float = 0.02
    history: str = "noise"
    rollout_windows: int = 10
    num_rollouts: int = 32
    short_contexts: int = 16
    short_ensemble: int = 8
    short_tokens: int = 8
    training_noise: str = DEFAULT_NOISE
    self_rollout: dict = field(default_factory=lambda: asdict(SelfRolloutConfig()))


def quick(cfg: BenchConfig) -> BenchConfig:
    cfg.seeds, cfg.train_steps, cfg.finetune_steps, cfg.num_rollouts = (0,), 20, 5, 4
    cfg.short_contexts, cfg.short_ensemble, cfg.steps = 2, 2, 2
    return cfg


def train_models(train: torch.Tensor, s: SystemSetting, cfg: BenchConfig, seed: int, log) -> dict:
    dim = train.shape[-1]
    out, info = {}, {}
    for name, noise in (("df", cfg.training_noise), ("teacher_forcing", "teacher_forcing"), ("full_sequence", "full_sequence")):
        torch.manual_seed(seed)
        tr = Trainer(make_model(dim, s, noise), cfg, cfg.train_steps, seed)
        # every model sees the same batches: the self-rollout stage below runs for a wall-clock
        # budget, so it draws from a stream of its own
        data = batches(train, s.window, cfg.batch_size, torch.Generator().manual_seed(seed))
        t0 = time.time()
        split = cfg.train_steps - cfg.finetune_steps if name == "df" else cfg.train_steps
        for _ in range(split):
            tr.step(next(data))
        if name == "df":
            fork = tr.fork()
            t1 = time.time()
            for _ in range(cfg.finetune_steps):
                tr.step(next(data))
            plain_s = time.time() - t1
            sr_cfg = SelfRolloutConfig(**cfg.self_rollout)
            sr_loss = lambda m, x: self_rollout_loss(m, x, sr_cfg, fork.gen)  # noqa: E731
            sr_data = batches(train, s.window, cfg.batch_size, torch.Generator().manual_seed(seed + 1))
            t1, n_sr = time.time(), 0
            while n_sr < 1 or time.time() - t1 < plain_s:  # equal wall-clock compute
                fork.step(next(sr_data), sr_loss)
                n_sr += 1
            out["df_self_rollout"] = fork.ema
            info["df_self_rollout"] = {"finetune_steps": n_sr, "finetune_seconds": round(time.time() - t1, 1),
                                       "plain_steps_same_time": cfg.finetune_steps, "plain_seconds": round(plain_s, 1)}
        out[name] = tr.ema
        info[name] = {"train_seconds": round(time.time() - t0, 1)}
        log(f"    trained {name} in {time.time() - t0:.0f}s")
    return out, info


METHODS = ("df_ar", "df_pyramid", "df_ar_no_stab", "df_self_rollout", "teacher_forcing", "full_sequence")
MODEL_OF = {"df_ar": "df", "df_pyramid": "df", "df_ar_no_stab": "df", "df_self_rollout": "df_self_rollout",
            "teacher_forcing": "teacher_forcing", "full_sequence": "full_sequence"}


def run_system(name: str, cfg: BenchConfig, log) -> dict:
    s = SETTINGS[name]
    per_seed: dict = {m: [] for m in (*METHODS, "ground_truth")}
    infos = []
    for seed in cfg.seeds:
        t0 = time.time()
        train, test, reference = load_system(name, s, cfg, seed)
        horizon = cfg.rollout_windows * s.window
        truth = test[: cfg.num_rollouts, s.context :]
        models, info = train_models(train, s, cfg, seed, log)
        infos.append(info)
        field_ = name == "kuramoto_sivashinsky"
        gt = evaluate(truth, truth, reference, s.window, field_)
        gt.update(crps_first8=0.0, mse_first8=0.0)
        per_seed["ground_truth"].append(gt)
        for m in METHODS:
            t1 = time.time()
            model = models[MODEL_OF[m]]
            pred = sample(model, test[: cfg.num_rollouts, : s.context], horizon, s, cfg, m, seed)
            r = evaluate(pred, truth, reference, s.window, field_)
            r.update(short_horizon(model, m, test, s, cfg, seed))
            r["sample_seconds"] = round(time.time() - t1, 1)
            per_seed[m].append(r)
            log(f"    {m:16s} W1 last {r['w1_last']:.3f} rough {r['roughness_ratio']:.2f} crps {r['crps_first8']:.3f} "
                f"div {r['diverged_fraction']:.2f} ({r['sample_seconds']}s)")
        log(f"  {name} seed {seed}: {time.time() - t0:.0f}s")
    out = {}
    for m, rs in per_seed.items():
        agg = lambda k: {"mean": float(np.mean([r[k] for r in rs])), "std": float(np.std([r[k] for r in rs]))}  # noqa: E731
        out[m] = {
            "w1_last_segment": agg("w1_last"),
            "w1_per_segment": [float(v) for v in np.mean([r["w1_per_segment"] for r in rs], 0)],
            "roughness_ratio": float(np.mean([r["roughness_ratio"] for r in rs])),
            "roughness_ratio_std": float(np.std([r["roughness_ratio"] for r in rs])),
            "diverged_fraction": float(np.mean([r["diverged_fraction"] for r in rs])),
            "mse_first8": float(np.mean([r["mse_first8"] for r in rs])),
            "crps_first8": float(np.mean([r["crps_first8"] for r in rs])),
            "crps_first8_std": float(np.std([r["crps_first8"] for r in rs])),
            "per_seed_w1_last": [float(r["w1_last"]) for r in rs],
        }
        if "spectrum_last" in rs[0]:
            out[m]["spectrum_last_segment"] = agg("spectrum_last")
            out[m]["spectrum_per_segment"] = [float(v) for v in np.mean([r["spectrum_per_segment"] for r in rs], 0)]
    out["_training"] = infos
    return out


# ---------------------------------------------------------------------------------------- report
def fmt(v: dict) -> str:
    return f"{v['mean']:.3f} ± {v['std']:.3f}"


def markdown(res: dict) -> str:
    lines = ["# Dynamics benchmark: Diffusion Forcing vs teacher forcing over 10x rollouts", "",
             f"Command: `{res['command']}`  ", f"git sha: `{res['git_sha']}`  ",
             f"Seeds: {list(res['config']['seeds'])}; {res['config']['train_steps']} training steps per model "
             f"(batch {res['config']['batch_size']}); sampling {res['config']['steps']} steps, history "
             f"{res['config']['history']} at {res['config']['stabilization_level']}; DF training noise "
             f"`{res['config']['training_noise']}`. Wall time {res['total_seconds']:.0f} s on {res['machine']['cpu_count']} "
             f"cores, 1 torch thread (load avg at start {res['machine']['load_avg_1min']}).", "",
             "W1: mean over dimensions of the 1-D Wasserstein-1 distance between a rollout segment (one training "
             "window, all rollouts) and the true stationary marginals (normalised units). `ground_truth` is the "
             "true continuation scored the same way: the finite-sample floor. Roughness: mean squared second "
             "difference over that of the truth (1.0 = as smooth as the system). CRPS / MSE: first 8 tokens, "
             f"{res['config']['short_ensemble']}-member ensembles (MSE of the ensemble mean).", ""]
    for name, sysres in res["systems"].items():
        lines += [f"## {name}", "", "| method | W1 last segment | W1 first segment | spectrum dist. last | diverged | roughness | CRPS first 8 | MSE first 8 |",
                  "|---|---|---|---|---|---|---|---|"]
        for m, r in sysres.items():
            if m.startswith("_"):
                continue
            spec = fmt(r["spectrum_last_segment"]) if "spectrum_last_segment" in r else "-"
            lines.append(f"| {m} | {fmt(r['w1_last_segment'])} | {r['w1_per_segment'][0]:.3f} | {spec} | {r['diverged_fraction']:.2f} | "
                         f"{r['roughness_ratio']:.2f} | {r['crps_first8']:.3f} | {r['mse_first8']:.3f} |")
        lines.append("")
        lines.append("W1 per segment (mean over seeds): " + "; ".join(
            f"{m}: " + " ".join(f"{v:.2f}" for v in r["w1_per_segment"]) for m, r in sysres.items() if not m.startswith("_")))
        lines.append("")
        sr = [i.get("df_self_rollout") for i in sysres["_training"]]
        lines.append(f"Self-rollout fine-tuning at equal wall-clock compute: {sr}")
        lines.append("")
    if res.get("goals"):
        lines += ["## Goals", ""] + [f"- {g}" for g in res["goals"]] + [""]
    return "\n".join(lines)


def check_goals(res: dict) -> list[str]:
    out = []
    for name, r in res["systems"].items():
        df, tf, gt = r["df_ar"], r["teacher_forcing"], r["ground_truth"]
        ok = df["w1_last_segment"]["mean"] <= tf["w1_last_segment"]["mean"] + max(df["w1_last_segment"]["std"], tf["w1_last_segment"]["std"])
        out.append(f"{name}: DF AR last-segment W1 {fmt(df['w1_last_segment'])} vs TF {fmt(tf['w1_last_segment'])}: "
                   f"{'no worse' if ok else 'WORSE'} (within one seed-std)")
        out.append(f"{name}: short-horizon CRPS DF {df['crps_first8']:.3f} vs TF {tf['crps_first8']:.3f}: "
                   f"{'better' if df['crps_first8'] < tf['crps_first8'] else 'NOT better'}")
        rr = df["roughness_ratio"]
        out.append(f"{name}: DF roughness ratio {rr:.2f}: {'within' if 0.8 <= rr <= 1.25 else 'OUTSIDE'} [0.8, 1.25]")
        pyr = r["df_pyramid"]["w1_last_segment"]
        out.append(f"{name}: DF pyramid W1 {fmt(pyr)} vs AR {fmt(df['w1_last_segment'])}: "
                   f"{'ok' if pyr['mean'] <= df['w1_last_segment']['mean'] + max(pyr['std'], df['w1_last_segment']['std']) else 'WORSE by more than one std'}")
        if name == "kuramoto_sivashinsky":
            ratio = df["w1_last_segment"]["mean"] / gt["w1_last_segment"]["mean"]
            tf_deg = tf["w1_per_segment"][-1] / max(tf["w1_per_segment"][0], 1e-9)
            out.append(f"{name}: DF last-segment W1 / ground truth's = {ratio:.2f} (goal <= 1.5); TF last/first segment W1 = {tf_deg:.2f}")
    return out


ABLATION_NOISES = ("independent", DEFAULT_NOISE)


def run_ablation(name: str, cfg: BenchConfig, log, seed: int = 0) -> dict:
    """Training-noise patterns (DF AR rollouts, default sampling), then stabilization level x variant and
    sampling steps on the default-noise model; one seed."""
    s = SETTINGS[name]
    train, test, reference = load_system(name, s, cfg, seed)
    horizon = cfg.rollout_windows * s.window
    truth = test[: cfg.num_rollouts, s.context :]
    ctx = test[: cfg.num_rollouts, : s.context]
    out: dict = {"training_noise": {}, "stabilization": {}, "steps": {}}

    def score(model, **over):
        t0 = time.time()
        r = evaluate(sample(model, ctx, horizon, s, cfg, "df_ar", seed, **over), truth, reference, s.window, False)
        r.update(short_horizon(model, "df_ar", test, s, cfg, seed) if not over else {})
        r["sample_seconds"] = round(time.time() - t0, 1)
        return {k: v for k, v in r.items() if k != "w1_per_segment"}

    models = {}
    for noise in ABLATION_NOISES:
        torch.manual_seed(seed)
        tr = Trainer(make_model(train.shape[-1], s, noise), cfg, cfg.train_steps, seed)
        data = batches(train, s.window, cfg.batch_size, torch.Generator().manual_seed(seed))
        for _ in range(cfg.train_steps):
            tr.step(next(data))
        models[noise] = tr.ema
        out["training_noise"][noise] = score(tr.ema)
        log(f"  noise {noise}: {out['training_noise'][noise]}")
    model = models[cfg.training_noise]
    for variant, levels in (("noise", (0.0, 0.02, 0.05, 0.1)), ("relabel", (0.02, 0.1))):
        for level in levels:
            r = score(model, history=variant, stabilization_level=level)
            out["stabilization"][f"{variant}@{level}"] = r
            log(f"  stabilization {variant}@{level}: {r}")
    for steps in (5, 10, 20):
        r = score(model, steps=steps)
        out["steps"][str(steps)] = r
        log(f"  steps {steps}: {r}")
    return out


def ablation_markdown(res: dict) -> str:
    lines = ["# Dynamics ablations", "", f"Command: `{res['command']}`  ", f"git sha: `{res['git_sha']}`  ",
             f"System {res['system']}, seed 0, {res['config']['train_steps']} training steps per model, DF AR rollouts of "
             f"10x the window ({res['config']['num_rollouts']} rollouts), {res['config']['steps']} sampling steps unless varied. "
             f"Wall time {res['total_seconds']:.0f} s.", ""]
    for part, title in (("training_noise", "training noise (stabilization noise@0.02)"),
                        ("stabilization", f"stabilization variant@level (model: `{res['config']['training_noise']}`)"),
                        ("steps", "sampling steps")):
        lines += [f"## {title}", "", "| setting | W1 last segment | diverged | roughness | CRPS first 8 | MSE first 8 |", "|---|---|---|---|---|---|"]
        for k, r in res["ablation"][part].items():
            crps = f"{r['crps_first8']:.3f}" if "crps_first8" in r else "-"
            mse = f"{r['mse_first8']:.3f}" if "mse_first8" in r else "-"
            lines.append(f"| `{k}` | {r['w1_last']:.3f} | {r['diverged_fraction']:.2f} | {r['roughness_ratio']:.2f} | {crps} | {mse} |")
        lines.append("")
    return "\n".join(lines)


def git_sha() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(__file__), text=True).strip()
    except Exception:
        return "unknown"


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds, for a smoke test (not written to results/ unless --name)")
    ap.add_argument("--systems", nargs="*", default=None)
    ap.add_argument("--seeds", nargs="*", type=int, default=None)
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--training-noise", default=None)
    ap.add_argument("--self-rollout", default=None, metavar="TOKENS,STEPS", help="self-rollout fine-tuning: generated tokens, sampling steps")
    ap.add_argument("--ablation", default=None, metavar="SYSTEM", help="run the ablation sweeps on one system instead")
    ap.add_argument("--name", default=None, help="results name (default: dynamics, or nothing written with --quick)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = BenchConfig()
    if args.quick:
        cfg = quick(cfg)
    if args.systems:
        cfg.systems = tuple(args.systems)
    if args.seeds is not None:
        cfg.seeds = tuple(args.seeds)
    if args.train_steps:
        cfg.train_steps = args.train_steps
    if args.training_noise:
        cfg.training_noise = args.training_noise
    if args.self_rollout:
        tok, st = (int(v) for v in args.self_rollout.split(","))
        cfg.self_rollout.update(rollout_tokens=tok, sampling_steps=st)
    t0 = time.time()
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    res = {"systems": {}, "config": asdict(cfg), "machine": machine(), "git_sha": git_sha(),
           "command": "python " + " ".join([os.path.relpath(__file__, os.getcwd()), *(argv if argv is not None else sys.argv[1:])])}
    if args.ablation:
        res = {"system": args.ablation, "ablation": run_ablation(args.ablation, cfg, log), "config": asdict(cfg),
               "machine": machine(), "git_sha": res["git_sha"], "command": res["command"]}
        res["total_seconds"] = round(time.time() - t0, 1)
        name = args.name or (None if args.quick else f"dynamics_ablation_{args.ablation}")
        if name:
            log("wrote", *write_results(name, res, ablation_markdown(res)))
        return 0
    for name in cfg.systems:
        log(f"== {name}")
        res["systems"][name] = run_system(name, cfg, log)
    res["total_seconds"] = round(time.time() - t0, 1)
    res["goals"] = check_goals(res)
    for g in res["goals"]:
        log(g)
    name = args.name or (None if args.quick else "dynamics")
    text = markdown(res)  # built in quick runs too, so a smoke test covers it
    if name:
        j, m = write_results(name, res, text)
        log(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

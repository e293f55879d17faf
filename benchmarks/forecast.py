"""Forecasting benchmark: CRPS-sum on exchange rate (the Diffusion Forcing paper's protocol) and vic_elec.

    PYTHONPATH=src python benchmarks/forecast.py            # ~25 min on 2 shared CPU cores
    PYTHONPATH=src python benchmarks/forecast.py --quick    # a smoke run (minutes)

Methods, all in the same harness (same data, windows, 100 samples, metrics):
``diffusion_forcing`` (independent per-token noise, autoregressive sampling with stabilization),
``teacher_forcing`` and ``full_sequence`` (the same backbone and budget, trained with
``training_noise=``), ``seasonal_naive`` and ``random_walk`` (bootstrapped increments).
Writes ``benchmarks/results/forecast.json`` and ``forecast.md`` (updated after every method, so
a stopped run keeps what it measured) and fan charts ``forecast_<dataset>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from dforce.timeseries import (
    EXCHANGE_RATE,
    Forecaster,
    ForecasterConfig,
    RandomWalk,
    RollingProtocol,
    SeasonalNaive,
    evaluate,
    fan_chart,
    load_exchange_rate,
    load_vic_elec,
    rolling_windows,
)

PUBLISHED = {  # CRPS-sum on exchange rate, Diffusion Forcing paper, Table 2
    "Diffusion Forcing (paper)": (0.003, 0.001),
    "Transformer-MAF": (0.005, 0.003),
    "TimeGrad": (0.006, 0.001),
    "ScoreGrad": (0.006, 0.001),
    "GP-Copula": (0.007, 0.000),
}

COMMON = dict(width=64, depth=2, heads=4, lr=1e-3, warmup_steps=50, batch_size=64, eta=1.0)
SAMPLING = {  # per training noise: the sampler that matches it
    "independent": dict(scheduling="autoregressive", steps=5),
    "teacher_forcing": dict(scheduling="autoregressive", steps=5),
    "full_sequence": dict(scheduling="full_sequence", steps=20),
}
METHODS = {"diffusion_forcing": "independent", "teacher_forcing": "teacher_forcing", "full_sequence": "full_sequence"}


def datasets(quick: bool) -> dict:
    ex = load_exchange_rate()
    vic = load_vic_elec()
    n_vic = 5 * 48
    return {
        "exchange_rate": dict(
            frame=ex, protocol=EXCHANGE_RATE, seeds=[0] if quick else [0, 1, 2], season=5,
            model=dict(context_length=30, prediction_length=30, scaling="anchor", max_steps=30 if quick else 250),
            num_samples=20 if quick else 100,
        ),
        "vic_elec": dict(
            frame=vic, protocol=RollingProtocol(len(vic) - n_vic, 48, 5, 48), seeds=[0], season=48,
            model=dict(context_length=48, prediction_length=48, scaling="standard", lags=[336], max_steps=20 if quick else 250),
            num_samples=20 if quick else 100,
        ),
    }


def summarize(per_seed: list[dict]) -> dict:
    vals = [m["crps_sum"] for m in per_seed]
    keys = ("crps", "mae", "mse", "coverage_50", "coverage_90")
    return {
        "crps_sum_mean": float(np.mean(vals)),
        "crps_sum_std": float(np.std(vals)),
        "crps_sum_per_seed": vals,
        **{f"{k}_mean": float(np.mean([m[k] for m in per_seed])) for k in keys},
        "per_seed": per_seed,
    }


def write(results: dict, out: Path, merge: bool = True) -> None:
    """Write JSON + markdown atomically, keeping datasets another run already wrote."""
    out.mkdir(parents=True, exist_ok=True)
    if merge and (out / "forecast.json").is_file():
        old = json.loads((out / "forecast.json").read_text())
        if old.get("meta", {}).get("quick") == results["meta"]["quick"]:
            merged = dict(old.get("datasets", {}))
            for k in results["run_datasets"]:  # methods of this run replace the same methods of earlier runs
                if k in results["datasets"]:
                    old_k, new_k = merged.get(k, {}), results["datasets"][k]
                    merged[k] = {
                        **new_k,
                        **{f: v for f, v in old_k.items() if f not in ("methods", "methods_config")},  # the first run's setup
                        "methods": {**old_k.get("methods", {}), **new_k["methods"]},
                        "methods_config": {**old_k.get("methods_config", {}), **new_k.get("methods_config", {})},
                    }
            results["datasets"] = merged
            results["meta"]["runs"] = {**old.get("meta", {}).get("runs", {}), **results["meta"]["runs"]}
    tmp = out / ".forecast.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out / "forecast.json")
    lines = [
        "# Forecasting benchmark (CRPS-sum, lower is better)",
        "",
        f"Machine: {results['meta']['machine']}. Budget {results['meta']['budget_min']} min of wall time per run; runs: "
        + "; ".join(f"{d} {r['date']}, {r.get('wall_s', 0) / 60:.1f} min" for d, r in results["meta"]["runs"].items())
        + f". {results['meta']['note']}",
        "",
        "| dataset | method | CRPS-sum mean ± std | per seed | CRPS | MAE | cov. 50% | cov. 90% | train s | sample s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, entry in results["datasets"].items():
        for name, r in entry["methods"].items():
            seeds = ", ".join(f"{v:.5f}" for v in r["crps_sum_per_seed"])
            lines.append(
                f"| {ds} | {name} | {r['crps_sum_mean']:.5f} ± {r['crps_sum_std']:.5f} | {seeds} | {r['crps_mean']:.4g} | {r['mae_mean']:.4g} | "
                f"{r['coverage_50_mean']:.2f} | {r['coverage_90_mean']:.2f} | {r.get('train_s', 0):.0f} | {r.get('sample_s', 0):.0f} |"
            )
    lines += ["", "Published CRPS-sum on exchange rate (Diffusion Forcing paper, Table 2):", "", "| method | CRPS-sum |", "|---|---|"]
    lines += [f"| {k} | {m:.3f} ± {s:.3f} |" for k, (m, s) in PUBLISHED.items()]
    tmp = out / ".forecast.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "forecast.md")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--out", default="benchmarks/results", help="results folder")
    p.add_argument("--datasets", nargs="*", default=["exchange_rate", "vic_elec"])
    p.add_argument("--methods", nargs="*", default=["seasonal_naive", "random_walk", *METHODS])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max_steps", type=int, default=None, help="override the training steps of the models")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="override the seeds")
    p.add_argument("--suffix", default="", help="appended to the method names in the results (e.g. _1000steps)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t_start = time.time()
    results = {
        "meta": {
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, torch {torch.__version__}, {args.threads} thread(s)",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "budget_min": 25,
            "quick": args.quick,
            "note": "Models: causal transformer width 64, depth 2, batch 64, lr 1e-3, 250 training steps; DF and teacher forcing "
            "sampled autoregressively (5 steps per token, eta 1; DF with stabilization level 0.02), full-sequence with 20 steps.",
            "model": COMMON,
            "sampling": SAMPLING,
        },
        "published_exchange_rate": {k: {"crps_sum": m, "std": s} for k, (m, s) in PUBLISHED.items()},
        "datasets": {},
        "run_datasets": list(args.datasets),
    }
    results["meta"]["runs"] = {ds + args.suffix: {"date": results["meta"]["date"]} for ds in args.datasets}
    specs = datasets(args.quick)
    for spec in specs.values():
        if args.max_steps:
            spec["model"]["max_steps"] = args.max_steps
        if args.seeds:
            spec["seeds"] = args.seeds
    for ds in args.datasets:
        spec = specs[ds]
        frame, proto = spec["frame"], spec["protocol"]
        wins = rolling_windows(frame, proto)
        histories, futures = [h for h, _ in wins], [f for _, f in wins]
        y = np.stack([f.values for f in futures])
        train = frame.slice(0, proto.train_end)
        entry = results["datasets"][ds] = {
            "protocol": asdict(proto), "num_samples": spec["num_samples"], "model": spec["model"], "methods": {}
        }
        for method in args.methods:
            per_seed, t_train, t_sample = [], 0.0, 0.0
            for seed in spec["seeds"]:
                t0 = time.time()
                if method == "seasonal_naive":
                    fc = SeasonalNaive(spec["season"]).fit(train)
                elif method == "random_walk":
                    fc = RandomWalk().fit(train)
                else:
                    noise = METHODS[method]
                    cfg = ForecasterConfig(**COMMON, **spec["model"], **SAMPLING[noise], training_noise=noise, seed=seed)
                    if seed == spec["seeds"][0]:
                        entry["methods_config"] = entry.get("methods_config", {})
                        entry["methods_config"][method + args.suffix] = {"max_steps": cfg.max_steps, **SAMPLING[noise]}
                    fc = Forecaster(cfg).fit(train)
                t1 = time.time()
                if isinstance(fc, Forecaster):
                    outs = fc.predict_many(histories, proto.prediction_length, spec["num_samples"], futures=futures, seed=seed)
                else:
                    outs = [fc.predict(h, proto.prediction_length, spec["num_samples"], seed=seed) for h in histories]
                t2 = time.time()
                t_train, t_sample = t_train + t1 - t0, t_sample + t2 - t1
                samples = np.stack([o.samples for o in outs], 1)
                m = evaluate(y, samples, frame.columns)
                m.pop("crps_per_series")
                per_seed.append({"seed": seed, **m})
                print(f"{ds} {method} seed {seed}: crps_sum {m['crps_sum']:.5f} (train {t1 - t0:.0f}s, sample {t2 - t1:.0f}s)", flush=True)
                if seed == spec["seeds"][0] and method in ("diffusion_forcing", "random_walk"):
                    fan_chart(outs[-1], out / f"forecast_{ds}_{method}{args.suffix}.png", history=histories[-1], actual=futures[-1],
                              history_steps=2 * proto.context_length, title=f"{ds}: {method}, last test window")
            entry["methods"][method + args.suffix] = {**summarize(per_seed), "train_s": t_train, "sample_s": t_sample}
            results["meta"]["wall_s"] = time.time() - t_start
            for d in args.datasets:
                results["meta"]["runs"][d + args.suffix]["wall_s"] = time.time() - t_start
            write(results, out)
    print((out / "forecast.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

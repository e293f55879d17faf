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

    python benchmarks/planning.py                   # the CPU budget below (~20-25 min on 2 shared cores)
    python benchmarks/planning.py --budget full     # D4RL-sized data and longer training (hours on CPU)
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
from dforce.planning.evaluate import plot_episodes, run_episodes, summarize
from dforce.planning.planner import Planner, PlannerConfig, PlanSettings, planner_train_config, train_planner

PUBLISHED = {  # D4RL-normalized scores, single task (Diffusion Forcing paper, Table 2)
    "diffuser": {"umaze": 113.9, "medium": 121.5, "large": 123.0},
    "diffusion_forcing": {"umaze": 116.7, "medium": 149.4, "large": 159.0},
}

# per maze: dataset steps, training steps (each of the two models), episodes per eval seed
BUDGETS = {
    "tiny": {"umaze": (3000, 20, 2), "medium": (3000, 20, 2), "large": (3000, 20, 2)},
    "cpu": {"umaze": (60_000, 800, 8), "medium": (100_000, 700, 8), "large": (150_000, 600, 8)},
    "long": {"umaze": (100_000, 3000, 8), "medium": (200_000, 3000, 8), "large": (300_000, 3000, 8)},
    "full": {m: (MAZES[m].dataset_steps, 20_000, 32) for m in MAZES},
}
METHODS = ("df_mcg", "df", "full_sequence")

# guidance scales picked per maze and method on a validation seed (10, 8 episodes, single goal;
# never an evaluation seed) from {10, 20, 40, 80} with the `cpu` checkpoints; --tuned uses them
TUNED_SCALES = {
    "umaze": {"df_mcg": 40.0, "df": 20.0},
    "medium": {"df_mcg": 80.0, "df": 20.0},
    "large": {"df_mcg": 20.0, "df": 20.0},
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mazes", nargs="+", default=list(MAZES), choices=list(MAZES))
    p.add_argument("--budget", default="cpu", choices=list(BUDGETS))
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2], help="evaluation seeds (single-goal setting)")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--replan-every", type=int, default=100, help="MPC replanning interval (steps)")
    p.add_argument("--guidance-scale", type=float, default=10.0, help="goal-guidance scale of df and df_mcg")
    p.add_argument("--tuned", action="store_true", help="use TUNED_SCALES (validation-picked) instead of --guidance-scale")
    p.add_argument("--reuse-checkpoints", action="store_true", help="load models from --work-dir when present")
    p.add_argument("--mc-samples", type=int, default=4)
    p.add_argument("--sampling-steps", type=int, default=16)
    p.add_argument("--random-setting", action="store_true", default=True, help="also evaluate random starts and goals (1 seed)")
    p.add_argument("--no-random-setting", dest="random_setting", action="store_false")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "dforce-planning"), help="datasets and checkpoints")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--name", default="planning", help="result files NAME.json / NAME.md")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    t_all = time.time()
    results: dict = {
        "benchmark": "planning",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), torch {torch.__version__}, {args.threads} thread(s)",
        "budget": args.budget,
        "data_note": "datasets regenerated with D4RL's maze2d recipe (waypoint controller: BFS + PD, random goals, "
        "action noise 0.5, one continuous run) on Gymnasium-Robotics PointMaze-v3, not D4RL's files",
        "protocol": {
            "setting": "single_goal: D4RL's fixed goal cell, random start cell + U(-0.1, 0.1), velocity N(0, 0.1)",
            "episode_len": {m: MAZES[m].episode_len for m in MAZES},
            "reward": "1 per step within 0.5 of the goal; normalized = 100 (R - min) / (max - min), D4RL reference scores",
            "replan_every": args.replan_every,
            "eval_seeds": args.eval_seeds,
            "train_seeds": [args.train_seed],
            "guidance_scales": TUNED_SCALES if args.tuned else args.guidance_scale,
            "guidance_scale_note": "picked per maze and method on validation seed 10 from {10, 20, 40, 80}" if args.tuned else "one scale for df and df_mcg",
        },
        "published_normalized": PUBLISHED,
        "reused_checkpoints": bool(args.reuse_checkpoints),
        "mazes": {},
    }
    for maze in args.mazes:
        data_steps, train_steps, episodes = BUDGETS[args.budget][maze]
        entry: dict = {"budget": {"dataset_steps": data_steps, "train_steps": train_steps, "episodes_per_seed": episodes}}
        t0 = time.time()
        data_path = os.path.join(args.work_dir, f"{maze}-{data_steps}.npz")
        if not os.path.exists(data_path):
            save_dataset(data_path, generate_dataset(maze, data_steps, seed=args.train_seed, progress=False))
        data = load_dataset(data_path)
        entry["seconds_data"] = round(time.time() - t0, 1)
        print(f"[{maze}] data {data_steps} steps in {entry['seconds_data']}s", flush=True)
        planners = {}
        settings = planner_train_config(max_steps=train_steps, lr=1e-3, seed=args.train_seed, logger="none", progress=False)
        entry["train"] = asdict(settings)
        kinds = (["independent"] if {"df", "df_mcg"} & set(args.methods) else []) + (
            ["full_sequence"] if "full_sequence" in args.methods else []
        )
        for kind in kinds:
            t0 = time.time()
            cfg = PlannerConfig(maze=maze, training_noise=kind)
            ckpt = os.path.join(args.work_dir, f"{maze}-{kind}")
            if args.reuse_checkpoints and os.path.exists(ckpt):
                planners[kind] = Planner.from_checkpoint(ckpt)
                if planners[kind].extra.get("train", {}).get("max_steps") != train_steps:
                    raise ValueError(f"{ckpt} was trained for a different budget; drop --reuse-checkpoints")
                entry[f"seconds_train_{kind}"] = round(planners[kind].extra["train_seconds"], 1)
            else:
                planners[kind] = train_planner(cfg, data, settings)
                planners[kind].save(ckpt)
                entry[f"seconds_train_{kind}"] = round(time.time() - t0, 1)
            print(f"[{maze}] {kind}: {train_steps} training steps, {entry[f'seconds_train_{kind}']}s", flush=True)
        entry["model"] = asdict(PlannerConfig(maze=maze))
        entry["methods"], entry["random_setting"] = {}, {}
        for method in args.methods:
            planner = planners["full_sequence" if method == "full_sequence" else "independent"]
            scale = TUNED_SCALES[maze].get(method, args.guidance_scale) if args.tuned else args.guidance_scale
            ps = PlanSettings(method=method, guidance_scale=scale, mc_samples=args.mc_samples).with_overrides(steps=args.sampling_steps)
            runs = []
            for i, seed in enumerate(args.eval_seeds):
                r = run_episodes(planner, maze, episodes, "single_goal", seed, args.replan_every, ps, record=i == 0)
                if i == 0:
                    plot_episodes(r, os.path.join(args.out_dir, f"{args.name}_{maze}_{method}.png"), max_episodes=4)
                runs.append(r)
            entry["methods"][method] = {**summarize(runs), "settings": asdict(ps)}
            m = entry["methods"][method]
            print(f"[{maze}] {method}: success {m['success_rate']:.2f} score {m['normalized_score']['mean']:.1f} "
                  f"({m['seconds']:.0f}s)", flush=True)
            if args.random_setting:
                r = run_episodes(planner, maze, episodes, "random", 100 + args.eval_seeds[0], args.replan_every, ps)
                entry["random_setting"][method] = summarize([r])
        results["mazes"][maze] = entry
        results["seconds_total"] = round(time.time() - t_all, 1)
        write(results, args.out_dir, args.name)
    results["seconds_total"] = round(time.time() - t_all, 1)
    write(results, args.out_dir, args.name)
    print(f"total {results['seconds_total']}s", flush=True)
    return 0


def _fmt(m: dict) -> str:
    s = m["normalized_score"]
    st = m["steps_to_goal"]
    steps = "-" if st["mean"] is None else f"{st['mean']:.0f} ± {st['std']:.0f}"
    return f"{100 * m['success_rate']:.0f}% | {s['mean']:.1f} ± {s['std']:.1f} | {steps}"


def write(results: dict, out_dir: str, name: str = "planning") -> None:
    from common import provenance

    results = {**results, **provenance()}
    path = os.path.join(out_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    lines = [
        "# Maze planning (PointMaze-v3 = D4RL maze2d layouts)",
        "",
        f"{results['date']}, {results['machine']}, budget `{results['budget']}`, total {results.get('seconds_total', 0) / 60:.1f} min"
        + (" (evaluation only: models loaded from an earlier run with this budget; training times below are that run's)."
           if results.get("reused_checkpoints") else " (data, training and evaluation)."),
        "",
        f"Data: {results['data_note']}. Published numbers use D4RL's own datasets and far larger training budgets.",
        "",
        f"Guidance scales: {json.dumps(results['protocol'].get('guidance_scales', 10.0))} "
        f"({results['protocol'].get('guidance_scale_note', 'one scale for df and df_mcg')}).",
        "",
        "Single-goal setting (D4RL's fixed goal, random starts), mean ± std over all evaluation episodes "
        f"({len(results['protocol']['eval_seeds'])} evaluation seeds, one training seed); steps to goal over the episodes that reached it.",
        "",
        "| maze | method | success | normalized score | steps to goal | published (normalized) |",
        "|---|---|---|---|---|---|",
    ]
    pub = {"df_mcg": "diffusion_forcing", "full_sequence": "diffuser"}
    for maze, e in results["mazes"].items():
        for method, m in e["methods"].items():
            ref = f"{results['published_normalized'][pub[method]][maze]}" if method in pub else "-"
            lines.append(f"| {maze} | {method} | {_fmt(m)} | {ref} |")
    if any(e.get("random_setting") for e in results["mazes"].values()):
        lines += ["", "Random starts and goals (1 seed):", "", "| maze | method | success | normalized score | steps to goal |", "|---|---|---|---|---|"]
        for maze, e in results["mazes"].items():
            for method, m in e.get("random_setting", {}).items():
                lines.append(f"| {maze} | {method} | {_fmt(m)} |")
    lines += ["", "Targets (issue #5):", ""]
    mz = results["mazes"]
    if all("df_mcg" in e["methods"] and "full_sequence" in e["methods"] for e in mz.values()):
        beats = {m: e["methods"]["df_mcg"]["normalized_score"]["mean"] > e["methods"]["full_sequence"]["normalized_score"]["mean"]
                 for m, e in mz.items()}
        lines.append(f"- df_mcg beats full_sequence (normalized score) on every maze: {'met' if all(beats.values()) else 'NOT met'} "
                     f"({', '.join(f'{m}: {b}' for m, b in beats.items())}).")
    if "medium" in mz and "df_mcg" in mz["medium"]["methods"]:
        sr = mz["medium"]["methods"]["df_mcg"]["success_rate"]
        lines.append(f"- df_mcg success >= 90% on medium: {'met' if sr >= 0.9 else 'NOT met'} ({100 * sr:.0f}%).")
    if all("df_mcg" in e["methods"] and "df" in e["methods"] for e in mz.values()):
        mcg = {m: e["methods"]["df_mcg"]["normalized_score"]["mean"] - e["methods"]["df"]["normalized_score"]["mean"] for m, e in mz.items()}
        how = "each at its validation-picked scale" if isinstance(results["protocol"].get("guidance_scales"), dict) else "same guidance scale"
        lines.append(f"- Monte Carlo guidance vs one sample (df_mcg - df, normalized score, {how}): "
                     + ", ".join(f"{m}: {d:+.1f}" for m, d in mcg.items()) + ".")
    lines += ["", "Budgets (per maze; each of the two models gets the same training steps; data s = 0 when the dataset was loaded):", "",
              "| maze | dataset steps | train steps | episodes/seed | data s | train DF s | train FS s |", "|---|---|---|---|---|---|---|"]
    for maze, e in results["mazes"].items():
        b = e["budget"]
        lines.append(f"| {maze} | {b['dataset_steps']} | {b['train_steps']} | {b['episodes_per_seed']} | {e['seconds_data']} | "
                     f"{e.get('seconds_train_independent', '-')} | {e.get('seconds_train_full_sequence', '-')} |")
    with open(os.path.join(out_dir, f"{name}.md.tmp"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(os.path.join(out_dir, f"{name}.md.tmp"), os.path.join(out_dir, f"{name}.md"))


if __name__ == "__main__":
    sys.exit(main())

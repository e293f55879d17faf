"""Does the DF planner learn the walls, and how does the guidance scale trade reaching against crashing?

One DF planner (the benchmark's backbone and recipe) is trained on one maze in stages up to
``--steps`` (a single run resumed from its checkpoint at each stage: a learning curve of one
run, not independent runs). After each stage, from the same single-goal starts:

- **plans**: one plan per start for the whole episode at each guidance scale (0 = the model's own
  prior), checked against the maze: share of planned frames in free cells, share of plans whose
  path (frames joined by straight segments, 10 points per segment) never enters a wall cell, share
  of plans that come within 0.5 of the goal, and the median planned step per frame next to the
  data's own;
- **episodes**: the benchmark's MPC evaluation (:func:`dforce.planning.evaluate.run_episodes`) at
  each scale, for ``df`` (one sample) and ``df_mcg``, with the straight-to-goal floor from the
  same starts; every episode is planned to its end (``hold=False``) and tracked at pace 1 (Diffuser's
  tracking), the protocol of these results.

The reward is the plain goal distance unless ``--squash`` says otherwise (the planner's default is 2).

Writes ``benchmarks/results/planning_walls.{json,md}`` (``--name``: another name).

    PYTHONPATH=src python benchmarks/planning_walls.py                 # medium, 3k/10k/20k steps, ~27 min on one core
    PYTHONPATH=src python benchmarks/planning_walls.py --maze large --steps 10000 20000 --name planning_walls_large
    PYTHONPATH=src python benchmarks/planning_walls.py --maze umaze --steps 200 400 --episodes 4 --plans 4   # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch

from dforce.planning.data import generate_dataset, load_dataset, save_dataset
from dforce.planning.env import MAZES, PointMaze, maze_spec
from dforce.planning.evaluate import run_episodes, summarize, wall_checks
from dforce.planning.planner import PlannerConfig, PlanSettings, planner_train_config, train_planner


def plan_checks(planner, maze: str, n: int, scale: float, seed: int, squash: float | None) -> dict:
    """Plans from ``n`` single-goal starts at guidance ``scale`` (method ``df``), checked against the walls."""
    with PointMaze(maze, num_envs=n) as env:
        obs = env.reset(np.random.default_rng(seed), "single_goal")
        plan = planner.plan(obs, env.goal, horizon=maze_spec(maze).episode_len, method="df", guidance_scale=scale, squash=squash, seed=seed)
        free, clear = wall_checks(env, obs, plan)
        pos = np.concatenate([obs[:, None, :2], plan[..., :2]], 1)  # [n, 1 + frames, 2]
        reach = np.linalg.norm(pos - env.goal[:, None], axis=-1).min(1) < 0.5
    step = np.linalg.norm(pos[:, 1:] - pos[:, :-1], axis=-1)
    return {"frames_free": float(free.mean()), "plans_clear_of_walls": float(clear.mean()),
            "plans_reaching_goal": float(reach.mean()), "step_median": float(np.median(step))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--maze", default="medium", choices=list(MAZES))
    p.add_argument("--steps", type=int, nargs="+", default=[3000, 10000, 20000], help="training steps after each stage")
    p.add_argument("--data-steps", type=int, default=200_000, help="environment steps of the generated dataset")
    p.add_argument("--scales", type=float, nargs="+", default=[3.0, 10.0, 20.0], help="guidance scales of the plans and episodes")
    p.add_argument("--plans", type=int, default=24, help="starts for the plan checks")
    p.add_argument("--episodes", type=int, default=24, help="episodes per method and scale (one evaluation seed)")
    p.add_argument("--seed", type=int, default=0, help="training seed; evaluation seed 1, plan-check seed 5")
    p.add_argument("--squash", default="none", help="goal-distance squash of the guidance reward: 'none' (the plain distance, "
                   "as in the recorded runs) or a number (the planner's default is 2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="planning_walls", help="results file name (benchmarks/results/NAME.json, .md)")
    p.add_argument("--work-dir", default=None, help="data and the resumable training run (default: a temporary folder)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from common import machine, provenance, write_results
    from planning import pooled, squash_arg

    try:
        squash = squash_arg(a.squash)
    except ValueError:
        p.error(f"--squash must be 'none' or a positive number, got {a.squash!r}")

    prov = provenance()  # the code that runs, taken before it runs
    work = a.work_dir or tempfile.mkdtemp(prefix="dforce-planning-walls-")
    os.makedirs(work, exist_ok=True)
    t_all = time.time()
    data_path = os.path.join(work, f"{a.maze}-{a.data_steps}.npz")
    if not os.path.exists(data_path):
        save_dataset(data_path, generate_dataset(a.maze, a.data_steps, seed=0, progress=False))
    data = load_dataset(data_path)
    cfg = PlannerConfig(maze=a.maze)
    fs = cfg.frame_skip
    xy = data["observations"][:, :2]
    data_step = float(np.median(np.linalg.norm(xy[fs:] - xy[:-fs], axis=-1)))
    floor = summarize([run_episodes(None, a.maze, a.episodes, "single_goal", 1)])
    points = []
    for steps in a.steps:
        t0 = time.time()
        train_cfg = planner_train_config(max_steps=steps, lr=1e-3, seed=a.seed, logger="none", progress=False,
                                         out_dir=os.path.join(work, f"{a.maze}-run-seed{a.seed}"), checkpoint_every=1000, resume=True)
        planner = train_planner(cfg, data, train_cfg)
        point = {"train_steps": steps, "train_seconds_stage": round(time.time() - t0, 1),
                 "plans": {f"{s:g}": plan_checks(planner, a.maze, a.plans, s, 5, squash) for s in (0.0, *a.scales)}, "episodes": {}}
        for method in ("df", "df_mcg"):
            for s in a.scales:
                r = pooled([[run_episodes(planner, a.maze, a.episodes, "single_goal", 1, None, PlanSettings(method=method, guidance_scale=s, squash=squash, pace=1.0),
                                          hold=False)]])
                point["episodes"][f"{method}@{s:g}"] = {"success_rate": r["success_rate"]["mean"], "normalized_score": r["normalized_score"]["mean"],
                                                        "sem": r["normalized_score"]["sem"], "episodes": r["episodes"],
                                                        "seconds": round(r["seconds"], 1)}
        points.append(point)
        print(f"[{a.maze}] {steps} steps: " + ", ".join(f"scale {k}: clear {v['plans_clear_of_walls']:.2f}" for k, v in point["plans"].items())
              + " | " + ", ".join(f"{k}: {100 * v['success_rate']:.0f}% {v['normalized_score']:.1f}" for k, v in point["episodes"].items()),
              flush=True)
        result = {**prov, "machine": machine(), "maze": a.maze, "data_steps": a.data_steps, "data_step_median": data_step,
                  "model": asdict(cfg), "squash": squash, "floor": {"success_rate": floor["success_rate"], "normalized_score": floor["normalized_score"]["mean"],
                                                   "episodes": floor["episodes"]},
                  "points": points, "seconds_total": round(time.time() - t_all, 1)}
        write_results(a.name, result, markdown(result))
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Does the DF planner learn the walls? ({r['maze']})", "",
             f"{m['date']}, {m['cpu_count']} cores shared, {m['torch_threads']} torch thread(s), torch {m['torch']}; "
             f"{r['seconds_total'] / 60:.1f} min. One training run resumed at each stage (a learning curve of one run); "
             f"{r['data_steps']} generated environment steps; the benchmark's backbone (width {r['model']['width']}, depth {r['model']['depth']}).", "",
             f"Plans (one per start, method `df`, the whole episode): frames in free cells, plans whose path never enters a wall cell, "
             f"plans that come within 0.5 of the goal, median step per planned frame (the data's: {r['data_step_median']:.3f}). "
             "Scale 0 is the model's own prior. Goal distance: " + ("plain." if r.get("squash") is None else f"squashed by {r['squash']:g}."), "",
             "| training steps | guidance scale | frames free | plans clear of walls | plans reaching goal | step |", "|---|---|---|---|---|---|"]
    for pt in r["points"]:
        for s, c in pt["plans"].items():
            lines.append(f"| {pt['train_steps']} | {s} | {c['frames_free']:.3f} | {c['plans_clear_of_walls']:.2f} | "
                         f"{c['plans_reaching_goal']:.2f} | {c['step_median']:.3f} |")
    fl = r["floor"]
    lines += ["", f"Episodes (MPC, replanning every 50 steps, evaluation seed 1): success and normalized score ± standard error. "
              f"Straight to the goal (no planner), same starts: {100 * fl['success_rate']:.0f}%, {fl['normalized_score']:.1f} "
              f"({fl['episodes']} episodes).", "",
              "| training steps | method @ scale | success | normalized score | episodes |", "|---|---|---|---|---|"]
    for pt in r["points"]:
        for k, e in pt["episodes"].items():
            lines.append(f"| {pt['train_steps']} | {k} | {100 * e['success_rate']:.0f}% | {e['normalized_score']:.1f} ± {e['sem']:.1f} | {e['episodes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(main())

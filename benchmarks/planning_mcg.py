"""What Monte Carlo guidance changes in a plan: reaching the goal against holding it.

For each maze, the DF planner of training seed 0 at the budget's training steps (loaded from
``--work-dir`` where ``planning.py`` / ``planning_scales.py`` left it, else trained) plans MPC
episodes from single-goal starts of the validation seed of ``planning_scales.py`` (never an
evaluation seed) at every guidance scale of ``--scales`` with ``mc_samples`` in ``--mc-samples``
(1 = ``df``, one sample; more = ``df_mcg`` with ``PlanSettings.mc_gradient = --mc-gradient``).
Per cell: success, normalized score, steps to the goal, two measures of holding the goal once
reached and three of the plans made on the way (before the first arrival) against the walls:

- ``time_at_goal_after_reach``: share of the steps from the first arrival on spent within 0.5 of
  the goal (the normalized score counts those steps);
- ``plan_distance_after_reach``: mean distance to the goal of the planned positions in plans made
  after the first arrival;
- ``frames_free_on_way`` / ``plans_clear_on_way`` / ``tracked_part_clear_on_way``: share of the
  planned frames in free cells / of the plans whose path never enters a wall cell / of the plans
  whose part tracked before the next plan never does (:func:`dforce.planning.evaluate.wall_checks`).

Each MCG cell is compared with one sample at the same scale episode by episode (same model, starts
and sampling seeds): mean difference ± paired standard error. One sample also runs at the smaller
scales of ``--df-scales``, so the table holds its whole success-score trade-off, and ``pull``
measures how far the guidance moves the predicted plan (mean ``||x0_hat_guided - x0_hat||`` per
moving token, in the planner's normalized features) in plans from the validation starts and from the goal
itself, at each scale and number of samples.

    PYTHONPATH=src python benchmarks/planning_mcg.py --budget long --mazes medium --work-dir /tmp/dforce-planning-long9
    PYTHONPATH=src python benchmarks/planning_mcg.py ... --mc-gradient direct --df-scales    # the averaging-only ablation
    PYTHONPATH=src python benchmarks/planning_mcg.py ... --hold       # the goal held by PD control once reached
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

import dforce.planning.planner as planner_module
from dforce.guidance.reward import RewardGuidance
from dforce.planning.data import load_dataset
from dforce.planning.env import MAZES, PointMaze, maze_spec
from dforce.planning.evaluate import paired_difference, run_episodes, summarize, wall_checks
from dforce.planning.planner import PlanSettings


def holding(run: dict) -> dict:
    """Holding measures of one ``run_episodes(..., record=True)`` result (see the module doc)."""
    first, steps = run["first_reach"], run["episode_len"]
    reached = first >= 0
    at_goal = run["episode_reward"][reached] / (steps - first[reached] + 1)
    dists = []
    for t, plan in run["plans"]:
        ok = reached & (first <= t)
        if ok.any():
            dists.append(np.linalg.norm(plan[ok][:, :, :2] - run["goals"][ok][:, None], axis=-1).ravel())
    dists = np.concatenate(dists) if dists else np.zeros(0)
    dists = dists[np.isfinite(dists)]  # held episodes are not planned (NaN rows)
    return {"time_at_goal_after_reach": float(at_goal.mean()) if reached.any() else None,
            "plan_distance_after_reach": float(dists.mean()) if len(dists) else None}


def walls(run: dict, frame_skip: int) -> dict:
    """Wall checks of the plans made on the way (before the episode's first arrival): share of planned
    frames in free cells, share of plans whose path never enters a wall cell, and the same for the
    part of each plan that is tracked before the next plan (``replan_every`` steps at the settings' pace)."""
    first, ahead = run["first_reach"], math.ceil(run["settings"]["pace"] * run["replan_every"] / frame_skip)
    free, clear, clear_tracked = [], [], []
    with PointMaze(run["maze"]) as env:
        for t, plan in run["plans"]:
            on_way = (first < 0) | (first > t)
            if on_way.any():
                start = run["trajectories"][on_way, t, :2]
                f, c = wall_checks(env, start, plan[on_way])
                free.append(f.ravel())
                clear.append(c)
                clear_tracked.append(wall_checks(env, start, plan[on_way][:, :ahead])[1])
    mean = lambda xs: float(np.concatenate(xs).mean()) if xs else None  # noqa: E731
    return {"frames_free_on_way": mean(free), "plans_clear_on_way": mean(clear), "tracked_part_clear_on_way": mean(clear_tracked)}


@contextlib.contextmanager
def recorded_shifts():
    """Within the block, the planner's reward guidance records the mean shift of ``x0_hat`` per moving token of each step."""
    shifts: list[float] = []

    class Recording(RewardGuidance):
        def __call__(self, denoise, x, t, cond, info):
            x0_new, eps_new = super().__call__(denoise, x, t, cond, info)
            if self.scale > 0 and info.moving.any():
                x0_plain, _ = denoise(x, t, cond)
                shifts.append(float((x0_new - x0_plain).norm(dim=-1)[info.moving].mean()))
            return x0_new, eps_new

    planner_module.RewardGuidance = Recording
    try:
        yield shifts
    finally:
        planner_module.RewardGuidance = RewardGuidance


def pull(planner, maze: str, episodes: int, settings: PlanSettings, seed: int) -> dict:
    """Mean guidance shift of one plan per single-goal start of ``seed``, from the start and from the goal (at rest)."""
    with PointMaze(maze, num_envs=episodes) as env:
        obs = env.reset(np.random.default_rng(seed), "single_goal")
        goal = env.goal.copy()
    out = {}
    for where, o in (("from_start", obs), ("from_goal", np.concatenate([goal, np.zeros_like(goal)], 1))):
        with recorded_shifts() as shifts, torch.no_grad():
            planner.plan(o, goal, horizon=maze_spec(maze).episode_len, settings=settings, seed=0)
        out[where] = float(np.mean(shifts))
    return out


def main(argv=None) -> int:
    from common import machine, provenance, write_results
    from planning import BUDGETS, REPLAN_EVERY, train_or_load
    from planning_scales import VALIDATION_SEED

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="long", choices=list(BUDGETS))
    p.add_argument("--mazes", nargs="+", default=["medium"], choices=list(MAZES))
    p.add_argument("--scales", type=float, nargs="+", default=[30.0, 50.0, 80.0])
    p.add_argument("--df-scales", type=float, nargs="*", default=[5.0, 10.0, 15.0, 20.0, 25.0],
                   help="further scales for one sample alone (its success-score trade-off)")
    p.add_argument("--mc-samples", type=int, nargs="+", default=[1, 4, 8, 16], help="1 (df) first: the others are compared with it")
    p.add_argument("--mc-gradient", default="through", choices=["through", "direct"],
                   help="PlanSettings.mc_gradient of the MCG cells; 'direct' writes planning_mcg_BUDGET_direct")
    p.add_argument("--hold", action="store_true",
                   help="hold the goal by PD control once reached (run_episodes(hold=True)); default: plan to the end, which is what this "
                   "study of holding measures; writes planning_mcg_BUDGET_hold")
    p.add_argument("--pace", type=float, default=1.0, help="tracking pace (PlanSettings.pace); the studies in docs/planning.md use "
                   "Diffuser's tracking, 1, as they were made before the pace existed")
    p.add_argument("--episodes", type=int, default=48, help="episodes per maze and cell")
    p.add_argument("--name", default=None, help="results file name (default planning_mcg_BUDGET, + _direct with --mc-gradient direct, + _hold with --hold)")
    p.add_argument("--replan-every", type=int, default=REPLAN_EVERY)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "dforce-planning"), help="planning.py's datasets and checkpoints")
    a = p.parse_args(argv)
    if a.mc_samples[0] != 1 or min(a.mc_samples) < 1:
        p.error(f"--mc-samples must start with 1 (the one-sample baseline) and be >= 1, got {a.mc_samples}")
    torch.set_num_threads(a.threads)
    prov = provenance()
    load = argparse.Namespace(work_dir=a.work_dir, reuse_checkpoints=True)
    out: dict = {"df_scales": a.df_scales, "budget": a.budget, "validation_seed": VALIDATION_SEED, "episodes": a.episodes, "replan_every": a.replan_every,
                 "scales": a.scales, "mc_samples": a.mc_samples, "mc_gradient": a.mc_gradient, "hold": a.hold, "pace": a.pace, "mazes": {}}
    t_all = time.time()
    for maze in a.mazes:
        data_steps, train_steps, _ = BUDGETS[a.budget][maze]
        data_path = os.path.join(a.work_dir, f"{maze}-{data_steps}.npz")
        if not os.path.exists(data_path):
            raise SystemExit(f"{data_path} is missing: run benchmarks/planning.py --budget {a.budget} --mazes {maze} --work-dir {a.work_dir} first")
        planner, _ = train_or_load(maze, "independent", load_dataset(data_path), train_steps, 0, load)
        cells: dict = {}
        for scale in sorted(set(a.scales) | set(a.df_scales)):
            base = None
            for mc in a.mc_samples if scale in a.scales else [1]:
                ps = PlanSettings(method="df" if mc == 1 else "df_mcg", guidance_scale=scale, mc_samples=mc, mc_gradient=a.mc_gradient, pace=a.pace)
                ps = ps.with_overrides(steps=16)
                run = run_episodes(planner, maze, a.episodes, "single_goal", VALIDATION_SEED, a.replan_every, ps, record=True, hold=a.hold)
                m = summarize([run])
                cell = {"scale": scale, "mc_samples": mc, "success_rate": m["success_rate"], "normalized_score": m["normalized_score"]["mean"],
                        "steps_to_goal": m["steps_to_goal"]["mean"], **holding(run), **walls(run, planner.cfg.frame_skip), "pull": pull(planner, maze, a.episodes, ps, VALIDATION_SEED),
                        "seconds": round(m["seconds"], 1)}
                if base is None:
                    base = run
                else:
                    cell["vs_one_sample"] = {"normalized_score": paired_difference([run], [base]),
                                             "success_rate": paired_difference([run], [base], "success")}
                cells[f"scale {scale:g}, mc {mc}"] = cell
                print(f"[{maze}] scale {scale:g} mc {mc}: success {cell['success_rate']:.2f} score {cell['normalized_score']:.1f} "
                      f"at goal {_num(cell['time_at_goal_after_reach'], '.2f')} plan dist {_num(cell['plan_distance_after_reach'], '.2f')} "
                      f"pull {cell['pull']['from_start']:.2f} / {cell['pull']['from_goal']:.2f} ({cell['seconds']}s)", flush=True)
        out["mazes"][maze] = {"train_steps": train_steps, "cells": cells}
        out["seconds_total"] = round(time.time() - t_all, 1)
        name = f"planning_mcg_{a.budget}" + ("" if a.mc_gradient == "through" else f"_{a.mc_gradient}") + ("_hold" if a.hold else "")
        write_results(a.name or name, {**prov, "machine": machine(), **out}, markdown(out))
    return 0


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def markdown(r: dict) -> str:
    lines = [f"# Monte Carlo guidance: reaching the goal against holding it (budget `{r['budget']}`)", "",
             f"DF planner of training seed 0; {r['episodes']} single-goal episodes per cell from validation seed {r['validation_seed']}, "
             f"replanning every {r['replan_every']} steps, tracking pace {r.get('pace', 1.0):g}. mc 1 = one sample (`df`); more = `df_mcg`, gradient "
             f"`{r.get('mc_gradient', 'through')}` (`PlanSettings.mc_gradient`); "
             + ("episodes held at the goal by PD control once reached (no plans after the arrival). " if r.get("hold")
                else "episodes planned to the end. ") + "`free` / `clear` / `clear tracked` = share "
             "of the planned frames in free cells / of the plans whose path never enters a wall / of the plans whose part tracked "
             "before the next plan never enters a wall, over the plans made before the first arrival; `at goal` = share of the steps "
             "from the first arrival on spent within 0.5 of the goal; `plan dist` = mean distance to the goal of the positions planned "
             "after the first arrival; `pull` = mean shift of the predicted plan by the guidance per moving token and step (normalized "
             "features), in one plan per start from the starts / from the goal at rest. Differences: against mc 1 at the same scale over "
             "the same episodes, ± paired standard error.", "",
             "| maze | scale | mc | success | score | steps to goal | free | clear | clear tracked | at goal | plan dist | pull from start / goal | score - mc 1 | success - mc 1 | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for maze, m in r["mazes"].items():
        for c in m["cells"].values():
            v = c.get("vs_one_sample")
            ds = "-" if v is None else f"{v['normalized_score']['mean']:+.1f} ± {v['normalized_score']['sem']:.1f}"
            dr = "-" if v is None else f"{100 * v['success_rate']['mean']:+.1f} ± {100 * v['success_rate']['sem']:.1f}"
            lines.append(f"| {maze} | {c['scale']:g} | {c['mc_samples']} | {100 * c['success_rate']:.0f}% | {c['normalized_score']:.1f} | "
                         f"{_num(c['steps_to_goal'], '.0f')} | {_num(c.get('frames_free_on_way'), '.3f')} | {_num(c.get('plans_clear_on_way'), '.2f')} | "
                         f"{_num(c.get('tracked_part_clear_on_way'), '.2f')} | "
                         f"{_num(c['time_at_goal_after_reach'], '.2f')} | "
                         f"{_num(c['plan_distance_after_reach'], '.2f')} | {c['pull']['from_start']:.2f} / {c['pull']['from_goal']:.2f} | "
                         f"{ds} | {dr} | {c['seconds']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(main())

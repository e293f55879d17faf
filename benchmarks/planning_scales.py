"""Pick the goal-guidance scale and the tracking pace per maze and method on a validation seed, for one planning budget.

For each maze, the DF planner of training seed 0 at the budget's training steps (trained, or loaded
from ``--work-dir`` where :mod:`planning` left it) plans MPC episodes from single-goal starts of a
validation seed (never an evaluation seed of ``planning.py``) at every scale of ``--scales`` and
pace of ``--paces`` (``PlanSettings.pace``), for ``df`` and ``df_mcg``, with the planner's default
reward (goal distance squashed by ``PlanSettings.squash``) and ``run_episodes``' default hold of the
goal once reached; the full-sequence model of training seed 0, where ``--work-dir`` has it, at every
pace (it has no guidance). The pick is the cell with the best mean normalized score.
``planning.py --tuned`` reads the picks from ``benchmarks/results/planning_scales_BUDGET.json``.

    PYTHONPATH=src python benchmarks/planning_scales.py --budget cpu --work-dir /tmp/dforce-planning
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict

import torch

from dforce.planning.data import generate_dataset, load_dataset, save_dataset
from dforce.planning.env import MAZES
from dforce.planning.evaluate import run_episodes, summarize
from dforce.planning.planner import PlanSettings

VALIDATION_SEED = 10


def main(argv=None) -> int:
    from common import machine, provenance, write_results
    from planning import BUDGETS, REPLAN_EVERY, scales_name, settings_for, squash_arg, train_or_load

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--mazes", nargs="+", default=list(MAZES), choices=list(MAZES))
    p.add_argument("--scales", type=float, nargs="+", default=[10.0, 20.0, 30.0, 50.0, 80.0])
    p.add_argument("--paces", type=float, nargs="+", default=[1.0, 1.5, 2.0], help="tracking paces (PlanSettings.pace)")
    p.add_argument("--episodes", type=int, default=24, help="episodes per maze, method, scale and pace")
    p.add_argument("--replan-every", type=int, default=REPLAN_EVERY,
                   help="MPC replanning interval (planning.py's default); another value writes planning_scales_BUDGET_replanN")
    p.add_argument("--squash", default=None, help="goal-distance squash for an ablation: a number, or 'none' for the plain "
                   "distance (default: PlanSettings'); the results then go to planning_scales_BUDGET_squashS.json")
    p.add_argument("--no-hold", dest="hold", action="store_false",
                   help="plan every episode to its end (default: hold the goal once reached); writes planning_scales_BUDGET_nohold")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "dforce-planning"), help="datasets and checkpoints (planning.py's)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        squash = PlanSettings.squash if a.squash is None else squash_arg(a.squash)
    except ValueError:
        p.error(f"--squash must be 'none' or a positive number, got {a.squash!r}")
    name = scales_name(a.budget, a.replan_every, a.squash, a.hold)
    if a.budget not in BUDGETS:
        raise SystemExit(f"unknown budget {a.budget!r}; choose one of {sorted(BUDGETS)}")
    prov = provenance()
    os.makedirs(a.work_dir, exist_ok=True)
    load = argparse.Namespace(work_dir=a.work_dir, reuse_checkpoints=True, tuned=False, paces=None, mc_samples=PlanSettings.mc_samples, sampling_steps=16)
    t_all = time.time()
    prior = _earlier_run(name, a.budget, squash, a.replan_every, a.hold, a.paces, a.mazes)
    out: dict = {"budget": a.budget, "squash": squash, "replan_every": a.replan_every, "hold": a.hold, "validation_seed": VALIDATION_SEED,
                 "scales": a.scales, "paces": a.paces, "episodes": a.episodes, "mazes": {}, "picks": {}, "pace_picks": {}}
    for maze in a.mazes:
        data_steps, train_steps, _ = BUDGETS[a.budget][maze]
        data_path = os.path.join(a.work_dir, f"{maze}-{data_steps}.npz")
        if not os.path.exists(data_path):
            save_dataset(data_path, generate_dataset(maze, data_steps, seed=0, progress=False))
        planner, _ = train_or_load(maze, "independent", load_dataset(data_path), train_steps, 0, load)
        fs_path = os.path.join(a.work_dir, f"{maze}-full_sequence-{train_steps}-seed0")
        fs = train_or_load(maze, "full_sequence", {}, train_steps, 0, load)[0] if os.path.exists(fs_path) else None
        grid: dict = {}  # method -> pace -> scale -> cell
        for method in ("df", "df_mcg") + (("full_sequence",) if fs is not None else ()):
            for pace in a.paces:
                for s in a.scales if method != "full_sequence" else [0.0]:
                    load.guidance_scale, load.pace = s, pace
                    ps = settings_for(method, maze, load).with_overrides(squash=squash)
                    r = summarize([run_episodes(fs if method == "full_sequence" else planner, maze, a.episodes, "single_goal", VALIDATION_SEED,
                                                None if method == "full_sequence" else a.replan_every, ps, hold=a.hold)])
                    grid.setdefault(method, {}).setdefault(f"{pace:g}", {})[f"{s:g}"] = {
                        "success_rate": r["success_rate"], "normalized_score": r["normalized_score"]["mean"],
                        "steps_to_goal": r["steps_to_goal"]["mean"], "seconds": round(r["seconds"], 1)}
                    print(f"[{maze}] {method} @ {s:g}, pace {pace:g}: success {r['success_rate']:.2f} score {r['normalized_score']['mean']:.1f}", flush=True)
        out["mazes"][maze] = {"train_steps": train_steps, "settings": asdict(PlanSettings(squash=squash)), "grid": grid, **prov,
                              "seconds": round(time.time() - t_all, 1)}
        best = {m: max(((pc, sc) for pc in g for sc in g[pc]), key=lambda k: g[k[0]][k[1]]["normalized_score"]) for m, g in grid.items()}
        out["picks"][maze] = {m: float(sc) for m, (pc, sc) in best.items() if m != "full_sequence"}
        out["pace_picks"][maze] = {m: float(pc) for m, (pc, sc) in best.items()}
        out["seconds_total"] = round(time.time() - t_all, 1)
        merged = {**out, **{k: {**prior.get(k, {}), **out[k]} for k in ("mazes", "picks", "pace_picks")}}
        write_results(name, {**prov, "machine": machine(), **merged}, markdown(merged))
    return 0


def _earlier_run(name: str, budget: str, squash, replan_every: int, hold: bool, paces: list[float], mazes: list[str]) -> dict:
    """The other mazes of an earlier run with the same budget and reward (kept in the results file,
    each with its own ``git_sha`` and ``command``), so that mazes can be picked one run at a time."""
    from common import RESULTS

    path = RESULTS / f"{name}.json"
    if not path.exists():
        return {}
    r = json.loads(path.read_text())
    if (r.get("budget"), r.get("squash", PlanSettings.squash), r.get("replan_every"), r.get("hold", False), r.get("paces")) != (budget, squash, replan_every, hold, paces):
        return {}
    keep = [m for m in r.get("mazes", {}) if m not in mazes]
    mz = {m: {"git_sha": r.get("git_sha"), "command": r.get("command"), **r["mazes"][m]} for m in keep}
    return {"mazes": mz, "picks": {m: r["picks"][m] for m in keep}, "pace_picks": {m: r["pace_picks"][m] for m in keep}}


def markdown(r: dict) -> str:
    reward = "plain" if r["squash"] is None else f"squashed by {r['squash']:g}"
    scales = sorted({float(s) for m in r["mazes"].values() for meth, g in m["grid"].items() if meth != "full_sequence" for c in g.values() for s in c})
    lines = [f"# Guidance scales and tracking paces picked on validation seed {r['validation_seed']} (budget `{r['budget']}`)", "",
             f"{r['episodes']} single-goal episodes per maze, method, scale and pace, replanning every {r['replan_every']} steps "
             "(full_sequence: once per episode, no guidance); "
             f"goal distance {reward}; " + ("episodes held at the goal once reached" if r.get("hold") else "episodes planned to the end")
             + "; planners of training seed 0. "
             "Cells: success, normalized score; **bold**: the pick (best score).", "",
             "| maze | method | pace | " + " | ".join(f"{s:g}" for s in scales) + " |", "|---|---|---|" + "---|" * len(scales)]
    for maze, m in r["mazes"].items():
        for method, g in m["grid"].items():
            pick = (r["pace_picks"][maze][method], r["picks"][maze].get(method, 0.0))
            for pace, row in g.items():
                cells = []
                for s in (scales if method != "full_sequence" else [0.0]):
                    c = row.get(f"{s:g}")
                    txt = "-" if c is None else f"{100 * c['success_rate']:.0f}%, {c['normalized_score']:.1f}"
                    cells.append(f"**{txt}**" if (float(pace), s) == pick else txt)
                cells += [""] * (len(scales) - len(cells))  # full_sequence: one cell, no guidance
                lines.append(f"| {maze} | {method} | {pace} | " + " | ".join(cells) + " |")
    lines += ["", "Per maze: " + "; ".join(f"{maze} by `{m['command']}` at `{m['git_sha']}`" for maze, m in r["mazes"].items()) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(main())

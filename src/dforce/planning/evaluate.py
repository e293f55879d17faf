"""Model-predictive evaluation under D4RL's maze2d convention, and plots.

Every ``replan_every`` steps the planner plans from the current observation to the goal for the
remaining episode (flexible horizon; the full-sequence baseline plans its fixed horizon, by default
once per episode as Diffuser's maze2d evaluation does, the controller then holding the goal), and the
plan is tracked frame by frame (PD control at ``PlanSettings.pace`` times the planned speed, or the
diffused actions). With ``hold`` (the default), an
episode that has reached the goal is no longer planned: its controller holds the goal (PD control at
the goal at rest, as Diffuser's controller does once its plan has ended), so the normalized score
measures how soon a method reaches the goal. Episodes run in parallel
(one MuJoCo state per episode). Metrics per episode:

- ``episode_reward``: steps within 0.5 of the goal (D4RL sparse reward; 300 / 600 / 800 steps);
- ``normalized_score``: ``100 (R - R_min) / (R_max - R_min)`` with D4RL's reference scores;
- ``first_reach``: steps until the goal is first reached (None if never); ``success``: reached at all.

``planner=None`` runs the floor every planner must beat: no plan, PD control straight at the goal
(``straight_to_goal``); walls stop it, but from many starts the goal is in reach.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Optional

import numpy as np

from dforce.planning.env import PointMaze, maze_spec, normalized_score
from dforce.planning.planner import PlanSettings, Planner, pd_control


REPLAN_EVERY = 50  # steps between plans of the DF methods


def run_episodes(
    planner: Optional[Planner],
    maze: Optional[str] = None,
    episodes: int = 8,
    setting: str = "single_goal",
    seed: int = 0,
    replan_every: Optional[int] = None,
    settings: Optional[PlanSettings] = None,
    episode_len: Optional[int] = None,
    record: bool = False,
    hold: bool = True,
) -> dict:
    """Run ``episodes`` MPC episodes at once; returns per-episode arrays and summary metrics.
    ``planner=None``: the straight-to-goal floor (``maze`` required). ``replan_every`` None:
    :data:`REPLAN_EVERY` steps, or once per episode for ``full_sequence`` (Diffuser's protocol).
    ``hold``: after an episode's first arrival, PD control at the goal instead of plans (its rows of
    the recorded plans are NaN); False: every episode is planned to the end."""
    if planner is None and maze is None:
        raise ValueError("run_episodes without a planner (the straight-to-goal floor) needs maze=")
    maze = maze or planner.cfg.maze
    spec = maze_spec(maze)
    steps = episode_len or spec.episode_len
    settings = settings or (PlanSettings(method=planner.default_method) if planner is not None else None)
    if replan_every is None:
        replan_every = steps if settings is not None and settings.method == "full_sequence" else REPLAN_EVERY
    if replan_every < 1:
        raise ValueError(f"replan_every must be >= 1, got {replan_every}")
    rng = np.random.default_rng(seed)
    t0 = time.time()
    with PointMaze(maze, num_envs=episodes) as env:
        obs = env.reset(rng, setting)
        goal = env.goal.copy()
        rewards = np.zeros(episodes)
        first = np.full(episodes, -1)
        traj, plans = [obs.copy()], []
        plan, plan_obs, j = None, None, 0
        for t in range(steps):
            held = (first >= 0) & hold
            if planner is not None and t % replan_every == 0:
                plan, plan_obs, j = None, obs.copy(), 0
                if not held.all():
                    rows = ~held
                    p = planner.plan(obs[rows], goal[rows], horizon=steps - t, settings=settings, seed=seed * 100_003 + t)
                    plan = np.full((episodes,) + p.shape[1:], np.nan, p.dtype)
                    plan[rows] = p
                    if record:
                        plans.append((t, plan.copy()))
            if planner is None or plan is None:
                a = pd_control(obs, goal)
            else:
                a = planner.control(obs, planner.target(plan, plan_obs, j + 1, settings.pace))
                a[held] = pd_control(obs[held], goal[held])
                j += 1
            obs = env.step(a)
            r = env.reward(obs, goal)
            rewards += r
            first[(first < 0) & (r > 0)] = t + 1
            if record:
                traj.append(obs.copy())
    success = first >= 0
    out = {
        "maze": maze, "setting": setting, "method": settings.method if settings else "straight_to_goal", "episodes": episodes, "seed": seed,
        "episode_len": steps, "replan_every": replan_every, "hold": hold, "settings": asdict(settings) if settings else None,
        "episode_reward": rewards, "normalized_score": normalized_score(maze, rewards), "first_reach": first,
        "success": success, "seconds": time.time() - t0,
    }
    if record:
        out["trajectories"] = np.stack(traj, 1)  # [B, steps + 1, 4]
        out["plans"] = plans
        out["goals"] = goal
    return out


def wall_checks(env: PointMaze, start_xy: np.ndarray, plan_xy: np.ndarray, points: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Plans against the maze's walls: ``start_xy`` [n, 2], ``plan_xy`` [n, F, 2] (world units) ->
    ``frames_free`` [n, F] (the frame lies in a free cell) and ``clear`` [n] (the path from the start
    through the frames, straight segments checked at ``points + 1`` points each, never enters a wall cell)."""
    pos = np.concatenate([np.asarray(start_xy)[:, None, :2], np.asarray(plan_xy)[..., :2]], 1)
    lam = np.linspace(0.0, 1.0, points + 1)[:, None]
    path = pos[:, :-1, None] + lam * (pos[:, 1:] - pos[:, :-1])[:, :, None]  # [n, F, points + 1, 2]
    clear = env.is_free(path.reshape(-1, 2)).reshape(path.shape[:3]).all((1, 2))
    return env.is_free(pos[:, 1:].reshape(-1, 2)).reshape(pos.shape[0], -1), clear


def summarize(results: list[dict]) -> dict:
    """Pool episodes of several runs (seeds): means and stds of the metrics."""
    succ = np.concatenate([r["success"] for r in results])
    score = np.concatenate([r["normalized_score"] for r in results])
    reward = np.concatenate([r["episode_reward"] for r in results])
    first = np.concatenate([r["first_reach"] for r in results])
    reached = first[first >= 0]
    per_seed = [float(np.mean(r["normalized_score"])) for r in results]
    return {
        "episodes": int(len(succ)),
        "success_rate": float(succ.mean()),
        "normalized_score": None if np.isnan(score).all() else  # a layout without D4RL reference returns
        {"mean": float(score.mean()), "std": float(score.std()), "std_over_seeds": float(np.std(per_seed))},
        "episode_reward": {"mean": float(reward.mean()), "std": float(reward.std())},
        "steps_to_goal": {
            "mean": float(reached.mean()) if len(reached) else None,
            "std": float(reached.std()) if len(reached) else None,
            "note": "over episodes that reached the goal",
        },
        "seconds": float(sum(r["seconds"] for r in results)),
    }


def paired_difference(a: list[dict], b: list[dict], metric: str = "normalized_score") -> dict:
    """Mean per-episode difference ``a - b`` of ``metric`` (``normalized_score``, ``success`` or
    ``episode_reward``) over runs paired by seed and episode: the same starts and goals, and, for
    two planners, the same sampling seeds. ``sem`` = std of the differences / sqrt(n - 1); it is
    smaller than ``sem_unpaired`` = sqrt(sem_a^2 + sem_b^2) by how much the two share per-start
    luck (``correlation``)."""
    if len(a) != len(b) or any(ra["seed"] != rb["seed"] or ra["setting"] != rb["setting"] or ra["maze"] != rb["maze"]
                               or ra["episodes"] != rb["episodes"] for ra, rb in zip(a, b)):
        raise ValueError("paired_difference needs runs of the same maze, setting, seeds and episode counts, in the same order")
    x = np.concatenate([np.asarray(r[metric], dtype=float) for r in a])
    y = np.concatenate([np.asarray(r[metric], dtype=float) for r in b])
    n = max(len(x) - 1, 1)
    d = x - y
    corr = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else None
    return {"mean": float(d.mean()), "sem": float(d.std() / n ** 0.5),
            "sem_unpaired": float((x.var() / n + y.var() / n) ** 0.5), "correlation": corr, "episodes": int(len(d))}


def plot_episodes(result: dict, path: str, max_episodes: int = 4, title: Optional[str] = None) -> str:
    """Draw the maze, executed trajectories (solid), the first plan (dashed), starts and goals; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "trajectories" not in result:
        raise ValueError("run_episodes(..., record=True) is needed for plots")
    with PointMaze(result["maze"]) as env:
        grid = env.grid
        corners = env.cell_to_xy(np.array([[0, 0], [grid.shape[0] - 1, grid.shape[1] - 1]]))
    n = min(max_episodes, result["trajectories"].shape[0])
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    x0, y1 = corners[0] + np.array([-0.5, 0.5])
    x1, y0 = corners[1] + np.array([0.5, -0.5])
    colors = plt.cm.viridis(np.linspace(0, 1, max(1, len(result["plans"]))))
    for k in range(n):
        ax = axes[0, k]
        ax.imshow(grid, cmap="Greys", vmin=0, vmax=1.6, extent=(x0, x1, y0, y1), origin="upper")
        for (t, plan), c in zip(result["plans"], colors):
            ax.plot(plan[k, :, 0], plan[k, :, 1], "--", color=c, lw=0.8, alpha=0.7)
        tr = result["trajectories"][k]
        ax.plot(tr[:, 0], tr[:, 1], "-", color="tab:red", lw=1.5)
        ax.plot(tr[0, 0], tr[0, 1], "o", color="tab:blue", ms=6)
        ax.plot(result["goals"][k, 0], result["goals"][k, 1], "*", color="gold", ms=14, mec="k")
        fr = result["first_reach"][k]
        ax.set_title(f"ep {k}: " + (f"reached @ {fr}" if fr >= 0 else "not reached"), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{result['maze']} / {result['method']} (dashed: plans, red: executed)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path

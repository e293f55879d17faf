"""Maze planning with Diffusion Forcing (PointMaze-v3 = the D4RL maze2d layouts).

    from dforce.planning import Planner, PointMaze
    planner = Planner.from_checkpoint("runs/medium-df", device="cpu")   # or "cuda"
    plan = planner.plan(obs, goal, method="df_mcg")

See ``docs/planning.md``. Needs ``pip install dforce[planning]`` (gymnasium-robotics, mujoco).
"""

from dforce.planning.data import PlanningWindows, generate_dataset, load_dataset, save_dataset
from dforce.planning.env import MAZES, PointMaze, WaypointController, normalized_score, shortest_path
from dforce.planning.evaluate import plot_episodes, run_episodes, summarize
from dforce.planning.planner import PlannerConfig, Planner, PlanSettings, build_model, planner_train_config, train_planner

__all__ = [
    "MAZES", "PlanSettings", "Planner", "PlannerConfig", "PlanningWindows", "PointMaze", "WaypointController",
    "build_model", "generate_dataset", "load_dataset", "normalized_score", "planner_train_config", "plot_episodes", "run_episodes",
    "save_dataset", "shortest_path", "summarize", "train_planner",
]

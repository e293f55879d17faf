"""PointMaze (Gymnasium-Robotics ``PointMaze_*-v3``, the D4RL maze2d layouts) for planning.

:class:`PointMaze` wraps ``gym.make(...)`` and exposes what a planner needs: the maze grid,
cell <-> xy conversion, free cells, a batch of independent point masses stepped directly in
MuJoCo (the *same* dynamics as ``env.step``: clip the action to [-1, 1], clip the velocity to
[-5, 5], one ``mj_step`` of 0.01 s; :func:`tests` check bit-equality), and deletes the temporary
MJCF file that every ``gym.make`` of a maze leaves in the system temp folder.

Coordinates: Gymnasium's maze is centred at the origin, x to the right, y up; cell ``(i, j)`` has
centre ``x = (j + 0.5) - W / 2``, ``y = H / 2 - (i + 0.5)`` (cell size 1, as in D4RL). The
observation of one point mass is ``[x, y, vx, vy]`` (m, m/s); actions are forces in [-1, 1]^2.

D4RL's evaluation convention (episodes of 300 / 600 / 800 steps, reward 1 per step within 0.5 of
the goal) and its normalization reference scores live in :data:`MAZES`.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

GOAL_RADIUS = 0.5  # D4RL maze2d: sparse reward 1 within 0.5 of the goal
VELOCITY_LIMIT = 5.0  # PointEnv._clip_velocity
DT = 0.01  # MJCF timestep, frame_skip 1


@dataclass(frozen=True)
class MazeSpec:
    """One maze: Gymnasium id, D4RL episode length, D4RL reference scores, single-task goal cell."""

    env_id: str
    episode_len: int
    ref_min: float
    ref_max: float
    goal_cell: tuple[int, int]  # D4RL's fixed 'G' cell (row, col) of the single-task setting
    dataset_steps: int  # D4RL dataset size


MAZES: dict[str, MazeSpec] = {
    "umaze": MazeSpec("PointMaze_UMaze-v3", 300, 23.85, 161.86, (1, 1), 1_000_000),
    "medium": MazeSpec("PointMaze_Medium-v3", 600, 13.13, 277.39, (6, 6), 2_000_000),
    "large": MazeSpec("PointMaze_Large-v3", 800, 6.7, 273.99, (7, 9), 4_000_000),
}


def maze_spec(maze: str) -> MazeSpec:
    if maze not in MAZES:
        raise ValueError(f"unknown maze {maze!r}; choose one of {sorted(MAZES)}")
    return MAZES[maze]


def normalized_score(maze: str, episode_reward: float | np.ndarray) -> float | np.ndarray:
    """D4RL-normalized score ``100 (R - R_min) / (R_max - R_min)``."""
    s = maze_spec(maze)
    return 100.0 * (np.asarray(episode_reward, dtype=np.float64) - s.ref_min) / (s.ref_max - s.ref_min)


def shortest_path(grid: np.ndarray, start: Sequence[int], goal: Sequence[int]) -> list[tuple[int, int]]:
    """BFS over free cells (4-connected) of ``grid`` [H, W] (1 = wall): cells from start to goal."""
    start, goal = (int(start[0]), int(start[1])), (int(goal[0]), int(goal[1]))
    for name, c in (("start", start), ("goal", goal)):
        if not (0 <= c[0] < grid.shape[0] and 0 <= c[1] < grid.shape[1]) or grid[c] == 1:
            raise ValueError(f"{name} cell {c} is a wall or outside the maze")
    prev = {start: start}
    queue = deque([start])
    while queue:
        c = queue.popleft()
        if c == goal:
            break
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (c[0] + di, c[1] + dj)
            if 0 <= n[0] < grid.shape[0] and 0 <= n[1] < grid.shape[1] and grid[n] != 1 and n not in prev:
                prev[n] = c
                queue.append(n)
    if goal not in prev:
        raise ValueError(f"no path from {start} to {goal}")
    path = [goal]
    while path[-1] != start:
        path.append(prev[path[-1]])
    return path[::-1]


class PointMaze:
    """A Gymnasium-Robotics PointMaze with ``num_envs`` point masses stepped directly in MuJoCo.

    Args:
        maze: ``umaze``, ``medium`` or ``large``.
        num_envs: independent point masses (one ``MjData`` each) sharing the maze model.

    Use as a context manager (or call :meth:`close`) so the temporary MJCF file is removed.
    """

    def __init__(self, maze: str = "medium", num_envs: int = 1) -> None:
        import gymnasium as gym
        import gymnasium_robotics
        import mujoco

        gym.register_envs(gymnasium_robotics)
        self.name = maze
        self.spec = maze_spec(maze)
        self._mujoco = mujoco
        self.env = gym.make(self.spec.env_id, continuing_task=True, reset_target=False)
        u = self.env.unwrapped
        self._xml = getattr(u, "tmp_xml_file_path", None)
        self.maze = u.maze
        self.grid = np.array([[1 if c == 1 else 0 for c in row] for row in self.maze.maze_map], dtype=np.int8)
        self.model = u.point_env.model
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.goal = np.zeros((num_envs, 2))
        free = np.argwhere(self.grid == 0)
        self.free_cells = [tuple(int(v) for v in c) for c in free]
        self._closed = False

    # -------------------------------------------------------------- geometry
    @property
    def num_envs(self) -> int:
        return len(self.datas)

    def cell_to_xy(self, cells: np.ndarray) -> np.ndarray:
        """Cell indices ``(i, j)`` [..., 2] -> centre coordinates ``(x, y)`` [..., 2]."""
        c = np.asarray(cells, dtype=np.float64)
        x = (c[..., 1] + 0.5) * self.maze.maze_size_scaling - self.maze.x_map_center
        y = self.maze.y_map_center - (c[..., 0] + 0.5) * self.maze.maze_size_scaling
        return np.stack([x, y], -1)

    def xy_to_cell(self, xy: np.ndarray) -> np.ndarray:
        """Coordinates [..., 2] -> integer cell indices ``(i, j)`` [..., 2]."""
        p = np.asarray(xy, dtype=np.float64)
        i = np.floor((self.maze.y_map_center - p[..., 1]) / self.maze.maze_size_scaling)
        j = np.floor((p[..., 0] + self.maze.x_map_center) / self.maze.maze_size_scaling)
        return np.stack([i, j], -1).astype(np.int64)

    def is_free(self, xy: np.ndarray) -> np.ndarray:
        """Whether points [..., 2] lie in free (non-wall) cells."""
        c = self.xy_to_cell(xy)
        ok = (c[..., 0] >= 0) & (c[..., 0] < self.grid.shape[0]) & (c[..., 1] >= 0) & (c[..., 1] < self.grid.shape[1])
        ci, cj = np.clip(c[..., 0], 0, self.grid.shape[0] - 1), np.clip(c[..., 1], 0, self.grid.shape[1] - 1)
        return ok & (self.grid[ci, cj] == 0)

    # -------------------------------------------------------------- dynamics
    def set_state(self, k: int, pos: np.ndarray, vel: Optional[np.ndarray] = None) -> np.ndarray:
        d = self.datas[k]
        d.qpos[:] = pos
        d.qvel[:] = 0.0 if vel is None else vel
        d.ctrl[:] = 0.0
        self._mujoco.mj_forward(self.model, d)
        return self.observation(k)

    def observation(self, k: Optional[int] = None) -> np.ndarray:
        """``[x, y, vx, vy]`` of point mass ``k`` [4], or of all [num_envs, 4]."""
        if k is None:
            return np.stack([self.observation(i) for i in range(self.num_envs)])
        d = self.datas[k]
        return np.concatenate([d.qpos, d.qvel]).astype(np.float64)

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply actions [num_envs, 2] for one 0.01 s step (PointEnv.step's dynamics); returns obs [num_envs, 4]."""
        actions = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.num_envs, 2), -1.0, 1.0)
        step = self._mujoco.mj_step
        for d, a in zip(self.datas, actions):
            np.clip(d.qvel, -VELOCITY_LIMIT, VELOCITY_LIMIT, out=d.qvel)
            d.ctrl[:] = a
            step(self.model, d)
        return self.observation()

    def reward(self, obs: np.ndarray, goal: Optional[np.ndarray] = None) -> np.ndarray:
        """D4RL sparse reward: 1 where the position is within 0.5 of the goal."""
        goal = self.goal if goal is None else goal
        return (np.linalg.norm(obs[..., :2] - goal, axis=-1) <= GOAL_RADIUS).astype(np.float64)

    # -------------------------------------------------------------- episodes
    def reset(
        self,
        rng: np.random.Generator,
        setting: str = "single_goal",
        start_noise: float = 0.1,
        goal_noise: float = 0.1,
    ) -> np.ndarray:
        """Start every point mass, D4RL-style; returns obs [num_envs, 4] and sets ``self.goal``.

        ``single_goal``: D4RL's fixed goal cell (exact centre), start in a random free cell
        + U(-0.1, 0.1), velocity N(0, 0.1) (maze2d ``reset_model``). ``random``: start and goal in
        two different random free cells, each + U(-noise, noise).
        """
        if setting not in ("single_goal", "random"):
            raise ValueError(f"setting must be 'single_goal' or 'random', got {setting!r}")
        cells = np.array(self.free_cells)
        for k in range(self.num_envs):
            if setting == "single_goal":
                self.goal[k] = self.cell_to_xy(self.spec.goal_cell)
                start = cells[rng.integers(len(cells))]
            else:
                i, j = rng.choice(len(cells), size=2, replace=False)
                start = cells[i]
                self.goal[k] = self.cell_to_xy(cells[j]) + rng.uniform(-goal_noise, goal_noise, 2)
            pos = self.cell_to_xy(start) + rng.uniform(-start_noise, start_noise, 2)
            self.set_state(k, pos, rng.normal(0.0, 0.1, 2))
        return self.observation()

    # -------------------------------------------------------------- cleanup
    def close(self) -> None:
        """Close the Gymnasium env and delete its temporary MJCF file."""
        if self._closed:
            return
        self._closed = True
        self.env.close()
        remove_temp_xml(self._xml)

    def __enter__(self) -> "PointMaze":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def remove_temp_xml(path: Optional[str]) -> None:
    """Delete a maze's temporary MJCF (``<tmp>/ant_maze<time>.xml`` written by ``Maze.make_maze``)."""
    if path and os.path.basename(path).startswith("ant_maze") and path.endswith(".xml") and os.path.exists(path):
        os.remove(path)


class WaypointController:
    """D4RL's maze2d data-collection controller: BFS over cells, PD control to the next waypoint.

    ``a = clip(p_gain (w - p) + d_gain v, -1, 1)`` with ``p_gain = 10``, ``d_gain = -1`` (D4RL's
    ``WaypointController``); waypoints are the cell centres of the shortest path, the last one is
    the exact target; a waypoint counts as reached within ``solve_thresh`` = 0.1 m.
    """

    def __init__(self, maze: PointMaze, p_gain: float = 10.0, d_gain: float = -1.0, solve_thresh: float = 0.1) -> None:
        self.maze, self.p_gain, self.d_gain, self.solve_thresh = maze, p_gain, d_gain, solve_thresh
        self.target: Optional[np.ndarray] = None
        self.waypoints: list[np.ndarray] = []
        self.index = 0

    def new_target(self, pos: np.ndarray, target: np.ndarray) -> None:
        cells = shortest_path(self.maze.grid, self.maze.xy_to_cell(pos), self.maze.xy_to_cell(target))
        # centres of the cells between, then the exact target (inside the last cell)
        self.waypoints = [self.maze.cell_to_xy(c) for c in cells[1:-1]] + [np.asarray(target, dtype=np.float64)]
        self.target = np.asarray(target, dtype=np.float64).copy()
        self.index = 0

    def act(self, obs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, bool]:
        """Action [2] for observation [4] towards ``target`` [2]; ``done`` once the target is reached."""
        pos, vel = obs[:2], obs[2:4]
        if self.target is None or np.linalg.norm(self.target - target) > 1e-6:
            self.new_target(pos, target)
        if np.linalg.norm(pos - self.target) < self.solve_thresh:
            return np.clip(self.p_gain * (self.target - pos) + self.d_gain * vel, -1, 1), True
        w = self.waypoints[self.index]
        if np.linalg.norm(pos - w) < self.solve_thresh and self.index < len(self.waypoints) - 1:
            self.index += 1
            w = self.waypoints[self.index]
        return np.clip(self.p_gain * (w - pos) + self.d_gain * vel, -1, 1), False

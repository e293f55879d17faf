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
    """One maze: Gymnasium id, episode length, D4RL reference scores, single-task goal cell.

    ``ref_min`` / ``ref_max`` are None where D4RL has no reference returns (no normalized score);
    ``goal_cell`` is None where the layout marks no goal (only the ``random`` setting);
    ``maze_map`` is the layout passed to ``gym.make`` (None: the registered one).
    """

    env_id: str
    episode_len: int
    ref_min: Optional[float]
    ref_max: Optional[float]
    goal_cell: Optional[tuple[int, int]]  # D4RL's fixed 'G' cell (row, col) of the single-task setting
    dataset_steps: int  # D4RL dataset size
    maze_map: Optional[tuple] = None


MAZES: dict[str, MazeSpec] = {
    "umaze": MazeSpec("PointMaze_UMaze-v3", 300, 23.85, 161.86, (1, 1), 1_000_000),
    "medium": MazeSpec("PointMaze_Medium-v3", 600, 13.13, 277.39, (6, 6), 2_000_000),
    "large": MazeSpec("PointMaze_Large-v3", 800, 6.7, 273.99, (7, 9), 4_000_000),
}
# the other layouts Gymnasium-Robotics registers (no D4RL reference scores): id, episode length (as
# the D4RL maze of the same size, 300 for the open arena), the map's name in gymnasium_robotics' maps
LAYOUTS = {
    "open": ("PointMaze_Open-v3", 300, "OPEN"), "open_diverse_g": ("PointMaze_Open_Diverse_G-v3", 300, "OPEN_DIVERSE_G"),
    "open_diverse_gr": ("PointMaze_Open_Diverse_GR-v3", 300, "OPEN_DIVERSE_GR"),
    "medium_diverse_g": ("PointMaze_Medium_Diverse_G-v3", 600, "MEDIUM_MAZE_DIVERSE_G"),
    "medium_diverse_gr": ("PointMaze_Medium_Diverse_GR-v3", 600, "MEDIUM_MAZE_DIVERSE_GR"),
    "large_diverse_g": ("PointMaze_Large_Diverse_G-v3", 800, "LARGE_MAZE_DIVERSE_G"),
    "large_diverse_gr": ("PointMaze_Large_Diverse_GR-v3", 800, "LARGE_MAZE_DIVERSE_GR"),
}
CUSTOM_ENV_ID = "PointMaze_UMaze-v3"  # any PointMaze id builds a custom ``maze_map``
CUSTOM_DATASET_STEPS = 1_000_000


def maze_names() -> list[str]:
    """Every named layout: the D4RL mazes and the other registered PointMaze layouts."""
    return [*MAZES, *LAYOUTS]


def parse_maze_map(text: str) -> tuple:
    """A custom layout from JSON text or a ``.json`` file: rows of ``1`` (wall), ``0`` (free),
    ``"g"`` (goal), ``"r"`` (reset) or ``"c"`` (either), as Gymnasium-Robotics' ``maze_map``."""
    import json

    src = text
    if text.strip().endswith(".json") and not text.strip().startswith("["):
        if not os.path.exists(text):
            raise ValueError(f"maze file {text!r} does not exist")
        with open(text) as f:
            src = f.read()
    try:
        rows = json.loads(src)
    except json.JSONDecodeError as e:
        raise ValueError(f"maze {text[:40]!r} is neither a known layout ({', '.join(maze_names())}) nor a JSON maze map ({e.msg})") from None
    ok = {0, 1, "g", "r", "c"}
    if not (isinstance(rows, list) and rows and all(isinstance(r, list) and len(r) == len(rows[0]) and len(r) >= 3 for r in rows)
            and len(rows) >= 3):
        raise ValueError("a maze map must be a list of at least 3 equal rows of at least 3 cells, e.g. [[1,1,1],[1,0,1],[1,1,1]]")
    cells = [c.lower() if isinstance(c, str) else c for r in rows for c in r]
    bad = sorted({repr(c) for c in cells if c not in ok})
    if bad:
        raise ValueError(f"maze map cells must be 1 (wall), 0 (free), 'g', 'r' or 'c'; got {', '.join(bad)}")
    if not any(c != 1 for c in cells):
        raise ValueError("the maze map has no free cell")
    return tuple(tuple(c.lower() if isinstance(c, str) else c for c in r) for r in rows)


def maze_diameter(grid: np.ndarray) -> int:
    """The longest shortest path between two free cells of ``grid`` [H, W] (1 = wall), in cells."""
    free = [tuple(int(v) for v in c) for c in np.argwhere(grid == 0)]
    best = 0
    for start in free:
        dist = {start: 0}
        queue = deque([start])
        while queue:
            c = queue.popleft()
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                n = (c[0] + di, c[1] + dj)
                if 0 <= n[0] < grid.shape[0] and 0 <= n[1] < grid.shape[1] and grid[n] != 1 and n not in dist:
                    dist[n] = dist[c] + 1
                    queue.append(n)
        best = max(best, max(dist.values()))
    return best


def maze_spec(maze: str) -> MazeSpec:
    """The spec of a named layout (:func:`maze_names`, or a Gymnasium id such as
    ``PointMaze_Open-v3``) or of a custom maze map (JSON text or a ``.json`` file, see
    :func:`parse_maze_map`). A custom map's episode length is 40 steps per cell of its diameter
    plus one, rounded up to 100 (this gives D4RL's 300 for umaze and 800 for large, 500 for
    medium where D4RL uses 600); its goal is the first ``g`` cell."""
    if maze in MAZES:
        return MAZES[maze]
    by_id = {v[0]: k for k, v in LAYOUTS.items()} | {v.env_id: k for k, v in MAZES.items()}
    if maze in by_id:
        return maze_spec(by_id[maze])
    if maze in LAYOUTS:
        from gymnasium_robotics.envs.maze import maps

        env_id, length, map_name = LAYOUTS[maze]
        return MazeSpec(env_id, length, None, None, _goal_cell(getattr(maps, map_name)), CUSTOM_DATASET_STEPS)
    if not maze.lstrip().startswith("[") and not maze.strip().endswith(".json"):
        raise ValueError(f"unknown maze {maze!r}; choose one of {', '.join(maze_names())}, or give a maze map as JSON text or a .json file")
    rows = parse_maze_map(maze)
    grid = np.array([[1 if c == 1 else 0 for c in r] for r in rows])
    length = int(np.ceil(40 * (maze_diameter(grid) + 1) / 100) * 100)
    return MazeSpec(CUSTOM_ENV_ID, length, None, None, _goal_cell(rows), CUSTOM_DATASET_STEPS, rows)


def _goal_cell(rows) -> Optional[tuple[int, int]]:
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            if isinstance(c, str) and c.lower() == "g":
                return (i, j)
    return None


def normalized_score(maze: str, episode_reward: float | np.ndarray) -> float | np.ndarray:
    """D4RL-normalized score ``100 (R - R_min) / (R_max - R_min)``; NaN for a layout without
    D4RL reference returns (report the success rate there)."""
    s = maze_spec(maze)
    r = np.asarray(episode_reward, dtype=np.float64)
    if s.ref_min is None:
        return np.full_like(r, np.nan)
    return 100.0 * (r - s.ref_min) / (s.ref_max - s.ref_min)


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
        maze: a layout name (``umaze``, ``medium``, ``large``, ``open``, ``medium_diverse_g``...,
            see :func:`maze_names`) or a custom maze map (JSON text or file, see :func:`maze_spec`).
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
        kwargs = {} if self.spec.maze_map is None else {"maze_map": [list(r) for r in self.spec.maze_map]}
        self.env = gym.make(self.spec.env_id, continuing_task=True, reset_target=False, **kwargs)
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
                if self.spec.goal_cell is None:
                    raise ValueError(f"maze {self.name!r} marks no goal cell ('g'), so it has no single-goal task; use setting='random'")
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

"""Maze2d datasets regenerated with D4RL's recipe, and the training windows cut from them.

D4RL's ``generate_maze2d_datasets.py`` recipe: one long continuous run of a waypoint controller
(BFS over the maze grid + PD control, :class:`~dforce.planning.env.WaypointController`) towards a
random goal (a random free cell + U(-0.1, 0.1)); when the goal is reached a new one is drawn and
the run goes on; Gaussian action noise (std 0.5, D4RL's ``--noisy``) then clipping to [-1, 1].
Sizes as D4RL: 1M / 2M / 4M steps for umaze / medium / large, 1M for other layouts (``steps``
picks any size).

Arrays (saved as a compressed ``.npz``, written atomically): ``observations`` [N, 4] (x, y, vx, vy),
``actions`` [N, 2], ``goals`` [N, 2], ``goal_reached`` [N] bool (a new goal follows), ``meta`` (JSON).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from dforce.planning.env import PointMaze, WaypointController, maze_spec

STATE_KINDS = {"pos": 2, "pos_vel": 4, "pos_vel_act": 6}


def generate_dataset(
    maze: str,
    steps: Optional[int] = None,
    seed: int = 0,
    action_noise: float = 0.5,
    target_noise: float = 0.1,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Run D4RL's maze2d recipe for ``steps`` steps (default: D4RL's size for the maze)."""
    spec = maze_spec(maze)
    steps = spec.dataset_steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    rng = np.random.default_rng(seed)
    obs_buf = np.empty((steps, 4), np.float32)
    act_buf = np.empty((steps, 2), np.float32)
    goal_buf = np.empty((steps, 2), np.float32)
    done_buf = np.zeros(steps, bool)
    with PointMaze(maze, num_envs=1) as env:
        cells = np.array(env.free_cells)

        def new_goal() -> np.ndarray:
            return env.cell_to_xy(cells[rng.integers(len(cells))]) + rng.uniform(-target_noise, target_noise, 2)

        start = env.cell_to_xy(cells[rng.integers(len(cells))]) + rng.uniform(-target_noise, target_noise, 2)
        obs = env.set_state(0, start)
        goal = new_goal()
        ctrl = WaypointController(env)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"maze2d-{maze}", unit="step", unit_scale=True, mininterval=1.0)
        for n in range(steps):
            act, done = ctrl.act(obs, goal)
            if action_noise > 0:
                act = act + rng.normal(0.0, action_noise, 2)
            act = np.clip(act, -1.0, 1.0)
            obs_buf[n], act_buf[n], goal_buf[n], done_buf[n] = obs, act, goal, done
            obs = env.step(act[None])[0]
            if done:
                goal = new_goal()
            if bar is not None and n % 10_000 == 9_999:
                bar.update(10_000)
        if bar is not None:
            bar.update(steps - bar.n)
            bar.close()
    meta = {
        "maze": maze, "steps": steps, "seed": seed, "action_noise": action_noise, "target_noise": target_noise,
        "recipe": "D4RL maze2d: waypoint controller (BFS + PD, p=10, d=-1), random goals, one continuous run",
        "env_id": spec.env_id,
    }
    return {"observations": obs_buf, "actions": act_buf, "goals": goal_buf, "goal_reached": done_buf, "meta": np.array(json.dumps(meta))}


def save_dataset(path: str, data: dict[str, np.ndarray]) -> str:
    """Write ``data`` as a compressed ``.npz`` atomically (temp file + ``os.replace``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_dataset(path: str) -> dict[str, np.ndarray]:
    """Read a dataset written by :func:`save_dataset`; ``meta`` comes back as a dict."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no dataset at {path}; create one with `dforce plan generate-data --maze ... --out {path}`")
    with np.load(path) as f:
        out = {k: f[k] for k in f.files}
    for key in ("observations", "actions"):
        if key not in out:
            raise ValueError(f"{path} has no {key!r} array; it is not a maze2d dataset")
    out["meta"] = json.loads(str(out["meta"])) if "meta" in out else {}
    return out


def state_features(data: dict[str, np.ndarray], state: str) -> np.ndarray:
    """Per-step features [N, D]: positions, + velocities, + actions."""
    if state not in STATE_KINDS:
        raise ValueError(f"unknown state {state!r}; choose one of {sorted(STATE_KINDS)}")
    obs = data["observations"].astype(np.float32)
    if state == "pos":
        return obs[:, :2]
    if state == "pos_vel":
        return obs[:, :4]
    return np.concatenate([obs[:, :4], data["actions"].astype(np.float32)], 1)


class PlanningWindows(Dataset):
    """Training windows of ``tokens`` tokens of ``frame_stack`` frames each, normalized.

    Token 0 is the start state repeated ``frame_stack`` times (it is the clean context at planning
    time); tokens 1.. hold the next ``(tokens - 1) frame_stack`` frames, one every ``frame_skip`` steps. For flexible horizons a
    random number of tokens ``L`` in [2, tokens] is valid and the rest is marked padding
    (``mask`` False: forced to pure noise in the loss). Items: ``{"x": [N, D], "mask": [N]}``.
    """

    def __init__(
        self,
        features: np.ndarray,
        tokens: int,
        frame_stack: int,
        mean: np.ndarray,
        std: np.ndarray,
        frame_skip: int = 1,
        flexible: bool = True,
        length: Optional[int] = None,
        seed: int = 0,
    ) -> None:
        self.frames = (tokens - 1) * frame_stack
        self.span = self.frames * frame_skip  # environment steps after the start
        if len(features) <= self.span + 1:
            raise ValueError(
                f"the dataset has {len(features)} steps but one training window needs {self.span + 1}; generate more data"
            )
        self.x = torch.from_numpy(((features - mean) / std).astype(np.float32))
        self.tokens, self.frame_stack, self.frame_skip, self.flexible = tokens, frame_stack, frame_skip, flexible
        self.starts = len(features) - self.span
        self.length = length or self.starts
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def window(self, start: torch.Tensor, valid_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows for start indices [B] with ``valid_tokens`` [B] valid tokens."""
        fs = self.frame_stack
        after = start[:, None] + self.frame_skip * (1 + torch.arange(self.frames))
        idx = torch.cat([start[:, None].expand(-1, fs), after], 1)
        x = self.x[idx]
        token = torch.arange(idx.shape[1]) // fs
        mask = token[None] < valid_tokens[:, None]
        return {"x": x, "mask": mask}

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A random batch (faster than a DataLoader over ``__getitem__``)."""
        start = torch.randint(0, self.starts, (batch,), generator=generator)
        if self.flexible:
            valid = torch.randint(2, self.tokens + 1, (batch,), generator=generator)
        else:
            valid = torch.full((batch,), self.tokens)
        return self.window(start, valid)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        out = self.sample(1, g)
        return {k: v[0] for k, v in out.items()}


def normalizer(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std [D] (std floored at 1e-3)."""
    return features.mean(0).astype(np.float32), np.maximum(features.std(0), 1e-3).astype(np.float32)

"""A flexible-horizon Diffusion Forcing planner for PointMaze.

The plan is a window of ``tokens`` tokens of ``frame_stack`` frames (positions, optionally
velocities and actions, normalized). Token 0 is the current observation repeated ``frame_stack``
times and is known (clean); tokens ``1..h`` are the plan for the requested horizon
``ceil(horizon / frame_stack)``; the remaining tokens are **pure-noise padding** held at level 1 --
with a non-causal (bidirectional) backbone trained with random-length masks, this gives a flexible
horizon. The plan tokens are denoised along a **pyramid** scheduling matrix (later tokens noisier:
causal uncertainty), guided towards the goal by a differentiable reward on ``x0_hat``
(:class:`dforce.guidance.reward.RewardGuidance`), with Monte Carlo guidance when ``mc_samples > 1``.

Baseline, same backbone: a Diffuser-style full-sequence model (trained with one noise level per
sequence; start and goal given by inpainting, every plan token denoised together, no reward).

    planner = Planner.from_checkpoint("medium.dfplan")
    plan = planner.plan(obs, goal)                 # obs [B, 4], goal [B, 2] -> [B, H, D] world units
    action = planner.control(obs, plan[:, 0])      # PD tracking (or the diffused action)
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from dforce.backbones import build_backbone
from dforce.guidance.reward import RewardGuidance
from dforce.model import DiffusionForcing
from dforce.planning.data import STATE_KINDS, PlanningWindows, normalizer, state_features
from dforce.planning.env import maze_spec
from dforce.sampling.sampler import sample_window
from dforce.sampling.scheduling import level_grid, scheduling_matrix

METHODS = ("df_mcg", "df", "full_sequence")


def goal_reward(
    x0_hat: Tensor,
    goal: Tensor,
    weights: Tensor,
    frame_stack: int,
    frame_dim: int,
    position: slice = slice(0, 2),
    mean: Optional[Tensor] = None,
    std: Optional[Tensor] = None,
    squash: Optional[float] = None,
) -> Tensor:
    """Reach-the-goal-at-any-horizon reward: ``-sum_f w_f d(p_f, goal)`` over the frames of a window.

    Args:
        x0_hat: tokens [B, W, frame_stack * frame_dim] (normalized features).
        goal: [B, 2] in world units; ``mean`` / ``std`` [frame_dim] undo the normalization.
        weights: [B, W * frame_stack] frame weights (0 for the start token, padding and known tokens).
        squash: if set, ``d = squash * tanh(dist / squash)`` (bounded pull from far away).
    Returns: [B].
    """
    b, w = x0_hat.shape[:2]
    frames = x0_hat.float().reshape(b, w * frame_stack, frame_dim)
    if mean is not None:
        frames = frames * std.to(frames) + mean.to(frames)
    p = frames[..., position]
    dist = ((p - goal[:, None, :].to(p)) ** 2).sum(-1).add(1e-6).sqrt()
    if squash is not None:
        dist = squash * torch.tanh(dist / squash)
    return -(dist * weights.to(dist)).sum(-1)


@dataclass
class PlannerConfig:
    """Model and data layout of a planner (saved in the checkpoint).

    Attributes:
        maze: ``umaze``, ``medium`` or ``large`` (sets the window: ``ceil(episode_len / frame_stack) + 1``).
        state: features per frame: ``pos``, ``pos_vel`` or ``pos_vel_act`` (diffused actions).
        frame_skip: environment steps between planned frames (5 = 20 Hz plans of the 100 Hz sim).
        frame_stack: frames per token.
        training_noise: ``independent`` (Diffusion Forcing) or ``full_sequence`` (Diffuser-style baseline).
        width, depth, heads: transformer size (non-causal).
        noise_schedule, parametrization, weighting: diffusion settings (see ``DiffusionForcing``).
        padding_weight: loss weight of padding tokens (the reference planner uses 0.05).
        tokens: window size; None = from the maze's episode length.
    """

    maze: str = "medium"
    state: str = "pos_vel"
    frame_skip: int = 5
    frame_stack: int = 4
    training_noise: str = "independent"
    width: int = 64
    depth: int = 3
    heads: int = 4
    noise_schedule: str = "cosine"
    parametrization: str = "v"
    weighting: str = "min_snr"
    padding_weight: float = 0.05
    tokens: Optional[int] = None

    def window(self) -> int:
        return self.tokens or math.ceil(maze_spec(self.maze).episode_len / (self.frame_stack * self.frame_skip)) + 1

    def token_steps(self) -> int:
        """Environment steps covered by one token."""
        return self.frame_stack * self.frame_skip

    def frame_dim(self) -> int:
        if self.state not in STATE_KINDS:
            raise ValueError(f"unknown state {self.state!r}; choose one of {sorted(STATE_KINDS)}")
        return STATE_KINDS[self.state]


@dataclass
class TrainSettings:
    """Training settings (AdamW + linear warm-up, grad clipping, EMA, bf16 autocast).

    ``trainer='plain'`` (default) is a short loop without Lightning that also draws the start
    token at a low level with probability ``start_clean_prob`` (as the reference planner does);
    ``'lightning'`` runs :func:`dforce.training.train` (logs, checkpoints, resume under ``out_dir``)
    with the model's own training noise levels (no start-token rule).
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    precision: str = "bf16"
    start_clean_prob: float = 0.5  # P(token 0 drawn at a low level in [0, 0.25)), as the reference planner
    seed: int = 0
    log_every: int = 200
    trainer: str = "plain"
    out_dir: Optional[str] = None


def build_model(cfg: PlannerConfig) -> DiffusionForcing:
    d = cfg.frame_dim() * cfg.frame_stack
    backbone = build_backbone("transformer", dim=d, width=cfg.width, depth=cfg.depth, heads=cfg.heads, causal=False)
    return DiffusionForcing(
        backbone,
        window=cfg.window(),
        noise_schedule=cfg.noise_schedule,
        parametrization=cfg.parametrization,
        weighting=cfg.weighting,
        training_noise=cfg.training_noise,
        frame_stack=cfg.frame_stack,
        padding_weight=cfg.padding_weight,
    )


def training_levels(cfg: PlannerConfig, batch: int, tokens: int, start_clean_prob: float, g: torch.Generator) -> Tensor:
    """Per-token training levels [B, T]: independent (DF) or shared (full sequence); token 0 often low."""
    if cfg.training_noise == "full_sequence":
        return torch.rand(batch, 1, generator=g).expand(batch, tokens).clone()
    t = torch.rand(batch, tokens, generator=g)
    low = torch.rand(batch, generator=g) < start_clean_prob
    t[:, 0] = torch.where(low, 0.25 * torch.rand(batch, generator=g), t[:, 0])
    return t


def train_planner(
    cfg: PlannerConfig, dataset: dict[str, np.ndarray], settings: Optional[TrainSettings] = None, progress: bool = True, log=print
) -> "Planner":
    """Train a planner on a maze2d dataset (a plain loop; returns the EMA model)."""
    s = settings or TrainSettings()
    torch.manual_seed(s.seed)
    feats = state_features(dataset, cfg.state)
    mean, std = normalizer(feats)
    windows = PlanningWindows(feats, cfg.window(), cfg.frame_stack, mean, std, frame_skip=cfg.frame_skip, flexible=True, seed=s.seed)
    model = build_model(cfg)
    if s.trainer == "lightning":
        from dforce.training import TrainConfig, train

        windows.length = s.steps * s.batch_size
        t0 = time.time()
        tc = TrainConfig(
            max_steps=s.steps, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay, warmup_steps=s.warmup_steps,
            grad_clip=s.grad_clip, ema_decay=s.ema_decay, precision="bf16-mixed" if s.precision == "bf16" else "32-true",
            out_dir=s.out_dir, seed=s.seed, log_every=max(1, s.log_every or 50), progress=progress, logger="csv" if s.out_dir else "none",
        )
        model = train(model, windows, tc)
        return Planner(model, cfg, mean, std, extra={"train": asdict(s), "train_seconds": time.time() - t0, "data": dataset.get("meta", {})})
    if s.trainer != "plain":
        raise ValueError(f"trainer must be 'plain' or 'lightning', got {s.trainer!r}")
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    g = torch.Generator().manual_seed(s.seed)
    it = range(s.steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"train {cfg.training_noise} {cfg.maze}", mininterval=2.0)
    model.train()
    t0, running = time.time(), 0.0
    for step in it:
        batch = windows.sample(s.batch_size, g)
        levels = training_levels(cfg, s.batch_size, cfg.window(), s.start_clean_prob, g)
        for group in opt.param_groups:
            group["lr"] = s.lr * min(1.0, (step + 1) / max(1, s.warmup_steps))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.precision == "bf16"):
            loss = model.loss(batch["x"], mask=batch["mask"], noise_levels=levels, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(s.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if log is not None and s.log_every and (step + 1) % s.log_every == 0:
            log(f"step {step + 1}/{s.steps} loss {running:.4f} ({time.time() - t0:.0f}s)")
    ema.eval()
    return Planner(ema, cfg, mean, std, extra={"train": asdict(s), "train_seconds": time.time() - t0, "data": dataset.get("meta", {})})


@dataclass
class PlanSettings:
    """How to plan.

    Attributes:
        method: ``df_mcg`` (pyramid + goal guidance + Monte Carlo guidance), ``df`` (pyramid + goal
            guidance, one sample) or ``full_sequence`` (Diffuser-style: start and goal inpainted).
        steps: sampling steps per token.
        uncertainty_scale: pyramid slope ``u`` (rows = steps + floor((h - 1) u) + 1).
        guidance_scale: goal-guidance scale.
        mc_samples: futures averaged per step for ``df_mcg``.
        squash: goal distance squashing ``squash * tanh(d / squash)`` (None = plain distance).
        fs_horizon: plan length in steps of ``full_sequence`` (goal inpainted at its end); None = Diffuser's
            per-maze horizon (umaze 120, medium 250, large 380 steps, rounded to tokens).
        eta: DDIM eta.
        precision: ``fp32`` or ``bf16`` network calls.
    """

    method: str = "df_mcg"
    steps: int = 20
    uncertainty_scale: float = 0.5
    guidance_scale: float = 3.0
    mc_samples: int = 4
    squash: Optional[float] = None
    fs_horizon: Optional[int] = None
    eta: float = 0.0
    precision: str = "fp32"


DIFFUSER_HORIZON = {"umaze": 120, "medium": 250, "large": 380}


class Planner:
    """A trained planning model plus its normalizer; plans in world units."""

    def __init__(self, model: DiffusionForcing, cfg: PlannerConfig, mean: np.ndarray, std: np.ndarray, extra: Optional[dict] = None) -> None:
        self.model, self.cfg = model.eval(), cfg
        self.mean = torch.as_tensor(np.asarray(mean, np.float32))
        self.std = torch.as_tensor(np.asarray(std, np.float32))
        self.extra = extra or {}

    # ---------------------------------------------------------------- checkpoints
    def save(self, path: str) -> str:
        """Write weights (safetensors) + config (JSON) into one ``.dfplan`` folder, atomically."""
        from safetensors.torch import save_file

        path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, os.path.join(tmp, "model.safetensors"))
        meta = {"config": asdict(self.cfg), "mean": self.mean.tolist(), "std": self.std.tolist(), "extra": self.extra}
        with open(os.path.join(tmp, "planner.json"), "w") as f:
            json.dump(meta, f, indent=2, default=str)
        if os.path.isdir(path):
            old = tempfile.mkdtemp(dir=parent, prefix=".old-")
            os.replace(path, os.path.join(old, "x"))
            os.replace(tmp, path)
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        return path

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu") -> "Planner":
        """Load a planner written by :meth:`save` (a folder with ``planner.json`` and ``model.safetensors``)."""
        from safetensors.torch import load_file

        meta_path = os.path.join(path, "planner.json")
        if not os.path.exists(meta_path):
            raise FileNotFoundError(f"{path} is not a planner checkpoint (no planner.json); train one with `dforce plan train`")
        with open(meta_path) as f:
            meta = json.load(f)
        cfg = PlannerConfig(**meta["config"])
        model = build_model(cfg)
        model.load_state_dict(load_file(os.path.join(path, "model.safetensors"), device=device))
        return cls(model.to(device), cfg, np.array(meta["mean"]), np.array(meta["std"]), meta.get("extra", {}))

    # ---------------------------------------------------------------- planning
    @property
    def default_method(self) -> str:
        return "full_sequence" if self.cfg.training_noise == "full_sequence" else "df_mcg"

    def _normalize(self, f: Tensor) -> Tensor:
        return (f - self.mean) / self.std

    def _denormalize(self, f: Tensor) -> Tensor:
        return f * self.std + self.mean

    def start_features(self, obs: Tensor) -> Tensor:
        """Observation [B, 4] -> frame features [B, D] (unknown actions as 0)."""
        d = self.cfg.frame_dim()
        f = torch.zeros(obs.shape[0], d)
        f[:, : min(d, 4)] = obs[:, : min(d, 4)]
        if d == 6:
            f[:, 4:] = self.mean[4:]
        return f

    def goal_features(self, goal: Tensor) -> Tensor:
        """Goal [B, 2] -> a resting frame at the goal [B, D]."""
        f = torch.zeros(goal.shape[0], self.cfg.frame_dim())
        f[:, :2] = goal
        return f

    @torch.no_grad()
    def plan(
        self,
        observation: Any,
        goal: Any,
        horizon: Optional[int] = None,
        settings: Optional[PlanSettings] = None,
        seed: Optional[int] = None,
        **overrides: Any,
    ) -> np.ndarray:
        """Plan from ``observation`` [B, 4] (x, y, vx, vy) to ``goal`` [B, 2].

        Args:
            horizon: steps to plan (default: the maze's episode length); at most
                ``(tokens - 1) * frame_stack``; rounded up to whole tokens.
            settings / overrides: :class:`PlanSettings` fields, e.g. ``method="df"``, ``guidance_scale=5``.
        Returns: planned frames after the observation [B, H, D] in world units, one every
            ``frame_skip`` steps (frame ``i`` is the state ``(i + 1) frame_skip`` steps ahead);
            H is a multiple of ``frame_stack``.
        """
        s = PlanSettings(**{**asdict(settings or PlanSettings()), **overrides})
        if s.method not in METHODS:
            raise ValueError(f"unknown method {s.method!r}; choose one of {list(METHODS)}")
        obs = torch.as_tensor(np.asarray(observation, np.float32)).reshape(-1, 4)
        goal = torch.as_tensor(np.asarray(goal, np.float32)).reshape(-1, 2)
        if goal.shape[0] != obs.shape[0]:
            raise ValueError(f"observation and goal batch sizes differ: {obs.shape[0]} vs {goal.shape[0]}")
        cfg, fs, w = self.cfg, self.cfg.frame_stack, self.cfg.window()
        max_h = (w - 1) * cfg.token_steps()
        if s.method == "full_sequence":
            horizon = s.fs_horizon or DIFFUSER_HORIZON.get(cfg.maze, max_h)
        horizon = max_h if horizon is None else int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 step, got {horizon}")
        h = min(math.ceil(horizon / cfg.token_steps()), w - 1)
        b, d = obs.shape[0], cfg.frame_dim()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        grid = level_grid(s.steps, self.model.noise_schedule)

        known = torch.zeros(b, w, dtype=torch.bool)
        known_values = torch.zeros(b, w, fs * d)
        known[:, 0] = True
        known_values[:, 0] = self._normalize(self.start_features(obs)).repeat(1, fs)
        if s.method == "full_sequence":
            m = scheduling_matrix("full_sequence", h, s.steps)
            known[:, h] = True  # goal inpainted as the last plan token (Diffuser)
            known_values[:, h] = self._normalize(self.goal_features(goal)).repeat(1, fs)
        else:
            m = scheduling_matrix("pyramid", h, s.steps, uncertainty_scale=s.uncertainty_scale)
        lv = torch.ones(m.shape[0], w)
        lv[:, 1 : h + 1] = grid[m]
        if s.method == "full_sequence":
            lv[:, 0] = lv[:, 1]  # Diffuser: clean start relabelled at the sequence's level
        else:
            lv[:, 0] = 0.0
        x = torch.randn(b, w, fs * d, generator=g)
        guidance = None
        if s.method != "full_sequence" and s.guidance_scale > 0:
            weights = torch.zeros(b, w * fs)
            weights[:, fs : (h + 1) * fs] = 1.0 / fs
            reward = lambda x0, info: goal_reward(  # noqa: E731
                x0, goal, weights, fs, d, mean=self.mean, std=self.std, squash=s.squash
            )
            # x0 space: bounded at pure noise, where the planner's pyramid starts (scale tuned for it)
            guidance = RewardGuidance(reward, s.guidance_scale, s.mc_samples if s.method == "df_mcg" else 1, space="x0")

        out = sample_window(
            self.model.denoiser(s.precision), x, lv, schedule=self.model.noise_schedule, eta=s.eta, guidance=guidance,
            known_mask=known, known_values=known_values, history="relabel", generator=g,
        )
        frames = out[:, 1 : h + 1].reshape(b, h * fs, d)
        return self._denormalize(frames).numpy()

    def target(self, plan: np.ndarray, plan_obs: np.ndarray, steps_ahead: int) -> np.ndarray:
        """The plan's state ``steps_ahead`` steps after it was made [B, D], linearly interpolated.

        ``plan`` [B, H, D] from :meth:`plan`, ``plan_obs`` [B, 4] the observation it started from.
        """
        k = self.cfg.frame_skip
        pos = min(steps_ahead / k, plan.shape[1])  # 0 = the start, i = plan frame i - 1
        i = int(math.floor(pos))
        frac = pos - i
        start = self.start_features(torch.as_tensor(np.asarray(plan_obs, np.float32))).numpy()
        seq = np.concatenate([start[:, None], plan], 1)
        if i >= seq.shape[1] - 1:
            return seq[:, -1]
        return (1 - frac) * seq[:, i] + frac * seq[:, i + 1]

    def control(self, obs: np.ndarray, target: np.ndarray, kp: float = 12.5, kd: float = 1.2) -> np.ndarray:
        """Action [B, 2] to follow plan frame ``target`` [B, D] from ``obs`` [B, 4].

        ``pos_vel_act``: the diffused action; otherwise Diffuser's PD tracking
        ``a = kp (p_plan - p) + kd (v_plan - v)`` (v_plan = 0 for ``pos``), clipped to [-1, 1].
        ``target`` is usually ``self.target(plan, plan_obs, j + 1)`` at step ``j`` after planning.
        """
        if self.cfg.state == "pos_vel_act":
            return np.clip(target[:, 4:6], -1, 1)
        v_plan = target[:, 2:4] if target.shape[1] >= 4 else np.zeros_like(obs[:, 2:4])
        return np.clip(kp * (target[:, :2] - obs[:, :2]) + kd * (v_plan - obs[:, 2:4]), -1.0, 1.0)

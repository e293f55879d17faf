"""A flexible-horizon Diffusion Forcing planner for PointMaze, on the core.

The plan is a window of ``tokens`` tokens of ``frame_stack`` frames (positions, optionally
velocities and actions, normalized). Token 0 is the current observation repeated ``frame_stack``
times, given to the core sampler as *context* (a known token); tokens ``1..h`` are the plan for the
requested horizon ``ceil(horizon / (frame_stack frame_skip))``; the remaining tokens are
**pure-noise padding** held at level 1 -- with a non-causal (bidirectional) backbone trained with
random-length masks, this gives a flexible horizon. The plan is ``model.sample`` along a
**pyramid** scheduling matrix (later tokens noisier: causal uncertainty), guided towards the goal by
a differentiable reward on ``x0_hat`` (:class:`dforce.guidance.reward.RewardGuidance`), with Monte
Carlo guidance when ``mc_samples > 1``.

Baseline, same backbone: a Diffuser-style full-sequence model (trained with one noise level per
sequence; start and goal given as known tokens at both ends -- inpainting -- every plan token
denoised together by the core row loop, no reward).

Training is :func:`dforce.training.train` (Lightning: EMA, resume, bf16, devices); a planner is
saved with :func:`dforce.training.export_model` (safetensors + JSON, the normalizer and the
:class:`PlannerConfig` in ``extra``).

    planner = Planner.from_checkpoint("runs/medium-df", device="cuda")
    plan = planner.plan(obs, goal)                 # obs [B, 4], goal [B, 2] -> [B, H, D] world units
    action = planner.control(obs, plan[:, 0])      # PD tracking (or the diffused action)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from dforce.backbones import build_backbone
from dforce.guidance.reward import MC_GRADIENTS, RewardGuidance
from dforce.model import DiffusionForcing
from dforce.planning.data import STATE_KINDS, PlanningWindows, normalizer, state_features
from dforce.planning.env import maze_spec
from dforce.sampling import SamplingConfig
from dforce.sampling.sampler import sample_window
from dforce.sampling.scheduling import level_grid, scheduling_matrix, window_levels
from dforce.training import TrainConfig, export_model, load_model, train

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
    """Model and data layout of a planner (saved with the model).

    Attributes:
        maze: a PointMaze layout (``umaze``, ``medium``, ``large``, ``open``, ``medium_diverse_g``...) or a
            custom maze map as JSON text (:func:`dforce.planning.env.maze_spec`; sets the window:
            ``ceil(episode_len / (frame_stack frame_skip)) + 1``).
        state: features per frame: ``pos``, ``pos_vel`` or ``pos_vel_act`` (diffused actions).
        frame_skip: environment steps between planned frames (5 = 20 Hz plans of the 100 Hz sim).
        frame_stack: frames per token.
        training_noise: ``independent`` (Diffusion Forcing) or ``full_sequence`` (Diffuser-style baseline).
        width, depth, heads: transformer size (non-causal).
        noise_schedule, parametrization, weighting: diffusion settings (see ``DiffusionForcing``).
        padding_weight: loss weight of padding tokens (the reference planner uses 0.05).
        known_start_prob: probability that the start token (token 0) is trained at a low level in
            ``[0, known_start_level)`` (``DiffusionForcing(known_start_prob=...)``); None = 0.5 for
            ``independent`` (the reference planner), 0 for ``full_sequence`` (Diffuser noises it with the rest).
        known_start_level: upper end of that level.
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
    known_start_prob: Optional[float] = None
    known_start_level: float = 0.25
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

    def start_prob(self) -> float:
        if self.known_start_prob is not None:
            return self.known_start_prob
        return 0.0 if self.training_noise == "full_sequence" else 0.5


PLANNER_TRAINING = dict(max_steps=2000, batch_size=32, lr=5e-4, weight_decay=1e-4, ema_decay=0.995)
"""The planner's defaults for :class:`dforce.training.TrainConfig` (other fields: the core's)."""


def planner_train_config(**overrides: Any) -> TrainConfig:
    """:class:`TrainConfig` with the planner's defaults (:data:`PLANNER_TRAINING`) and ``overrides``."""
    return TrainConfig(**{**PLANNER_TRAINING, **overrides})


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
        known_start_prob=cfg.start_prob(),
        known_start_level=cfg.known_start_level,
    )


def train_planner(cfg: PlannerConfig, dataset: dict[str, np.ndarray], config: Optional[TrainConfig] = None) -> "Planner":
    """Train a planner on a maze2d dataset with :func:`dforce.training.train`; returns it with the EMA weights.

    ``config``: the core's training options (default :func:`planner_train_config`); with
    ``config.out_dir`` set, logs and resumable checkpoints go there.
    """
    config = config or planner_train_config()
    feats = state_features(dataset, cfg.state)
    mean, std = normalizer(feats)
    windows = PlanningWindows(feats, cfg.window(), cfg.frame_stack, mean, std, frame_skip=cfg.frame_skip, flexible=True, seed=config.seed)
    t0 = time.time()
    torch.manual_seed(config.seed)  # the initial weights follow the training seed, not the caller's RNG state
    model = train(build_model(cfg), windows, config)
    info = {"train": asdict(config), "train_seconds": time.time() - t0, "data": dataset.get("meta", {})}
    return Planner(model, cfg, mean, std, extra=info)


def _plan_sampling() -> SamplingConfig:
    return SamplingConfig(scheduling="pyramid", steps=20, uncertainty_scale=0.5, stabilization_level=0.0, history="relabel")


@dataclass
class PlanSettings:
    """How to plan and follow the plan: the core's sampling options plus the planner's own.

    Attributes:
        method: ``df_mcg`` (``model.sample`` + goal guidance + Monte Carlo guidance), ``df`` (goal
            guidance, one sample) or ``full_sequence`` (Diffuser-style: start and goal known tokens at
            both ends of a fixed horizon, all tokens denoised together, no reward).
        sampling: the core's :class:`~dforce.SamplingConfig` (default: pyramid, 20 steps, slope
            ``u = 0.5``, DDIM, history relabelled, no stabilization). ``full_sequence`` replaces the
            scheduling by the full-sequence matrix, and its known tokens follow the plan's level
            (``uncertainty_scale``, ``stabilization_level`` and ``context_level`` then play no part).
            The plan is one window: ``chunk_size`` and ``history_len`` must stay unset.
        guidance_scale: goal-guidance scale (0 = none). The default 30 is the median of DF + MCG's
            picks on a validation seed (with the pace): 30 / 10 / 80 on umaze / medium / large at
            600-800 training steps, 20 / 30 on medium / large at 20000
            (``benchmarks/results/planning_scales_*.md``).
        mc_samples: futures averaged per step for ``df_mcg``.
        mc_gradient: how the futures' reward gradient reaches the tokens being denoised:
            ``through`` their second network call (the reference code's) or ``direct``
            (:class:`dforce.guidance.reward.RewardGuidance`).
        squash: goal distance squashing ``squash * tanh(d / squash)`` (None = plain distance). The
            default 2 is the reference planner's ``tanh(d / 2)``: the pull of a frame far from the goal
            is bounded, so a scale strong enough to hold the agent at the goal does not drag far
            frames through walls (ablation in ``docs/planning.md``).
        fs_horizon: plan length in steps of ``full_sequence`` (goal at its end); None = Diffuser's
            per-maze horizon (umaze 120, medium 250, large 380 steps, rounded to tokens).
        precision: ``fp32`` or ``bf16`` network calls.
        pace: how fast the controller follows the plan, as a multiple of its planned speed: at step
            ``j`` after planning PD control tracks the plan's state ``pace * j`` steps ahead, with
            its velocity times ``pace`` (1 = Diffuser's tracking; :meth:`Planner.target`). A plan
            keeps the data's speed (about 3.2 m/s on the D4RL mazes, the limit is 5). The default 2
            is the most common of the validation picks over 1 / 1.5 / 2 (8 of 15 maze, budget and
            method cells, ``benchmarks/results/planning_scales_*.md``): the agent reaches the goal
            sooner along the same plans (``docs/planning.md``, "Tracking pace").
    """

    method: str = "df_mcg"
    sampling: SamplingConfig = field(default_factory=_plan_sampling)
    guidance_scale: float = 30.0
    mc_samples: int = 4
    mc_gradient: str = "through"
    squash: Optional[float] = 2.0
    fs_horizon: Optional[int] = None
    precision: str = "fp32"
    pace: float = 2.0

    def check(self) -> "PlanSettings":
        """Validate; raises ``ValueError`` naming the option."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {list(METHODS)}")
        self.sampling.check()
        for name in ("chunk_size", "history_len"):
            if getattr(self.sampling, name) is not None:
                raise ValueError(f"sampling.{name} does not apply to the planner (a plan is one window); leave it unset")
        if self.mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {self.mc_samples}")
        if self.mc_gradient not in MC_GRADIENTS:
            raise ValueError(f"mc_gradient must be one of {list(MC_GRADIENTS)}, got {self.mc_gradient!r}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if not self.pace > 0:
            raise ValueError(f"pace must be > 0 (1 follows the plan at its planned speed), got {self.pace}")
        if self.fs_horizon is not None and self.fs_horizon < 1:
            raise ValueError(f"fs_horizon must be >= 1 step (or None for Diffuser's), got {self.fs_horizon}")
        return self

    def with_overrides(self, **overrides: Any) -> "PlanSettings":
        """A copy with ``overrides``: fields of this class or of :class:`SamplingConfig` (e.g. ``steps=10``)."""
        own = {f.name for f in fields(PlanSettings)} - {"sampling"}
        sampling = {f.name for f in fields(SamplingConfig)}
        unknown = set(overrides) - own - sampling - {"sampling"}
        if unknown:
            raise TypeError(f"unknown planning option(s) {sorted(unknown)}; see PlanSettings and dforce.SamplingConfig")
        base = overrides.get("sampling", self.sampling)
        samp = replace(base, **{k: v for k, v in overrides.items() if k in sampling})
        return replace(self, sampling=samp, **{k: v for k, v in overrides.items() if k in own}).check()


DIFFUSER_HORIZON = {"umaze": 120, "medium": 250, "large": 380}


class Planner:
    """A trained planning model plus its normalizer, on ``device``; plans in world units.

    ``device``: where the model runs (None: where its weights are); ``extra``: training notes kept
    with the model.
    """

    def __init__(
        self, model: DiffusionForcing, cfg: PlannerConfig, mean: Any, std: Any, extra: Optional[dict] = None,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model, self.cfg = model.to(self.device).eval(), cfg
        self.mean = torch.as_tensor(np.asarray(mean, np.float32), device=self.device)
        self.std = torch.as_tensor(np.asarray(std, np.float32), device=self.device)
        self.extra = extra or {}

    # ---------------------------------------------------------------- checkpoints
    def save(self, path: str, overwrite: bool = True) -> Path:
        """Export with :func:`dforce.training.export_model`: ``model.safetensors`` + ``config.json``,
        whose ``extra["planner"]`` holds the :class:`PlannerConfig`, the normalizer and ``extra``."""
        meta = {"config": asdict(self.cfg), "mean": self.mean.tolist(), "std": self.std.tolist(), "info": self.extra}
        return export_model(self.model, path, extra={"planner": json.loads(json.dumps(meta, default=str))}, overwrite=overwrite)

    @classmethod
    def from_checkpoint(cls, path: str, device: Union[str, torch.device] = "cpu") -> "Planner":
        """Load a planner written by :meth:`save` (or an old ``.dfplan`` folder with ``planner.json``) onto ``device``."""
        p = Path(path)
        if (p / "planner.json").is_file() and not (p / "config.json").exists():
            return cls._from_dfplan(p, device)
        if p.is_dir() and not (p / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a planner folder (no config.json); train one with `dforce plan train --out {path}`")
        model, extra = load_model(p, map_location=str(device))
        meta = extra.get("planner")
        if not isinstance(meta, dict):
            raise ValueError(f"{path} is a dforce model but not a planner (no 'planner' entry in its config.json extra); "
                             "pass a folder written by `dforce plan train`")
        try:
            cfg = PlannerConfig(**meta["config"])
            mean, std = meta["mean"], meta["std"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{p / 'config.json'}: the planner entry is invalid ({err}); retrain with `dforce plan train`") from None
        return cls(model, cfg, mean, std, meta.get("info", {}), device=device)

    @classmethod
    def _from_dfplan(cls, path: Path, device: Union[str, torch.device]) -> "Planner":
        """Read the earlier planner format (``planner.json`` + ``model.safetensors``); :meth:`save` converts it."""
        from safetensors.torch import load_file

        try:
            meta = json.loads((path / "planner.json").read_text())
            cfg = PlannerConfig(**meta["config"])
            model = build_model(cfg)
            model.load_state_dict(load_file(str(path / "model.safetensors")))
            mean, std = meta["mean"], meta["std"]
        except Exception as err:  # noqa: BLE001 - any defect of an old folder gets the same one-line fix
            raise ValueError(f"{path} is an old-format planner (planner.json) that cannot be read ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:120]}); retrain it with `dforce plan train`") from None
        return cls(model, cfg, mean, std, meta.get("extra", {}), device=device)

    # ---------------------------------------------------------------- planning
    @property
    def default_method(self) -> str:
        return "full_sequence" if self.cfg.training_noise == "full_sequence" else "df_mcg"

    def _normalize(self, f: Tensor) -> Tensor:
        return (f - self.mean) / self.std

    def _denormalize(self, f: Tensor) -> Tensor:
        return f * self.std + self.mean

    def start_features(self, obs: Tensor) -> Tensor:
        """Observation [B, 4] -> frame features [B, D] (unknown actions at their mean), on ``obs``'s device."""
        d = self.cfg.frame_dim()
        f = torch.zeros(obs.shape[0], d, device=obs.device)
        f[:, : min(d, 4)] = obs[:, : min(d, 4)]
        if d == 6:
            f[:, 4:] = self.mean[4:].to(obs.device)
        return f

    def goal_features(self, goal: Tensor) -> Tensor:
        """Goal [B, 2] -> a resting frame at the goal [B, D]."""
        f = torch.zeros(goal.shape[0], self.cfg.frame_dim(), device=goal.device)
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
                ``(tokens - 1) * frame_stack * frame_skip``; rounded up to whole tokens.
            settings / overrides: :class:`PlanSettings` or :class:`SamplingConfig` fields, e.g.
                ``method="df"``, ``guidance_scale=5``, ``steps=10``.
            seed: makes the plan reproducible (the same numbers on the same device).
        Returns: planned frames after the observation [B, H, D] in world units, one every
            ``frame_skip`` steps (frame ``i`` is the state ``(i + 1) frame_skip`` steps ahead);
            H is a multiple of ``frame_stack``.
        """
        s = (settings or PlanSettings()).with_overrides(**overrides)
        obs = torch.as_tensor(np.asarray(observation, np.float32), device=self.device).reshape(-1, 4)
        goal = torch.as_tensor(np.asarray(goal, np.float32), device=self.device).reshape(-1, 2)
        if goal.shape[0] != obs.shape[0]:
            raise ValueError(f"observation and goal batch sizes differ: {obs.shape[0]} vs {goal.shape[0]}")
        cfg, w = self.cfg, self.model.window
        max_h = (w - 1) * cfg.token_steps()
        if s.method == "full_sequence":
            horizon = s.fs_horizon or DIFFUSER_HORIZON.get(cfg.maze, max_h)
        horizon = max_h if horizon is None else int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 step, got {horizon}")
        h = min(math.ceil(horizon / cfg.token_steps()), w - 1)
        start = self._normalize(self.start_features(obs))
        if s.method == "full_sequence":
            frames = self._inpaint(start, self._normalize(self.goal_features(goal)), h, s, seed)
        else:
            frames = self._guided(start, goal, h, s, seed)
        return self._denormalize(frames).cpu().numpy()

    def _guided(self, start: Tensor, goal: Tensor, h: int, s: PlanSettings, seed: Optional[int]) -> Tensor:
        """Diffusion Forcing: ``model.sample`` after the start token, goal reward guidance -> frames [B, h fs, D]."""
        fs, d = self.cfg.frame_stack, self.cfg.frame_dim()
        guidance = None
        if s.guidance_scale > 0:

            def reward(x0: Tensor, info: Any) -> Tensor:
                weights = torch.zeros(x0.shape[0], x0.shape[1] * fs, device=x0.device)
                weights[:, fs : (h + 1) * fs] = 1.0 / fs  # the plan tokens: not the start, not the padding
                return goal_reward(x0, goal, weights, fs, d, mean=self.mean, std=self.std, squash=s.squash)

            # x0 space: bounded at pure noise, where the planner's pyramid starts (scale tuned for it)
            guidance = RewardGuidance(
                reward, s.guidance_scale, s.mc_samples if s.method == "df_mcg" else 1, space="x0", mc_gradient=s.mc_gradient,
            )
        context = start[:, None, :].expand(-1, fs, -1)
        return self.model.sample(context, h * fs, config=s.sampling, guidance=guidance, seed=seed, precision=s.precision)

    def _inpaint(self, start: Tensor, goal: Tensor, h: int, s: PlanSettings, seed: Optional[int]) -> Tensor:
        """Diffuser-style: start (token 0) and goal (token h) known, tokens 0..h at one level, padding
        at pure noise; the core row loop -> frames [B, h fs, D] (the last token is the goal)."""
        c, m = s.sampling, self.model
        b, fs, d = start.shape[0], self.cfg.frame_stack, self.cfg.frame_dim()
        pad = (not m.causal) if c.pad_to_window is None else c.pad_to_window
        width = m.window if pad else h + 1
        grid = level_grid(c.steps, m.noise_schedule, c.level_spacing).to(self.device)
        levels = window_levels(scheduling_matrix("full_sequence", h + 1, c.steps), grid, width)
        known = torch.zeros(b, width, dtype=torch.bool, device=self.device)
        known[:, [0, h]] = True
        values = torch.zeros(b, width, fs * d, device=self.device)
        values[:, 0], values[:, h] = start.repeat(1, fs), goal.repeat(1, fs)
        g = torch.Generator(self.device).manual_seed(seed) if seed is not None else None
        x = torch.randn(b, width, fs * d, generator=g, device=self.device)
        out = sample_window(
            m.denoiser(s.precision), x, levels, schedule=m.noise_schedule, eta=c.eta, known_mask=known, known_values=values,
            history=c.history, generator=g, clip_x0=c.clip_x0,
        )
        return out[:, 1 : h + 1].reshape(b, h * fs, d)

    def target(self, plan: np.ndarray, plan_obs: np.ndarray, steps_ahead: int, pace: float = 1.0) -> np.ndarray:
        """The plan's state ``pace * steps_ahead`` steps after it was made [B, D], linearly
        interpolated, its velocity times ``pace`` (:attr:`PlanSettings.pace`).

        ``plan`` [B, H, D] from :meth:`plan`, ``plan_obs`` [B, 4] the observation it started from.
        """
        if pace != 1 and self.cfg.state == "pos_vel_act":
            raise ValueError(f"pace {pace} applies to PD tracking; a pos_vel_act planner executes its diffused actions: use pace=1")
        k = self.cfg.frame_skip
        pos = min(pace * steps_ahead / k, plan.shape[1])  # 0 = the start, i = plan frame i - 1
        i = int(math.floor(pos))
        frac = pos - i
        start = self.start_features(torch.as_tensor(np.asarray(plan_obs, np.float32))).cpu().numpy()
        seq = np.concatenate([start[:, None], plan], 1)
        out = seq[:, -1].copy() if i >= seq.shape[1] - 1 else (1 - frac) * seq[:, i] + frac * seq[:, i + 1]
        out[:, 2:4] *= pace  # pos_vel: the planned velocity; pos: no velocity columns
        return out

    def control(self, obs: np.ndarray, target: np.ndarray, kp: float = 12.5, kd: float = 1.2) -> np.ndarray:
        """Action [B, 2] to follow plan frame ``target`` [B, D] from ``obs`` [B, 4].

        ``pos_vel_act``: the diffused action; otherwise Diffuser's PD tracking
        ``a = kp (p_plan - p) + kd (v_plan - v)`` (v_plan = 0 for ``pos``), clipped to [-1, 1].
        ``target`` is usually ``self.target(plan, plan_obs, j + 1)`` at step ``j`` after planning.
        """
        if self.cfg.state == "pos_vel_act":
            return np.clip(target[:, 4:6], -1, 1)
        return pd_control(obs, target, kp, kd)


def pd_control(obs: np.ndarray, target: np.ndarray, kp: float = 12.5, kd: float = 1.2) -> np.ndarray:
    """Diffuser's PD tracking ``a = clip(kp (p* - p) + kd (v* - v), -1, 1)``: obs [B, 4], target
    [B, >= 2] (position, then velocity when given; else v* = 0) -> actions [B, 2]."""
    v_plan = target[:, 2:4] if target.shape[1] >= 4 else np.zeros_like(obs[:, 2:4])
    return np.clip(kp * (target[:, :2] - obs[:, :2]) + kd * (v_plan - obs[:, 2:4]), -1.0, 1.0)

"""``dforce plan``: maze planning with Diffusion Forcing.

    dforce plan generate-data --maze medium --steps 200000 --out data/medium.npz
    dforce plan train --data data/medium.npz --out runs/medium-df --train.max_steps 3000
    dforce plan train --data data/medium.npz --out runs/medium-fs --model.training_noise full_sequence
    dforce plan eval --checkpoint runs/medium-df --plan.method df_mcg --episodes 16 --plot runs/medium.png --device cuda

Every subcommand documents its options under ``--help`` and reads ``--config FILE.yaml``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

from jsonargparse import ActionConfigFile

from dforce.cli.common import Parser as ArgumentParser
from dforce.cli.common import UserError, add_overwrite, check_outputs


def _parser() -> ArgumentParser:
    from dforce.planning.planner import PLANNER_TRAINING, PlannerConfig, PlanSettings
    from dforce.training import TrainConfig

    p = ArgumentParser(prog="dforce plan", description="Maze planning with Diffusion Forcing (PointMaze / D4RL maze2d).")
    sub = p.add_subcommands(required=True, dest="command")

    g = ArgumentParser(description="Generate a maze2d dataset with D4RL's recipe (waypoint controller, random goals).")
    g.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options")
    g.add_argument("--maze", type=str, default="medium", help="a PointMaze layout (umaze, medium, large, open, medium_diverse_g, "
                   "...) or a custom maze map as JSON text or a .json file (rows of 1 wall / 0 free / \"g\" goal)")
    g.add_argument("--steps", type=Optional[int], default=None, help="dataset size in steps (default: D4RL's 1M/2M/4M)")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--action_noise", type=float, default=0.5, help="std of Gaussian action noise (D4RL --noisy: 0.5)")
    g.add_argument("--out", type=str, required=True, help="output .npz path (written atomically)")
    g.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    add_overwrite(g)
    sub.add_subcommand("generate-data", g)

    t = ArgumentParser(description="Train a planner (Diffusion Forcing, or the full-sequence baseline).")
    t.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options")
    t.add_argument("--data", type=str, required=True, help="dataset .npz from generate-data")
    t.add_argument("--out", type=str, required=True, help="model folder to write (export_model: model.safetensors + config.json)")
    t.add_class_arguments(PlannerConfig, "model", help="model and data layout")
    t.add_class_arguments(TrainConfig, "train", help="the core's training options (dforce.training.TrainConfig; "
                          "--train.out_dir keeps logs and resumable checkpoints)")
    t.set_defaults({f"train.{k}": v for k, v in PLANNER_TRAINING.items()})
    t.add_argument("--threads", type=Optional[int], default=None, help="torch CPU threads (default: torch's)")
    add_overwrite(t)
    sub.add_subcommand("train", t)

    e = ArgumentParser(description="Evaluate a planner with model-predictive control under D4RL's convention.")
    e.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options")
    e.add_argument("--checkpoint", type=str, required=True, help="checkpoint folder from `dforce plan train`")
    e.add_argument("--maze", type=Optional[str], default=None, help="maze (default: the checkpoint's)")
    e.add_argument("--setting", type=str, default="single_goal", help="single_goal (D4RL's fixed goal) or random (random start and goal)")
    e.add_argument("--episodes", type=int, default=8, help="episodes per seed (run in parallel)")
    e.add_argument("--seeds", type=list[int], default=[0], help="evaluation seeds")
    e.add_argument("--replan_every", type=Optional[int], default=None,
                   help="steps between replanning (default: 50 for DF, once per episode for full_sequence, as Diffuser)")
    e.add_argument("--hold", type=bool, default=True,
                   help="once an episode reaches the goal, hold it by PD control at the goal instead of planning (false: plan to the end)")
    e.add_argument("--episode_len", type=Optional[int], default=None, help="steps per episode (default: D4RL's 300/600/800)")
    e.add_class_arguments(PlanSettings, "plan", help="planning settings")
    e.add_argument("--plot", type=Optional[str], default=None, help="PNG of plans and executed trajectories (first seed)")
    e.add_argument("--out", type=Optional[str], default=None, help="JSON file with the summary")
    e.add_argument("--threads", type=Optional[int], default=None, help="torch CPU threads (default: torch's)")
    e.add_argument("--device", type=str, default="cpu", help="where the planner runs: cpu, cuda, cuda:1, ...")
    add_overwrite(e)
    sub.add_subcommand("eval", e)
    return p


def _write_json(path: str, obj) -> None:
    from dforce.training.files import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2))


def check_maze(maze: str) -> None:
    """A one-line error for a maze that is neither a known layout nor a valid maze map."""
    from dforce.planning.env import maze_spec

    try:
        maze_spec(maze)
    except ValueError as e:
        raise UserError(f"--maze: {e}") from None


def _check(cmd: str, a) -> None:
    import torch

    if a.get("threads") is not None and a.threads < 1:
        raise UserError(f"--threads must be >= 1, got {a.threads}")
    if cmd == "generate-data":
        check_maze(a.maze)
        if a.steps is not None and a.steps < 1:
            raise UserError(f"--steps must be >= 1, got {a.steps}")
        if not a.out.endswith(".npz"):
            raise UserError(f"--out {a.out} must end in .npz")
        check_outputs(a.overwrite, out=a.out)
    elif cmd == "train":
        if not os.path.isfile(a.data):
            raise UserError(f"--data {a.data} does not exist; create it with `dforce plan generate-data --out {a.data}`")
        from dforce.training.export import check_export_path

        check_export_path(a.out, a.overwrite, option="--out")
    else:
        for name in ("episodes", "replan_every", "episode_len"):
            if a.get(name) is not None and a.get(name) < 1:
                raise UserError(f"--{name} must be >= 1, got {a.get(name)}")
        if a.setting not in ("single_goal", "random"):
            raise UserError(f"--setting must be single_goal or random, got {a.setting!r}")
        if a.maze is not None:
            check_maze(a.maze)
        if not os.path.isdir(a.checkpoint):
            raise UserError(f"--checkpoint {a.checkpoint} is not a folder; pass the folder written by `dforce plan train`")
        if a.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {a.device}: CUDA is not available on this machine; use --device cpu")
        check_outputs(a.overwrite, out=a.out, plot=a.plot)


def main(argv: Optional[list[str]] = None) -> int:
    from dforce.cli.common import report

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except Exception as err:  # noqa: BLE001 - direct callers get the same one-line report as `dforce plan`
        return report(err)


def _main(argv: list[str]) -> int:
    from dforce.cli.common import check_config_files

    check_config_files(argv)
    parser = _parser()
    cfg = parser.parse_args(argv)
    cmd = cfg.command
    a = cfg[cmd]
    _check(cmd, a)
    import torch

    if cmd == "generate-data":
        from dforce.planning.data import generate_dataset, save_dataset

        data = generate_dataset(a.maze, a.steps, seed=a.seed, action_noise=a.action_noise, progress=a.progress)
        save_dataset(a.out, data)
        print(f"wrote {len(data['observations'])} steps ({int(data['goal_reached'].sum())} goals reached) to {a.out}")
        return 0

    from dforce.planning.planner import Planner, PlannerConfig, PlanSettings
    from dforce.sampling import SamplingConfig
    from dforce.training import TrainConfig

    if a.threads:
        torch.set_num_threads(a.threads)
    if cmd == "train":
        from dforce.planning.data import load_dataset
        from dforce.planning.planner import train_planner

        data = load_dataset(a.data)
        model_cfg = PlannerConfig(**a.model.as_dict())
        if data["meta"].get("maze") not in (None, model_cfg.maze):
            raise UserError(f"the dataset {a.data} is for maze {data['meta']['maze']!r} but --model.maze is {model_cfg.maze!r}; "
                            f"pass --model.maze {data['meta']['maze']}")
        train = a.train.as_dict()
        planner = train_planner(model_cfg, data, TrainConfig(**{**train, "betas": tuple(train["betas"])}))
        planner.save(a.out, overwrite=a.overwrite)
        print(f"saved {a.out} ({planner.extra['train_seconds']:.0f}s of training)")
        return 0

    from dforce.planning.evaluate import plot_episodes, run_episodes, summarize

    planner = Planner.from_checkpoint(a.checkpoint, device=a.device)
    opts = a.plan.as_dict()
    settings = PlanSettings(**{**opts, "sampling": SamplingConfig(**opts["sampling"])}).check()
    results = []
    for i, seed in enumerate(a.seeds):
        r = run_episodes(
            planner, a.maze, a.episodes, a.setting, seed, a.replan_every, settings, a.episode_len, record=bool(a.plot) and i == 0,
            hold=a.hold,
        )
        if i == 0 and a.plot:
            plot_episodes(r, a.plot)
        results.append(r)
    summary = {"checkpoint": a.checkpoint, "setting": a.setting, "method": settings.method, "hold": a.hold, **summarize(results)}
    print(json.dumps(summary, indent=2))
    if a.out:
        _write_json(a.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

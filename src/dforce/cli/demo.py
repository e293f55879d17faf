"""``dforce demo``: Diffusion Forcing vs teacher forcing on a dynamical system, rolled out 10x the window."""

from __future__ import annotations

from pathlib import Path

from dforce.cli.common import UserError, add_overwrite, normalize_argv, parser
from dforce.demo.run import DemoConfig, main_demo

OUTPUTS = ("rollout.png", "metrics.json", "models", "runs")  # what the demo writes inside out_dir


def check_out_dir(out_dir: str, overwrite: bool) -> None:
    """The demo writes only the entries in OUTPUTS; earlier ones are replaced only with --overwrite."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out_dir {out} is an existing file; give a folder for the demo's outputs")
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not overwrite:
        raise UserError(f"--out_dir {out} already holds demo outputs ({', '.join(present)}); pass --overwrite to replace them "
                        "or choose another --out_dir (other files there are never touched)")


def main(argv: list[str]) -> int:
    p = parser("dforce demo", "Train Diffusion Forcing and a teacher-forcing baseline the same way on data "
               "generated on the spot (default: a stochastic double-well oscillator; --system lorenz63 | kuramoto_sivashinsky), "
               "roll both out 10x past the training window with stabilization, and write a PNG "
               "and a metrics JSON (distance to the true stationary law per rollout segment, roughness, short-horizon CRPS, "
               "a verdict). About 1.5-3 minutes on 2 CPU cores.")
    p.add_class_arguments(DemoConfig, None)
    add_overwrite(p)
    a = p.parse_args(normalize_argv(argv))
    values = {k: v for k, v in vars(a).items() if k not in ("__path__", "overwrite")}
    for name in ("train_steps", "batch_size", "width", "depth", "train_trajectories", "train_length", "rollout_windows",
                 "num_rollouts", "steps"):
        if values[name] is not None and values[name] < 1:
            raise UserError(f"--{name} must be >= 1, got {values[name]}")
    if values["threads"] < 0:
        raise UserError(f"--threads must be >= 0, got {values['threads']}")
    if not 0.0 <= values["stabilization_level"] < 1.0:
        raise UserError(f"--stabilization_level must lie in [0, 1), got {values['stabilization_level']}")
    check_out_dir(values["out_dir"], a.overwrite)
    main_demo(DemoConfig(**values))
    return 0

"""``dforce demo``: Diffusion Forcing vs teacher forcing on a dynamical system, rolled out 10x the window."""

from __future__ import annotations

from dforce.cli.common import normalize_argv, parser
from dforce.demo.run import DemoConfig, main_demo


def main(argv: list[str]) -> int:
    p = parser("dforce demo", "Train Diffusion Forcing and a teacher-forcing baseline the same way on data "
               "generated on the spot (default: a stochastic double-well oscillator; --system lorenz63 | kuramoto_sivashinsky), "
               "roll both out 10x past the training window with stabilization, and write a PNG "
               "and a metrics JSON (distance to the true stationary law per rollout segment, roughness, short-horizon CRPS, "
               "a verdict). About 1.5-3 minutes on 2 CPU cores.")
    p.add_class_arguments(DemoConfig, None)
    a = p.parse_args(normalize_argv(argv))
    main_demo(DemoConfig(**{k: v for k, v in vars(a).items() if k != "__path__"}))
    return 0

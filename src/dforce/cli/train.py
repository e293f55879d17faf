"""``dforce train CONFIG.yaml [key=value ...]``: train a model on vector series and export it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from dforce.cli.common import normalize_argv, parser
from dforce.cli.config import DataConfig, ModelConfig, RunConfig
from dforce.sampling import SamplingConfig
from dforce.training import TrainConfig


def build_parser():
    p = parser("dforce train", "Train a Diffusion Forcing model. Options come from a YAML config (positional or --config), "
               "then from overrides like train.max_steps=500 or --model.width 256. --print_config shows the result.")
    from jsonargparse import ActionConfigFile

    p.add_argument("--config", action=ActionConfigFile, help="YAML/JSON config file")
    for key, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig), ("sample", SamplingConfig)):
        p.add_class_arguments(cls, key)
    p.add_argument("--out_dir", type=str, default="runs/dforce", help="run folder: logs/, checkpoints/ (resume), model/ (export)")
    return p


def parse_run(argv: list[str]) -> RunConfig:
    p = build_parser()
    ns = p.instantiate(p.parse_args(normalize_argv(argv)))
    return RunConfig(model=ns.model, data=ns.data, train=ns.train, sample=ns.sample, out_dir=ns.out_dir)


def main(argv: list[str]) -> int:
    run = parse_run(argv)
    from dforce.training import RandomWindows, export_model, train


    series = run.data.load(seed=run.train.seed)
    dim = series[0].shape[-1]
    mean = np.concatenate(series).mean(0) if run.data.normalize else np.zeros(dim, np.float32)
    std = np.concatenate(series).std(0) + 1e-8 if run.data.normalize else np.ones(dim, np.float32)
    series = [(s - mean) / std for s in series]
    model = run.model.build(dim)
    run.train.out_dir = run.train.out_dir or str(Path(run.out_dir))
    length = run.model.window * run.model.frame_stack
    model = train(model, RandomWindows(series, length, seed=run.train.seed), run.train)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return 0
    path = export_model(model, Path(run.out_dir) / "model", extra={"mean": mean.tolist(), "std": std.tolist(),
                        "sample": {k: v for k, v in asdict(run.sample).items() if k != "scheduling" or isinstance(v, str)}})
    print(f"exported the EMA model to {path}")
    return 0

"""``dforce train CONFIG.yaml [key=value ...]``: train a model on vector series and export it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np

from dforce.cli.common import UserError, add_overwrite, normalize_argv, parser
from dforce.cli.config import DataConfig, ModelConfig, RunConfig
from dforce.sampling import SamplingConfig
from dforce.training import TrainConfig


def build_parser():
    p = parser("dforce train", "Train a Diffusion Forcing model. Options come from a YAML config (positional or --config), "
               "then from overrides like train.max_steps=500 or --model.width 256. --print_config shows the result. "
               "A killed run resumes from OUT_DIR/checkpoints/last.ckpt (exactly: same losses as an uninterrupted run on CPU).")
    from jsonargparse import ActionConfigFile

    p.add_argument("--config", action=ActionConfigFile, help="YAML/JSON config file")
    for key, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig), ("sample", SamplingConfig)):
        p.add_class_arguments(cls, key)
    p.add_argument("--out_dir", type=str, default="runs/dforce", help="run folder: logs/, checkpoints/ (resume), model/ (export)")
    add_overwrite(p)
    return p


def parse_run(argv: list[str]) -> RunConfig:
    return _parse(argv)[0]


def _parse(argv: list[str]) -> tuple[RunConfig, bool]:
    from dforce.cli.common import check_config_files

    p = build_parser()
    argv = normalize_argv(argv)
    check_config_files(argv)
    ns = p.instantiate(p.parse_args(argv))
    return RunConfig(model=ns.model, data=ns.data, train=ns.train, sample=ns.sample, out_dir=ns.out_dir), bool(ns.overwrite)


def _check_model(model: ModelConfig) -> None:
    for name in ("width", "depth", "heads", "window", "frame_stack"):
        if getattr(model, name) < 1:
            raise UserError(f"model.{name} must be >= 1, got {getattr(model, name)}")
    if model.width % model.heads:
        raise UserError(f"model.width={model.width} must be divisible by model.heads={model.heads}")
    if model.history_len is not None and not 0 <= model.history_len < model.window:
        raise UserError(f"model.history_len must lie in [0, model.window - 1] = [0, {model.window - 1}], got {model.history_len}")
    if not 0.0 <= model.dropout < 1.0:
        raise UserError(f"model.dropout must lie in [0, 1), got {model.dropout}")


def main(argv: list[str]) -> int:
    run, overwrite = _parse(argv)
    import lightning.pytorch as pl

    from dforce.cli import sampling_options
    from dforce.training import RandomWindows, export_model, train
    from dforce.training.export import check_export_path

    # everything that can be checked is checked before any work
    sample = sampling_options.resolve({f.name: getattr(run.sample, f.name) for f in fields(run.sample)}, "sample.*")
    try:
        run.train.check()
    except ValueError as err:
        raise UserError(f"train.*: {err}") from None
    _check_model(run.model)
    out = Path(run.out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out_dir {out} is an existing file; give a folder for the run")
    check_export_path(out / "model", overwrite, option="--out_dir model folder")
    series = run.data.load(seed=run.train.seed)
    dim = series[0].shape[-1]
    if any(s.shape[-1] != dim for s in series):
        raise UserError(f"data.path {run.data.path}: the series have different numbers of columns; give series of one width")
    length = run.model.window * run.model.frame_stack
    longest = max(len(s) for s in series)
    if longest < length:
        raise UserError(f"every series is shorter ({longest} frames) than the training window ({length} frames = model.window x "
                        "model.frame_stack); lower model.window or give longer series")
    mean = np.concatenate(series).mean(0) if run.data.normalize else np.zeros(dim, np.float32)
    std = np.concatenate(series).std(0) + 1e-8 if run.data.normalize else np.ones(dim, np.float32)
    series = [(s - mean) / std for s in series]
    pl.seed_everything(run.train.seed, workers=True, verbose=False)  # before the model: same seed, same initial weights
    try:
        model = run.model.build(dim)
    except ValueError as err:
        raise UserError(f"model.*: {err}") from None
    run.train.out_dir = run.train.out_dir or str(out)
    model = train(model, RandomWindows(series, length, seed=run.train.seed), run.train)
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    if distributed and dist.get_rank() != 0:
        return 0
    path = export_model(model, out / "model", extra={"mean": mean.tolist(), "std": std.tolist(),
                        "sample": sampling_options.to_json(sample)}, overwrite=overwrite)
    print(f"exported the EMA model to {path} (trained on {dist.get_world_size() if distributed else 1} process(es))")
    return 0

"""Lightning glue: the LightningModule only wires :class:`DiffusionForcing` to the Trainer.

``train(model, data, TrainConfig(...))`` runs AdamW with linear warm-up, gradient clipping, EMA
weights (Lightning's ``EMAWeightAveraging``), bf16 autocast, CSV logs (TensorBoard / W&B
optional), atomic checkpoints with resume, and returns the model holding the EMA weights.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, Dataset, IterableDataset

from dforce.model import DiffusionForcing
from dforce.training.data import SequenceDataset, unpack_batch
from dforce.training.export import model_spec, spec_differences

LOGGERS = ("csv", "tensorboard", "wandb", "none")


@dataclass
class TrainConfig:
    """Training options (all documented in ``docs/cli.md``).

    Attributes:
        max_steps: optimizer steps in total (a resumed run continues up to this count).
        batch_size: sequences per step and process.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases and norms).
        betas: AdamW betas.
        warmup_steps: linear learning-rate warm-up, constant afterwards.
        grad_clip: clip the gradient norm (0 disables).
        ema_decay: decay of the EMA weights used for sampling and export (0 disables); averaging starts after warm-up.
        precision: Lightning precision, ``bf16-mixed`` (fast on CPUs with AMX and on GPUs) or ``32-true``.
        out_dir: run folder for logs and checkpoints (None: a temporary folder, no resume).
        seed: seeds model init order, data and noise.
        log_every: log every n steps.
        val_every: validate every n steps (needs validation data; None disables).
        checkpoint_every: save ``last.ckpt`` every n steps.
        num_workers: data-loader workers.
        accelerator: Lightning accelerator: ``auto``, ``cpu`` or ``gpu``.
        devices: processes / GPUs (e.g. 2 with strategy ``ddp``).
        strategy: Lightning strategy: ``auto``, ``ddp`` (gloo on CPU, NCCL on GPU), ``fsdp``.
        logger: ``csv`` (default, local files), ``tensorboard``, ``wandb`` or ``none``.
        progress: show a progress bar.
        resume: continue from ``out_dir/checkpoints/last.ckpt`` when it exists.
        val_sample_steps: sampling steps of the validation rollout metric.
    """

    max_steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "bf16-mixed"
    out_dir: Optional[str] = None
    seed: int = 0
    log_every: int = 50
    val_every: Optional[int] = None
    checkpoint_every: int = 500
    num_workers: int = 0
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    strategy: str = "auto"
    logger: str = "csv"
    progress: bool = True
    resume: bool = True
    val_sample_steps: int = 10

    def check(self) -> "TrainConfig":
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("max_steps and batch_size must be >= 1")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; choose one of {list(LOGGERS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.precision not in ("bf16-mixed", "32-true", "16-mixed", "bf16-true"):
            raise ValueError(f"unknown precision {self.precision!r}; use 'bf16-mixed' or '32-true'")
        return self


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename it into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


class DiffusionForcingModule(pl.LightningModule):
    """LightningModule around a :class:`DiffusionForcing` model."""

    def __init__(self, model: DiffusionForcing, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, cond, mask = unpack_batch(batch)
        loss = self.model.loss(x, cond=cond, mask=mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, cond, mask = unpack_batch(batch)
        g = torch.Generator(x.device).manual_seed(batch_idx)
        loss = self.model.loss(x, cond=cond, mask=mask, generator=g)
        self.log("val/loss", loss, batch_size=x.shape[0], sync_dist=True)
        if batch_idx == 0 and mask is None:
            # sample the second half of the first batch from its first half
            k = self.model.frame_stack
            half = (x.shape[1] // (2 * k)) * k
            if half >= k:
                pred = self.model.sample(context=x[:, :half], horizon=x.shape[1] - half, cond=cond,
                                         steps=self.config.val_sample_steps, generator=g)
                self.log("val/sample_mse", (pred - x[:, half:]).pow(2).mean(), batch_size=x.shape[0], sync_dist=True)

    def configure_optimizers(self):
        c = self.config
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, betas=c.betas
        )
        warm = max(1, c.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dforce_spec"] = model_spec(self.model) if hasattr(self.model.backbone, "config") else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("dforce_spec")
        if saved is not None and hasattr(self.model.backbone, "config"):
            diff = spec_differences(saved, model_spec(self.model))
            if diff:
                raise ValueError(
                    "the checkpoint to resume was written for a different config (" + "; ".join(diff) + "); "
                    "use a new out_dir or resume=False"
                )


def _loader(data, batch_size: int, num_workers: int, shuffle: bool) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    if torch.is_tensor(data):
        data = SequenceDataset(data)
    if not isinstance(data, Dataset):
        raise TypeError("data must be a torch Dataset, DataLoader or tensor [M, N, ...]")
    shuffle = shuffle and not isinstance(data, IterableDataset)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=shuffle,
                      persistent_workers=num_workers > 0)


def _logger(config: TrainConfig, root: Path):
    if config.logger == "none":
        return False
    if config.logger == "csv":
        return pl.loggers.CSVLogger(str(root), name="logs")  # logs/version_N/metrics.csv, one per (resumed) run
    if config.logger == "tensorboard":
        return pl.loggers.TensorBoardLogger(str(root), name="tensorboard")
    return pl.loggers.WandbLogger(save_dir=str(root))  # needs `pip install wandb` and a login


def make_trainer(config: TrainConfig, root: Path, has_val: bool) -> pl.Trainer:
    callbacks: list = [ModelCheckpoint(dirpath=str(root / "checkpoints"), save_last=True, save_top_k=0,
                                       every_n_train_steps=config.checkpoint_every, enable_version_counter=False)]
    if config.ema_decay > 0:
        # the average starts from the weights at the end of warm-up, not from the initialisation,
        # so a short run is not dominated by its random starting point
        callbacks.append(EMAWeightAveraging(decay=config.ema_decay, update_starting_at_step=min(config.warmup_steps, config.max_steps // 2)))
    return pl.Trainer(
        max_steps=config.max_steps,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
        gradient_clip_val=config.grad_clip or None,
        log_every_n_steps=config.log_every,
        val_check_interval=config.val_every if has_val else None,
        check_val_every_n_epoch=None if has_val else 1,
        limit_val_batches=None if has_val else 0,
        num_sanity_val_steps=0,
        logger=_logger(config, root),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(root),
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        max_epochs=-1,
    )


def train(model: DiffusionForcing, data, config: Optional[TrainConfig] = None, val_data=None) -> DiffusionForcing:
    """Train ``model`` on ``data`` and return it with its EMA weights loaded.

    ``data``: a Dataset (map-style or iterable), DataLoader or tensor [M, N, *frame_shape]; items
    are tensors or dicts with ``x`` / ``cond`` / ``mask``. With ``config.out_dir`` set, a killed run
    resumes from ``out_dir/checkpoints/last.ckpt``.
    """
    import tempfile

    config = (config or TrainConfig()).check()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for pattern in (".*IterableDataset.*__len__.*", ".*no `val_dataloader`.*", ".*LeafSpec.*", ".*sync_dist.*"):
        warnings.filterwarnings("ignore", message=pattern)
    tmp = None
    if config.out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dforce-")
        root = Path(tmp.name)
    else:
        root = Path(config.out_dir)
        root.mkdir(parents=True, exist_ok=True)
    try:
        train_loader = _loader(data, config.batch_size, config.num_workers, shuffle=True)
        val_loader = None if val_data is None else _loader(val_data, config.batch_size, 0, shuffle=False)
        has_val = val_loader is not None and config.val_every is not None
        module = DiffusionForcingModule(model, config)
        trainer = make_trainer(config, root, has_val)
        last = root / "checkpoints" / "last.ckpt"
        ckpt = str(last) if (config.resume and config.out_dir and last.is_file()) else None
        trainer.fit(module, train_loader, val_loader if has_val else None, ckpt_path=ckpt)
        return module.model.eval()
    finally:
        if tmp is not None:
            tmp.cleanup()



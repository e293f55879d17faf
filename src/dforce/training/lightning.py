"""Lightning glue: the LightningModule only wires :class:`DiffusionForcing` to the Trainer.

``train(model, data, TrainConfig(...))`` runs AdamW with linear warm-up, gradient clipping, EMA
weights (Lightning's ``EMAWeightAveraging``), bf16 autocast, CSV logs (TensorBoard / W&B
optional), atomic checkpoints with resume, and returns the model holding the EMA weights.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from dforce.model import DiffusionForcing
from dforce.training.data import SequenceDataset, unpack_batch
from dforce.training.export import model_spec, spec_differences
from dforce.training.files import atomic_write, remove_stale_temps

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
        precision: Lightning precision: ``auto`` (:func:`resolved_precision`: ``bf16-mixed`` on a
            CUDA GPU with bf16, else ``32-true``), ``bf16-mixed`` or ``32-true``.
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
    precision: str = "auto"
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
        for name in ("max_steps", "batch_size", "log_every", "checkpoint_every", "val_sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("warmup_steps", "num_workers", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.val_every is not None and self.val_every < 1:
            raise ValueError(f"val_every must be >= 1 (or None to disable), got {self.val_every}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; choose one of {list(LOGGERS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.precision not in ("auto", "bf16-mixed", "32-true", "16-mixed", "bf16-true"):
            raise ValueError(f"unknown precision {self.precision!r}; use 'auto', 'bf16-mixed' or '32-true'")
        return self


def resolved_precision(precision: str, accelerator: str = "auto") -> str:
    """The Lightning precision that ``precision`` means on this machine: ``auto`` is ``bf16-mixed``
    on a CUDA GPU that supports bf16 and ``32-true`` on CPUs, where bf16 autocast measured at best
    0.98x fp32's training speed, and 0.22x on an AVX2 CPU without native bf16 (``docs/speed.md``)."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file renamed into place, and read without pickle.

    A kill during a write leaves only a ``.NAME.dforce-tmp-*`` file, removed on the next start
    (:func:`dforce.training.files.remove_stale_temps`); the final path always holds a complete
    checkpoint. Loading passes ``weights_only=True`` explicitly, so no torch version unpickles
    arbitrary objects from a checkpoint.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None, weights_only: Optional[bool] = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location)


def load_checkpoint(path: _PATH, map_location: Optional[Any] = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (truncated zip), EOFError ...
        raise ValueError(
            f"checkpoint {path} cannot be read safely ({type(err).__name__}: {' '.join(str(err).split())[:160]}); "
            "it is truncated, not a dforce checkpoint, or holds pickled objects: move it away, or train into a new out_dir "
            "(or with resume=False)"
        ) from None


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class ResumableRandomSampler(Sampler[int]):
    """``RandomSampler``'s order that a resume can re-enter mid-epoch.

    Each epoch's permutation of ``n`` items is seeded by one draw from the global torch RNG, as
    ``RandomSampler`` draws it, so a fresh run sees the same order as with ``shuffle=True``.
    :meth:`resume_at` replays the permutation of a given seed from item ``skip`` on, once.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch_seed = 0
        self._resume: Optional[tuple[int, int]] = None

    def __len__(self) -> int:
        return self.n

    def resume_at(self, epoch_seed: int, skip: int) -> None:
        self._resume = (epoch_seed, skip)

    def __iter__(self):
        skip = 0
        if self._resume is not None:
            self.epoch_seed, skip = self._resume
            self._resume = None
        else:
            self.epoch_seed = int(torch.empty((), dtype=torch.int64).random_().item())
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch_seed))
        yield from order[skip:].tolist()


class ExactResume(Callback):
    """Saves the RNG states and the data position in every checkpoint and restores them.

    The RNG states are put back right before the first training batch after a resume (after the
    data loader's iterator was created, which draws from the global RNG in a fresh run too), so a
    resumed run on CPU repeats the uninterrupted run's losses bit for bit. The data position is
    the number of training batches consumed; a dataset with a ``start`` attribute (such as
    :class:`RandomWindows`) restarts its stream there, and a map-style dataset's
    :class:`ResumableRandomSampler` re-enters its epoch's order after the batches already taken.
    """

    def __init__(self, dataset: Any = None, batch_size: int = 1, sampler: Optional[ResumableRandomSampler] = None) -> None:
        self.dataset, self.batch_size, self.sampler = dataset, batch_size, sampler
        self.batches = 0
        self.epoch_start = 0  # self.batches when the current epoch began
        self._pending: Optional[dict] = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._pending is None:  # not the epoch a resume re-enters
            self.epoch_start = self.batches

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            _set_rng_state(self._pending)
            self._pending = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1

    def on_train_end(self, trainer, pl_module) -> None:
        # before the EMA callback copies the average in: the final checkpoint keeps these as the
        # weights to continue from, so that extending a finished run is the same as one longer run
        pl_module.raw_at_end = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        state = {"rng": _rng_state(), "batches": self.batches, "items": self.batches * self.batch_size,
                 "batch_size": self.batch_size}
        if self.sampler is not None:
            state["sampler"] = {"epoch_seed": self.sampler.epoch_seed, "epoch_start": self.epoch_start}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = int(state["batches"])
        self._pending = state["rng"]
        if self.sampler is not None and "sampler" in state:
            self.epoch_start = int(state["sampler"]["epoch_start"])
            self.sampler.resume_at(int(state["sampler"]["epoch_seed"]), (self.batches - self.epoch_start) * self.batch_size)
        if self.dataset is not None and hasattr(self.dataset, "start"):
            if int(state.get("batch_size", self.batch_size)) != self.batch_size:
                raise ValueError(f"the checkpoint to resume was trained with batch_size={state['batch_size']}, not {self.batch_size}; "
                                 "use the same batch_size, a new out_dir, or resume=False")
            self.dataset.start = int(state["items"])


class DiffusionForcingModule(pl.LightningModule):
    """LightningModule around a :class:`DiffusionForcing` model."""

    def __init__(self, model: DiffusionForcing, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.raw_at_end: Optional[dict[str, torch.Tensor]] = None  # the trained (not averaged) weights when fit ends

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
        if self.raw_at_end is not None and "current_model_state" in checkpoint:  # see ExactResume.on_train_end
            checkpoint["current_model_state"] = self.raw_at_end

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
    if not isinstance(data, IterableDataset) and len(data) == 0:
        raise ValueError("the training data holds no sequences; give at least one")
    # dropping the last partial batch must never drop every batch (a data set smaller than batch_size)
    drop_last = shuffle and len(data) >= batch_size
    sampler = ResumableRandomSampler(len(data)) if shuffle else None
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
                      persistent_workers=num_workers > 0)


def _logger(config: TrainConfig, root: Path):
    if config.logger == "none":
        return False
    if config.logger == "csv":
        return pl.loggers.CSVLogger(str(root), name="logs")  # logs/version_N/metrics.csv, one per (resumed) run
    if config.logger == "tensorboard":
        return pl.loggers.TensorBoardLogger(str(root), name="tensorboard")
    return pl.loggers.WandbLogger(save_dir=str(root))  # needs `pip install wandb` and a login


def make_trainer(config: TrainConfig, root: Path, has_val: bool, extra_callbacks: Optional[list] = None) -> pl.Trainer:
    callbacks: list = list(extra_callbacks or []) + [ModelCheckpoint(dirpath=str(root / "checkpoints"), save_last=True, save_top_k=0,
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
        precision=resolved_precision(config.precision, config.accelerator),
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


def train(model: DiffusionForcing, data, config: Optional[TrainConfig] = None, val_data=None,
          callbacks: Optional[list] = None) -> DiffusionForcing:
    """Train ``model`` on ``data`` and return it with its EMA weights loaded.

    ``data``: a Dataset (map-style or iterable), DataLoader or tensor [M, N, *frame_shape]; items
    are tensors or dicts with ``x`` / ``cond`` / ``mask``. With ``config.out_dir`` set, a killed run
    resumes from ``out_dir/checkpoints/last.ckpt``: model, optimizer, EMA, RNG states and data
    position (exact for :class:`RandomWindows` and shuffled map-style datasets: on CPU the losses
    after a resume are bit-identical to an uninterrupted run's; a finished run extended to a larger
    ``max_steps`` continues from its trained weights, not the EMA copy). ``callbacks``: more
    Lightning callbacks.
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
        if root.exists() and not root.is_dir():
            raise FileExistsError(f"out_dir {root} is an existing file; give a folder for the run")
        root.mkdir(parents=True, exist_ok=True)
    try:
        train_loader = _loader(data, config.batch_size, config.num_workers, shuffle=True)
        val_loader = None if val_data is None else _loader(val_data, config.batch_size, 0, shuffle=False)
        has_val = val_loader is not None and config.val_every is not None
        module = DiffusionForcingModule(model.train(), config)  # Lightning keeps modes: a model returned by train() is in eval mode
        dataset = getattr(train_loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "batch_size") and getattr(dataset, "batch_size") is None:
            dataset.batch_size = train_loader.batch_size
        if dataset is not None and hasattr(dataset, "start"):
            dataset.start = 0  # a resume sets it from the checkpoint
        sampler = train_loader.sampler if isinstance(train_loader.sampler, ResumableRandomSampler) else None
        if sampler is not None or hasattr(dataset, "start"):  # ExactResume re-enters the epoch, not Lightning
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
        resume_cb = ExactResume(dataset, train_loader.batch_size or 1, sampler)
        trainer = make_trainer(config, root, has_val, [resume_cb, *(callbacks or [])])
        remove_stale_temps(root / "checkpoints")
        last = root / "checkpoints" / "last.ckpt"
        ckpt = str(last) if (config.resume and config.out_dir and last.is_file()) else None
        final_weights = None
        if ckpt is not None:  # read first: fail before the trainer creates logs/ when the file is unreadable
            saved = load_checkpoint(ckpt)
            step = int(saved.get("global_step", 0))
            if step > config.max_steps:
                raise ValueError(f"the run in {root} is at step {step}, past max_steps={config.max_steps}: raise max_steps to "
                                 "continue it, or train into a new out_dir (or with resume=False)")
            # a finished run: fit runs no step, so the EMA callback never puts the average in; the
            # checkpoint's state_dict holds the EMA weights (the raw ones without EMA)
            final_weights = saved["state_dict"] if step == config.max_steps else None
            del saved
        trainer.fit(module, train_loader, val_loader if has_val else None, ckpt_path=ckpt)
        if final_weights is not None:
            module.load_state_dict(final_weights)
        return module.model.eval()
    finally:
        if tmp is not None:
            tmp.cleanup()



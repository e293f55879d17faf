"""Typed run configuration of ``dforce train`` (printable with ``--print_config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from dforce.model import DiffusionForcing
from dforce.sampling import SamplingConfig
from dforce.training import TrainConfig


@dataclass
class ModelConfig:
    """The model: a transformer backbone and the Diffusion Forcing objective.

    Attributes:
        width: transformer width (channels per token).
        depth: number of transformer blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden size as a multiple of width.
        dropout: dropout inside the MLPs.
        causal: causal (True) or bidirectional attention.
        window: training window in tokens (also the sampling window).
        frame_stack: frames per token.
        noise_schedule: cosine | linear | sigmoid | rectified_flow.
        schedule_shift: cosine shift (adds 2 log(shift) to logSNR).
        parametrization: v | eps | x0 | flow.
        weighting: min_snr | uniform | sigmoid | fused_snr.
        training_noise: independent (Diffusion Forcing) | full_sequence | teacher_forcing | uniform_future.
        history_len: fixed history for teacher_forcing / uniform_future (None = random).
    """

    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    causal: bool = True
    window: int = 32
    frame_stack: int = 1
    noise_schedule: str = "cosine"
    schedule_shift: float = 1.0
    parametrization: str = "v"
    weighting: str = "min_snr"
    training_noise: str = "independent"
    history_len: Optional[int] = None

    def build(self, frame_dim: int) -> DiffusionForcing:
        from dforce.backbones import Transformer

        kwargs = {"shift": self.schedule_shift} if self.noise_schedule == "cosine" else {}
        return DiffusionForcing(
            Transformer(dim=frame_dim * self.frame_stack, width=self.width, depth=self.depth, heads=self.heads,
                        mlp_ratio=self.mlp_ratio, causal=self.causal, dropout=self.dropout),
            window=self.window, noise_schedule=self.noise_schedule, schedule_kwargs=kwargs,
            parametrization=self.parametrization, weighting=self.weighting, training_noise=self.training_noise,
            history_len=self.history_len, frame_stack=self.frame_stack,
        )


@dataclass
class DataConfig:
    """Training data: vector-valued series.

    Attributes:
        source: lorenz (generated on the spot) | npy (an array [L, D] or [M, L, D]) | csv (numeric columns, rows = time).
        path: file for npy / csv.
        columns: csv columns to use (default: every numeric column).
        normalize: standardise each dimension with the training mean and std (saved with the model).
        lorenz_trajectories: number of generated Lorenz-63 trajectories.
        lorenz_steps: states per generated trajectory.
        lorenz_stride: RK4 steps (dt 0.01) between stored states.
    """

    source: str = "lorenz"
    path: Optional[str] = None
    columns: Optional[list[str]] = None
    normalize: bool = True
    lorenz_trajectories: int = 32
    lorenz_steps: int = 6000
    lorenz_stride: int = 2

    def load(self, seed: int = 0) -> list[np.ndarray]:
        """The series as a list of float32 arrays [L, D]."""
        if self.source == "lorenz":
            from dforce.demo.lorenz import lorenz63

            return list(lorenz63(self.lorenz_trajectories, self.lorenz_steps, stride=self.lorenz_stride, seed=seed))
        if self.path is None:
            raise ValueError(f"data.source={self.source} needs data.path")
        if self.source == "npy":
            arr = np.load(self.path).astype(np.float32)
            if arr.ndim == 2:
                return [arr]
            if arr.ndim == 3:
                return list(arr)
            raise ValueError(f"{self.path}: expected an array [L, D] or [M, L, D], got shape {arr.shape}")
        if self.source == "csv":
            import pandas as pd

            df = pd.read_csv(self.path)
            df = df[self.columns] if self.columns else df.select_dtypes("number")
            if df.shape[1] == 0:
                raise ValueError(f"{self.path}: no numeric columns; name them with data.columns")
            return [df.to_numpy(np.float32)]
        raise ValueError(f"unknown data.source {self.source!r}; choose lorenz, npy or csv")


@dataclass
class RunConfig:
    """Everything ``dforce train`` needs.

    Attributes:
        out_dir: run folder: logs/, checkpoints/ (resume) and model/ (the exported EMA model).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SamplingConfig = field(default_factory=SamplingConfig)
    out_dir: str = "runs/dforce"

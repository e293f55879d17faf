"""Typed run configuration of ``dforce train`` (printable with ``--print_config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from dforce.diffusion.noise_levels import DEFAULT_TRAINING_NOISE
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
        training_noise: a name (independent, full_sequence, teacher_forcing, uniform_future, autoregressive,
            pyramid) or a mixture "name:weight,..."; default: the library's DEFAULT_TRAINING_NOISE.
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
    training_noise: str = DEFAULT_TRAINING_NOISE
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
        """The series as a list of float32 arrays [L, D]; errors name the file, the problem and the fix."""
        if self.source == "lorenz":
            from dforce.dynamics.systems import lorenz63

            for name in ("lorenz_trajectories", "lorenz_steps", "lorenz_stride"):
                if getattr(self, name) < 1:
                    raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
            return list(lorenz63(self.lorenz_trajectories, self.lorenz_steps, stride=self.lorenz_stride, seed=seed))
        if self.source not in ("npy", "csv"):
            raise ValueError(f"unknown data.source {self.source!r}; choose lorenz, npy or csv")
        if self.path is None:
            raise ValueError(f"data.source={self.source} needs data.path (the file to read)")
        from dforce.cli.arrays import read_array

        if self.source == "npy":
            if not str(self.path).endswith((".npy", ".npz")):
                raise ValueError(f"data.path {self.path}: data.source=npy reads .npy or .npz files; use data.source=csv for CSV")
            arr = read_array(self.path, "data.path")
            if arr.ndim == 2:
                series = [arr]
            elif arr.ndim == 3:
                series = list(arr)
            else:
                raise ValueError(f"data.path {self.path}: expected an array [L, D] or [M, L, D], got shape {arr.shape}")
        else:
            if not str(self.path).endswith(".csv"):
                raise ValueError(f"data.path {self.path}: data.source=csv reads .csv files; use data.source=npy for .npy / .npz")
            series = [self._read_csv()]
        for i, s in enumerate(series):
            if s.shape[0] == 0 or s.shape[1] == 0:
                raise ValueError(f"data.path {self.path}: series {i} is empty (shape {s.shape}); give at least one row and column")
            bad = ~np.isfinite(s)
            if bad.any():
                r, c = (int(v) for v in np.argwhere(bad)[0])
                raise ValueError(f"data.path {self.path}: {int(bad.sum())} missing / non-finite value(s), first at series {i} "
                                 f"row {r + 1} column {c}; dforce train needs complete series: fill or drop them")
        return series

    def _read_csv(self) -> np.ndarray:
        import pandas as pd
        from pathlib import Path

        p = Path(self.path)
        if not p.is_file():
            raise FileNotFoundError(f"data.path {p} does not exist" + ("" if not p.is_dir() else " as a file (it is a folder)")
                                    + "; give a .csv file with one row per time step")
        try:
            df = pd.read_csv(p)
        except pd.errors.EmptyDataError:
            raise ValueError(f"data.path {p} is empty; give a header row and one row per time step") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ValueError(f"data.path {p} is not a readable CSV file ({' '.join(str(err).split())[:120]}); "
                             "give comma-separated numbers with a header row") from None
        if self.columns:
            missing = [c for c in self.columns if c not in df.columns]
            if missing:
                raise ValueError(f"data.columns {missing} not in {p}; its columns are {list(df.columns)}")
            df = df[self.columns]
        keep = []
        for c in df.columns:
            num = pd.to_numeric(df[c], errors="coerce")
            bad = num.isna() & df[c].notna()
            if not num.notna().any() and not self.columns:
                continue  # a text column (dates, names): not a series
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                raise ValueError(f"data.path {p}: column {c!r} row {row + 2} holds {str(df[c].iloc[row])!r}, which is not a "
                                 "number; fix the cell or leave the column out with data.columns")
            df[c] = num
            keep.append(c)
        if not keep:
            raise ValueError(f"data.path {p}: no numeric columns; name them with data.columns")
        return df[keep].to_numpy(np.float32)


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

"""Datasets that feed :func:`dforce.training.train`.

Items are a tensor ``x`` [N, *frame_shape] or a dict with ``x`` and optional ``cond`` [N, C] and
``mask`` [N] (bool).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info


class RandomWindows(IterableDataset):
    """Endless random crops of ``length`` frames from one or several long series.

    Args:
        series: [L, *frame_shape] or a list of such arrays (different lengths allowed).
        length: frames per training window (``window * frame_stack``).
        cond: optional per-frame conditions aligned with ``series`` ([L, C] or a list).
        seed: base seed; each DDP rank and loader worker draws its own stream.
    """

    def __init__(self, series, length: int, cond=None, seed: int = 0) -> None:
        self.series = [torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in (series if isinstance(series, (list, tuple)) else [series])]
        self.cond = None
        if cond is not None:
            self.cond = [torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in (cond if isinstance(cond, (list, tuple)) else [cond])]
            if [len(c) for c in self.cond] != [len(s) for s in self.series]:
                raise ValueError("cond must have one row per frame of series")
        lengths = [len(s) for s in self.series]
        if max(lengths) < length:
            raise ValueError(f"every series is shorter ({max(lengths)} frames) than the training window ({length} frames)")
        self.length, self.seed = length, seed
        self.weights = np.array([max(n - length + 1, 0) for n in lengths], dtype=np.float64)
        self.weights /= self.weights.sum()

    def __iter__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, rank, worker.id if worker else 0])
        while True:
            i = int(rng.choice(len(self.series), p=self.weights))
            start = int(rng.integers(0, len(self.series[i]) - self.length + 1))
            x = self.series[i][start : start + self.length]
            if self.cond is None:
                yield x
            else:
                yield {"x": x, "cond": self.cond[i][start : start + self.length]}


class SequenceDataset(Dataset):
    """Fixed sequences ``x`` [M, N, *frame_shape] (optional ``cond`` [M, N, C], ``mask`` [M, N])."""

    def __init__(self, x, cond=None, mask=None) -> None:
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.cond = None if cond is None else torch.as_tensor(cond, dtype=torch.float32)
        self.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if self.cond is None and self.mask is None:
            return self.x[i]
        item = {"x": self.x[i]}
        if self.cond is not None:
            item["cond"] = self.cond[i]
        if self.mask is not None:
            item["mask"] = self.mask[i]
        return item


def unpack_batch(batch) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(x, cond, mask)`` from a tensor or dict batch."""
    if torch.is_tensor(batch):
        return batch, None, None
    if isinstance(batch, (list, tuple)):
        return batch[0], None, None
    if "x" not in batch:
        raise KeyError("a dict batch needs the key 'x' (and optionally 'cond', 'mask')")
    return batch["x"], batch.get("cond"), batch.get("mask")

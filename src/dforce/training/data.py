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

    The stream is counter-based: item ``k`` of a rank is a pure function of ``(seed, rank, k)``,
    so the data position is one integer. ``start`` (items already consumed, per rank) is set by
    the exact-resume callback from a checkpoint; ``batch_size`` (set by :func:`train`) lets
    several loader workers split the stream by whole batches in the order the loader reads them.

    Args:
        series: [L, *frame_shape] or a list of such arrays (different lengths allowed).
        length: frames per training window (``window * frame_stack``).
        cond: optional per-frame conditions aligned with ``series`` ([L, C] or a list).
        seed: base seed; each DDP rank draws its own stream.
    """

    def __init__(self, series, length: int, cond=None, seed: int = 0) -> None:
        self.series = [torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in (series if isinstance(series, (list, tuple)) else [series])]
        if not self.series:
            raise ValueError("series is empty; give at least one array [L, *frame_shape]")
        if length < 1:
            raise ValueError(f"length must be >= 1 frame, got {length}")
        self.cond = None
        if cond is not None:
            self.cond = [torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in (cond if isinstance(cond, (list, tuple)) else [cond])]
            if [len(c) for c in self.cond] != [len(s) for s in self.series]:
                raise ValueError("cond must have one row per frame of series")
        lengths = [len(s) for s in self.series]
        if max(lengths) < length:
            raise ValueError(f"every series is shorter ({max(lengths)} frames) than the training window ({length} frames)")
        self.length, self.seed = length, seed
        self.start = 0
        self.batch_size: Optional[int] = None
        self.weights = np.array([max(n - length + 1, 0) for n in lengths], dtype=np.float64)
        self.weights /= self.weights.sum()

    def item(self, k: int, rank: int = 0):
        """Item ``k`` of rank ``rank``'s stream."""
        rng = np.random.default_rng([self.seed, rank, k])
        i = int(rng.choice(len(self.series), p=self.weights)) if len(self.series) > 1 else 0
        start = int(rng.integers(0, len(self.series[i]) - self.length + 1))
        x = self.series[i][start : start + self.length]
        if self.cond is None:
            return x
        return {"x": x, "cond": self.cond[i][start : start + self.length]}

    def __iter__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
        worker = get_worker_info()
        wid, nw = (worker.id, worker.num_workers) if worker else (0, 1)
        if nw == 1:
            k = self.start
            while True:
                yield self.item(k, rank)
                k += 1
        # several workers: the loader reads whole batches from workers 0, 1, ..., nw - 1 in turn
        bs = self.batch_size or 1
        b = wid
        while True:
            first = self.start + b * bs
            for k in range(first, first + bs):
                yield self.item(k, rank)
            b += nw


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

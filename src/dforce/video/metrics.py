"""Video metrics: fidelity against ground truth and drift diagnostics that need none.

Frames are ``[..., C, H, W]`` in [-1, 1] (converted to [0, 1], data range 1).

- :func:`mse`, :func:`psnr`, :func:`ssim` per frame; :func:`by_horizon` averages them over
  horizon buckets (frames 1-10, 11-20, ...).
- Drift diagnostics per rollout segment: :func:`histogram_distance` (total-variation distance
  between a segment's intensity histogram and the data's) and :func:`sprite_counts` (connected
  components of the thresholded frame, ``scipy.ndimage.label``) against the true sprite count.
- :func:`write_video` writes GIF / MP4 of several rows (e.g. ground truth over samples) side by side.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame mean squared error in [0, 1] units: [..., C, H, W] -> [...]."""
    return ((_unit(pred) - _unit(target)) ** 2).flatten(-3).mean(-1)


def psnr(pred: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """Per-frame PSNR in dB (data range 1): [..., C, H, W] -> [...]."""
    return 10 * torch.log10(1.0 / (mse(pred, target) + eps))


def gaussian_window(size: int = 7, sigma: float = 1.5) -> Tensor:
    """Normalised 2-D Gaussian window [size, size]."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).float()


def ssim(pred: Tensor, target: Tensor, window: int = 7, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Per-frame SSIM (Wang et al. 2004) with a Gaussian window, averaged over valid positions and channels.

    ``[..., C, H, W] -> [...]``; frames in [-1, 1] are compared in [0, 1] (data range 1).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    lead, (c, h, w) = pred.shape[:-3], pred.shape[-3:]
    if h < window or w < window:
        raise ValueError(f"frames of {h}x{w} are smaller than the SSIM window {window}; use a smaller window")
    x = _unit(pred).reshape(-1, 1, h, w).double()
    y = _unit(target).reshape(-1, 1, h, w).double()
    g = gaussian_window(window, sigma).double().to(x.device)[None, None]
    mu_x, mu_y = F.conv2d(x, g), F.conv2d(y, g)
    sxx = F.conv2d(x * x, g) - mu_x**2
    syy = F.conv2d(y * y, g) - mu_y**2
    sxy = F.conv2d(x * y, g) - mu_x * mu_y
    c1, c2 = k1**2, k2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).reshape(*lead, c).mean(-1).float()


def by_horizon(values: Tensor, bucket: int = 10) -> dict[str, float]:
    """Average per-frame values [..., N] over horizon buckets ``"1-10"``, ``"11-20"``, ... (1-based frames)."""
    n = values.shape[-1]
    v = values.reshape(-1, n).float()
    out = {}
    for s in range(0, n, bucket):
        e = min(s + bucket, n)
        out[f"{s + 1}-{e}"] = float(v[:, s:e].mean())
    return out


# ------------------------------------------------------------------------------ drift diagnostics
def intensity_histogram(frames: Tensor, bins: int = 16) -> Tensor:
    """Normalised histogram of pixel intensities in [0, 1] over all given frames: [bins]."""
    u = _unit(frames).flatten()
    hist = torch.histc(u, bins=bins, min=0.0, max=1.0)
    return hist / hist.sum().clamp_min(1)


def histogram_distance(frames: Tensor, reference: Tensor, bins: int = 16, ignore_background: bool = True) -> float:
    """Total-variation distance (0 = same, 1 = disjoint) between intensity histograms.

    With ``ignore_background`` the first bin (near-black pixels) is dropped and both histograms are
    renormalised, so the distance measures the look of the sprites rather than their area.
    """
    p, q = intensity_histogram(frames, bins), intensity_histogram(reference, bins)
    if ignore_background:
        if p[1:].sum() == 0 or q[1:].sum() == 0:  # one side has no sprite pixels at all
            return 0.0 if p[1:].sum() == q[1:].sum() else 1.0
        p, q = p[1:] / p[1:].sum(), q[1:] / q[1:].sum()
    return float(0.5 * (p - q).abs().sum())


def sprite_counts(frames: Tensor, threshold: float = 0.3, min_pixels: int = 4) -> Tensor:
    """Connected components (8-connectivity) of ``frames > threshold`` with at least ``min_pixels``
    pixels, per frame: [..., C, H, W] -> [...] (long). Overlapping sprites count as one."""
    from scipy import ndimage

    u = _unit(frames).amax(-3).cpu().numpy()  # max over channels
    lead = u.shape[:-2]
    flat = u.reshape(-1, *u.shape[-2:])
    structure = np.ones((3, 3), dtype=bool)
    counts = np.zeros(len(flat), dtype=np.int64)
    for i, f in enumerate(flat):
        labels, k = ndimage.label(f > threshold, structure=structure)
        if k:
            sizes = np.bincount(labels.ravel())[1:]
            counts[i] = int((sizes >= min_pixels).sum())
    return torch.from_numpy(counts.reshape(lead))


def drift_by_segment(frames: Tensor, reference: Tensor, segment: int, true_counts: Optional[Tensor] = None) -> list[dict]:
    """Per rollout segment of ``segment`` frames: histogram distance to ``reference`` frames, mean
    sprite count and (with ``true_counts`` [B, N]) the mean absolute sprite-count error. Also the mean
    intensity (a blow-up or fade-out shows there first). ``frames`` [B, N, C, H, W]."""
    out = []
    counts = sprite_counts(frames)
    n = frames.shape[1]
    for s in range(0, n, segment):
        e = min(s + segment, n)
        row = {
            "frames": f"{s + 1}-{e}",
            "hist_tv": histogram_distance(frames[:, s:e], reference),
            "sprites": float(counts[:, s:e].float().mean()),
            "mean_intensity": float(_unit(frames[:, s:e]).mean()),
        }
        if true_counts is not None:
            row["count_err"] = float((counts[:, s:e] - true_counts[:, s:e]).abs().float().mean())
        out.append(row)
    return out


# ------------------------------------------------------------------------------ writers
def video_grid(rows: Sequence[Tensor], pad: int = 1) -> np.ndarray:
    """Rows of clips, each [B, N, C, H, W] in [-1, 1], tiled into uint8 frames [N, H', W', 3]:
    one band per row, clips of a row side by side, ``pad`` pixels of grey between tiles."""
    n = min(r.shape[1] for r in rows)
    bands = []
    for r in rows:
        u = _unit(r[:, :n])
        if u.shape[2] == 1:
            u = u.expand(-1, -1, 3, -1, -1)
        u = F.pad(u, (pad, pad, pad, pad), value=0.5)
        bands.append(torch.cat(list(u.unbind(0)), -1))  # [N, 3, H, B*W]
    grid = torch.cat(bands, -2)
    return (grid.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()


def write_video(path: str | os.PathLike, rows: Sequence[Tensor], fps: int = 8, scale: int = 1) -> str:
    """Write ``rows`` (see :func:`video_grid`) as GIF or MP4 (by extension) atomically; returns the path."""
    import imageio.v2 as imageio

    frames = video_grid(rows)
    if scale > 1:
        frames = frames.repeat(scale, 1).repeat(scale, 2)
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    tmp = path + ".tmp" + ext
    if ext == ".gif":
        imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
    elif ext == ".mp4":
        h, w = frames.shape[1:3]
        frames = np.pad(frames, ((0, 0), (0, (16 - h % 16) % 16), (0, (16 - w % 16) % 16), (0, 0)))
        imageio.mimsave(tmp, list(frames), fps=fps, codec="libx264", quality=8, macro_block_size=16)
    else:
        raise ValueError(f"unknown video format {ext!r}; use .gif or .mp4")
    os.replace(tmp, path)
    return path


__all__ = [
    "by_horizon", "drift_by_segment", "gaussian_window", "histogram_distance", "intensity_histogram", "mse", "psnr",
    "sprite_counts", "ssim", "video_grid", "write_video",
]

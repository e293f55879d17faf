"""Video metrics: fidelity against ground truth, what a person sees (identity, motion), and drift.

Frames are ``[..., C, H, W]`` in [-1, 1] (converted to [0, 1], data range 1).

- :func:`mse`, :func:`psnr`, :func:`ssim` per frame (PSNR and SSIM from ``torchmetrics``);
  :func:`by_horizon` averages them over horizon buckets (frames 1-10, 11-20, ...).
- What a person sees, against the clip's ground truth (``labels`` and ``centroids`` of
  :func:`dforce.video.data.fixed_split`): :func:`identity_hits` (is each sprite still the digit it
  was? a :class:`~dforce.video.classifier.SpriteClassifier` on the sprites found in the frame),
  :func:`centroid_errors` (pixels between each sprite and its true position) and
  :func:`frechet_classifier_distance` (Fréchet distance between generated and true frames in that
  classifier's feature space; the FID / FVD formula on a small sprite classifier, *not* FVD).
- Drift diagnostics per rollout segment: :func:`histogram_distance` (total-variation distance
  between a segment's intensity histogram and the data's) and :func:`sprite_counts` (connected
  components of the thresholded frame, ``scipy.ndimage.label``) against the true sprite count.
- :func:`write_video` writes GIF / MP4 of several rows (e.g. ground truth over samples) side by side.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from dforce.video.classifier import SpriteClassifier


def _unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def _check_same_shape(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame mean squared error in [0, 1] units: [..., C, H, W] -> [...]."""
    return ((_unit(pred) - _unit(target)) ** 2).flatten(-3).mean(-1)


def psnr(pred: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """Per-frame PSNR in dB (data range 1, ``torchmetrics``): [..., C, H, W] -> [...].

    Identical frames (MSE 0, PSNR infinite) are capped at ``10 log10(1 / eps)`` (100 dB), so averages stay finite.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_same_shape(pred, target)
    lead, frame = pred.shape[:-3], pred.shape[-3:]
    p, t = _unit(pred).reshape(-1, *frame).double(), _unit(target).reshape(-1, *frame).double()
    v = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return v.clamp(max=10 * math.log10(1 / eps)).reshape(lead).float()


def ssim(pred: Tensor, target: Tensor, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Per-frame SSIM (Wang et al. 2004; ``torchmetrics``) with a Gaussian window (``sigma`` 1.5: 11x11), averaged over
    the valid window positions and channels.

    ``[..., C, H, W] -> [...]``; frames in [-1, 1] are compared in [0, 1] (data range 1).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_same_shape(pred, target)
    lead, (c, h, w) = pred.shape[:-3], pred.shape[-3:]
    window = 2 * int(3.5 * sigma + 0.5) + 1  # torchmetrics' Gaussian window for this sigma
    if h < window or w < window:
        raise ValueError(f"frames of {h}x{w} are smaller than the SSIM window {window} (sigma {sigma}); use a smaller sigma")
    x = _unit(pred).reshape(-1, c, h, w).double()
    y = _unit(target).reshape(-1, c, h, w).double()
    s = structural_similarity_index_measure(x, y, gaussian_kernel=True, sigma=sigma, reduction="none", data_range=1.0, k1=k1, k2=k2)
    return s.reshape(lead).float()


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


# ------------------------------------------------------------------------------ what a person sees
def find_sprites(frame: np.ndarray, threshold: float = 0.3, min_pixels: int = 4, max_pixels: Optional[int] = None) -> list[dict]:
    """The sprites in one frame ``[H, W]`` in [0, 1]: connected components (8-connectivity) of
    ``frame > threshold`` with ``min_pixels`` to ``max_pixels`` pixels, largest first (a component larger
    than any group of sprites, e.g. a frame of noise, is clutter, not a sprite). Each is a dict with
    ``pixels``, ``centroid`` (intensity-weighted centre of mass of its pixels, row and column) and
    ``box`` (top, bottom, left, right; inclusive) and ``coords`` (its pixels, [pixels, 2]). Overlapping sprites
    are one component."""
    from scipy import ndimage

    labels, k = ndimage.label(frame > threshold, structure=np.ones((3, 3), dtype=bool))
    if not k:
        return []
    sizes = np.bincount(labels.ravel(), minlength=k + 1)
    idx = [i for i in range(1, k + 1) if sizes[i] >= min_pixels and (max_pixels is None or sizes[i] <= max_pixels)]
    if not idx:
        return []
    coms = ndimage.center_of_mass(frame, labels, idx)
    boxes = ndimage.find_objects(labels)
    out = [{"pixels": int(sizes[i]), "centroid": np.asarray(c, dtype=np.float64),
            "box": (boxes[i - 1][0].start, boxes[i - 1][0].stop - 1, boxes[i - 1][1].start, boxes[i - 1][1].stop - 1),
            "coords": np.argwhere(labels == i)}
           for i, c in zip(idx, coms)]
    return sorted(out, key=lambda d: -d["pixels"])


def _split_centres(frame: np.ndarray, found: list[dict], k: int, iters: int = 10) -> np.ndarray:
    """``k`` sprite centres from ``found`` components (fewer than ``k``: some sprites overlap): weighted k-means on the
    components' pixels, started from the components' centres plus farthest pixels."""
    coords = np.concatenate([d["coords"] for d in found])
    pts = coords.astype(np.float64)
    w = frame[coords[:, 0], coords[:, 1]].astype(np.float64)
    centres = [d["centroid"] for d in found]
    while len(centres) < k:
        dist = np.min([np.linalg.norm(pts - c, axis=1) for c in centres], axis=0)
        centres.append(pts[int(np.argmax(dist * w))])
    c = np.stack(centres)
    for _ in range(iters):
        assign = np.argmin(np.linalg.norm(pts[:, None] - c[None], axis=-1), axis=1)
        for j in range(k):
            sel = assign == j
            if sel.any():
                c[j] = (pts[sel] * w[sel, None]).sum(0) / w[sel].sum()
    return c


def _gray(frames: Tensor) -> np.ndarray:
    """[..., C, H, W] in [-1, 1] -> [..., H, W] in [0, 1] (mean over channels), numpy float32."""
    return _unit(frames).mean(-3).cpu().numpy().astype(np.float32)


def _num_sprites(labels: Tensor) -> np.ndarray:
    """Sprites per clip from ``labels`` [B, K] (-1 = padding)."""
    return (labels >= 0).sum(-1).cpu().numpy()


def sprite_crops(frames: Tensor, num_sprites: Sequence[int], size: int, threshold: float = 0.3, min_pixels: int = 4,
                 max_pixels: Optional[int] = None):
    """Crops of the ``num_sprites[b]`` largest sprites in each frame of ``frames`` [B, N, C, H, W]: a ``size x size``
    window centred on each sprite's bounding box (:func:`dforce.video.classifier.box_corner`), zero outside the frame.
    Where fewer components than sprites are found (overlapping sprites merge), the windows are centred on
    ``num_sprites[b]`` centres fitted to the components' pixels by intensity-weighted k-means.

    Returns ``(crops [M, 1, size, size] in [0, 1], owner [M, 2] (clip, frame) long)``.
    """
    from dforce.video.classifier import box_corner, crop

    u = _gray(frames)
    crops, owner = [], []
    for b in range(u.shape[0]):
        k = int(num_sprites[b])
        for n in range(u.shape[1]):
            found = find_sprites(u[b, n], threshold, min_pixels, max_pixels)[:k]
            if 0 < len(found) < k:  # overlapping sprites merged: crop around k centres fitted to their pixels
                corners = [(int(np.floor(c[0] - (size - 1) / 2 + 0.5)), int(np.floor(c[1] - (size - 1) / 2 + 0.5)))
                           for c in _split_centres(u[b, n], found, k)]
            else:
                corners = [box_corner(*sp["box"], size) for sp in found]
            for corner in corners:
                crops.append(crop(u[b, n], *corner, size))
                owner.append((b, n))
    if not crops:
        return torch.zeros(0, 1, size, size), torch.zeros(0, 2, dtype=torch.long)
    return torch.from_numpy(np.stack(crops))[:, None], torch.tensor(owner, dtype=torch.long)


def identity_hits(frames: Tensor, labels: Tensor, classifier: "SpriteClassifier", threshold: float = 0.3,
                  min_pixels: int = 4, max_pixels: Optional[int] = None) -> Tensor:
    """Per frame, the fraction of the clip's sprites that are recognised: ``frames`` [B, N, C, H, W], ``labels``
    [B, K] (the clip's sprite classes, -1 = padding) -> [B, N] in [0, 1].

    In each frame the ``k`` largest sprites (``k`` = the clip's sprite count) are located
    (:func:`find_sprites`; merged ones split, see :func:`sprite_crops`), cropped and classified; a frame scores the size
    of the intersection of the predicted and the true label multisets over ``k``. Positions do not
    matter (a rollout may drift off the true trajectory and still keep its digits); a missing sprite
    counts as wrong, extra blobs beyond ``k`` are ignored. Report it relative to the same number on
    the ground-truth frames (:func:`identity_by_segment`): overlaps and classifier errors cap it below 1.
    """
    b, n = frames.shape[:2]
    k = _num_sprites(labels)
    crops, owner = sprite_crops(frames, k, classifier.size, threshold, min_pixels, max_pixels)
    pred = classifier.predict(crops).numpy()
    hits = np.zeros((b, n))
    lab = labels.cpu().numpy()
    per_frame: dict[tuple[int, int], list[int]] = {}
    for (i, j), c in zip(owner.tolist(), pred.tolist()):
        per_frame.setdefault((i, j), []).append(c)
    for (i, j), cs in per_frame.items():
        true = lab[i][lab[i] >= 0]
        hits[i, j] = sum(min(cs.count(c), int((true == c).sum())) for c in set(cs)) / len(true)
    return torch.from_numpy(hits).float()


def identity_by_segment(pred: Tensor, truth: Tensor, labels: Tensor, classifier: "SpriteClassifier", segment: int,
                        **kw) -> dict:
    """Identity accuracy of ``pred`` and of ``truth`` (both [B, N, C, H, W]) per segment, and their ratio:
    ``{"acc": {seg: a}, "acc_truth": {seg: a}, "rel": {seg: a / a_truth}}`` (``rel`` NaN where the truth scores 0).
    ``kw`` go to :func:`identity_hits`."""
    acc = by_horizon(identity_hits(pred, labels, classifier, **kw), segment)
    acc_truth = by_horizon(identity_hits(truth, labels, classifier, **kw), segment)
    rel = {s: (acc[s] / acc_truth[s] if acc_truth[s] > 0 else float("nan")) for s in acc}
    return {"acc": acc, "acc_truth": acc_truth, "rel": rel}


def centroid_errors(frames: Tensor, centroids: Tensor, threshold: float = 0.3, min_pixels: int = 4,
                    max_pixels: Optional[int] = None, miss_penalty: Optional[float] = None) -> Tensor:
    """Mean distance in pixels between each sprite's true centre of mass and the sprite found for it, per frame:
    ``frames`` [B, N, C, H, W], ``centroids`` [B, N, K, 2] (row, column; NaN = padding) -> [B, N].

    The ``k`` largest sprites of a frame (:func:`find_sprites`, intensity-weighted centres) are matched
    one-to-one to the ``k`` true sprites with the smallest total distance (Hungarian). Where fewer than
    ``k`` are found (sprites that overlap merge into one component), ``k`` centres are fitted to the
    pixels found by intensity-weighted k-means; in a frame with no sprite at all every sprite costs
    ``miss_penalty`` (default: half the frame side).
    Give ``max_pixels`` (e.g. the clip's sprites' total box area) so that a frame of noise, one huge
    component centred in the frame, counts as a miss rather than a lucky guess at the centre.
    """
    from scipy.optimize import linear_sum_assignment

    u = _gray(frames)
    c = centroids.cpu().numpy().astype(np.float64)
    b, n = u.shape[:2]
    if c.shape[:2] != (b, n):
        raise ValueError(f"centroids {tuple(centroids.shape)} do not match frames {tuple(frames.shape)} (want [B, N, K, 2])")
    penalty = u.shape[-1] / 2 if miss_penalty is None else float(miss_penalty)
    out = np.zeros((b, n))
    for i in range(b):
        for j in range(n):
            true = c[i, j][~np.isnan(c[i, j]).any(-1)]
            found = find_sprites(u[i, j], threshold, min_pixels, max_pixels)[: len(true)]
            if not len(true):
                continue
            if not found:
                out[i, j] = penalty
                continue
            pos = np.stack([f["centroid"] for f in found]) if len(found) == len(true) else _split_centres(u[i, j], found, len(true))
            d = np.linalg.norm(true[:, None] - pos[None], axis=-1)  # [k_true, k_found]
            rows, cols = linear_sum_assignment(d)
            out[i, j] = d[rows, cols].mean()
    return torch.from_numpy(out).float()


def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and (unbiased) covariance [D, D] of ``features`` [M, D], in float64."""
    x = features.double().reshape(-1, features.shape[-1])
    if len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(x)}")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2):
    ``|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2)`` (symmetric eigendecompositions, float64)."""
    mu1, mu2, cov1, cov2 = mu1.double(), mu2.double(), cov1.double(), cov2.double()
    ev, vec = torch.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (vec * ev.clamp_min(0).sqrt()) @ vec.T
    mid = root1 @ cov2 @ root1
    tr_cross = torch.linalg.eigvalsh((mid + mid.T) / 2).clamp_min(0).sqrt().sum()
    d = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_cross
    return max(float(d), 0.0)


@torch.no_grad()
def classifier_features(frames: Tensor, classifier: "SpriteClassifier", batch_size: int = 512) -> Tensor:
    """Frames ``[..., C, H, W]`` in [-1, 1] -> the classifier's features ``[..., D]`` (mean over sprite-sized windows,
    :meth:`~dforce.video.classifier.SpriteClassifier.features`)."""
    lead = frames.shape[:-3]
    u = _unit(frames).mean(-3, keepdim=True).reshape(-1, 1, *frames.shape[-2:])
    f = torch.cat([classifier.features(x) for x in u.split(batch_size)]) if len(u) else torch.zeros(0, 1)
    return f.reshape(*lead, -1)


def frechet_classifier_distance(frames: Tensor, reference: Tensor, classifier: "SpriteClassifier") -> float:
    """Fréchet distance between the frames ``[..., C, H, W]`` and the reference frames in the sprite classifier's feature
    space (Gaussians fitted to each set of per-frame features). The FID / FVD formula on a small sprite
    classifier, per frame: not comparable to FID or FVD numbers, and biased upwards for small sets (a
    second sample of the same distribution does not score 0; compare methods at equal sample sizes)."""
    return frechet_distance(*gaussian_fit(classifier_features(frames, classifier)),
                            *gaussian_fit(classifier_features(reference, classifier)))


def frechet_by_segment(pred: Tensor, truth: Tensor, classifier: "SpriteClassifier", segment: int) -> dict[str, float]:
    """:func:`frechet_classifier_distance` between ``pred`` and ``truth`` frames ([B, N, C, H, W]) of each segment."""
    fp, ft = classifier_features(pred, classifier), classifier_features(truth, classifier)
    n, out = pred.shape[1], {}
    for s in range(0, n, segment):
        e = min(s + segment, n)
        out[f"{s + 1}-{e}"] = frechet_distance(*gaussian_fit(fp[:, s:e].reshape(-1, fp.shape[-1])),
                                               *gaussian_fit(ft[:, s:e].reshape(-1, ft.shape[-1])))
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
    "by_horizon", "centroid_errors", "classifier_features", "drift_by_segment", "find_sprites", "frechet_by_segment",
    "frechet_classifier_distance", "frechet_distance", "gaussian_fit", "histogram_distance", "identity_by_segment",
    "identity_hits", "intensity_histogram", "mse", "psnr", "sprite_counts", "sprite_crops", "ssim", "video_grid",
    "write_video",
]

"""Moving-sprite videos generated locally and deterministically from a seed.

Sprites are scikit-learn's bundled ``load_digits`` (8x8, upsampled), Fashion-MNIST items from the
Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``, read with numpy)
or anti-aliased balls. One to three sprites bounce inside square frames (32x32 or 64x64); a clip of
any length is its own ground-truth continuation. With ``actions=True`` sprite 0 is controllable: the
action of frame ``n`` (one-hot: none, up, down, left, right) moves it by its speed in that direction
into frame ``n`` (it stays for ``none`` and stops at the walls), so frame ``n`` depends on action ``n``
(world-model style prediction) and the context alone cannot predict where it goes.

Frames are float tensors in [-1, 1] of shape ``[N, C, H, W]`` (C = 1); actions are ``[N, 5]``.
Every clip also carries what the generator knows: each sprite's class label (digit 0-9,
Fashion-MNIST class 0-9, 0 for balls) and its centre of mass per frame, in pixels (row, column):
the ground truth of the identity and motion metrics in :mod:`dforce.video.metrics`.

    cfg = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 3))
    train = SpriteStream(cfg, length=8, seed=0)          # item i: {"x": [8, 1, 32, 32]}
    test = fixed_split(cfg, "test", n=64, length=84)     # {"x": [64, 84, 1, 32, 32], "labels": [64, 3], ...}
"""

from __future__ import annotations

import gzip
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
SPRITES = ("digits", "fashion", "balls")
ACTIONS = ("none", "up", "down", "left", "right")
_ACTION_DV = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.float64)  # (dy, dx)
SPLIT_SEEDS = {"train": 0, "val": 1_000_003, "test": 2_000_003}


# ---------------------------------------------------------------------------------------- sprites
def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """[K, h, w] in [0, 1] -> [K, size, size] (bilinear up-, area downsampling), float32."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if x.shape[-1] == size:
        return x[:, 0].numpy()
    mode = "bilinear" if size > x.shape[-1] else "area"
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return torch.nn.functional.interpolate(x, size=(size, size), mode=mode, **kw)[:, 0].clamp(0, 1).numpy()


@lru_cache(maxsize=8)
def digit_sprites(size: int = 16, split: str = "train") -> np.ndarray:
    """scikit-learn digits as sprites [K, size, size] in [0, 1]; first 1500 = train, rest = val/test."""
    from sklearn.datasets import load_digits

    images = load_digits().images / 16.0  # [1797, 8, 8]
    images = images[:1500] if split == "train" else images[1500:]
    return _resize(images, size)


@lru_cache(maxsize=4)
def digit_labels(split: str = "train") -> np.ndarray:
    """The digit (0-9) of each sprite of :func:`digit_sprites` (same split and order), int64."""
    from sklearn.datasets import load_digits

    target = load_digits().target.astype(np.int64)
    return target[:1500] if split == "train" else target[1500:]


def _read_idx(path: str) -> bytes:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def read_idx_labels(path: str) -> np.ndarray:
    """Read an IDX label file (optionally gzipped) into a uint8 array [K]."""
    data = _read_idx(path)
    magic, count = np.frombuffer(data[:8], dtype=">i4")
    if magic != 2049:
        raise ValueError(f"{path} is not an IDX label file (magic {magic}, expected 2049)")
    return np.frombuffer(data, dtype=np.uint8, offset=8, count=count)


def read_idx_images(path: str) -> np.ndarray:
    """Read an IDX image file (optionally gzipped) into a uint8 array [K, rows, cols]."""
    data = _read_idx(path)
    magic, count, rows, cols = np.frombuffer(data[:16], dtype=">i4")
    if magic != 2051:
        raise ValueError(f"{path} is not an IDX image file (magic {magic}, expected 2051)")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


@lru_cache(maxsize=8)
def fashion_sprites(size: int = 16, split: str = "train", root: str = FASHION_DIR) -> np.ndarray:
    """Fashion-MNIST items as sprites [K, size, size] in [0, 1] (train file for ``train``, t10k otherwise)."""
    name = "train-images-idx3-ubyte.gz" if split == "train" else "t10k-images-idx3-ubyte.gz"
    path = os.path.join(root, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: install the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) "
            "or use sprite='digits' / 'balls'"
        )
    images = read_idx_images(path).astype(np.float32) / 255.0
    return _resize(images, size)


@lru_cache(maxsize=4)
def fashion_labels(split: str = "train", root: str = FASHION_DIR) -> np.ndarray:
    """The Fashion-MNIST class (0-9: t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot)
    of each sprite of :func:`fashion_sprites` (same split and order), int64."""
    name = "train-labels-idx1-ubyte.gz" if split == "train" else "t10k-labels-idx1-ubyte.gz"
    path = os.path.join(root, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: install the Debian package `dataset-fashion-mnist`")
    return read_idx_labels(path).astype(np.int64)


def ball_sprite(size: int, radius: Optional[float] = None) -> np.ndarray:
    """An anti-aliased disc [size, size] in [0, 1]."""
    r = size / 2 - 0.5 if radius is None else radius
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    d = np.sqrt((yy - c) ** 2 + (xx - c) ** 2)
    return np.clip(r + 0.5 - d, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------- clips
@dataclass(frozen=True)
class SpriteConfig:
    """What the videos look like.

    Attributes:
        sprite: ``digits``, ``fashion`` or ``balls``.
        frame_size: frame height = width in pixels (32 or 64 typically).
        sprite_size: sprite side in pixels (default: frame_size // 2 for digits/fashion, frame_size // 4 for balls).
        num_sprites: (min, max) sprites per clip, inclusive.
        speed: (min, max) speed in pixels per frame.
        actions: sprite 0 is controllable (each frame's action moves it by its speed); clips carry
            one-hot actions [N, 5].
        action_prob: probability that a frame's action is not ``none`` (drawn independently per frame).
    """

    sprite: str = "digits"
    frame_size: int = 32
    sprite_size: Optional[int] = None
    num_sprites: tuple[int, int] = (1, 3)
    speed: tuple[float, float] = (1.0, 3.0)
    actions: bool = False
    action_prob: float = 0.8

    def __post_init__(self) -> None:
        if self.sprite not in SPRITES:
            raise ValueError(f"unknown sprite {self.sprite!r}; choose one of {list(SPRITES)}")
        lo, hi = self.num_sprites
        if not 1 <= lo <= hi:
            raise ValueError(f"num_sprites must be (min, max) with 1 <= min <= max, got {self.num_sprites}")
        if self.size >= self.frame_size:
            raise ValueError(f"sprite_size {self.size} must be smaller than frame_size {self.frame_size}")

    @property
    def size(self) -> int:
        if self.sprite_size is not None:
            return self.sprite_size
        return max(2, self.frame_size // (4 if self.sprite == "balls" else 2))

    @property
    def action_dim(self) -> int:
        return len(ACTIONS) if self.actions else 0

    def to_dict(self) -> dict:
        return asdict(self)


def sprite_pool(sprite: str, size: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The sprites a clip of ``split`` draws from and their class labels: ``([K, size, size] in [0, 1], [K] int64)``.

    ``train`` uses the training images; ``val`` and ``test`` the held-out ones (digits 1500+, t10k).
    """
    part = "train" if split == "train" else "test"
    if sprite == "digits":
        return digit_sprites(size, part), digit_labels(part)
    if sprite == "fashion":
        return fashion_sprites(size, part), fashion_labels(part)
    if sprite == "balls":
        return ball_sprite(size)[None], np.zeros(1, dtype=np.int64)
    raise ValueError(f"unknown sprite {sprite!r}; choose one of {list(SPRITES)}")


def _centre_of_mass(img: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    m = img.sum()
    return np.array([(yy * img).sum() / m, (xx * img).sum() / m]) if m > 0 else np.full(2, (img.shape[0] - 1) / 2)


def make_clip(cfg: SpriteConfig, length: int, rng: np.random.Generator, split: str = "train") -> dict:
    """One clip: ``{"x": [length, 1, H, W] float32 in [-1, 1], "cond": [length, 5] (with actions), "count": int,
    "labels": [k] int64, "centroids": [length, k, 2] float32}``.

    ``labels`` is each sprite's class, ``centroids`` its centre of mass (intensity-weighted, row then
    column, in pixels of the frame) in every frame: what the identity and motion metrics compare to.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    pool, pool_labels = sprite_pool(cfg.sprite, cfg.size, split)
    f, s = cfg.frame_size, cfg.size
    k = int(rng.integers(cfg.num_sprites[0], cfg.num_sprites[1] + 1))
    idx = rng.integers(0, len(pool), size=k)
    sprites = pool[idx]
    com = np.stack([_centre_of_mass(sp) for sp in sprites])  # [k, 2] inside the sprite box
    centroids = np.zeros((length, k, 2), dtype=np.float32)
    lim = float(f - s)
    pos = rng.uniform(0, lim, size=(k, 2))
    angle = rng.uniform(0, 2 * np.pi, size=k)
    speed = rng.uniform(cfg.speed[0], cfg.speed[1], size=k)
    vel = np.stack([np.sin(angle), np.cos(angle)], -1) * speed[:, None]
    frames = np.zeros((length, f, f), dtype=np.float32)
    acts = np.zeros((length, len(ACTIONS)), dtype=np.float32)
    for n in range(length):
        if n > 0:
            prev = pos[0].copy()
            pos = pos + vel
            for d in range(2):  # bounce off the walls (reflect position and velocity)
                low, high = pos[:, d] < 0, pos[:, d] > lim
                pos[low, d] = -pos[low, d]
                pos[high, d] = 2 * lim - pos[high, d]
                vel[low | high, d] = -vel[low | high, d]
            if cfg.actions:  # sprite 0 goes where its action sends it, instead of bouncing on
                a = int(rng.integers(1, len(ACTIONS))) if rng.random() < cfg.action_prob else 0
                acts[n, a] = 1.0
                pos[0] = np.clip(prev + _ACTION_DV[a] * speed[0], 0, lim)
        elif cfg.actions:
            acts[0, 0] = 1.0
        ij = np.rint(pos).astype(int)
        centroids[n] = ij + com
        for j in range(k):
            y, x = ij[j]
            np.maximum(frames[n, y : y + s, x : x + s], sprites[j], out=frames[n, y : y + s, x : x + s])
    out = {"x": torch.from_numpy(frames * 2 - 1)[:, None], "count": k, "labels": torch.from_numpy(pool_labels[idx]),
           "centroids": torch.from_numpy(centroids)}
    if cfg.actions:
        out["cond"] = torch.from_numpy(acts)
    return out


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


class SpriteStream(IterableDataset):
    """An endless stream of training clips; clip ``i`` depends only on ``(seed, i)`` (also as ``stream[i]``).

    Items are dicts ``{"x": [length, 1, H, W]}`` plus ``"cond": [length, 5]`` with actions, ready for
    ``DiffusionForcing.loss`` / ``dforce.training.train``. With several data-loader workers, worker
    ``w`` of ``k`` yields clips ``w, w + k, ...`` so no clip repeats.
    """

    def __init__(self, cfg: SpriteConfig, length: int, seed: int = 0, split: str = "train") -> None:
        self.cfg, self.length, self.seed, self.split = cfg, length, seed + SPLIT_SEEDS[split], split

    def __getitem__(self, i: int) -> dict:
        clip = make_clip(self.cfg, self.length, _rng(self.seed, i), self.split)
        for key in ("count", "labels", "centroids"):  # training takes frames (and actions) only
            clip.pop(key)
        return clip

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        i, step = (0, 1) if info is None else (info.id, info.num_workers)
        while True:
            yield self[i]
            i += step


def fixed_split(cfg: SpriteConfig, split: str, n: int, length: int, seed: int = 0) -> dict:
    """A fixed set of ``n`` clips: ``{"x": [n, length, 1, H, W], "count": [n], "labels": [n, K], "centroids":
    [n, length, K, 2]}`` (+ ``"cond"`` with actions), ``K = cfg.num_sprites[1]``; clips with fewer sprites are
    padded with label -1 and NaN centroids.

    ``val`` and ``test`` use held-out sprites (digits 1500+, Fashion-MNIST t10k) and their own seeds.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_SEEDS)}")
    clips = [make_clip(cfg, length, _rng(seed + SPLIT_SEEDS[split], i), split) for i in range(n)]
    kmax = cfg.num_sprites[1]
    labels = torch.full((n, kmax), -1, dtype=torch.long)
    centroids = torch.full((n, length, kmax, 2), float("nan"))
    for i, c in enumerate(clips):
        labels[i, : c["count"]] = c["labels"]
        centroids[i, :, : c["count"]] = c["centroids"]
    out = {"x": torch.stack([c["x"] for c in clips]), "count": torch.tensor([c["count"] for c in clips]), "labels": labels,
           "centroids": centroids}
    if cfg.actions:
        out["cond"] = torch.stack([c["cond"] for c in clips])
    return out


def batch(cfg: SpriteConfig, n: int, length: int, seed: int, start: int = 0, split: str = "train") -> dict:
    """Items ``start .. start + n`` of ``SpriteStream(cfg, length, seed)`` stacked (for plain training loops)."""
    ds = SpriteStream(cfg, length, seed, split=split)
    items = [ds[start + i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def to_unit(x: Tensor) -> Tensor:
    """Frames in [-1, 1] -> [0, 1] (clamped)."""
    return ((x.float() + 1) / 2).clamp(0, 1)


__all__ = [
    "ACTIONS", "SPRITES", "SpriteConfig", "SpriteStream", "ball_sprite", "batch", "digit_labels", "digit_sprites",
    "fashion_labels", "fashion_sprites", "fixed_split", "make_clip", "read_idx_images", "read_idx_labels", "sprite_pool",
    "to_unit",
]

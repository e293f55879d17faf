"""A small sprite classifier: the eyes of the identity and Fréchet metrics in :mod:`dforce.video.metrics`.

A three-layer CNN trained in seconds on the *training* sprites of a kind (scikit-learn digits, 10
classes; Fashion-MNIST, 10 classes) and applied to sprite-sized crops of frames. Crops are cut the
same way in training and in evaluation (:func:`crop_box`: a ``size x size`` window centred on the
bounding box of the sprite's pixels above a threshold), with random shifts of the window, contrast
and noise as augmentation, so the classifier tolerates the slightly off-centre, dimmer or blurred
sprites a video model draws.

The trunk is fully convolutional and ends in a global average pool, so the same network also maps
a whole frame to a feature vector (:meth:`SpriteClassifier.features`): the feature space of
:func:`dforce.video.metrics.frechet_classifier_distance`.

    clf = sprite_classifier("digits", size=16)     # trained once per process (cached), deterministic in `seed`
    logits = clf(crops)                            # crops [M, 1, 16, 16] in [0, 1]
    clf.heldout_accuracy                           # on the held-out sprites (digits 1500+, Fashion-MNIST t10k)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

THRESHOLD = 0.3  # a pixel belongs to a sprite above this intensity (in [0, 1]); as in metrics.sprite_counts


class SpriteClassifier(nn.Module):
    """conv(3x3) -> pool -> conv -> pool -> conv -> hidden (a ``size/4``-wide conv: a linear layer on a crop's
    feature map) -> classes.

    Fully convolutional: on a ``size x size`` crop the hidden layer has one position (the features of
    that crop); on a larger image it has one per sprite-sized window (stride 4), which
    :meth:`features` averages. Inputs are images ``[M, 1, h, w]`` in [0, 1].
    """

    def __init__(self, size: int, num_classes: int = 10, width: int = 32, features: int = 64) -> None:
        super().__init__()
        self.size, self.num_classes = size, num_classes
        w = width
        self.trunk = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
        )
        if size % 4:
            raise ValueError(f"sprite size must be a multiple of 4, got {size}")
        self.hidden = nn.Sequential(nn.Conv2d(2 * w, features, size // 4), nn.ReLU())
        self.head = nn.Linear(features, num_classes)
        self.heldout_accuracy = float("nan")

    def features(self, x: Tensor) -> Tensor:
        """``[M, 1, h, w]`` in [0, 1] -> ``[M, features]`` (``h, w >= size``): the hidden features of a crop,
        or their mean over every sprite-sized window of a larger image."""
        return self.hidden(self.trunk(x)).mean((-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Class of each image ``[M, 1, size, size]`` -> ``[M]`` (long)."""
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([self(c.float()).argmax(-1) for c in x.split(batch_size)])


def crop_box(mask: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size x size`` window centred on the bounding box of ``mask`` [h, w] (bool).

    Coordinates are in the frame's pixels and may fall outside it (crop from a zero-padded frame).
    """
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return (mask.shape[0] - size) // 2, (mask.shape[1] - size) // 2
    return box_corner(rows.min(), rows.max(), cols.min(), cols.max(), size)


def box_corner(top: int, bottom: int, left: int, right: int, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size x size`` window centred on the box of rows ``top..bottom``, columns ``left..right`` (inclusive)."""
    cy, cx = (top + bottom) / 2, (left + right) / 2
    return int(np.floor(cy - (size - 1) / 2 + 0.5)), int(np.floor(cx - (size - 1) / 2 + 0.5))


def crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """The ``size x size`` window of ``image`` [h, w] at (top, left), zero outside the image."""
    h, w = image.shape
    out = np.zeros((size, size), dtype=np.float32)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + size, h), min(left + size, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def _centred_crops(sprites: np.ndarray, size: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sprite on a zero canvas with ``pad`` pixels around it and the crop corner of :func:`crop_box` in that canvas."""
    canvas = np.pad(sprites, ((0, 0), (pad, pad), (pad, pad)))
    corners = np.array([crop_box(c > THRESHOLD, size) for c in canvas])
    return canvas.astype(np.float32), corners


def _augmented(canvas: np.ndarray, corners: np.ndarray, size: int, rng: np.random.Generator, shift: int) -> np.ndarray:
    n = len(canvas)
    off = corners + rng.integers(-shift, shift + 1, size=(n, 2))
    x = np.stack([crop(canvas[i], off[i, 0], off[i, 1], size) for i in range(n)])
    x = x * rng.uniform(0.5, 1.0, size=(n, 1, 1)) + rng.normal(0, 0.05, size=x.shape)
    return np.clip(x, 0, 1).astype(np.float32)


def train_sprite_classifier(sprite: str = "digits", size: int = 16, *, seed: int = 0, epochs: Optional[int] = None, max_train: int = 12000,
                            max_heldout: int = 2000, batch_size: int = 128, lr: float = 3e-3, shift: int = 2) -> SpriteClassifier:
    """Train a :class:`SpriteClassifier` on the training sprites of ``sprite`` (``digits`` or ``fashion``) of side ``size``.

    Deterministic in ``seed`` (the global torch RNG is left as it was). Sets ``heldout_accuracy``: the
    accuracy on centred crops of the held-out sprites (those of the val / test clips). At most
    ``max_train`` training sprites are used (Fashion-MNIST has 60k). ``epochs`` defaults to 15 for the
    1500 digits (~5-10 s on one core) and 4 for Fashion-MNIST (~30 s).
    """
    from dforce.video.data import sprite_pool

    if sprite not in ("digits", "fashion"):
        raise ValueError(f"no sprite classifier for {sprite!r}: identity needs labelled sprites (digits or fashion)")
    rng = np.random.default_rng(seed)
    images, labels = sprite_pool(sprite, size, "train")
    if len(images) > max_train:
        keep = rng.choice(len(images), max_train, replace=False)
        images, labels = images[keep], labels[keep]
    epochs = epochs if epochs is not None else (15 if sprite == "digits" else 4)
    pad = shift + size // 4
    canvas, corners = _centred_crops(images, size, pad)
    y = torch.from_numpy(labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpriteClassifier(size)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * -(-len(canvas) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        model.train()
        for _ in range(epochs):
            x = torch.from_numpy(_augmented(canvas, corners, size, rng, shift))[:, None]
            order = torch.from_numpy(rng.permutation(len(x)))
            for idx in order.split(batch_size):
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    model.eval()
    test_images, test_labels = sprite_pool(sprite, size, "test")
    if len(test_images) > max_heldout:
        keep = rng.choice(len(test_images), max_heldout, replace=False)
        test_images, test_labels = test_images[keep], test_labels[keep]
    tc, tcorners = _centred_crops(test_images, size, pad)
    xt = torch.from_numpy(np.stack([crop(c, *corner, size) for c, corner in zip(tc, tcorners)]))[:, None]
    model.heldout_accuracy = float((model.predict(xt) == torch.from_numpy(test_labels)).float().mean())
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@lru_cache(maxsize=8)
def sprite_classifier(sprite: str = "digits", size: int = 16, seed: int = 0) -> SpriteClassifier:
    """:func:`train_sprite_classifier` once per process and arguments (cached); the model is frozen, in eval mode."""
    return train_sprite_classifier(sprite, size, seed=seed)


__all__ = ["SpriteClassifier", "THRESHOLD", "box_corner", "crop", "crop_box", "sprite_classifier", "train_sprite_classifier"]

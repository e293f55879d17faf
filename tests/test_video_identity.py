"""Metrics that see what a person sees: sprite identity, motion (centroids) and the classifier Fréchet distance."""

import gzip

import numpy as np
import pytest
import torch

from dforce.video.classifier import crop, crop_box, sprite_classifier, train_sprite_classifier
from dforce.video.data import SpriteConfig, fixed_split, make_clip, read_idx_labels, sprite_pool
from dforce.video.experiment import score, summarize
from dforce.video.metrics import (
    centroid_errors, find_sprites, frechet_classifier_distance, frechet_distance, gaussian_fit, identity_by_segment,
    identity_hits,
)

ONE = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 1))
TWO = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 2))


@pytest.fixture(scope="module")
def clf():
    return sprite_classifier("digits", 16)  # trained once per process (~5-10 s on one core)


@pytest.fixture(scope="module")
def clips():
    return fixed_split(ONE, "test", 12, 16)


def _shift(x, dx):
    """Move frames ``dx`` pixels right (no wrap-around)."""
    out = -torch.ones_like(x)
    out[..., dx:] = x[..., :-dx]
    return out


# ------------------------------------------------------------------------------ data: what the generator knows
def test_clips_carry_labels_and_centroids():
    clip = make_clip(SpriteConfig(sprite="balls", num_sprites=(1, 1), speed=(2, 2)), 10, np.random.default_rng(3))
    u = ((clip["x"][:, 0] + 1) / 2).numpy()
    yy, xx = np.mgrid[:32, :32]
    com = np.stack([[(yy * f).sum() / f.sum(), (xx * f).sum() / f.sum()] for f in u])
    assert np.allclose(clip["centroids"][:, 0].numpy(), com, atol=1e-4)  # the centre of mass of what is drawn
    assert clip["labels"].tolist() == [0]
    d = fixed_split(TWO, "test", 8, 5)
    k = d["count"]
    assert d["labels"].shape == (8, 2) and d["centroids"].shape == (8, 5, 2, 2)
    assert ((d["labels"] >= 0).sum(1) == k).all() and (d["labels"][k == 1, 1] == -1).all()
    assert torch.isnan(d["centroids"][k == 1][:, :, 1]).all() and not torch.isnan(d["centroids"][k == 2]).any()
    assert d["labels"].max() <= 9 and len(set(d["labels"][d["labels"] >= 0].tolist())) > 3


def test_sprite_labels_match_the_pools(tmp_path):
    images, labels = sprite_pool("digits", 16, "test")
    from sklearn.datasets import load_digits

    assert len(images) == len(labels) == 297 and np.array_equal(labels, load_digits().target[1500:])
    f_images, f_labels = sprite_pool("fashion", 16, "test")
    assert len(f_images) == len(f_labels) == 10000 and set(np.unique(f_labels)) == set(range(10))
    p = tmp_path / "l.gz"
    with gzip.open(p, "wb") as f:
        f.write(np.array([2049, 3], dtype=">i4").tobytes() + bytes([7, 0, 9]))
    assert read_idx_labels(str(p)).tolist() == [7, 0, 9]
    with pytest.raises(ValueError, match="not an IDX label file"):
        with gzip.open(tmp_path / "bad.gz", "wb") as f:
            f.write(np.array([2051, 3], dtype=">i4").tobytes())
        read_idx_labels(str(tmp_path / "bad.gz"))


# ------------------------------------------------------------------------------ the classifier
def test_classifier_recognises_held_out_digits_and_is_deterministic(clf):
    assert clf.heldout_accuracy > 0.9  # 297 held-out digits (1500+), centred crops; measured 0.956
    a = train_sprite_classifier("digits", 8, epochs=1, max_train=256, seed=3)
    b = train_sprite_classifier("digits", 8, epochs=1, max_train=256, seed=3)
    state = torch.get_rng_state()
    c = train_sprite_classifier("digits", 8, epochs=1, max_train=256, seed=4)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    pa, pb, pc = (list(m.parameters()) for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb)) and not all(torch.equal(x, y) for x, y in zip(pa, pc))
    assert sprite_classifier("digits", 16) is clf  # cached per process
    with pytest.raises(ValueError, match="labelled sprites"):
        train_sprite_classifier("balls", 8)


def test_crops_centre_the_sprite_box():
    img = np.zeros((10, 10), dtype=np.float32)
    img[0:3, 7:10] = 1.0  # a 3x3 blob in the top-right corner
    top, left = crop_box(img > 0.5, 5)
    assert (top, left) == (-1, 6)
    c = crop(img, top, left, 5)
    assert c.shape == (5, 5) and c.sum() == 9 and c[1:4, 1:4].sum() == 9  # centred, zero outside the image


# ------------------------------------------------------------------------------ identity
def test_identity_is_high_on_truth_and_near_chance_on_blank_noise_or_wrong_labels(clf, clips):
    x, labels = clips["x"], clips["labels"]
    truth = identity_hits(x, labels, clf)
    assert truth.shape == (12, 16) and truth.mean() > 0.85  # single sprites: the classifier's accuracy
    assert identity_hits(-torch.ones_like(x), labels, clf).eq(0).all()  # nothing drawn: nothing recognised
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert identity_hits(noise, labels, clf).mean() < 0.25  # chance is 0.1
    wrong = torch.where(labels >= 0, (labels + 1) % 10, labels)
    assert identity_hits(x, wrong, clf).mean() < 0.2
    # position does not matter, identity does: shifted frames keep their digits
    assert identity_hits(_shift(x, 3), labels, clf).mean() > 0.8
    seg = identity_by_segment(x, x, labels, clf, 8)
    assert seg["rel"] == {"1-8": 1.0, "9-16": 1.0} and seg["acc"] == seg["acc_truth"]


def test_identity_counts_each_true_sprite_once(clf):
    images, labels = sprite_pool("digits", 16, "test")
    # two held-out digits of different classes that the classifier gets right, in opposite corners of a frame
    first = next(i for i in range(len(images)) if identity_hits(_frame([(images[i], 0, 0)]), torch.tensor([[labels[i]]]), clf) == 1)
    second = next(i for i in range(len(images)) if labels[i] != labels[first]
                  and identity_hits(_frame([(images[i], 16, 16)]), torch.tensor([[labels[i]]]), clf) == 1)
    x = _frame([(images[first], 0, 0), (images[second], 16, 16)])
    a, b = int(labels[first]), int(labels[second])
    other = next(c for c in range(10) if c not in (a, b))
    hits = {lab: float(identity_hits(x, torch.tensor([lab]), clf)) for lab in ((a, b), (b, a), (a, a), (a, other), (other, other))}
    assert hits == {(a, b): 1.0, (b, a): 1.0, (a, a): 0.5, (a, other): 0.5, (other, other): 0.0}
    # a clip of one sprite: only the largest sprite found is classified, so exactly one of the two labels scores
    assert sorted(float(identity_hits(x, torch.tensor([[c, -1]]), clf)) for c in (a, b)) == [0.0, 1.0]


def _frame(sprites):
    """One clip of one 32x32 frame with ``(image, top, left)`` sprites: [1, 1, 1, 32, 32] in [-1, 1]."""
    f = np.zeros((32, 32), dtype=np.float32)
    for img, top, left in sprites:
        np.maximum(f[top : top + 16, left : left + 16], img, out=f[top : top + 16, left : left + 16])
    return torch.from_numpy(f * 2 - 1)[None, None, None]


# ------------------------------------------------------------------------------ motion
def test_centroid_error_zero_on_truth_positive_when_shifted_or_missing(clips):
    x, cen = clips["x"], clips["centroids"]
    err = centroid_errors(x, cen)
    assert err.shape == (12, 16) and err.max() < 0.75 and err.mean() < 0.25  # thresholded vs full centre of mass
    d = fixed_split(TWO, "test", 16, 12)  # two sprites that often overlap: k-means splits merged components
    assert centroid_errors(d["x"], d["centroids"]).mean() < 1.5
    shifted = centroid_errors(_shift(x, 3), cen)
    assert 2.5 < shifted.median() < 3.5
    assert centroid_errors(-torch.ones_like(x), cen).eq(16.0).all()  # no sprite: half the frame side
    assert centroid_errors(-torch.ones_like(x), cen, miss_penalty=5.0).eq(5.0).all()
    copy_last = centroid_errors(x[:, :1].expand_as(x), cen)
    assert copy_last[:, 0].eq(err[:, 0]).all() and copy_last[:, 8:].mean() > 5 * err.mean() + 3  # sprites move 1-3 px per frame
    noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) > 0.3).float() * 2 - 1
    assert centroid_errors(noise, cen, max_pixels=256).mean() > 14  # one frame-sized blob is clutter, not a sprite


def test_find_sprites_orders_by_size_and_filters():
    f = np.zeros((20, 20), dtype=np.float32)
    f[1:3, 1:3] = 1.0  # 4 px
    f[10:15, 10:14] = 0.8  # 20 px
    f[18, 0] = 1.0  # 1 px: noise
    s = find_sprites(f)
    assert [d["pixels"] for d in s] == [20, 4] and np.allclose(s[0]["centroid"], [12, 11.5]) and s[0]["box"] == (10, 14, 10, 13)
    assert [d["pixels"] for d in find_sprites(f, max_pixels=10)] == [4]


# ------------------------------------------------------------------------------ Fréchet distance
def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    a, b = torch.rand(5, generator=g, dtype=torch.float64) + 0.1, torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    want = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()  # diagonal Gaussians
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(float(want), rel=1e-9)
    # full covariances against scipy's matrix square root
    from scipy.linalg import sqrtm

    A, B = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    s1, s2 = A @ A.T + 0.1 * torch.eye(5, dtype=torch.float64), B @ B.T
    ref = float(((mu1 - mu2) ** 2).sum()) + np.trace(s1.numpy() + s2.numpy() - 2 * np.real(sqrtm(s1.numpy() @ s2.numpy())))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64) + 1
    m, c = gaussian_fit(x)
    assert torch.allclose(m, x.mean(0)) and torch.allclose(c, torch.from_numpy(np.cov(x.numpy().T)))


def test_frechet_classifier_distance_is_zero_on_same_frames_and_grows_with_corruption(clf):
    a = fixed_split(TWO, "test", 24, 8)["x"]
    b = fixed_split(TWO, "val", 24, 8)["x"]  # another sample of the same distribution
    assert frechet_classifier_distance(a, a, clf) < 1e-6
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(b.shape, generator=g)
    same = frechet_classifier_distance(b, a, clf)  # > 0: 192 frames, 64 features (the floor the benchmark reports)
    fd = [frechet_classifier_distance((b + s * noise).clamp(-1, 1), a, clf) for s in (0.3, 0.6, 1.0)]
    assert 0 < same < fd[0] < fd[1] < fd[2]
    assert fd[2] > 3 * same


# ------------------------------------------------------------------------------ wired into experiment.score
def test_score_and_summarize_report_the_contract_keys(clf):
    d = fixed_split(TWO, "test", 4, 12)
    context, truth = d["x"][:, :4], d["x"][:, 4:]
    ref = fixed_split(TWO, "val", 8, 4)["x"]
    kw = dict(labels=d["labels"], centroids=d["centroids"][:, 4:], sprites=TWO)
    gt = summarize(score(truth, truth, ref, 4, **kw))
    cl = summarize(score(context[:, -1:].expand_as(truth), truth, ref, 4, **kw))
    keys = {"psnr_1_4", "centroid_err_1_4", "identity_rel_5_8", "hist_tv_5_8", "frechet_5_8", "frechet_data_5_8", "per_segment"}
    assert set(gt) == keys == set(cl)
    assert gt["identity_rel_5_8"] == 1.0 and gt["frechet_5_8"] < 1e-6 and gt["centroid_err_1_4"] < 3  # overlaps: not 0
    assert gt["frechet_data_5_8"] > 0  # the floor: as many independent data frames
    assert cl["centroid_err_1_4"] > gt["centroid_err_1_4"] and cl["frechet_5_8"] > 0
    row = cl["per_segment"]["1-4"]
    assert {"psnr", "ssim", "centroid_err", "identity_acc", "identity_acc_truth", "identity_rel", "hist_tv", "frechet",
            "frechet_data", "sprites"} <= set(row)
    plain = summarize(score(truth, truth, ref, 4))  # without the clips' ground truth: the old metrics only
    assert set(plain) == {"psnr_1_4", "hist_tv_5_8", "per_segment"}

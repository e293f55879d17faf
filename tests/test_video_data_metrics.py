import gzip
import os

import numpy as np
import pytest
import torch

from dforce.video.data import SpriteConfig, SpriteStream, ball_sprite, fixed_split, make_clip, read_idx_images
from dforce.video.metrics import (
    by_horizon, drift_by_segment, histogram_distance, mse, psnr, sprite_counts, ssim, video_grid, write_video,
)


def test_clips_are_deterministic_in_range_and_bounce():
    cfg = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 3))
    a, b = SpriteStream(cfg, 12, seed=5)[7], SpriteStream(cfg, 12, seed=5)[7]
    assert torch.equal(a["x"], b["x"]) and a["x"].shape == (12, 1, 32, 32)
    assert not torch.equal(a["x"], SpriteStream(cfg, 12, seed=6)[7]["x"])
    assert a["x"].min() >= -1 and a["x"].max() <= 1
    # a single ball keeps its brightness mass (no sprite leaves the frame)
    c = make_clip(SpriteConfig(sprite="balls", num_sprites=(1, 1), speed=(3, 3)), 60, np.random.default_rng(0))
    mass = ((c["x"] + 1) / 2).sum((1, 2, 3))
    assert torch.allclose(mass, mass[0].expand_as(mass), rtol=0.05)


def test_a_clip_is_its_own_continuation_and_splits_differ():
    cfg = SpriteConfig(frame_size=64)
    long, short = fixed_split(cfg, "test", 3, 20), fixed_split(cfg, "test", 3, 8)
    assert torch.equal(long["x"][:, :8], short["x"]) and long["x"].shape == (3, 20, 1, 64, 64)
    assert not torch.equal(fixed_split(cfg, "val", 3, 8)["x"], short["x"])
    with pytest.raises(ValueError, match="unknown split"):
        fixed_split(cfg, "dev", 1, 4)


def test_actions_steer_the_controllable_sprite():
    cfg = SpriteConfig(sprite="balls", num_sprites=(2, 2), speed=(2.0, 2.0), actions=True, action_prob=1.0)
    clip = make_clip(cfg, 40, np.random.default_rng(1))
    assert clip["cond"].shape == (40, 5) and torch.equal(clip["cond"].sum(1), torch.ones(40))
    assert clip["cond"][0, 0] == 1 and clip["cond"][1:, 0].sum() == 0  # action_prob=1: a move every frame
    step = {1: (-2, 0), 2: (2, 0), 3: (0, -2), 4: (0, 2)}  # up, down, left, right: (rows, columns) at speed 2
    c = clip["centroids"][:, 0]  # sprite 0
    lo, hi = c.min(0).values, c.max(0).values  # where the walls stop it
    moved = stopped = 0
    for n in range(1, 40):
        want = torch.tensor(step[int(clip["cond"][n].argmax())], dtype=c.dtype)
        got = c[n] - c[n - 1]
        if torch.allclose(got, want):
            moved += 1
        else:  # only a wall stops it: it ends on the wall it was sent towards
            d = int(want.abs().argmax())
            assert got[1 - d] == 0 and c[n, d] == (hi[d] if want[d] > 0 else lo[d]), (n, got, want)
            stopped += 1
    assert moved > 20 and stopped > 0
    d1 = clip["centroids"][1:, 1] - clip["centroids"][:-1, 1]  # sprite 1 bounces on at its own velocity
    assert (d1.abs().sum(-1) > 0).float().mean() > 0.9 and not torch.equal(d1, c[1:] - c[:-1])
    none = make_clip(SpriteConfig(sprite="balls", num_sprites=(1, 1), actions=True, action_prob=0.0), 5, np.random.default_rng(2))
    assert torch.equal(none["centroids"][1:], none["centroids"][:-1])  # "none" every frame: it stays


def test_fashion_sprites_from_the_debian_package(tmp_path):
    root = "/usr/share/datasets/fashion-mnist"
    assert os.path.exists(os.path.join(root, "t10k-images-idx3-ubyte.gz")), "apt-get install dataset-fashion-mnist"
    clip = fixed_split(SpriteConfig(sprite="fashion"), "test", 2, 4)
    assert clip["x"].shape == (2, 4, 1, 32, 32) and clip["x"].max() > 0
    # the IDX reader on a file written here
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as f:
        f.write(np.array([2051, 2, 3, 4], dtype=">i4").tobytes() + imgs.tobytes())
    assert np.array_equal(read_idx_images(str(p)), imgs)


def test_psnr_and_mse_closed_form():
    a = -torch.ones(2, 3, 1, 8, 8)
    b = a + 0.2  # 0.1 in [0, 1] units
    assert torch.allclose(mse(a, b), torch.full((2, 3), 0.01))
    assert torch.allclose(psnr(a, b), torch.full((2, 3), 20.0), atol=1e-4)
    # a known MSE per frame: PSNR = 10 log10(1 / MSE), frame by frame (torchmetrics, reduced per frame only)
    x = torch.rand(5, 1, 6, 6) * 2 - 1
    y = x.clone()
    y[:, :, 0, 0] = torch.where(x[:, :, 0, 0] > 0, x[:, :, 0, 0] - 1, x[:, :, 0, 0] + 1)  # one pixel off by 0.5 in [0, 1]
    want = 10 * torch.log10(1 / torch.full((5,), 0.25 / 36))
    assert torch.allclose(psnr(y, x), want, atol=1e-3) and psnr(y, x).shape == (5,)
    assert psnr(x, x).eq(100.0).all()  # identical frames: capped at 10 log10(1 / eps), finite
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:4])


def test_ssim_closed_forms():
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-6)
    assert torch.allclose(ssim(x[None].expand(2, 4, 1, 16, 16), x[None].expand(2, 4, 1, 16, 16)), torch.ones(2, 4), atol=1e-6)
    y = torch.rand(4, 1, 16, 16) * 2 - 1
    assert torch.allclose(ssim(x, y), ssim(y, x))
    assert (ssim(x, y) < 0.5).all()
    # constant images: variances vanish, SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) (sigma 1: a 9x9 window)
    m1, m2, c1 = 0.2, 0.7, 0.01**2
    s = ssim(torch.full((1, 1, 9, 9), 2 * m1 - 1), torch.full((1, 1, 9, 9), 2 * m2 - 1), sigma=1.0)
    assert s.item() == pytest.approx((2 * m1 * m2 + c1) / (m1**2 + m2**2 + c1), rel=1e-5)
    # a contrast-inverted image around mid-grey has structure -1: SSIM strongly negative
    assert ssim(x, -x).mean() < -0.5
    with pytest.raises(ValueError, match="smaller than the SSIM window 11"):
        ssim(torch.zeros(1, 1, 9, 9), torch.zeros(1, 1, 9, 9))


def test_horizon_buckets_and_drift_diagnostics():
    v = torch.arange(25.0)[None].repeat(2, 1)
    assert by_horizon(v, 10) == {"1-10": 4.5, "11-20": 14.5, "21-25": 22.0}
    frames = -torch.ones(2, 4, 1, 16, 16)
    frames[:, :, :, 1:4, 1:4] = 1.0
    frames[:, :, :, 8:12, 8:12] = 1.0
    assert sprite_counts(frames).eq(2).all()
    assert histogram_distance(frames, frames) == 0.0
    assert histogram_distance(frames, frames * 0) == pytest.approx(1.0)  # all mid-grey vs all white
    assert histogram_distance(-torch.ones_like(frames), frames) == 1.0  # blank frames: no sprite pixels at all
    rows = drift_by_segment(frames, frames, 2, true_counts=torch.full((2, 4), 2))
    assert [r["frames"] for r in rows] == ["1-2", "3-4"] and rows[0]["count_err"] == 0 and rows[1]["sprites"] == 2


def test_video_writers(tmp_path):
    truth, pred = torch.rand(2, 5, 1, 8, 8) * 2 - 1, torch.rand(2, 5, 1, 8, 8) * 2 - 1
    grid = video_grid([truth, pred])
    assert grid.shape == (5, 20, 20, 3) and grid.dtype == np.uint8
    import imageio.v2 as imageio

    gif = write_video(tmp_path / "a.gif", [truth, pred])
    assert len(imageio.mimread(gif)) == 5
    mp4 = write_video(tmp_path / "a.mp4", [truth, pred])
    assert os.path.getsize(mp4) > 0 and not os.path.exists(mp4 + ".tmp.mp4")
    with pytest.raises(ValueError, match="unknown video format"):
        write_video(tmp_path / "a.avi", [truth])


def test_ball_sprite_is_a_disc():
    b = ball_sprite(9)
    assert b[4, 4] == 1.0 and b[0, 0] == 0.0 and b.shape == (9, 9)

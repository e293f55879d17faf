import json

import numpy as np

from dforce.demo.lorenz import lorenz63, marginal_distance, wasserstein1
from dforce.demo.run import quick_config, run_demo


def test_lorenz_stays_on_the_attractor():
    x = lorenz63(4, 2000, stride=2, seed=0)
    assert x.shape == (4, 2000, 3) and np.isfinite(x).all()
    # the classic attractor statistics: z around 23.5, x and y symmetric about 0
    assert 20 < x[..., 2].mean() < 27 and abs(x[..., 0].mean()) < 2.5


def test_wasserstein_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 20000)
    assert abs(wasserstein1(a + 0.7, a) - 0.7) < 1e-9  # a shift moves every quantile
    assert wasserstein1(np.array([np.nan, 1.0]), a) == float("inf")
    assert marginal_distance(np.stack([a, a + 1.0], -1), np.stack([a, a], -1)) == wasserstein1(a + 1.0, a) / 2


def test_quick_demo_writes_png_metrics_and_models(tmp_path):
    res = run_demo(quick_config(str(tmp_path)), log=lambda *a: None)
    assert (tmp_path / "rollout.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["methods"].keys() == {"diffusion_forcing", "teacher_forcing", "diffusion_forcing_pyramid", "teacher_forcing_pyramid"}
    for m in saved["methods"].values():
        assert len(m["marginal_w1_per_segment"]) == 10  # 10x the training window, one value per window
    assert res["methods"]["diffusion_forcing"]["finite"]
    assert (tmp_path / "models" / "diffusion_forcing" / "model.safetensors").is_file()

import json

import numpy as np

from dforce.dynamics.metrics import marginal_distance, wasserstein1
from dforce.dynamics.systems import lorenz63
from dforce.demo.run import quick_config, run_demo
from dforce.diffusion.noise_levels import DEFAULT_TRAINING_NOISE


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


def test_quick_demo_writes_png_metrics_verdict_and_models(tmp_path):
    res = run_demo(quick_config(str(tmp_path)), log=lambda *a: None)
    assert (tmp_path / "rollout.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["methods"].keys() == {"diffusion_forcing", "teacher_forcing"}
    for m in saved["methods"].values():
        assert len(m["marginal_w1_per_segment"]) == 10  # 10x the training window, one value per window
        assert m["w1_last_segment"] == m["marginal_w1_per_segment"][-1]
        assert m["roughness_ratio"] > 0 and 0 <= m["diverged_fraction"] <= 1
    v = saved["verdict"]
    assert v["df_ar_w1_last"] == saved["methods"]["diffusion_forcing"]["w1_last_segment"]
    assert v["tf_ar_w1_last"] == saved["methods"]["teacher_forcing"]["w1_last_segment"]
    assert v["df_better"] == (v["df_ar_w1_last"] < v["tf_ar_w1_last"])
    assert "wins on" in v["sentence"] and res["verdict"] == v
    assert saved["config"]["training_noise"] == DEFAULT_TRAINING_NOISE
    assert (tmp_path / "models" / "diffusion_forcing" / "model.safetensors").is_file()


def test_quick_demo_on_the_field(tmp_path):
    res = run_demo(quick_config(str(tmp_path), system="kuramoto_sivashinsky", num_rollouts=2, rollout_windows=2), log=lambda *a: None)
    assert len(res["methods"]["diffusion_forcing"]["spectrum_per_segment"]) == 2
    assert (tmp_path / "rollout.png").is_file()

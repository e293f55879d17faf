"""``benchmarks/video_seeds.py``: the training-seed spread of the video benchmark."""

import copy
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from video_seeds import aggregate, markdown, run_name  # noqa: E402


def _run(psnr: float, ratio: float, speedup: float, sha: str = "abc") -> dict:
    row = {"name": "DF", "psnr_1_8": psnr, "centroid_err_1_8": 6.0, "per_segment": {"1-8": {"sprites": 1.0}, "73-80": {"sprites": psnr / 10}}}
    return {"meta": {"data": {"data_seed": 0, "test_clips": 16, "horizon": 80}, "sampling_steps": 10,
                     "train": {"steps": 600, "preset": "tiny", "weighting": "fused_snr", "parametrization": "x0"}},
            "methods": {"df": row},
            "world_model": {"rows": {"unconditional": {"centroid_err_1_16": 8.0}, "actions + CFG 2": {"centroid_err_1_16": 8.0 / ratio}},
                            "ratio_unconditional_to_guided_1_16": ratio, "selected_cfg_scale": 2.0},
            "cache_speedup": {"speedup": {"window": speedup}}, "git_sha": sha, "command": "python benchmarks/video.py"}


def test_mean_and_sample_sd_over_seeds():
    agg = aggregate({0: _run(12.0, 1.0, 3.0), 1: _run(13.0, 2.0, 3.0), 2: _run(14.5, 1.5, 3.0)})
    df = agg["methods"]["df"]
    assert df["psnr_1_8"]["values"] == [12.0, 13.0, 14.5]
    assert df["psnr_1_8"]["mean"] == pytest.approx(13.1666666)
    assert df["psnr_1_8"]["sd"] == pytest.approx(statistics.stdev([12.0, 13.0, 14.5]))
    assert "per_segment" not in df and df["centroid_err_1_8"]["sd"] == 0.0
    assert df["sprites_73_80"]["values"] == pytest.approx([1.2, 1.3, 1.45])
    assert agg["world_model"]["ratio_unconditional_to_guided_1_16"]["mean"] == pytest.approx(1.5)
    assert agg["world_model"]["actions + CFG 2"]["values"] == pytest.approx([8.0, 4.0, 8.0 / 1.5])
    assert agg["cache_speedup"]["window"]["mean"] == pytest.approx(3.0)
    assert "13.17 ± 1.26" in markdown(agg, "short")


def test_runs_on_other_test_clips_or_budgets_are_refused():
    other = _run(13.0, 1.0, 3.0)
    other["meta"]["data"]["data_seed"] = 5
    with pytest.raises(ValueError, match="differ in meta.data.data_seed"):
        aggregate({0: _run(12.0, 1.0, 3.0), 1: other})
    longer = copy.deepcopy(_run(13.0, 1.0, 3.0))
    longer["meta"]["train"]["steps"] = 3000
    with pytest.raises(ValueError, match="differ in meta.train.steps"):
        aggregate({0: _run(12.0, 1.0, 3.0), 1: longer})


def test_a_run_without_data_seed_used_the_test_clips_of_seed_0():
    old = _run(12.0, 1.0, 3.0)
    del old["meta"]["data"]["data_seed"]
    assert aggregate({0: old, 1: _run(13.0, 1.0, 3.0)})["settings"]["meta.data.data_seed"] == 0


def test_file_names():
    assert [run_name("short", 0), run_name("short", 2), run_name("cpu", 1)] == ["video", "video_seed2", "video_cpu_seed1"]

"""The planner: training windows, flexible-horizon plans, checkpoints, MPC evaluation, plots, CLI."""

import json
import os

import numpy as np
import pytest
import torch

from dforce.planning.data import PlanningWindows, generate_dataset
from dforce.planning.evaluate import plot_episodes, run_episodes, summarize
from dforce.planning.planner import PlannerConfig, Planner, PlanSettings, TrainSettings, build_model, train_planner

TINY = dict(maze="umaze", width=16, depth=1, heads=2, tokens=4, frame_stack=2, frame_skip=2)


@pytest.fixture(scope="module")
def data():
    return generate_dataset("umaze", 1500, seed=0, progress=False)


@pytest.fixture(scope="module")
def planner(data):
    return train_planner(PlannerConfig(**TINY), data, TrainSettings(steps=3, batch_size=4, log_every=0), progress=False)


def test_windows_hold_the_repeated_start_then_skipped_frames():
    feats = np.arange(40, dtype=np.float32)[:, None].repeat(2, 1)
    w = PlanningWindows(feats, tokens=3, frame_stack=2, mean=np.zeros(2), std=np.ones(2), frame_skip=3)
    out = w.window(torch.tensor([5]), torch.tensor([2]))
    np.testing.assert_array_equal(out["x"][0, :, 0].numpy(), [5, 5, 8, 11, 14, 17])
    np.testing.assert_array_equal(out["mask"][0].numpy(), [True] * 4 + [False] * 2)
    batch = w.sample(16, torch.Generator().manual_seed(0))
    valid = batch["mask"].reshape(16, 3, 2).all(-1).sum(-1)
    assert valid.min() >= 2 and valid.max() <= 3
    with pytest.raises(ValueError, match="generate more data"):
        PlanningWindows(feats[:10], tokens=3, frame_stack=2, mean=np.zeros(2), std=np.ones(2), frame_skip=3)


def test_default_window_covers_the_d4rl_episode():
    for maze, tokens in (("umaze", 16), ("medium", 31), ("large", 41)):
        cfg = PlannerConfig(maze=maze)
        assert cfg.window() == tokens and (tokens - 1) * cfg.token_steps() >= {"umaze": 300, "medium": 600, "large": 800}[maze]
    assert build_model(PlannerConfig(**TINY)).causal is False


def test_plan_shapes_flexible_horizon_and_checkpoint_round_trip(planner, tmp_path):
    obs = np.array([[0.5, 1.0, 0.0, 0.0], [-1.0, -1.0, 0.1, 0.0]])
    goal = np.array([[-1.0, 1.0], [1.0, -1.0]])
    full = planner.plan(obs, goal, seed=0, steps=4)
    assert full.shape == (2, 3 * 2, 4)  # (tokens - 1) * frame_stack frames
    short = planner.plan(obs, goal, horizon=3, seed=0, steps=4, method="df")
    assert short.shape == (2, 2, 4)  # 3 steps -> one token of 2 frames (4 steps)
    fs = planner.plan(obs, goal, seed=0, steps=4, method="full_sequence", fs_horizon=8)
    assert fs.shape == (2, 4, 4)
    path = planner.save(str(tmp_path / "p.dfplan"))
    planner.save(path)  # overwrite in place
    back = Planner.from_checkpoint(path)
    np.testing.assert_allclose(back.plan(obs, goal, seed=0, steps=4), full, atol=1e-5)
    assert back.cfg == planner.cfg
    with pytest.raises(ValueError, match="unknown method"):
        planner.plan(obs, goal, method="greedy")
    with pytest.raises(ValueError, match="batch sizes differ"):
        planner.plan(obs, goal[:1])
    with pytest.raises(FileNotFoundError, match="dforce plan train"):
        Planner.from_checkpoint(str(tmp_path))


def test_lightning_trainer_path(data):
    p = train_planner(PlannerConfig(**TINY), data, TrainSettings(steps=2, batch_size=2, trainer="lightning"), progress=False)
    assert p.plan(np.zeros((1, 4)), np.ones((1, 2)), steps=2, method="df").shape == (1, 6, 4)
    with pytest.raises(ValueError, match="trainer must be"):
        train_planner(PlannerConfig(**TINY), data, TrainSettings(steps=1, trainer="keras"), progress=False)


def test_tracking_target_interpolates_and_pd_control(planner):
    obs = np.array([[0.0, 0.0, 0.0, 0.0]])
    plan = np.array([[[1.0, 0.0, 2.0, 0.0], [2.0, 0.0, 2.0, 0.0]]])
    np.testing.assert_allclose(planner.target(plan, obs, 0), obs)
    np.testing.assert_allclose(planner.target(plan, obs, 1), [[0.5, 0.0, 1.0, 0.0]])  # frame_skip = 2
    np.testing.assert_allclose(planner.target(plan, obs, 2), plan[:, 0])
    np.testing.assert_allclose(planner.target(plan, obs, 99), plan[:, -1])
    a = planner.control(np.array([[0.0, 0.0, 0.25, 0.0]]), np.array([[0.02, -0.01, 0.5, 0.0]]))
    np.testing.assert_allclose(a, [[12.5 * 0.02 + 1.2 * 0.25, -0.125]])
    assert np.abs(planner.control(obs, np.array([[5.0, -5.0, 0.0, 0.0]]))).max() == 1.0


def test_mpc_episodes_metrics_and_plot(planner, tmp_path):
    s = PlanSettings(method="df_mcg", steps=3, mc_samples=2)
    r = run_episodes(planner, episodes=2, seed=0, replan_every=10, settings=s, episode_len=20, record=True)
    assert r["episode_reward"].shape == (2,) and r["trajectories"].shape == (2, 21, 4)
    assert len(r["plans"]) == 2
    reached = r["first_reach"] >= 0
    np.testing.assert_array_equal(r["success"], reached)
    assert (r["episode_reward"] <= 20).all() and (r["episode_reward"][~reached] == 0).all()
    summary = summarize([r, r])
    assert summary["episodes"] == 4 and 0.0 <= summary["success_rate"] <= 1.0
    png = plot_episodes(r, str(tmp_path / "plot.png"), max_episodes=2)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_generate_train_eval(tmp_path):
    from dforce.cli.plan import main

    d, ck, out = str(tmp_path / "d.npz"), str(tmp_path / "m.dfplan"), str(tmp_path / "e.json")
    assert main(["generate-data", "--maze", "umaze", "--steps", "600", "--out", d, "--progress", "false"]) == 0
    tiny = [f"--model.{k}={v}" for k, v in TINY.items()]
    assert main(["train", "--data", d, "--out", ck, *tiny, "--train.steps", "2", "--train.batch_size", "2", "--progress", "false"]) == 0
    assert main(["eval", "--checkpoint", ck, "--episodes", "2", "--episode_len", "8", "--replan_every", "4",
                 "--plan.method", "df", "--plan.steps", "2", "--setting", "random", "--out", out]) == 0
    with open(out) as f:
        summary = json.load(f)
    assert summary["method"] == "df" and summary["episodes"] == 2 and "normalized_score" in summary
    assert os.path.isdir(ck)
    with pytest.raises(SystemExit):
        main(["train", "--data", d])  # --out is required

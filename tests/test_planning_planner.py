"""The planner: training windows, flexible-horizon plans, checkpoints, MPC evaluation, plots, CLI."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from dforce.planning.data import PlanningWindows, generate_dataset
from dforce.planning.evaluate import plot_episodes, run_episodes, summarize
from dforce.planning.planner import PlannerConfig, Planner, PlanSettings, build_model, planner_train_config, train_planner

TINY = dict(maze="umaze", width=16, depth=1, heads=2, tokens=4, frame_stack=2, frame_skip=2)


@pytest.fixture(scope="module")
def data():
    return generate_dataset("umaze", 1500, seed=0, progress=False)


@pytest.fixture(scope="module")
def planner(data):
    return train_planner(PlannerConfig(**TINY), data, _quick(max_steps=3, batch_size=4))


def _quick(**kw):
    return planner_train_config(**{"warmup_steps": 1, "logger": "none", "progress": False, "precision": "32-true", **kw})


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


def test_plan_shapes_flexible_horizon_and_export_round_trip(planner, tmp_path):
    obs = np.array([[0.5, 1.0, 0.0, 0.0], [-1.0, -1.0, 0.1, 0.0]])
    goal = np.array([[-1.0, 1.0], [1.0, -1.0]])
    full = planner.plan(obs, goal, seed=0, steps=4)
    assert full.shape == (2, 3 * 2, 4)  # (tokens - 1) * frame_stack frames
    short = planner.plan(obs, goal, horizon=3, seed=0, steps=4, method="df")
    assert short.shape == (2, 2, 4)  # 3 steps -> one token of 2 frames (4 steps)
    fs = planner.plan(obs, goal, seed=0, steps=4, method="full_sequence", fs_horizon=8)
    assert fs.shape == (2, 4, 4)
    path = planner.save(str(tmp_path / "p"))
    planner.save(path)  # overwrite in place
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]  # export_model's folder, no pickle
    back = Planner.from_checkpoint(path)
    assert back.cfg == planner.cfg
    for kw in (dict(steps=4), dict(steps=4, method="df", horizon=3), dict(steps=4, method="full_sequence", fs_horizon=8)):
        np.testing.assert_array_equal(back.plan(obs, goal, seed=0, **kw), planner.plan(obs, goal, seed=0, **kw))
    with pytest.raises(ValueError, match="unknown method"):
        planner.plan(obs, goal, method="greedy")
    with pytest.raises(TypeError, match="unknown planning option"):
        planner.plan(obs, goal, stepz=3)
    with pytest.raises(ValueError, match="chunk_size does not apply"):
        planner.plan(obs, goal, chunk_size=1)
    with pytest.raises(ValueError, match="batch sizes differ"):
        planner.plan(obs, goal[:1])
    with pytest.raises(FileNotFoundError, match="dforce plan train"):
        Planner.from_checkpoint(str(tmp_path))
    from dforce.training import export_model

    other = export_model(build_model(planner.cfg), tmp_path / "plain")  # a dforce model, not a planner
    with pytest.raises(ValueError, match="not a planner.*dforce plan train"):
        Planner.from_checkpoint(str(other))


def test_old_dfplan_folders_load_and_broken_ones_fail_in_one_line(planner, tmp_path):
    from dataclasses import asdict

    from safetensors.torch import save_file

    old = tmp_path / "old.dfplan"  # the format before the planner moved onto the core
    old.mkdir()
    save_file({k: v.contiguous() for k, v in planner.model.state_dict().items()}, str(old / "model.safetensors"))
    meta = {"config": asdict(planner.cfg), "mean": planner.mean.tolist(), "std": planner.std.tolist(), "extra": {}}
    (old / "planner.json").write_text(json.dumps(meta))
    obs, goal = np.zeros((1, 4)), np.ones((1, 2))
    np.testing.assert_array_equal(Planner.from_checkpoint(str(old)).plan(obs, goal, seed=1, steps=3),
                                  planner.plan(obs, goal, seed=1, steps=3))
    (old / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="old-format planner.*retrain it with `dforce plan train`"):
        Planner.from_checkpoint(str(old))


def test_start_and_goal_are_the_cores_known_tokens(planner):
    """Spy on the network: the start token is context at level 0 holding the observation; the
    padding stays at pure noise; full_sequence feeds start and goal at the plan's level."""
    from dforce.testing import SpyBackbone

    spy = SpyBackbone(planner.model.backbone)
    planner.model.backbone = spy
    try:
        obs, goal = np.array([[0.5, 1.0, 0.2, -0.1]]), np.array([[-1.0, 1.0]])
        start = planner._normalize(planner.start_features(torch.tensor(obs, dtype=torch.float32))).repeat(1, 2)
        goal_tok = planner._normalize(planner.goal_features(torch.tensor(goal, dtype=torch.float32))).repeat(1, 2)
        planner.plan(obs, goal, horizon=3, seed=0, steps=3, method="df", guidance_scale=0.0)  # 1 plan token of 4 tokens
        assert len(spy.calls) == 3
        for c in spy.calls:
            assert torch.all(c["t"][:, 0] == 0) and torch.allclose(c["x"][:, 0], start)
            assert torch.all(c["t"][:, 2:] == 1)  # padding
        assert [float(c["t"][0, 1]) for c in spy.calls] == pytest.approx([1.0, 2 / 3, 1 / 3])
        spy.calls.clear()
        planner.plan(obs, goal, seed=0, steps=2, method="full_sequence", fs_horizon=8)  # h = 2: goal at token 2
        assert len(spy.calls) == 2
        for c, level in zip(spy.calls, (1.0, 0.5)):
            assert torch.allclose(c["t"][0, :3], torch.full((3,), level)) and float(c["t"][0, 3]) == 1.0
            assert torch.allclose(c["x"][:, 0], start) and torch.allclose(c["x"][:, 2], goal_tok)
    finally:
        planner.model.backbone = spy.inner


def test_the_default_goal_reward_is_squashed_as_the_reference_planners(planner, monkeypatch):
    """The guidance reward gets ``squash`` = 2 (the reference's ``tanh(d / 2)``) unless told otherwise."""
    import dforce.planning.planner as mod

    seen, real = [], mod.goal_reward
    monkeypatch.setattr(mod, "goal_reward", lambda *a, **kw: seen.append(kw["squash"]) or real(*a, **kw))
    obs, goal = np.array([[0.5, 1.0, 0.2, -0.1]]), np.array([[-1.0, 1.0]])
    planner.plan(obs, goal, horizon=3, seed=0, steps=2, method="df")
    assert seen and set(seen) == {2.0} and PlanSettings().guidance_scale > 0
    seen.clear()
    planner.plan(obs, goal, horizon=3, seed=0, steps=2, method="df", squash=None)
    assert seen and set(seen) == {None}


def test_mc_gradient_reaches_the_guidance_and_is_checked(planner, monkeypatch):
    import dforce.planning.planner as mod

    seen, real = [], mod.RewardGuidance
    monkeypatch.setattr(mod, "RewardGuidance", lambda *a, **kw: seen.append((a[2], kw["mc_gradient"])) or real(*a, **kw))
    obs, goal = np.array([[0.5, 1.0, 0.2, -0.1]]), np.array([[-1.0, 1.0]])
    planner.plan(obs, goal, horizon=3, seed=0, steps=2, method="df_mcg", mc_samples=3, mc_gradient="direct")
    planner.plan(obs, goal, horizon=3, seed=0, steps=2, method="df_mcg")
    assert seen == [(3, "direct"), (4, "through")]
    with pytest.raises(ValueError, match="mc_gradient must be one of"):
        PlanSettings(mc_gradient="chain").check()


def test_training_goes_through_the_core_with_the_start_token_rule(data, tmp_path):
    from dforce.testing import SpyBackbone

    cfg = PlannerConfig(**TINY)
    m = build_model(cfg)
    assert (m.known_start_prob, m.known_start_level) == (0.5, 0.25)
    assert build_model(PlannerConfig(**{**TINY, "training_noise": "full_sequence"})).known_start_prob == 0.0
    spy = SpyBackbone(m.backbone)
    m.backbone = spy
    m.loss(torch.zeros(256, 8, 4), generator=torch.Generator().manual_seed(0))
    low = spy.calls[0]["t"][:, 0] < 0.25
    assert 0.5 < float(low.float().mean()) < 0.75  # 0.5 redrawn in [0, 0.25) + 0.5 * 0.25 by chance
    p = train_planner(cfg, data, _quick(max_steps=2, batch_size=2, out_dir=str(tmp_path / "run"), logger="csv"))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # Lightning's resumable checkpoint
    assert p.extra["train"]["max_steps"] == 2
    assert p.plan(np.zeros((1, 4)), np.ones((1, 2)), steps=2, method="df").shape == (1, 6, 4)


def test_a_planner_depends_on_its_seed_not_on_the_callers_rng_state(data):
    cfg, config = PlannerConfig(**TINY), _quick(max_steps=1, batch_size=2, seed=3)
    torch.manual_seed(0)
    a = train_planner(cfg, data, config)
    torch.rand(100)  # a caller that drew numbers before (e.g. trained another planner)
    b = train_planner(cfg, data, config)
    c = train_planner(cfg, data, _quick(max_steps=1, batch_size=2, seed=4))
    wa, wb, wc = (p.model.state_dict() for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_plan_on_cuda(planner, tmp_path):
    path = planner.save(str(tmp_path / "p"))
    gpu = Planner.from_checkpoint(path, device="cuda")
    assert next(gpu.model.parameters()).is_cuda
    obs, goal = np.zeros((2, 4)), np.ones((2, 2))
    for method in ("df_mcg", "df", "full_sequence"):
        out = gpu.plan(obs, goal, seed=0, steps=3, method=method, mc_samples=2, fs_horizon=8)
        assert isinstance(out, np.ndarray) and np.isfinite(out).all()
        np.testing.assert_allclose(out, gpu.plan(obs, goal, seed=0, steps=3, method=method, mc_samples=2, fs_horizon=8))
    r = run_episodes(gpu, episodes=1, seed=0, replan_every=4, settings=PlanSettings(method="df"), episode_len=4)
    assert r["trajectories"].shape == (1, 5, 4)


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


def test_pace_tracks_the_plan_further_ahead_at_a_scaled_velocity(planner, monkeypatch):
    obs = np.array([[0.0, 0.0, 0.0, 0.0]])
    plan = np.array([[[1.0, 0.0, 2.0, 0.0], [2.0, 0.0, 2.0, 0.0], [3.0, 0.0, 1.0, 0.0]]])
    np.testing.assert_allclose(planner.target(plan, obs, 1, pace=2.0), [[1.0, 0.0, 4.0, 0.0]])  # frame_skip 2: one frame
    np.testing.assert_allclose(planner.target(plan, obs, 3, pace=1.5), [[2.25, 0.0, 2.625, 0.0]])  # 4.5 steps: frame 1.25
    np.testing.assert_allclose(planner.target(plan, obs, 99, pace=2.0), [[3.0, 0.0, 2.0, 0.0]])  # past the end: the last frame
    np.testing.assert_allclose(plan[0, -1], [3.0, 0.0, 1.0, 0.0])  # the plan is not modified
    monkeypatch.setattr(planner, "cfg", dataclasses.replace(planner.cfg, state="pos_vel_act"))
    with pytest.raises(ValueError, match="pace 2.0 applies to PD tracking.*use pace=1"):
        planner.target(plan, obs, 1, pace=2.0)


def test_run_episodes_tracks_at_the_settings_pace_and_pace_is_checked(planner, monkeypatch):
    seen = []
    target = planner.target
    monkeypatch.setattr(planner, "target", lambda plan, plan_obs, j, pace: seen.append((j, pace)) or target(plan, plan_obs, j, pace))
    run_episodes(planner, episodes=1, replan_every=3, settings=PlanSettings(method="df", pace=1.5).with_overrides(steps=2), episode_len=5)
    assert seen == [(1, 1.5), (2, 1.5), (3, 1.5), (1, 1.5), (2, 1.5)]
    with pytest.raises(ValueError, match="pace must be > 0"):
        PlanSettings(pace=0.0).check()


def test_mpc_episodes_metrics_and_plot(planner, tmp_path):
    s = PlanSettings(method="df_mcg", mc_samples=2).with_overrides(steps=3)
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


@pytest.mark.parametrize("hold", [True, False])
def test_an_episode_at_its_goal_is_held_by_pd_control_instead_of_plans(planner, monkeypatch, hold):
    """Episode 0 reaches its goal at step 7 (a stubbed reward): with ``hold`` the plans at steps 10
    and 15 leave it out (NaN rows) and its actions from step 7 on are PD control at the goal."""
    import dforce.planning.evaluate as ev

    sizes, acts, plan = [], [], planner.plan
    planner.plan = lambda obs, *a, **k: sizes.append(len(obs)) or plan(obs, *a, **k)
    real_step = ev.PointMaze.step
    monkeypatch.setattr(ev.PointMaze, "step", lambda self, a: acts.append(a[0].copy()) or real_step(self, a))
    monkeypatch.setattr(ev.PointMaze, "reward", lambda self, obs, goal: np.where(np.arange(len(obs)) == 0, float(len(acts) >= 7), 0.0))
    try:
        r = run_episodes(planner, episodes=2, seed=0, replan_every=5, settings=PlanSettings(method="df").with_overrides(steps=2),
                         episode_len=20, record=True, hold=hold)
    finally:
        del planner.plan
    assert r["first_reach"][0] == 7 and r["first_reach"][1] == -1 and r["hold"] is hold
    assert sizes == ([2, 2, 1, 1] if hold else [2, 2, 2, 2])
    assert [bool(np.isnan(p[0]).all()) for _, p in r["plans"]] == [False, False, hold, hold]
    assert not any(np.isnan(p[1]).any() for _, p in r["plans"])
    obs, goal = r["trajectories"][0], r["goals"][0]
    at_goal = [np.allclose(a, np.clip(12.5 * (goal - o[:2]) - 1.2 * o[2:], -1, 1), atol=1e-6) for a, o in zip(acts, obs)]
    assert all(at_goal[7:]) if hold else not all(at_goal[7:])


def test_full_sequence_plans_once_per_episode_by_default(planner):
    calls = []
    plan = planner.plan
    planner.plan = lambda *a, **k: calls.append(k["horizon"]) or plan(*a, **k)
    try:
        fs = run_episodes(planner, episodes=1, settings=PlanSettings(method="full_sequence").with_overrides(steps=2), episode_len=30)
        df = run_episodes(planner, episodes=1, settings=PlanSettings(method="df").with_overrides(steps=2), episode_len=120)
    finally:
        del planner.plan
    assert fs["replan_every"] == 30 and df["replan_every"] == 50  # Diffuser's protocol; DF replans every 50 steps
    assert calls == [30, 120, 70, 20]


def test_straight_to_goal_floor_is_pd_control_at_the_goal():
    from dforce.planning.env import MAZES, PointMaze
    from dforce.planning.planner import pd_control

    r = run_episodes(None, "umaze", episodes=3, seed=4, episode_len=300)
    assert r["method"] == "straight_to_goal" and r["settings"] is None
    with PointMaze("umaze", 3) as env:  # the same loop by hand
        obs = env.reset(np.random.default_rng(4), "single_goal")
        g, R = env.goal.copy(), np.zeros(3)
        for _ in range(300):
            obs = env.step(np.clip(12.5 * (g - obs[:, :2]) - 1.2 * obs[:, 2:4], -1, 1))
            R += env.reward(obs, g)
    np.testing.assert_array_equal(r["episode_reward"], R)
    np.testing.assert_allclose(pd_control(np.array([[0.0, 0, 1, 0]]), np.array([[0.05, 0.0]])), [[0.625 - 1.2, 0.0]])
    with pytest.raises(ValueError, match="needs maze="):
        run_episodes(None)


def test_a_custom_layout_trains_and_evaluates_with_success_rate_only():
    maze = '[[1,1,1,1,1],[1,0,0,"g",1],[1,0,1,0,1],[1,0,0,0,1],[1,1,1,1,1]]'
    cfg = PlannerConfig(**{**TINY, "maze": maze, "tokens": None})
    assert cfg.window() == 200 // 4 + 1  # the layout's 200-step episode in tokens of 2 x 2 steps, + the start token
    p = train_planner(PlannerConfig(**{**TINY, "maze": maze}), generate_dataset(maze, 800, seed=0, progress=False), _quick(max_steps=2, batch_size=4))
    r = run_episodes(p, episodes=2, seed=0, replan_every=10, settings=PlanSettings(method="df").with_overrides(steps=2), episode_len=20)
    assert r["maze"] == maze and np.isnan(r["normalized_score"]).all()
    summary = summarize([r])
    assert summary["normalized_score"] is None and 0.0 <= summary["success_rate"] <= 1.0


def test_cli_generate_train_eval(tmp_path, capsys):
    from dforce.cli.plan import main

    d, ck, out = str(tmp_path / "d.npz"), str(tmp_path / "m"), str(tmp_path / "e.json")
    assert main(["generate-data", "--maze", "umaze", "--steps", "600", "--out", d, "--progress", "false"]) == 0
    tiny = [f"--model.{k}={v}" for k, v in TINY.items()]
    assert main(["train", "--data", d, "--out", ck, *tiny, "--train.max_steps", "2", "--train.batch_size", "2",
                 "--train.progress", "false", "--train.logger", "none"]) == 0
    assert main(["eval", "--checkpoint", ck, "--episodes", "2", "--episode_len", "8", "--replan_every", "4",
                 "--plan.method", "df", "--plan.sampling.steps", "2", "--setting", "random", "--hold", "false", "--out", out]) == 0
    with open(out) as f:
        summary = json.load(f)
    assert summary["method"] == "df" and summary["episodes"] == 2 and "normalized_score" in summary and summary["hold"] is False
    assert os.path.isfile(os.path.join(ck, "config.json"))
    with pytest.raises(SystemExit):
        main(["train", "--data", d])  # --out is required
    os.remove(os.path.join(ck, "model.safetensors"))
    os.rename(os.path.join(ck, "config.json"), os.path.join(ck, "planner.json"))  # a broken old-format folder
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert main(["eval", "--checkpoint", ck, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", ck, "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "retrain it with `dforce plan train`" in err

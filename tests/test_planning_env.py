"""PointMaze wrapper, D4RL waypoint controller, and the maze2d dataset generator."""

import glob
import os
import tempfile

import numpy as np
import pytest

from dforce.planning.data import generate_dataset, load_dataset, save_dataset
from dforce.planning.env import MAZES, PointMaze, WaypointController, normalized_score, shortest_path


def test_direct_mujoco_stepping_matches_gym_step_bit_for_bit():
    with PointMaze("umaze") as env:
        obs, _ = env.env.reset(seed=3)
        env.set_state(0, obs["observation"][:2], obs["observation"][2:])
        rng = np.random.default_rng(0)
        for _ in range(200):
            a = rng.uniform(-2.0, 2.0, 2)  # out-of-range actions are clipped by both
            ref = env.env.step(a)[0]["observation"]
            ours = env.step(a[None])[0]
            np.testing.assert_array_equal(ours, ref)


def test_temporary_xml_is_removed_on_close():
    env = PointMaze("medium")
    path = env._xml
    assert path.startswith(tempfile.gettempdir()) and os.path.exists(path)
    env.close()
    assert not os.path.exists(path)
    env.close()  # idempotent


def test_cell_xy_round_trip_and_free_cells():
    with PointMaze("large") as env:
        cells = np.array(env.free_cells)
        assert len(cells) == int((env.grid == 0).sum())
        xy = env.cell_to_xy(cells)
        np.testing.assert_array_equal(env.xy_to_cell(xy + 0.3), cells)
        np.testing.assert_allclose(env.cell_to_xy([1, 1]), env.maze.cell_rowcol_to_xy(np.array([1, 1])))
        assert env.is_free(xy).all()
        assert not env.is_free(env.cell_to_xy([0, 0]))


def test_shortest_path_on_umaze_and_error_for_walls():
    grid = np.array([[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]])
    path = shortest_path(grid, (1, 1), (3, 1))
    assert path == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]
    with pytest.raises(ValueError, match="wall"):
        shortest_path(grid, (0, 0), (1, 1))


def test_waypoint_controller_reaches_the_goal_around_the_u():
    with PointMaze("umaze") as env:
        obs = env.set_state(0, env.cell_to_xy([3, 1]))
        goal = env.cell_to_xy([1, 1])
        ctrl = WaypointController(env)
        for step in range(600):
            a, done = ctrl.act(obs, goal)
            if done:
                break
            obs = env.step(a[None])[0]
        assert done and np.linalg.norm(obs[:2] - goal) < 0.1
        assert env.is_free(obs[:2])


def test_normalized_score_reference_points():
    for name, spec in MAZES.items():
        assert normalized_score(name, spec.ref_min) == pytest.approx(0.0)
        assert normalized_score(name, spec.ref_max) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="unknown maze"):
        normalized_score("huge", 1.0)


def test_generate_save_load_dataset(tmp_path):
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "ant_maze*.xml")))
    data = generate_dataset("umaze", 3000, seed=1, progress=False)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "ant_maze*.xml"))) <= before
    assert data["observations"].shape == (3000, 4) and data["actions"].shape == (3000, 2)
    assert np.abs(data["actions"]).max() <= 1.0
    assert data["goal_reached"].sum() >= 3  # the controller keeps reaching new random goals
    with PointMaze("umaze") as env:
        assert env.is_free(data["observations"][:, :2]).all()
    # the goal changes right after each reach, and only then
    changed = np.any(data["goals"][1:] != data["goals"][:-1], axis=1)
    np.testing.assert_array_equal(changed, data["goal_reached"][:-1])
    path = save_dataset(str(tmp_path / "d.npz"), data)
    assert os.listdir(tmp_path) == ["d.npz"]
    back = load_dataset(path)
    np.testing.assert_array_equal(back["observations"], data["observations"])
    assert back["meta"]["maze"] == "umaze" and back["meta"]["steps"] == 3000
    with pytest.raises(FileNotFoundError, match="generate-data"):
        load_dataset(str(tmp_path / "missing.npz"))


CUSTOM = '[[1,1,1,1,1],[1,0,0,"g",1],[1,0,1,0,1],[1,0,0,0,1],[1,1,1,1,1]]'


def test_every_registered_layout_and_a_custom_map_build_and_reset():
    from dforce.planning.env import maze_names, maze_spec

    for name in maze_names():
        with PointMaze(name, num_envs=2) as env:
            obs = env.reset(np.random.default_rng(0), "random")
            assert obs.shape == (2, 4) and env.is_free(obs[:, :2]).all() and env.is_free(env.goal).all()
    assert maze_spec("PointMaze_Open-v3") == maze_spec("open") and maze_spec("PointMaze_Medium-v3") == MAZES["medium"]
    with PointMaze(CUSTOM) as env:
        np.testing.assert_array_equal(env.grid, [[1] * 5, [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [1] * 5])
        env.reset(np.random.default_rng(0), "single_goal")
        np.testing.assert_allclose(env.goal[0], env.cell_to_xy([1, 3]))  # the map's 'g' cell
    with PointMaze("open") as env, pytest.raises(ValueError, match="no goal cell.*setting='random'"):
        env.reset(np.random.default_rng(0), "single_goal")


def test_layout_episode_length_scores_and_errors(tmp_path):
    from dforce.planning.env import maze_diameter, maze_spec

    ring = np.array([[1] * 5, [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [1] * 5])
    assert maze_diameter(ring) == 4  # opposite corners of the ring
    assert maze_spec(CUSTOM).episode_len == 200  # 40 (4 + 1) rounded up to 100
    for name in MAZES:  # the formula against D4RL's lengths: 300 / 500 (D4RL 600) / 800
        with PointMaze(name) as env:
            assert int(np.ceil(40 * (maze_diameter(env.grid) + 1) / 100) * 100) == {"umaze": 300, "medium": 500, "large": 800}[name]
    assert np.isnan(normalized_score(CUSTOM, 10.0)) and np.isnan(normalized_score("open", 10.0))
    f = tmp_path / "m.json"
    f.write_text(CUSTOM)
    assert maze_spec(str(f)).maze_map == maze_spec(CUSTOM).maze_map
    for bad, msg in (("[[1,1],[1,0]]", "at least 3 equal rows"), ('[[1,1,1],[1,"x",1],[1,1,1]]', "'x'"),
                     ("[[1,1,1],[1,1,1],[1,1,1]]", "no free cell"), ("[[1,1,1],[1,0", "JSON maze map"),
                     (str(tmp_path / "none.json"), "does not exist")):
        with pytest.raises(ValueError, match=msg):
            maze_spec(bad)

"""Episode statistics of the planning evaluation (``dforce.planning.evaluate``)."""

import numpy as np
import pytest

from dforce.planning.env import PointMaze
from dforce.planning.evaluate import paired_difference, wall_checks


def _run(scores, seed, success=None):
    scores = np.asarray(scores, dtype=float)
    return {"maze": "umaze", "setting": "single_goal", "seed": seed, "episodes": len(scores), "normalized_score": scores,
            "success": scores > 0 if success is None else np.asarray(success)}


def test_paired_difference_matches_its_closed_form_and_beats_the_unpaired_error():
    rng = np.random.default_rng(0)
    luck = rng.normal(0, 50, size=(2, 40))  # per-start luck both methods share
    a = [_run(luck[i] + 5 + rng.normal(0, 5, 40), seed=i) for i in range(2)]
    b = [_run(luck[i] + rng.normal(0, 5, 40), seed=i) for i in range(2)]
    x = np.concatenate([r["normalized_score"] for r in a])
    y = np.concatenate([r["normalized_score"] for r in b])
    d = paired_difference(a, b)
    assert d["episodes"] == 80
    assert d["mean"] == pytest.approx((x - y).mean())
    assert d["sem"] == pytest.approx((x - y).std() / np.sqrt(79))
    assert d["sem_unpaired"] == pytest.approx(np.sqrt(x.var() / 79 + y.var() / 79))
    assert d["correlation"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    # shared luck cancels in the paired error only: the +5 shift is many paired SEs but under one unpaired SE
    assert d["mean"] > 5 * d["sem"] and d["mean"] < d["sem_unpaired"]


def test_paired_difference_of_success_is_the_success_rate_difference():
    a = [_run([1, 1, 0, 1], seed=0, success=[True, True, False, True])]
    b = [_run([1, 0, 0, 1], seed=0, success=[True, False, False, True])]
    d = paired_difference(a, b, "success")
    assert d["mean"] == pytest.approx(0.25)


def test_paired_difference_refuses_runs_from_different_starts():
    with pytest.raises(ValueError, match="same maze, setting, seeds"):
        paired_difference([_run([1.0, 2.0], seed=0)], [_run([1.0, 2.0], seed=1)])
    with pytest.raises(ValueError, match="same maze, setting, seeds"):
        paired_difference([_run([1.0, 2.0], seed=0)], [])


def test_wall_checks_see_frames_in_walls_and_segments_through_them():
    with PointMaze("umaze") as env:  # the U: (1, 1) (1, 2) (1, 3) (2, 3) (3, 3) (3, 2) (3, 1); (2, 1) and (2, 2) are walls
        c = lambda *cells: env.cell_to_xy(np.array(cells))  # noqa: E731
        start = c([1, 1], [1, 1], [1, 1])
        plans = np.stack([c([1, 2], [1, 3], [2, 3], [3, 3]),    # around the U
                          c([1, 2], [1, 2], [3, 2], [3, 1]),    # jumps the wall: every frame free, a segment is not
                          c([1, 2], [2, 2], [3, 2], [3, 1])])   # a frame in the wall
        free, clear = wall_checks(env, start, plans)
    np.testing.assert_array_equal(free, [[True] * 4, [True] * 4, [True, False, True, True]])
    np.testing.assert_array_equal(clear, [True, False, False])

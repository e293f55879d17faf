"""Dynamical systems generated on the spot."""

import numpy as np
import pytest

from dforce.dynamics.systems import double_well, generate, kuramoto_sivashinsky


def test_double_well_is_bimodal_and_hops():
    x = double_well(64, 600, seed=0)
    assert x.shape == (64, 600, 2) and np.isfinite(x).all()
    pos = x[..., 0]
    # two wells at +-1: little mass at 0, both signs visited, each path crosses over
    assert 0.35 < (pos > 0).mean() < 0.65
    assert np.mean(np.abs(pos) < 0.2) < np.mean(np.abs(np.abs(pos) - 1) < 0.2)
    assert (np.diff(np.sign(pos), axis=1) != 0).any(1).mean() > 0.5


def test_kuramoto_sivashinsky_is_a_bounded_chaotic_field():
    u = kuramoto_sivashinsky(2, 200, n=64, seed=0)
    assert u.shape == (2, 200, 64) and np.isfinite(u).all()
    assert 0.8 < u.std() < 1.6 and abs(u.mean()) < 0.2  # the L=22 attractor's amplitude, zero mean
    # periodic, smooth in space: neighbouring points correlate strongly
    corr = np.corrcoef(u[..., :-1].ravel(), u[..., 1:].ravel())[0, 1]
    assert corr > 0.9
    # chaotic: two nearby starts decorrelate
    a, b = kuramoto_sivashinsky(1, 150, seed=1), kuramoto_sivashinsky(1, 150, seed=2)
    assert np.abs(a[0, -1] - b[0, -1]).mean() > 0.3


def test_generate_validates():
    with pytest.raises(ValueError, match="unknown system"):
        generate("rossler", 1, 10)

"""Rollout metrics: closed forms."""

import numpy as np

from dforce.dynamics.metrics import (
    clip_diverged,
    crps_ensemble,
    diverged_fraction,
    roughness_ratio,
    spectrum_distance,
)


def test_crps_closed_forms():
    truth = np.zeros((3, 5))
    # a one-member ensemble: CRPS = absolute error
    assert np.isclose(crps_ensemble(np.full((3, 1, 5), 2.0), truth), 2.0)
    # two members at -1 and +1 around 0: E|X - y| = 1, E|X - X'| = 1 -> 0.5
    pred = np.stack([np.full((3, 5), -1.0), np.full((3, 5), 1.0)], 1)
    assert np.isclose(crps_ensemble(pred, truth), 0.5)


def test_roughness_ratio_sees_high_frequency_noise():
    t = np.linspace(0, 20, 400)
    smooth = np.sin(t)[None, :, None].repeat(4, 0)
    assert np.isclose(roughness_ratio(smooth, smooth), 1.0)
    assert np.isclose(roughness_ratio(2 * smooth, smooth), 4.0)  # second differences scale linearly
    jagged = smooth + 0.05 * np.random.default_rng(0).normal(size=smooth.shape)
    assert roughness_ratio(jagged, smooth) > 50


def test_divergence_and_clipping():
    x = np.zeros((4, 10, 2))
    x[1, 3, 0] = np.nan
    x[2, 5, 1] = 11.0
    assert diverged_fraction(x) == 0.5
    c = clip_diverged(x)
    assert np.isfinite(c).all() and c[1, 3, 0] == 50.0


def test_spectrum_distance_zero_for_same_law_and_grows_with_smoothing():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 64))
    b = rng.normal(size=(2000, 64))
    assert spectrum_distance(a, b) < 0.05
    smoothed = (b + np.roll(b, 1, -1)) / 2  # damps high wavenumbers
    assert spectrum_distance(smoothed, a) > 0.3


def test_spectrum_distance_floors_modes_without_energy_at_a_fraction_of_the_reference_power():
    # a reference with power only in wavenumber 1 and a copy with 1e-9 relative noise everywhere:
    # the floor (1e-6 of the reference's power) hides the noise; without it the empty modes dominate
    n = np.arange(64)
    ref = np.stack([np.sin(2 * np.pi * (n + s) / 64) for s in range(16)])
    noisy = ref + 1e-9 * np.random.default_rng(0).normal(size=ref.shape)
    assert spectrum_distance(noisy, ref) < 1e-3
    assert spectrum_distance(noisy, ref, floor=1e-30) > 5
    # noise at 1e-2 of the amplitude (6e-6 of the power in each empty mode) sits above the floor and counts
    assert spectrum_distance(ref + 1e-2 * np.random.default_rng(1).normal(size=ref.shape), ref) > 0.5

"""Dynamical systems generated on the spot (numpy, seconds on a CPU) for the dynamics benchmark.

- :func:`lorenz63`: the chaotic Lorenz-63 attractor (3 dims, RK4);
- :func:`double_well`: a stochastic double-well (Duffing) oscillator (2 dims, Euler-Maruyama);
  its answer is a distribution: noise makes it hop between the two wells, so a single path
  cannot be predicted past a few steps and only the bimodal stationary law can be checked;
- :func:`kuramoto_sivashinsky`: the 1-D Kuramoto-Sivashinsky field ``u_t = -u u_x - u_xx - u_xxxx``
  on a periodic domain, ``n`` grid points (ETDRK4, Kassam & Trefethen 2005): a chaotic,
  high-dimensional field.

Every generator returns float32 trajectories ``[n_traj, n_steps, dim]`` already on their
attractor / stationary law (after a burn-in).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SYSTEMS", "SYSTEM_DIMS", "double_well", "generate", "kuramoto_sivashinsky", "lorenz63"]


def lorenz63(
    n_traj: int,
    n_steps: int,
    dt: float = 0.01,
    stride: int = 1,
    burn_in: int = 1000,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    seed: int = 0,
) -> np.ndarray:
    """``n_traj`` trajectories [n_traj, n_steps, 3], every ``stride``-th RK4 step of size ``dt``,
    after ``burn_in`` steps that bring random starts onto the attractor."""

    def f(s: np.ndarray) -> np.ndarray:
        x, y, z = s[:, 0], s[:, 1], s[:, 2]
        return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], 1)

    rng = np.random.default_rng(seed)
    s = rng.normal(0, 1, (n_traj, 3)) + np.array([0.0, 0.0, 25.0])
    out = np.empty((n_traj, n_steps, 3), dtype=np.float32)
    total = burn_in + n_steps * stride
    for i in range(total):
        k1 = f(s)
        k2 = f(s + 0.5 * dt * k1)
        k3 = f(s + 0.5 * dt * k2)
        k4 = f(s + dt * k3)
        s = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        j = i - burn_in
        if j >= 0 and j % stride == 0:
            out[:, j // stride] = s
    return out


def double_well(
    n_traj: int,
    n_steps: int,
    dt: float = 0.01,
    stride: int = 10,
    gamma: float = 0.5,
    noise: float = 0.7,
    burn_in: int = 5000,
    seed: int = 0,
) -> np.ndarray:
    """``dx = v dt``, ``dv = (x - x^3 - gamma v) dt + noise dW``; states ``(x, v)`` every ``stride`` steps."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n_traj)
    v = rng.normal(0, 1, n_traj)
    out = np.empty((n_traj, n_steps, 2), dtype=np.float32)
    sq = noise * np.sqrt(dt)
    for i in range(burn_in + n_steps * stride):
        x, v = x + dt * v, v + dt * (x - x**3 - gamma * v) + sq * rng.normal(size=n_traj)
        j = i - burn_in
        if j >= 0 and j % stride == 0:
            out[:, j // stride, 0], out[:, j // stride, 1] = x, v
    return out


def kuramoto_sivashinsky(
    n_traj: int,
    n_steps: int,
    n: int = 64,
    length: float = 22.0,
    dt: float = 0.25,
    stride: int = 4,
    burn_in: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """KS field on ``n`` points of a periodic domain of ``length`` (22: chaotic), every ``stride`` ETDRK4 steps."""
    rng = np.random.default_rng(seed)
    k = 2 * np.pi / length * np.fft.rfftfreq(n, d=1.0 / n)
    lin = k**2 - k**4
    e, e2 = np.exp(dt * lin), np.exp(dt * lin / 2)
    m = 32
    r = np.exp(1j * np.pi * (np.arange(1, m + 1) - 0.5) / m)
    lr = dt * lin[:, None] + r[None, :]
    q = dt * np.real(np.mean((np.exp(lr / 2) - 1) / lr, 1))
    f1 = dt * np.real(np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, 1))
    f2 = dt * np.real(np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, 1))
    f3 = dt * np.real(np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, 1))
    g = -0.5j * k
    nl = lambda vh: g * np.fft.rfft(np.fft.irfft(vh, n) ** 2)  # noqa: E731
    u = 0.1 * rng.normal(size=(n_traj, n))
    v = np.fft.rfft(u)
    out = np.empty((n_traj, n_steps, n), dtype=np.float32)
    for i in range(burn_in + n_steps * stride):
        nv = nl(v)
        a = e2 * v + q * nv
        na = nl(a)
        b = e2 * v + q * na
        nb = nl(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nl(c)
        v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        j = i - burn_in
        if j >= 0 and j % stride == 0:
            out[:, j // stride] = np.fft.irfft(v, n)
    return out


SYSTEMS = {
    "lorenz63": lambda n_traj, n_steps, seed: lorenz63(n_traj, n_steps, stride=4, seed=seed),
    "double_well": lambda n_traj, n_steps, seed: double_well(n_traj, n_steps, seed=seed),
    "kuramoto_sivashinsky": lambda n_traj, n_steps, seed: kuramoto_sivashinsky(n_traj, n_steps, seed=seed),
}

SYSTEM_DIMS = {"lorenz63": 3, "double_well": 2, "kuramoto_sivashinsky": 64}


def generate(name: str, n_traj: int, n_steps: int, seed: int = 0) -> np.ndarray:
    """Trajectories [n_traj, n_steps, dim] of a system in :data:`SYSTEMS`."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; choose one of {sorted(SYSTEMS)}")
    return SYSTEMS[name](n_traj, n_steps, seed)

"""``dforce schedule show NAME --tokens H --steps S [--plot FILE.png]``: print a scheduling matrix."""

from __future__ import annotations

from typing import Optional

from dforce.cli.common import parser
from dforce.sampling.scheduling import SCHEDULING, format_matrix, scheduling_matrix


def plot_matrix(matrix, path: str, title: str) -> None:
    """Save the matrix as a heat map (rows = iterations, columns = tokens)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = matrix.numpy()
    fig, ax = plt.subplots(figsize=(1.2 + 0.35 * m.shape[1], 1.0 + 0.18 * m.shape[0]))
    im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set(xlabel="token", ylabel="iteration (row)", title=title)
    fig.colorbar(im, ax=ax, label="noise level (S = pure noise, 0 = clean)")
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    p = parser("dforce schedule", "Print (and optionally plot) a scheduling matrix: rows are denoising iterations, "
               "columns are tokens, entries are integer noise levels (S = pure noise, 0 = clean).")
    p.add_argument("action", choices=["show"], help="what to do (show)")
    p.add_argument("name", choices=sorted(SCHEDULING), help="scheduling matrix")
    p.add_argument("--tokens", type=int, default=8, help="tokens generated together (columns)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps S per token")
    p.add_argument("--uncertainty_scale", type=float, default=1.0, help="u of pyramid / trapezoid: extra delay per token")
    p.add_argument("--chunk_size", type=int, default=2, help="tokens per chunk of the chunked matrix")
    p.add_argument("--plot", type=Optional[str], default=None, help="also save a heat map PNG here")
    a = p.parse_args(argv)
    kw = {}
    if a.name in ("pyramid", "trapezoid"):
        kw["uncertainty_scale"] = a.uncertainty_scale
    if a.name == "chunked":
        kw["chunk_size"] = a.chunk_size
    m = scheduling_matrix(a.name, a.tokens, a.steps, **kw)
    print(f"{a.name}: {m.shape[0]} rows x {m.shape[1]} tokens, {m.shape[0] - 1} network calls")
    print(format_matrix(m))
    if a.plot:
        plot_matrix(m, a.plot, f"{a.name} (tokens={a.tokens}, steps={a.steps})")
        print(f"wrote {a.plot}")
    return 0

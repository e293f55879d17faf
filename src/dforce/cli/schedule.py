"""``dforce schedule show NAME --tokens H --steps S [--plot FILE.png]``: print a scheduling matrix."""

from __future__ import annotations

from typing import Optional

from dforce.cli.common import UserError, add_overwrite, check_outputs, parser
import torch
from torch import Tensor

from dforce.sampling.scheduling import SCHEDULING, scheduling_matrix


def format_matrix(matrix: Tensor) -> str:
    """The matrix as aligned text, one row per iteration."""
    m = torch.as_tensor(matrix)
    width = len(str(int(m.max()))) if m.numel() else 1
    head = "row | " + " ".join(f"{h:>{width}}" for h in range(m.shape[1]))
    lines = [head, "-" * len(head)]
    lines += [f"{r:>3} | " + " ".join(f"{int(v):>{width}}" for v in row) for r, row in enumerate(m)]
    return "\n".join(lines)


def plot_matrix(matrix, path: str, title: str) -> None:
    """Save the matrix as a heat map (rows = iterations, columns = tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dforce.training.files import atomic_write

    m = matrix.numpy()
    fig, ax = plt.subplots(figsize=(1.2 + 0.35 * m.shape[1], 1.0 + 0.18 * m.shape[0]))
    im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set(xlabel="token", ylabel="iteration (row)", title=title)
    fig.colorbar(im, ax=ax, label="noise level (S = pure noise, 0 = clean)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), suffix=".png")
    plt.close(fig)


def main(argv: list[str]) -> int:
    p = parser("dforce schedule", "Print (and optionally plot) a scheduling matrix: rows are denoising iterations, "
               "columns are tokens, entries are integer noise levels (S = pure noise, 0 = clean).")
    p.add_argument("action", choices=["show"], help="what to do (show)")
    p.add_argument("name", type=str, help=f"scheduling matrix: {', '.join(sorted(SCHEDULING))}, or a .npy / .csv file "
                   "holding a custom matrix [rows, tokens] to check and print")
    p.add_argument("--tokens", type=int, default=8, help="tokens generated together (columns)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps S per token")
    p.add_argument("--uncertainty_scale", type=float, default=1.0, help="u of pyramid / trapezoid: extra delay per token")
    p.add_argument("--chunk_size", type=int, default=2, help="tokens per chunk of the chunked matrix")
    p.add_argument("--plot", type=Optional[str], default=None, help="also save a heat map PNG here")
    add_overwrite(p)
    a = p.parse_args(argv)
    if a.plot and not a.plot.endswith(".png"):
        raise UserError(f"--plot {a.plot} must end in .png")
    check_outputs(a.overwrite, plot=a.plot)
    from dforce.cli.sampling_options import MATRIX_SUFFIXES, read_matrix

    if a.name.endswith(MATRIX_SUFFIXES):
        m = read_matrix(a.name)
        print(f"{a.name}: a valid scheduling matrix, {m.shape[0]} rows x {m.shape[1]} tokens, steps {int(m.max())}, "
              f"{m.shape[0] - 1} network calls")
        print(format_matrix(m))
        if a.plot:
            plot_matrix(m, a.plot, a.name)
            print(f"wrote {a.plot}")
        return 0
    if a.name not in SCHEDULING:
        raise UserError(f"unknown scheduling matrix {a.name!r}; choose one of {', '.join(sorted(SCHEDULING))} or give a .npy / .csv file")
    for name in ("tokens", "steps", "chunk_size"):
        if getattr(a, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.uncertainty_scale < 0:
        raise UserError(f"--uncertainty_scale must be >= 0, got {a.uncertainty_scale}")
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

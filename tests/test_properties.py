"""Property tests (hypothesis) for the scheduling matrices and the sampler.

Invariants: every matrix is valid (pure noise first, clean last, non-increasing columns, integer
levels in [0, S]), has the documented number of rows, moves each token by at most one level per
row; the sampler makes exactly one network call per row in which some token's level drops,
returns [B, horizon, *frame_shape] finite values, and is reproducible from its seed.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dforce import DiffusionForcing, Transformer
from dforce.sampling import scheduling

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAMPLER = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.sampled_from(["full_sequence", "autoregressive", "pyramid", "trapezoid", "chunked"])
tokens_st = st.integers(1, 12)
steps_st = st.integers(1, 10)
scale_st = st.floats(0.0, 3.0, allow_nan=False)
chunk_st = st.integers(1, 5)


def _kwargs(name, u, chunk):
    return {"uncertainty_scale": u} if name in ("pyramid", "trapezoid") else ({"chunk_size": chunk} if name == "chunked" else {})


@FAST
@given(names, tokens_st, steps_st, scale_st, chunk_st)
def test_every_matrix_is_valid(name, tokens, steps, u, chunk):
    m = scheduling.scheduling_matrix(name, tokens, steps, **_kwargs(name, u, chunk))
    assert m.dtype == torch.long and m.shape[1] == tokens and m.shape[0] >= 2
    assert torch.equal(scheduling.validate(m, steps), m)
    assert (m[0] == steps).all(), "first row: pure noise"
    assert (m[-1] == 0).all(), "every token ends at level 0"
    assert (m[1:] <= m[:-1]).all(), "levels never rise"
    assert ((m[:-1] - m[1:]) <= 1).all(), "a token moves at most one level per row"
    assert ((m >= 0) & (m <= steps)).all()
    assert (m[-2] > 0).any(), "no trailing row without work"


@FAST
@given(tokens_st, steps_st, scale_st)
def test_row_counts(tokens, steps, u):
    assert scheduling.full_sequence(tokens, steps).shape[0] == steps + 1
    assert scheduling.pyramid(tokens, steps, u).shape[0] == steps + math.floor((tokens - 1) * u) + 1
    assert scheduling.autoregressive(tokens, steps).shape[0] == steps * tokens + 1
    trap = scheduling.trapezoid(tokens, steps, u)
    assert torch.equal(trap, trap.flip(1)), "trapezoid is symmetric: no lag of the last token"


@FAST
@given(tokens_st, steps_st, chunk_st)
def test_chunked_matrix_is_full_sequence_inside_chunks_and_autoregressive_across(tokens, steps, chunk):
    m = scheduling.chunked(tokens, steps, chunk)
    for h in range(tokens):
        assert torch.equal(m[:, h], m[:, (h // chunk) * chunk])
        if h >= chunk:  # a chunk starts when the previous one is clean
            prev_clean = int((m[:, h - chunk] == 0).nonzero()[0])
            assert (m[: prev_clean + 1, h] == steps).all()


@FAST
@given(steps_st, st.sampled_from(["uniform", "logsnr"]))
def test_level_grid_is_increasing_from_clean_to_noise(steps, spacing):
    from dforce.diffusion.schedules import get_schedule

    grid = scheduling.level_grid(steps, get_schedule("cosine"), spacing)
    assert grid.shape == (steps + 1,) and grid[0] == 0 and grid[-1] == 1
    assert (grid[1:] > grid[:-1]).all()


@FAST
@given(st.lists(st.lists(st.integers(0, 4), min_size=2, max_size=4), min_size=2, max_size=6))
def test_validate_accepts_exactly_the_valid_matrices(rows):
    width = len(rows[0])
    rows = [r[:width] + [0] * (width - len(r)) for r in rows]
    m = torch.tensor(rows)
    s = int(m.max())
    valid = s >= 1 and (m[0] == s).all() and (m[-1] == 0).all() and bool((m[1:] <= m[:-1]).all())
    if valid:
        assert torch.equal(scheduling.validate(m), m)
    else:
        with pytest.raises(ValueError):
            scheduling.validate(m)


# ------------------------------------------------------------------------------------ sampler
class CountingTransformer(Transformer):
    """A transformer that counts its forward calls (one per network call of the sampler)."""

    calls = 0

    def forward(self, *args, **kwargs):
        CountingTransformer.calls += 1
        return super().forward(*args, **kwargs)


def _changed_rows(m: torch.Tensor) -> int:
    return int((m[1:] < m[:-1]).any(1).sum())


_MODELS = {}


def _model(frame_stack: int, window: int, causal: bool) -> DiffusionForcing:
    key = (frame_stack, window, causal)
    if key not in _MODELS:
        torch.manual_seed(0)
        bb = CountingTransformer(dim=2 * frame_stack, width=8, depth=1, heads=2, causal=causal)
        _MODELS[key] = DiffusionForcing(bb, window=window, frame_stack=frame_stack).eval()
    return _MODELS[key]


@SAMPLER
@given(
    matrix=st.sampled_from(["full_sequence", "autoregressive", "pyramid", "trapezoid"]),
    steps=st.integers(1, 4),
    window=st.integers(2, 6),
    horizon_tokens=st.integers(1, 10),
    context_tokens=st.integers(0, 3),
    frame_stack=st.sampled_from([1, 2]),
    batch=st.integers(1, 3),
    eta=st.sampled_from([0.0, 0.5, 1.0]),
    causal=st.booleans(),
    data=st.data(),
)
def test_sampler_shape_calls_and_seed(matrix, steps, window, horizon_tokens, context_tokens, frame_stack, batch, eta, causal, data):
    chunk = data.draw(st.integers(1, window - 1), label="chunk_size")
    history = data.draw(st.integers(0, window - chunk), label="history_len")
    model = _model(frame_stack, window, causal)
    k = frame_stack
    horizon = horizon_tokens * k
    context = torch.randn(batch, context_tokens * k, 2) if context_tokens else None
    kw = dict(horizon=horizon, scheduling=matrix, steps=steps, eta=eta, chunk_size=chunk, history_len=history, seed=3)
    if context is None:
        kw["batch_size"] = batch
    CountingTransformer.calls = 0
    out = model.sample(context=context, **kw)
    calls = CountingTransformer.calls
    assert out.shape == (batch, horizon, 2)
    assert torch.isfinite(out).all()
    # one network call per row in which a generated token's level drops, summed over the windows
    expected, remaining = 0, horizon_tokens
    while remaining > 0:
        new = min(chunk, remaining)
        expected += _changed_rows(scheduling.scheduling_matrix(matrix, new, steps))
        remaining -= new
    assert calls == expected
    again = model.sample(context=context, **kw)
    assert torch.equal(out, again), "same seed, same samples"

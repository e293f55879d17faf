import pytest
import torch

from dforce import ClassifierFreeGuidance, DiffusionForcing
from dforce.backbones.video_transformer import VideoTransformer
from dforce.diffusion.schedules import get_schedule
from dforce.guidance import EMPTY, FULL, History, HistoryGuidance, StepInfo
from dforce.guidance.history import history_levels


class CountingDenoiser:
    """x0_hat = sum of the window's levels (per batch row), eps_hat = x: a closed form in the levels."""

    def __init__(self):
        self.calls, self.rows, self.levels = 0, 0, []

    def __call__(self, x, t, cond):
        self.calls += 1
        self.rows += x.shape[0]
        self.levels.append(t.clone())
        s = t.sum(1).view(-1, *([1] * (x.dim() - 1)))
        return s.expand_as(x).clone(), x.clone()


def _info(b=2, w=6, hist=3, generated=None):
    known = torch.zeros(b, w, dtype=torch.bool)
    known[:, :hist] = True
    gen = torch.zeros_like(known) if generated is None else generated
    return StepInfo(0, get_schedule("cosine"), torch.full((b, w), 0.5), ~known, known, torch.randn(b, w, 1, 4, 4), gen, torch.Generator().manual_seed(0))


def _t(b=2, w=6, hist=3, hist_level=0.0, level=0.6):
    t = torch.full((b, w), level)
    t[:, :hist] = hist_level
    return t


@pytest.mark.parametrize(
    "g",
    [
        HistoryGuidance.vanilla(3.0),
        HistoryGuidance.fractional(4.0, 0.3),
        HistoryGuidance.temporal([1.5, 2.0], [[0, 1], [-1]]),
        HistoryGuidance([(2.0, History(0.2), History(0.7)), (-0.5, FULL, EMPTY)], base=History(0.1)),
    ],
)
def test_condition_weights_sum_to_one(g):
    assert sum(w for _, w in g.weights()) == pytest.approx(1.0)


def test_vanilla_closed_form_and_one_batched_call():
    d, info = CountingDenoiser(), _info()
    x, t, w = torch.randn(2, 6, 1, 4, 4), _t(), 3.0
    x0, eps = HistoryGuidance.vanilla(w)(d, x, t, None, info)
    assert d.calls == 1 and d.rows == 4  # two conditions, one network call
    s_full = t.sum(1)
    s_empty = s_full + 3 * 1.0  # three history tokens moved from level 0 to 1
    expect = (1 - w) * s_empty + w * s_full
    assert torch.allclose(x0[:, 0, 0, 0, 0], expect, atol=1e-5)


def test_fractional_and_general_closed_form():
    d, info = CountingDenoiser(), _info()
    x, t = torch.randn(2, 6, 1, 4, 4), _t()
    w, kf = 4.0, 0.3
    x0, _ = HistoryGuidance.fractional(w, kf)(d, x, t, None, info)
    s = t.sum(1)
    expect = s + (w - 1) * ((s + 3 * kf) - (s + 3))
    assert torch.allclose(x0[:, 0, 0, 0, 0], expect, atol=1e-5)
    assert d.calls == 1 and d.rows == 6

    # general form: p(h at 0.1) + 2 [p(h at 0.2) - p(h at 0.7)]
    d = CountingDenoiser()
    g = HistoryGuidance([(2.0, History(0.2), History(0.7))], base=History(0.1))
    x0, _ = g(d, x, t, None, info)
    expect = (s + 0.3) + 2 * ((s + 0.6) - (s + 2.1))
    assert torch.allclose(x0[:, 0, 0, 0, 0], expect, atol=1e-5)


def test_temporal_subsets_select_history_tokens():
    known = torch.tensor([[True, True, True, False, False]])
    t = torch.tensor([[0.0, 0.02, 0.02, 0.5, 1.0]])
    lv = history_levels(History(0.0, (0, -1)), t, known, known)
    assert torch.allclose(lv, torch.tensor([[0.0, 1.0, 0.02, 0.5, 1.0]]))  # the middle history token is dropped (pure noise)
    lv = history_levels(History(0.3), t, known, known)
    assert torch.allclose(lv, torch.tensor([[0.3, 0.3, 0.3, 0.5, 1.0]]))


def test_identical_conditions_are_evaluated_once():
    x, t = torch.randn(2, 6, 1, 4, 4), _t()
    # the subset [0, 1, 2] is the whole history: it equals FULL, so the two terms share one evaluation
    g = HistoryGuidance.temporal([1.5, 2.0], [[0, 1, 2], [-3, -2, -1]])
    d = CountingDenoiser()
    g(d, x, t, None, _info())
    assert d.calls == 1 and d.rows == 4
    # fractional at level 1 is the empty history: everything cancels to p(h), one plain call
    d = CountingDenoiser()
    x0, _ = HistoryGuidance.fractional(3.0, 1.0)(d, x, t, None, _info())
    assert d.calls == 1 and d.rows == 2 and torch.equal(d.levels[0], t)
    # no history in the window: one plain call
    d = CountingDenoiser()
    info = _info(hist=0)
    HistoryGuidance.vanilla(3.0)(d, x, _t(hist=0), None, info)
    assert d.calls == 1 and d.rows == 2


def test_stabilized_variant_noises_only_generated_history():
    gen = torch.zeros(2, 6, dtype=torch.bool)
    gen[:, 2] = True  # history = tokens 0..2; token 2 was generated, 0 and 1 observed
    d = CountingDenoiser()
    x, t = torch.randn(2, 6, 1, 4, 4), _t()
    HistoryGuidance.vanilla(2.0, stabilized=True)(d, x, t, None, _info(generated=gen))
    lv = d.levels[0].view(2, 2, 6)  # [conditions, B, W]
    empty = [c for c in range(2) if lv[c, 0, 2] == 1.0][0]
    assert lv[empty, :, :2].eq(0).all() and lv[empty, :, 2].eq(1).all()


def _tiny_model(causal=True, cond_dim=0, seed=0):
    torch.manual_seed(seed)
    net = VideoTransformer(image_size=8, patch_size=4, width=16, depth=1, heads=2, causal=causal, cond_dim=cond_dim)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return DiffusionForcing(net, window=6, cond_dropout=0.1 if cond_dim else 0.0).eval()


def test_scale_one_equals_conditional_sampling_with_eta():
    m = _tiny_model()
    ctx = torch.randn(2, 3, 1, 8, 8)
    kw = dict(horizon=6, steps=4, eta=1.0, chunk_size=3, history_len=3, scheduling="full_sequence", seed=3)
    plain = m.sample(ctx, **kw)
    assert torch.equal(m.sample(ctx, guidance=HistoryGuidance.vanilla(1.0), **kw), plain)
    assert torch.equal(m.sample(ctx, guidance=HistoryGuidance.fractional(1.0, 0.4), **kw), plain)
    guided = m.sample(ctx, guidance=HistoryGuidance.vanilla(3.0), **kw)
    assert guided.shape == plain.shape and torch.isfinite(guided).all() and not torch.equal(guided, plain)


def test_cfg_on_actions_with_the_video_backbone():
    m = _tiny_model(cond_dim=5)
    ctx = torch.randn(2, 2, 1, 8, 8)
    acts = torch.nn.functional.one_hot(torch.randint(0, 5, (2, 6)), 5).float()
    kw = dict(horizon=4, steps=3, chunk_size=2, history_len=2, scheduling="full_sequence", seed=1, cond=acts)
    plain = m.sample(ctx, **kw)
    assert torch.allclose(m.sample(ctx, guidance=ClassifierFreeGuidance(1.0), **kw), plain)
    guided = m.sample(ctx, guidance=ClassifierFreeGuidance(3.0), **kw)
    assert not torch.allclose(guided, plain) and torch.isfinite(guided).all()
    # the model trains with condition dropout on actions (the null condition of CFG)
    m.train()
    loss = m.loss(torch.randn(2, 6, 1, 8, 8), cond=acts)
    loss.backward()
    assert m.backbone.noise_embed.cond.weight.grad.abs().sum() > 0

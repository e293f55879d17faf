"""Progressive distillation: the DDIM inversion, the level matrices, what the teacher and student are fed, and that a student learns."""

import copy

import pytest
import torch
from torch import nn

from dforce import DiffusionForcing, Transformer, testing
from dforce.diffusion import get_schedule
from dforce.diffusion.weighting import loss_weight
from dforce.distillation import distillation_levels, distillation_loss, x0_for_step
from dforce.sampling import ddim_step, level_grid, sample_window


class ZeroBackbone(nn.Module):
    """Predicts 0 for every token (with the x0 parametrization: x0_hat = 0)."""

    token_shape, causal, cond_dim = (3,), True, 0

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond=None):
        return self.scale * x


def tiny(parametrization="x0", weighting="min_snr", backbone=None, window=8):
    torch.manual_seed(0)
    bb = backbone or Transformer(dim=3, width=32, depth=1, heads=4)
    return DiffusionForcing(bb, window=window, parametrization=parametrization, weighting=weighting)


@pytest.mark.parametrize("name", ["cosine", "linear", "rectified_flow"])
def test_x0_for_step_inverts_the_ddim_step(name):
    sched = get_schedule(name)
    g = torch.Generator().manual_seed(0)
    t = torch.rand(4, 6, generator=g) * 0.9 + 0.1
    s = t * torch.rand(4, 6, generator=g)
    s[0, 0] = 0.0
    x_t, x0 = (torch.randn(4, 6, 3, generator=g) for _ in range(2))
    a_t, s_t = sched.alpha_sigma(t)
    eps_hat = (x_t - a_t[..., None] * x0) / s_t[..., None]
    x_s = ddim_step(x_t, x0, eps_hat, t, s, sched)
    assert torch.allclose(x0_for_step(x_t, x_s, (a_t, s_t), sched.alpha_sigma(s)), x0, atol=1e-4)


def test_levels_follow_the_nested_grids():
    g = torch.Generator().manual_seed(1)
    levels, moving = distillation_levels(64, 10, teacher_steps=12, student_steps=4, max_history_level=0.2, generator=g)
    assert levels.shape == (64, 4, 10) and moving.shape == (64, 10)
    assert moving[:, -1].all() and (moving.long().diff(dim=1) >= 0).all()  # a known prefix, then moving tokens
    assert not moving[:, 0].all()  # some windows do have a prefix
    known = ~moving
    assert (levels[:, :1].expand_as(levels)[known[:, None].expand_as(levels)] == levels[known[:, None].expand_as(levels)]).all()
    assert (levels[:, 0][known] <= 0.2).all()
    student, teacher = level_grid(4), level_grid(12)
    top, bottom = levels[:, 0][moving], levels[:, -1][moving]
    k = torch.round(top * 4).long()
    assert torch.allclose(top, student[k]) and torch.allclose(bottom, student[k - 1])
    assert set(k.tolist()) == {1, 2, 3, 4}
    for j in range(4):  # row j: the teacher's grid point 3k - j
        assert torch.allclose(levels[:, j][moving], teacher[3 * k - j])


def test_logsnr_levels_are_nested_too():
    sched = get_schedule("cosine")
    levels, moving = distillation_levels(32, 6, 10, 5, level_spacing="logsnr", schedule=sched, generator=torch.Generator().manual_seed(2))
    student = level_grid(5, sched, "logsnr")
    top, bottom = levels[:, 0][moving], levels[:, -1][moving]
    assert torch.isclose(top[:, None], student[None]).any(1).all() and torch.isclose(bottom[:, None], student[None]).any(1).all()


def test_student_regresses_the_teachers_x0_closed_form():
    # a teacher whose x0_hat is 0 everywhere lands (after any number of DDIM steps) where one DDIM
    # step with x0 = 0 lands, so x0* = 0: the loss is the weighted mean square of the student's x0 output
    teacher = tiny(backbone=ZeroBackbone())
    student = tiny(backbone=testing.SpyBackbone(Transformer(dim=3, width=32, depth=1, heads=4)))
    x = torch.randn(5, 8, 3)
    loss = distillation_loss(student, teacher, x, teacher_steps=6, student_steps=3, generator=torch.Generator().manual_seed(3))
    levels, moving = distillation_levels(5, 8, 6, 3, generator=torch.Generator().manual_seed(3))
    call = student.backbone.calls[-1]
    assert torch.equal(call["t"], levels[:, 0])
    pred = student.backbone.inner(call["x"], call["t"])
    w = loss_weight("min_snr", student.noise_schedule.logsnr(levels[:, 0]), "x0", student.noise_schedule)
    expected = ((pred ** 2).mean(-1) * w)[moving].sum() / moving.sum()
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_teacher_takes_m_steps_with_the_students_inputs():
    teacher = tiny(backbone=testing.SpyBackbone(Transformer(dim=3, width=32, depth=1, heads=4)))
    student = tiny(backbone=testing.SpyBackbone(Transformer(dim=3, width=32, depth=1, heads=4)))
    distillation_loss(student, teacher, torch.randn(4, 8, 3), teacher_steps=20, student_steps=5, generator=torch.Generator().manual_seed(4))
    levels, moving = distillation_levels(4, 8, 20, 5, generator=torch.Generator().manual_seed(4))
    calls, fed = teacher.backbone.calls, student.backbone.calls[-1]
    assert len(calls) == 4
    assert torch.equal(calls[0]["x"], fed["x"]) and torch.equal(calls[0]["t"], fed["t"])
    for j, c in enumerate(calls):
        assert torch.equal(c["t"], levels[:, j])
        assert torch.equal(c["x"][~moving], fed["x"][~moving])  # history is fed unchanged at its level
        if j:
            assert not torch.equal(c["x"][moving], calls[j - 1]["x"][moving])


def test_a_student_learns_the_teachers_two_steps():
    # after a short distillation, one student step lands closer to two teacher steps than one teacher step does
    teacher = tiny(parametrization="v")
    data = torch.sin(torch.linspace(0, 6, 8))[None, :, None] * torch.tensor([1.0, -0.5, 0.3]) + 0.1 * torch.randn(64, 8, 3)
    opt_t = torch.optim.Adam(teacher.parameters(), 3e-3)
    for _ in range(150):
        opt_t.zero_grad()
        teacher.loss(data).backward()
        opt_t.step()
    student = copy.deepcopy(teacher)
    opt = torch.optim.Adam(student.parameters(), 1e-3)
    g = torch.Generator().manual_seed(5)
    for _ in range(150):
        opt.zero_grad()
        distillation_loss(student, teacher, data, teacher_steps=8, student_steps=4, generator=g).backward()
        opt.step()
    levels, moving = distillation_levels(64, 8, 8, 4, generator=torch.Generator().manual_seed(6))
    sched = teacher.noise_schedule
    x_t = sched.q_sample(data, levels[:, 0], torch.randn(data.shape, generator=torch.Generator().manual_seed(7)))
    one = levels[:, [0, -1]]
    with torch.no_grad():
        run = lambda m, lv: sample_window(m.denoise, x_t, lv, schedule=sched, known_mask=~moving, known_values=x_t, history="relabel")  # noqa: E731
        target, teacher_one, student_one = run(teacher, levels), run(teacher, one), run(student, one)
    err = lambda y: float((y - target)[moving].pow(2).mean())  # noqa: E731
    assert err(student_one) < 0.7 * err(teacher_one), (err(student_one), err(teacher_one))


@pytest.mark.parametrize("parametrization", ["eps", "x0", "v", "flow"])
def test_clean_history_gives_finite_gradients(parametrization):
    # history at level 0 (sigma = 0): its x0* and eps* are 0 / 0, which must not reach the gradient
    teacher = tiny(parametrization)
    student = copy.deepcopy(teacher)
    loss = distillation_loss(student, teacher, torch.randn(4, 8, 3), teacher_steps=4, student_steps=2, max_history_level=0.0,
                             generator=torch.Generator().manual_seed(8))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_bad_inputs_name_the_fix():
    m = tiny()
    with pytest.raises(ValueError, match="multiple of student_steps"):
        distillation_loss(copy.deepcopy(m), m, torch.randn(2, 8, 3), teacher_steps=10, student_steps=4)
    with pytest.raises(ValueError, match="multiple of student_steps"):
        distillation_levels(2, 8, 5, 5)
    with pytest.raises(ValueError, match="max_history_level"):
        distillation_levels(2, 8, 10, 5, max_history_level=1.0)
    other = DiffusionForcing(Transformer(dim=3, width=32, depth=1, heads=4), window=8, noise_schedule="linear")
    with pytest.raises(ValueError, match="copy of the teacher"):
        distillation_loss(other, m, torch.randn(2, 8, 3), teacher_steps=10, student_steps=5)

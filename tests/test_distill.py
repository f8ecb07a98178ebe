"""Unit tests of knowledge distillation and the methods built on it (LwF, LwF + ER, LFL, WA)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cfutils.data import Dataset, permuted_stream, split_stream
from cfutils.distill import frozen_copy, kd_loss, logit_matching
from cfutils.methods import LFL, LwF, LwFReplay, align_weights
from cfutils.models import MLP, MultiHeadMLP
from cfutils.train import train


def toy_stream(scenario: str, n_tasks: int = 3):
    """Six classes of 4x4 'images' told apart by one pixel, in three tasks."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(360, 1, 4, 4, generator=g)
    y = torch.arange(360) % 6
    x[:, 0, 0, 0] += 3 * y
    data = Dataset("toy", x, y, x[:120], y[:120], tuple("abcdef"))
    if scenario == "domain":
        return permuted_stream(data, n_tasks)
    return split_stream(data, n_tasks, scenario)


def logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def watched(cls: type, *args, **kwargs):
    """An instance of ``cls`` that records, before each task, its teacher and copies of the
    teacher's and the model's parameters."""
    class Watched(cls):
        def before_task(self, model: nn.Module, task) -> None:
            super().before_task(model, task)
            if self.teacher is not None:
                self.snaps.append((self.teacher, clone(self.teacher), clone(model)))

    method = Watched(*args, **kwargs)
    method.snaps = []
    return method


def clone(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


# ------------------------------------------------------------------------------ the KD loss
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kd_loss_is_zero_for_equal_outputs_and_positive_otherwise(direction):
    z, v = logits(16, 5), logits(16, 5, seed=1)
    assert abs(float(kd_loss(z, z.clone(), 2.0, direction))) < 1e-6
    # a softmax ignores a constant added to every logit of a sample
    assert abs(float(kd_loss(z, z + logits(16, 1, seed=2), 2.0, direction))) < 1e-5
    assert float(kd_loss(z, v, 2.0, direction)) > 0.01


def test_forward_is_kl_teacher_to_student_and_differs_from_reverse():
    student = torch.tensor([[0.0, -3.0, -3.0]])
    teacher = torch.tensor([[0.0, 0.0, -10.0]])
    T = 1.5
    p, q = F.softmax(teacher / T, dim=1), F.softmax(student / T, dim=1)
    forward = float(kd_loss(student, teacher, T))
    reverse = float(kd_loss(student, teacher, T, direction="reverse"))
    assert math.isclose(forward, T ** 2 * float((p * (p / q).log()).sum()), rel_tol=1e-5)
    assert math.isclose(reverse, T ** 2 * float((q * (q / p).log()).sum()), rel_tol=1e-5)
    assert abs(forward - reverse) > 0.1 * max(forward, reverse)


def grad_norm(T: float, scale_t2: bool) -> float:
    z = logits(64, 10).requires_grad_()
    kd_loss(z, logits(64, 10, seed=1), T, scale_t2=scale_t2).backward()
    return float(z.grad.norm())


def test_t2_keeps_the_gradient_scale_independent_of_the_temperature():
    scaled = [grad_norm(T, True) for T in (10.0, 20.0, 40.0)]
    assert max(scaled) / min(scaled) < 1.1
    for T in (10.0, 20.0):
        assert 3.6 < grad_norm(T, False) / grad_norm(2 * T, False) < 4.4


def test_high_temperature_limit_is_half_the_logit_matching_loss():
    z, v = logits(32, 6), logits(32, 6, seed=1)
    centred = logit_matching(z - z.mean(1, keepdim=True), v - v.mean(1, keepdim=True))
    assert math.isclose(float(kd_loss(z, v, 200.0)), 0.5 * float(centred), rel_tol=0.02)


def test_kd_loss_restricted_to_columns():
    z, v = logits(8, 6), logits(8, 6, seed=1)
    cols = torch.tensor([True, False, True, True, False, False])
    assert torch.equal(kd_loss(z, v, 2.0, columns=cols), kd_loss(z[:, cols], v[:, cols], 2.0))


@pytest.mark.parametrize("make, word", [
    (lambda: kd_loss(logits(2, 3), logits(2, 3), 0.0), "^T="),
    (lambda: kd_loss(logits(2, 3), logits(2, 3), -1.0), "^T="),
    (lambda: kd_loss(logits(2, 3), logits(2, 3), 2.0, direction="sideways"), "^direction="),
    (lambda: LwF(alpha=-1.0), "^alpha="),
    (lambda: LwF(T=0.0), "^T="),
    (lambda: LwF(direction="both"), "^direction="),
    (lambda: LwF(warmup_steps=-1), "^warmup_steps="),
    (lambda: LwFReplay(buffer_size=0), "^buffer_size="),
    (lambda: LwFReplay(alpha=-0.5), "^alpha="),
    (lambda: LFL(lam=-1.0), "^lam="),
    (lambda: LwF(weight_align=True).setup(MLP(16, (8,), 6), toy_stream("task")), "^weight_align="),
])
def test_bad_parameters_are_named(make, word):
    with pytest.raises(ValueError, match=word):
        make()


# ------------------------------------------------------------------------------ LwF
def test_teacher_is_frozen_and_never_changes():
    method = watched(LwF, alpha=1.0)
    model = MLP(16, (16,), 6)
    train(method, model, toy_stream("task"), epochs=2, batch_size=32, lr=0.1)
    assert len(method.snaps) == 2
    for teacher, teacher_then, model_then in method.snaps:
        assert same(teacher_then, model_then, model_then)  # a copy of the network as it was
        assert same(clone(teacher), teacher_then, teacher_then)  # ... and never trained since
        assert not teacher.training
        assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not same(clone(model), method.snaps[-1][2], ["head.weight"])  # the student did move
    assert method.stored_bytes() == sum(p.numel() * 4 for p in model.parameters())


def prepared(scenario: str, task: int, **kwargs) -> LwF:
    """An LwF about to learn ``task`` of a 3-task stream, with a teacher ``v`` set by the test."""
    stream = toy_stream(scenario)
    method = LwF(**kwargs)
    model = MLP(16, (8,), 6)
    method.setup(model, stream)
    method.before_task(model, stream[task])
    return method


def test_task_il_distils_each_old_head_on_its_own():
    method = prepared("task", 2, alpha=0.7, T=2.0)
    z, v = logits(8, 6), logits(8, 6, seed=1)

    def penalty(teacher_logits: torch.Tensor) -> float:
        method.teacher = lambda x: teacher_logits
        return float(method.penalty(None, None, z))

    base = penalty(v)
    heads = [[0, 1], [2, 3]]
    assert math.isclose(base, 0.7 * sum(float(kd_loss(z[:, h], v[:, h], 2.0)) for h in heads),
                        rel_tol=1e-6)
    outside = v.clone()
    outside[:, 4:] += logits(8, 2, seed=2)  # the current task's head: not distilled
    assert penalty(outside) == base
    shifted = v.clone()
    shifted[:, :2] += 5.0  # one old head shifted: its own softmax does not see it ...
    assert math.isclose(penalty(shifted), base, rel_tol=1e-6)
    # ... while one softmax over both old heads would
    joint = [float(kd_loss(z[:, :4], teacher[:, :4], 2.0)) for teacher in (v, shifted)]
    assert abs(joint[0] - joint[1]) > 0.1
    inside = v.clone()
    inside[:, 0] += 1.0
    assert penalty(inside) != base


def test_class_il_targets_are_the_teachers_probabilities_of_the_old_classes():
    alpha, T = 0.5, 2.0
    method = prepared("class", 2, alpha=alpha, T=T)
    z, v = logits(8, 6).requires_grad_(), logits(8, 6, seed=1)
    method.teacher = lambda x: v
    method.penalty(None, None, z).backward()
    old = slice(0, 4)
    # d/dz of alpha T^2 KL(p || q), averaged over the batch: alpha T (q - p) / B on the old classes
    q, p = F.softmax(z[:, old].detach() / T, dim=1), F.softmax(v[:, old] / T, dim=1)
    assert torch.allclose(z.grad[:, old], alpha * T * (q - p) / len(z), atol=1e-7)
    assert torch.equal(z.grad[:, 4:], torch.zeros(8, 2))  # the new classes have no target


def test_domain_il_distils_every_unit():
    method = prepared("domain", 1)
    assert len(method.groups) == 1 and bool(method.groups[0].all())


def test_warmup_trains_only_the_new_head():
    method = watched(LwF, warmup_steps=10 ** 6)
    model = MultiHeadMLP(16, (16,), (2, 2, 2))
    train(method, model, toy_stream("task", 3), epochs=1, batch_size=32, lr=0.1)
    before, after = method.snaps[0][2], method.snaps[1][2]  # the model before and after task 2
    frozen = [k for k in before if not k.startswith("head.1.")]
    assert same(after, before, frozen)
    assert not same(after, before, ["head.1.weight"])


# ------------------------------------------------------------------------------ weight aligning
def test_weight_align_equalises_the_mean_norms():
    layer = nn.Linear(5, 6)
    with torch.no_grad():
        layer.weight[4:] *= 3.0
    old = torch.tensor([True] * 4 + [False] * 2)
    x = logits(3, 5)
    before, w_old = layer(x), layer.weight[old].clone()
    gamma = align_weights(layer, old, ~old)
    norms = layer.weight.detach().norm(dim=1)
    assert math.isclose(float(norms[old].mean()), float(norms[~old].mean()), rel_tol=1e-6)
    assert torch.equal(layer.weight[old], w_old)
    assert torch.allclose(layer(x)[:, ~old], gamma * before[:, ~old], atol=1e-6)


def test_lwf_with_weight_aligning_leaves_old_and_new_classes_balanced():
    model = MLP(16, (16,), 6)
    train(LwF(weight_align=True), model, toy_stream("class"), epochs=1, batch_size=32, lr=0.1)
    norms = model.head.weight.detach().norm(dim=1)
    assert math.isclose(float(norms[:4].mean()), float(norms[4:].mean()), rel_tol=1e-5)


# ------------------------------------------------------------------------------ LFL
def test_lfl_penalty_is_zero_at_the_start_of_a_task():
    stream, model, method = toy_stream("class"), MLP(16, (8,), 6), LFL(lam=1.0)
    method.setup(model, stream)
    method.after_task(model, stream[0])
    method.before_task(model, stream[1])
    x = stream[1].x_train[:32]
    with torch.no_grad():
        assert float(method.penalty(model, x, model(x))) == 0.0
        model.trunk[1].weight.add_(0.1)
        assert float(method.penalty(model, x, model(x))) > 0.0


def test_lfl_keeps_the_old_units_frozen():
    method = watched(LFL, lam=0.1)
    model = MLP(16, (16,), 6)
    train(method, model, toy_stream("class", 2), epochs=1, batch_size=32, lr=0.1)
    (_, _, before), = method.snaps
    now = clone(model)
    old = slice(0, 3)
    assert torch.equal(now["head.weight"][old], before["head.weight"][old])
    assert torch.equal(now["head.bias"][old], before["head.bias"][old])
    assert not torch.equal(now["head.weight"][3:], before["head.weight"][3:])
    assert not same(now, before, ["trunk.1.weight"])


# ------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("scenario", ["task", "class", "domain"])
@pytest.mark.parametrize("make", [
    lambda: LwF(), lambda: LwF(T=4.0, direction="reverse"), lambda: LwF(warmup_steps=2),
    lambda: LwFReplay(40, 16), lambda: LFL(lam=0.01),
], ids=["lwf", "lwf_reverse", "lwf_warmup", "lwf_replay", "lfl"])
def test_every_method_trains_a_stream_end_to_end(make, scenario):
    torch.manual_seed(0)
    method = make()
    result = train(method, MLP(16, (16,), 6), toy_stream(scenario), epochs=1, batch_size=32, lr=0.1)
    assert result.method == method.name
    assert all(math.isfinite(v) for v in result.losses)
    assert ((result.R >= 0) & (result.R <= 1)).all()
    assert method.stored_bytes() > 0
    if scenario == "task":
        assert result.R[-1].mean() > 0.5


def test_lwf_replay_distils_on_the_replay_batch_too():
    torch.manual_seed(0)
    stream = toy_stream("class", 2)
    method, model = LwFReplay(40, 16, beta=0.0), MLP(16, (8,), 6)
    method.setup(model, stream)
    method.after_task(model, stream[0])
    first = stream[0]
    method.buffer.add(first.x_train[:40], first.y_train[:40], torch.zeros(40, dtype=torch.long))
    method.before_task(model, stream[1])
    with torch.no_grad():
        model.head.bias.add_(torch.arange(6.0))
    old = method.buffer.sample(16)
    with torch.no_grad():  # beta = 0: the replay loss is the distillation alone
        assert float(method.replay_loss([model(old.x)], [old])) > 0.0
    teacher_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert method.stored_bytes() == method.buffer.nbytes + teacher_bytes


def test_frozen_copy_is_independent_of_the_model():
    model = MLP(16, (8,), 6)
    teacher = frozen_copy(model)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    assert not torch.equal(teacher.head.bias, model.head.bias)

"""EWC, online EWC, SI, MAS and the Fisher estimators on tiny models and data (each test well under a second)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cfutils import data, fisher, models, runs, train
from cfutils.methods import EWC, L2, MAS, SI, OnlineEWC


def toy_stream(n_tasks: int = 3, scenario: str = "domain") -> data.TaskStream:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :4].argmax(1) + 2 * (x.flatten(1)[:, 4] > 0)).long()  # 6 classes, learnable
    ds = data.Dataset("toy", x[:200], y[:200], x[200:], y[200:], tuple("abcdef"))
    if scenario == "domain":
        return data.permuted_stream(ds, n_tasks, seed=0)
    return data.split_stream(ds, n_tasks, scenario=scenario)


def toy_model(n_outputs: int = 6) -> models.MLP:
    torch.manual_seed(0)
    return models.MLP(16, (8,), n_outputs)


class Logistic(nn.Module):
    """p(y=1|x) = sigmoid(w x + b), written as a two-class softmax over the logits (0, w x + b)."""

    def __init__(self, w: float, b: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w]))
        self.b = nn.Parameter(torch.tensor([b]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.w * x[:, 0] + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_exact_fisher_of_logistic_model_matches_closed_form():
    model, x = Logistic(0.7, -0.3), torch.linspace(-2, 2, 9).unsqueeze(1)
    s = torch.sigmoid(0.7 * x[:, 0] - 0.3)
    F = fisher.fisher_exact(model, x)
    torch.testing.assert_close(F["w"], (s * (1 - s) * x[:, 0] ** 2).mean().reshape(1))
    torch.testing.assert_close(F["b"], (s * (1 - s)).mean().reshape(1))


def test_sampled_fisher_is_unbiased_and_batch_of_one_is_empirical():
    model, x = Logistic(0.7, -0.3), torch.randn(4000, 1, generator=torch.Generator().manual_seed(1))
    y = (torch.rand(4000, generator=torch.Generator().manual_seed(2)) < 0.5).long()
    exact = fisher.fisher_exact(model, x)
    sampled = fisher.fisher_sampled(model, x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sampled["w"], exact["w"], rtol=0.08, atol=0)
    empirical = fisher.fisher_empirical(model, x[:50], y[:50])
    batch1 = fisher.fisher_batch_squared(model, x[:50], y[:50], batch_size=1)
    torch.testing.assert_close(batch1["w"], empirical["w"])
    assert fisher.fisher_batch_squared(model, x, y)["w"] < 0.1 * fisher.fisher_empirical(model, x, y)["w"]


def test_task_il_mask_keeps_fisher_of_other_heads_zero():
    stream, model = toy_stream(3, "task"), toy_model()
    mask = stream.masks[0]
    F = fisher.fisher_exact(model, stream[0].x_train[:20], mask)
    assert torch.all(F["head.weight"][~mask] == 0) and torch.all(F["head.weight"][mask] > 0)


def ewc_with_term(model: nn.Module, lam: float, importance: dict, anchor: dict) -> EWC:
    method = EWC(lam)
    method.setup(model, toy_stream())
    method.consolidate(importance, anchor)
    return method


def test_penalty_is_zero_at_anchor_and_its_gradient_is_lambda_f_delta():
    model = toy_model()
    anchor = EWC.snapshot(model)
    F = {n: torch.rand_like(p) for n, p in anchor.items()}
    method = ewc_with_term(model, 3.0, F, anchor)
    assert method.penalty(model).item() == 0.0 == method.penalty_per_term(model).item()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    method.penalty_per_term(model).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 3.0 * F[n] * (p.detach() - anchor[n]))


def test_merged_penalty_equals_the_sum_of_its_terms_in_value_and_gradient():
    model, g = toy_model(), torch.Generator().manual_seed(0)
    method = EWC(7.0)
    method.setup(model, toy_stream())
    for _ in range(4):
        anchor = {n: p.detach() + torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
        method.consolidate({n: torch.rand(p.shape, generator=g) for n, p in anchor.items()}, anchor)
    torch.testing.assert_close(method.penalty(model), method.penalty_per_term(model).detach(), rtol=1e-5, atol=0)
    method.penalty_per_term(model).backward()
    autograd = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    method.after_backward(model)  # the analytic gradient 2 s A (θ - m)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, autograd[n], rtol=1e-4, atol=1e-6)


def test_anchors_are_detached_copies():
    model = toy_model()
    anchor = EWC.snapshot(model)
    assert all(not a.requires_grad for a in anchor.values())


def test_parameter_with_zero_fisher_is_free_to_move():
    model = toy_model()
    anchor = EWC.snapshot(model)
    F = {n: torch.ones_like(p) for n, p in anchor.items()}
    F["head.bias"] = torch.zeros_like(F["head.bias"])
    method = ewc_with_term(model, 10.0, F, anchor)
    with torch.no_grad():
        model.head.bias.add_(5.0)
    assert method.penalty(model).item() == 0.0
    with torch.no_grad():
        model.head.weight.add_(0.1)
    assert method.penalty(model).item() > 0.0


def test_separate_ewc_keeps_one_term_per_task_but_the_last():
    stream, model = toy_stream(3), toy_model()
    method = EWC(1.0, n_fisher=20)
    train.train(method, model, stream, epochs=1, batch_size=50, lr=0.01)
    assert len(method.terms) == 2
    n_params = sum(p.numel() for p in model.parameters())
    assert method.stored_bytes() == 2 * 2 * n_params * 4  # (Fisher + anchor) x 2 tasks x float32


def test_online_ewc_update_rule():
    model = toy_model()
    method = OnlineEWC(1.0, gamma=0.5)
    method.setup(model, toy_stream())
    a1, a2 = EWC.snapshot(model), {n: p + 1 for n, p in EWC.snapshot(model).items()}
    f1 = {n: torch.full_like(p, 2.0) for n, p in a1.items()}
    f2 = {n: torch.full_like(p, 3.0) for n, p in a1.items()}
    method.consolidate(f1, a1)
    method.consolidate(f2, a2)
    assert len(method.terms) == 1
    running, anchor = method.terms[0]
    for n in a1:
        torch.testing.assert_close(running[n], 0.5 * f1[n] + f2[n])
        torch.testing.assert_close(anchor[n], a2[n])


@pytest.mark.parametrize("scenario", ["domain", "task"])
@pytest.mark.parametrize("make", [lambda: SI(1.0), lambda: MAS(1.0, n_samples=20)], ids=["si", "mas"])
def test_si_and_mas_importances_are_nonnegative_and_shaped_like_parameters(make, scenario):
    stream, model = toy_stream(3, scenario), toy_model()
    method = make()
    train.train(method, model, stream, epochs=1, batch_size=25, lr=0.05, optimizer="adam")
    (importance, anchor), = method.terms
    for n, p in model.named_parameters():
        assert importance[n].shape == p.shape == anchor[n].shape
        assert torch.all(importance[n] >= 0)
    assert sum(float(v.sum()) for v in importance.values()) > 0


def test_si_path_integral_with_plain_sgd_is_lr_times_squared_gradients():
    stream, model = toy_stream(1), toy_model()
    method = SI(1.0)
    method.setup(model, stream)
    x, y = stream[0].x_train[:30], stream[0].y_train[:30]
    method.loss(model, x, y, torch.zeros_like(y)).backward()
    method.after_backward(model)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    method.after_step(model)
    for n, g in grads.items():
        torch.testing.assert_close(method.omega[n], 0.1 * g ** 2)


def test_l2_pulls_every_parameter_equally_to_the_latest_anchor():
    stream, model = toy_stream(2), toy_model()
    method = L2(0.5)
    train.train(method, model, stream, epochs=1, batch_size=50, lr=0.05)
    (importance, anchor), = method.terms
    assert all(torch.equal(w, torch.ones_like(w)) for w in importance.values())
    assert all(torch.equal(anchor[n], p.detach()) for n, p in model.named_parameters())  # end of task 2
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    n_params = sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(method.penalty(model), torch.tensor(0.5 * 0.01 * n_params))
    model.zero_grad(set_to_none=True)
    method.after_backward(model)
    assert all(torch.allclose(p.grad, torch.full_like(p, 2 * 0.5 * 0.1)) for p in model.parameters())
    assert method.stored_bytes() == n_params * 4  # the anchor only
    assert runs.RunSpec("l2", {"strength": 0.5}).build_method().strength == 0.5


@pytest.mark.parametrize(("make", "word"), [(lambda: EWC(-1.0), "lam"), (lambda: EWC(1.0, fisher="hessian"), "fisher"),
                                            (lambda: OnlineEWC(1.0, gamma=1.5), "gamma"), (lambda: SI(-1.0), "c"),
                                            (lambda: MAS(1.0, n_samples=0), "n_samples"),
                                            (lambda: L2(-1.0), "strength")])
def test_bad_arguments_name_the_parameter(make, word):
    with pytest.raises(ValueError, match=word):
        make()

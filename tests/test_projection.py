"""Unit tests of the gradient-projection methods (GEM, A-GEM, OGD, GPM, PCGrad) and MER."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from cfutils.data import Dataset, split_stream
from cfutils.gradients import (flat_grad, grad_vector, memory_grads, mlp_layers,
                               mlp_memory_grads, sgd_on_each_sample, write_grad)
from cfutils.methods import AGEM, GEM, GPM, MER, OGD, PCGrad, gem
from cfutils.methods.episodic import episode
from cfutils.methods.ogd import extend_basis
from cfutils.methods.pcgrad import project_conflicts
from cfutils.models import MLP, MultiHeadMLP
from cfutils.train import train


def tiny_stream(scenario: str = "class", n_tasks: int = 2):
    """4 learnable classes of 4x4 inputs, split into ``n_tasks`` tasks."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 4, 4, generator=g)
    y = torch.arange(400) % 4
    x[:, 0, 0, 0] += 3 * y
    data = Dataset("toy", x, y, x[:80], y[:80], ("a", "b", "c", "d"))
    return split_stream(data, n_tasks, scenario)


def violating_problem(k: int, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A gradient ``g`` and ``k`` memory gradients (rows of ``G``), at least one dot negative."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        G = torch.randn(k, dim, generator=gen, dtype=torch.float64)
        g = torch.randn(dim, generator=gen, dtype=torch.float64)
        if (G @ g < 0).any():
            return g, G


def closest_feasible_by_enumeration(g: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Brute force: project ``g`` onto {z : G_S z = 0} for every active set S; closest feasible."""
    best = None
    for r in range(len(G) + 1):
        for S in itertools.combinations(range(len(G)), r):
            A = G[list(S)]
            z = g - A.T @ torch.linalg.solve(A @ A.T, A @ g) if S else g
            if (G @ z >= -1e-9).all() and (best is None or (z - g).norm() < (best - g).norm()):
                best = z
    return best


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gem_qp_is_feasible_and_closest(k, seed):
    g, G = violating_problem(k, seed=seed)
    g_tilde = GEM(margin=0.0).project(g, G)
    assert (G @ g_tilde >= -1e-8).all()
    assert torch.allclose(g_tilde, closest_feasible_by_enumeration(g, G), atol=1e-7)
    # no random feasible point nearby is closer to g
    gen = torch.Generator().manual_seed(seed)
    z = g_tilde + 0.1 * torch.randn(2000, len(g), generator=gen, dtype=torch.float64)
    feasible = (z @ G.T >= 0).all(dim=1)
    assert feasible.any() and ((z[feasible] - g).norm(dim=1) >= (g_tilde - g).norm() - 1e-12).all()


def test_gem_margin_keeps_every_multiplier_above_it_and_the_constraints():
    g, G = violating_problem(3)
    Gn = G / G.norm(dim=1, keepdim=True)
    v = gem.solve_dual(Gn @ Gn.T, Gn @ g, margin=0.5)
    assert (v >= 0.5 - 1e-9).all()
    g_margin = GEM(margin=0.5).project(g, G)
    assert torch.allclose(g_margin, g + Gn.T @ v, atol=1e-9)
    assert (G @ g_margin >= -1e-8).all()
    assert not torch.allclose(g_margin, GEM(margin=0.0).project(g, G))


def test_gem_with_one_past_task_is_agem_formula():
    g, G = violating_problem(1)
    ref = G[0]
    by_formula = g - (g @ ref) / (ref @ ref) * ref
    unit = ref / ref.norm()
    for margin in (0.0, 0.5):  # the closed form GEM uses for one task = the QP quadprog solves
        v = gem.solve_dual(unit[None] @ unit[:, None], unit[None] @ g, margin)
        assert torch.allclose(GEM(margin=margin).project(g, G), g + v * unit, atol=1e-8)
    assert torch.allclose(g + gem.solve_dual(torch.ones(1, 1, dtype=g.dtype), unit[None] @ g) * unit,
                          by_formula, atol=1e-8)
    assert torch.allclose(GEM(margin=0.0).project(g, G), by_formula, atol=1e-8)
    assert torch.allclose(AGEM().project(g, G), by_formula, atol=1e-12)
    assert abs(float(AGEM().project(g, G) @ ref)) < 1e-10


def test_agem_and_gem_leave_non_violating_gradients_untouched():
    g, G = violating_problem(1)
    G = -G if float(g @ G[0]) < 0 else G  # now <g, g_ref> > 0
    assert torch.equal(AGEM().project(g, G), g)
    assert torch.equal(GEM().project(g, G), g)


def test_gem_step_writes_a_gradient_that_respects_every_memory():
    torch.manual_seed(0)
    model, stream = MLP(16, (8,), 4), tiny_stream("class", n_tasks=4)
    method = GEM(memory_per_task=20, margin=0.0)
    method.setup(model, stream)
    for task in stream.tasks[:3]:
        method.after_task(model, task)
    params = list(model.parameters())
    G = memory_grads(model, params, method.loss, method.memories())
    task = stream[3]
    for start in range(0, 100, 10):  # a few batches of the new task; some violate a constraint
        model.zero_grad()
        x, y = task.x_train[start:start + 10], task.y_train[start:start + 10]
        method.loss(model, x, y, torch.full_like(y, 3)).backward()
        g = flat_grad(params)
        method.after_backward(model)
        assert (G @ flat_grad(params)).min() > -1e-6 * g.norm() * G.norm(dim=1).max()
    assert method.sizes == [20, 20, 20] and method.stored_bytes() == 60 * (16 * 4 + 8 + 8)


def test_gradient_vectors_round_trip_and_memory_grads_match_autograd():
    torch.manual_seed(0)
    model = MLP(16, (8,), 4)
    params = list(model.parameters())
    x, y, t = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0]), torch.zeros(5).long()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    g = flat_grad(params)
    assert len(g) == sum(p.numel() for p in params)
    write_grad(params, 2 * g)
    assert torch.allclose(flat_grad(params), 2 * g)

    def mean_loss(m, xx, yy, tt):
        return nn.functional.cross_entropy(m(xx), yy)

    G = memory_grads(model, params, mean_loss, [(x, y, t), (x[:2], y[:2], t[:2])])
    assert torch.allclose(G[0], g, atol=1e-6)
    g_two = grad_vector(mean_loss(model, x[:2], y[:2], t[:2]), params)
    assert torch.allclose(G[1], g_two, atol=1e-6)
    assert torch.allclose(flat_grad(params), 2 * g)  # reading memory gradients leaves .grad alone


def test_ogd_basis_is_orthonormal_and_projected_gradient_orthogonal():
    torch.manual_seed(0)
    model, stream = MLP(16, (8,), 4), tiny_stream("class", n_tasks=4)
    method = OGD(memory_per_task=10)
    train(method, model, stream, epochs=1, batch_size=32, lr=0.05)
    Q = method.basis
    assert len(Q) == 30  # 10 independent gradients per task, none after the last task
    assert torch.allclose(Q @ Q.T, torch.eye(len(Q)), atol=1e-5)
    params = list(model.parameters())
    write_grad(params, torch.randn(Q.shape[1]))
    method.after_backward(model)
    assert (Q @ flat_grad(params)).abs().max() < 1e-5
    assert method.stored_bytes() == Q.numel() * 4


def test_extend_basis_drops_dependent_directions():
    gen = torch.Generator().manual_seed(0)
    Q = extend_basis(torch.zeros(0, 20), torch.randn(3, 20, generator=gen))
    V = torch.cat([torch.randn(2, 3, generator=gen) @ Q, torch.randn(2, 20, generator=gen)])
    V = torch.cat([V, V[2:3] + V[3:4], torch.zeros(1, 20)])  # in span of Q, new, dependent, zero
    Q2 = extend_basis(Q, V)
    assert len(Q2) == 5 and torch.allclose(Q2 @ Q2.T, torch.eye(5), atol=1e-5)


def test_gpm_step_keeps_outputs_on_stored_inputs():
    torch.manual_seed(0)
    model, stream = MLP(16, (8,), 4), tiny_stream("class")
    method = GPM(threshold=1.0, n_samples=5, seed=3)
    method.setup(model, stream)
    method.after_task(model, stream[0])
    assert all(0 < d <= 5 for d in method.protected[0].values())
    for M in method.bases.values():
        assert torch.allclose(M.T @ M, torch.eye(M.shape[1]), atol=1e-5)
    stored = episode(stream[0], 5, torch.Generator().manual_seed(3)).x  # the samples GPM drew
    before, new_before = model(stored).detach(), model(stream[1].x_train).detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        task = stream[1]
        method.loss(model, task.x_train, task.y_train, torch.ones_like(task.y_train)).backward()
        method.after_backward(model)
        opt.step()
    assert torch.allclose(model(stored), before, atol=1e-5)
    assert (model(stream[1].x_train) - new_before).abs().max() > 0.1  # it did learn something


def test_gpm_threshold_sets_the_protected_dimension():
    torch.manual_seed(0)
    model, stream = MLP(16, (8,), 4), tiny_stream("class")
    dims = []
    for threshold in (0.5, 0.9, 1.0):
        method = GPM(threshold=threshold, n_samples=100)
        method.setup(model, stream)
        method.after_task(model, stream[0])
        dims.append(method.protected[0]["trunk.1"])
    assert dims[0] < dims[1] < dims[2] == 17  # 16 inputs + the bias's constant input


def test_pcgrad_removes_the_conflicting_component():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 1.0]])
    out = project_conflicts(grads, torch.Generator().manual_seed(0))
    assert torch.allclose(out[0], torch.tensor([0.5, 0.5]))  # g1 off g2, the only conflict
    assert torch.allclose(out[1], torch.tensor([0.0, 1.0]))  # g2 off g1
    assert torch.equal(out[2], grads[2])  # conflicts with nobody
    assert abs(float(out[0] @ grads[1])) < 1e-7 and abs(float(out[1] @ grads[0])) < 1e-7
    agreeing = torch.tensor([[1.0, 0.2], [0.3, 1.0]])
    assert torch.equal(project_conflicts(agreeing, torch.Generator()), agreeing)


def test_pcgrad_task_gradients_add_up_to_joint_training_gradient():
    torch.manual_seed(0)
    model, stream = MLP(16, (8,), 4), tiny_stream("task")
    method = PCGrad()
    method.setup(model, stream)
    x = torch.cat([stream[0].x_train[:7], stream[1].x_train[:5]])
    y = torch.cat([stream[0].y_train[:7], stream[1].y_train[:5]])
    t = torch.tensor([0] * 7 + [1] * 5)
    params = list(model.parameters())
    joint = grad_vector(nn.functional.cross_entropy(method.logits(model, x, t), y), params)
    method.loss(model, x, y, t).backward()
    assert torch.allclose(method.task_grads.sum(0), joint, atol=1e-6)
    assert torch.allclose(flat_grad(params), joint, atol=1e-6)  # trainer's backward: joint's
    method.after_backward(model)
    expected = project_conflicts(method.task_grads, torch.Generator().manual_seed(0)).sum(0)
    assert torch.allclose(flat_grad(params), expected, atol=1e-6)


def test_mer_meta_gradient_reproduces_its_inner_step():
    """beta = 1, 1 batch, empty memory, lr (gamma) = 1: MER's step is 1 SGD step of rate alpha."""
    torch.manual_seed(0)
    model, stream = MLP(16, (8,), 4), tiny_stream("class")
    method = MER(memory_size=10, n_batches=1, alpha=0.1, beta=1.0)
    method.setup(model, stream)
    x, y, t = stream[0].x_train[:1], stream[0].y_train[:1], torch.zeros(1, dtype=torch.long)
    params = list(model.parameters())
    grads = torch.autograd.grad(method.loss(model, x, y, t), params)
    expected = [p - 0.1 * gp for p, gp in zip(params, grads)]
    opt = torch.optim.SGD(params, lr=1.0)
    opt.zero_grad()
    method.loss(model, x, y, t).backward()
    method.after_backward(model)
    opt.step()
    assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(params, expected))
    assert len(method.buffer) == 1


@pytest.mark.parametrize("masked", [False, True])
def test_written_out_backprop_equals_autograd_sample_by_sample(masked):
    """MER's per-sample SGD with the MLP's back-propagation written out = autograd's, step by step."""
    torch.manual_seed(0)
    fast, slow = MLP(16, (8, 6), 4), MLP(16, (8, 6), 4)
    slow.load_state_dict(fast.state_dict())
    x, y = torch.randn(7, 1, 4, 4), torch.tensor([0, 1, 3, 2, 1, 0, 3])
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)[y // 2] if masked else None
    layers = mlp_layers(fast, list(fast.parameters()))
    sgd_on_each_sample(layers, x, y, 0.2, masks)
    for n in range(len(y)):
        z = slow(x[n:n + 1])
        if masked:
            z = z.masked_fill(~masks[n], torch.finfo(z.dtype).min / 2)
        grads = torch.autograd.grad(nn.functional.cross_entropy(z, y[n:n + 1]), slow.parameters())
        with torch.no_grad():
            for p, g in zip(slow.parameters(), grads):
                p.sub_(0.2 * g)
    for p, q in zip(fast.parameters(), slow.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert mlp_layers(fast, list(fast.parameters())[:-1]) is None  # not every parameter trained
    assert mlp_layers(MultiHeadMLP(16, (8,), (2, 2)), []) is None  # other networks: autograd


@pytest.mark.parametrize("masked", [False, True])
def test_batched_mlp_memory_gradients_equal_one_autograd_pass_per_memory(masked):
    """GEM's references for an MLP (all memories at once, back-propagation written out) = autograd's."""
    torch.manual_seed(0)
    model = MLP(16, (8, 6), 4)
    params = list(model.parameters())
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool) if masked else None
    memories = [(torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 0, 1, 1]) + 2 * (k % 2),
                 torch.full((5,), k)) for k in range(3)]

    def loss(m, x, y, t):
        z = m(x)
        return nn.functional.cross_entropy(z if masks is None else
                                           z.masked_fill(~masks[t], torch.finfo(z.dtype).min / 2), y)

    x, y, t = (torch.cat([mem[i] for mem in memories]) for i in range(3))
    G = mlp_memory_grads(mlp_layers(model, params), params, x, y, t, len(memories), masks)
    assert torch.allclose(G, memory_grads(model, params, loss, memories), atol=1e-6)


METHODS = {
    "gem": lambda: GEM(memory_per_task=20, margin=0.5, record=True),
    "agem": lambda: AGEM(memory_per_task=20, memory_batch=16, record=True),
    "ogd": lambda: OGD(memory_per_task=10),
    "gpm": lambda: GPM(threshold=0.95, n_samples=50),
    "pcgrad": lambda: PCGrad(),
    "mer": lambda: MER(memory_size=20, replay_batch=3, n_batches=1, alpha=0.05, beta=0.5),
}


@pytest.mark.parametrize("scenario", ["class", "task"])
@pytest.mark.parametrize("name", list(METHODS))
def test_methods_train_end_to_end(name, scenario):
    torch.manual_seed(0)
    method = METHODS[name]()
    lr, batch = (1.0, 16) if name == "mer" else (0.05, 32)
    stream = tiny_stream(scenario)
    result = train(method, MLP(16, (32,), 4), stream, epochs=1, batch_size=batch, lr=lr)
    assert all(math.isfinite(v) for v in result.losses) and result.R.min() >= 0
    assert result.R[0, 0] > (0.5 if scenario == "task" else 0.25)
    assert method.stored_bytes() > 0
    if name in ("gem", "agem"):
        rows = method.log.rows()
        assert len(rows) == len(result.losses) - result.boundaries[0]  # every step of task 2
        assert max(r["violation_after"] for r in rows) < 1e-6
        assert all(len(r["cosines"]) == 1 and -1 <= r["cosines"][0] <= 1 for r in rows)
        assert method.extras()["interference"][0]["steps"] == len(rows)


@pytest.mark.parametrize("name", list(METHODS))
def test_interrupted_run_resumes_exactly(name, tmp_path):
    def run(**kwargs):
        torch.manual_seed(0)
        return train(METHODS[name](), MLP(16, (32,), 4), tiny_stream("class", 4), batch_size=16,
                     lr=1.0 if name == "mer" else 0.05, generator=torch.Generator().manual_seed(0),
                     **kwargs)

    class Interrupt(Exception):
        pass

    def interrupt(step: int, model: nn.Module) -> None:
        if step == whole.boundaries[1] + 2:  # during the third task
            raise Interrupt

    whole = run()
    with pytest.raises(Interrupt):
        run(checkpoint=tmp_path / "run.pt", on_step=interrupt)
    assert (run(checkpoint=tmp_path / "run.pt").R == whole.R).all()


def test_new_methods_have_their_own_colour_and_label():
    from cfutils.plots import METHOD_COLORS, method_label

    for name in ("gpm", "pcgrad", "mer"):
        others = [c for n, c in METHOD_COLORS.items() if n != name]
        assert METHOD_COLORS[name] not in others and method_label(name) != name


@pytest.mark.parametrize("make, parameter", [
    (lambda: GEM(memory_per_task=0), "memory_per_task"),
    (lambda: GEM(margin=-0.1), "margin"),
    (lambda: AGEM(memory_per_task=-3), "memory_per_task"),
    (lambda: AGEM(memory_batch=0), "memory_batch"),
    (lambda: OGD(memory_per_task=0), "memory_per_task"),
    (lambda: GPM(threshold=0.0), "threshold"),
    (lambda: GPM(threshold=1.2), "threshold"),
    (lambda: GPM(n_samples=0), "n_samples"),
    (lambda: MER(memory_size=0), "memory_size"),
    (lambda: MER(replay_batch=0), "replay_batch"),
    (lambda: MER(n_batches=0), "n_batches"),
    (lambda: MER(alpha=-1.0), "alpha"),
    (lambda: MER(beta=1.5), "beta"),
])
def test_bad_parameters_are_named(make, parameter):
    with pytest.raises(ValueError, match=parameter):
        make()


def test_gem_without_quadprog_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(gem, "quadprog", None)
    with pytest.raises(ImportError, match="pip install quadprog"):
        GEM()


def test_watched_fine_tuning_trains_like_fine_tuning_and_logs_interference():
    from cfutils.methods import Naive

    def run(method):
        torch.manual_seed(0)
        return train(method, MLP(16, (32,), 4), tiny_stream("class", 4), batch_size=16, lr=0.05,
                     generator=torch.Generator().manual_seed(0))

    watch = GEM(memory_per_task=20, record=True, project=False)
    assert (run(watch).R == run(Naive()).R).all()
    summary = watch.extras()["interference"]
    assert [s["task"] for s in summary] == [1, 2, 3]
    assert all(0 <= s["violated"] <= 1 and len(s["cos_mean"]) == s["task"] for s in summary)
    assert max(s["violation_after"] for s in summary) > 0  # nothing was projected away
    with pytest.raises(ValueError, match="project"):
        GEM(project=False)


def test_gem_constraints_hold_when_one_memory_gradient_is_tiny():
    """A nearly fitted memory has a tiny gradient; its constraint must hold as well as the others."""
    g, G = violating_problem(4, dim=50, seed=3)
    G = G.float()
    G[1] = -1e-6 * g.float() / g.norm()  # tiny and violated
    g_tilde = GEM(margin=0.0).project(g.float(), G)
    assert ((G @ g_tilde) / G.norm(dim=1) / g.norm() >= -1e-6).all()


def test_gem_projects_when_memory_gradients_are_parallel():
    """Two memories with parallel gradients: in float32 their cosine matrix is singular up to
    rounding (here indefinite); the dual must still be solved and the constraints hold."""
    gen = torch.Generator().manual_seed(7)  # a seed whose rounding leaves a negative eigenvalue
    r = torch.randn(20_000, generator=gen)
    G = torch.stack([r, 3 * r, torch.randn(20_000, generator=gen)])
    gram = (G @ G.T).double()
    d = gram.diagonal().sqrt()
    assert torch.linalg.eigvalsh(gram / torch.outer(d, d))[0] < 0  # rounding made it indefinite
    g = -r + 0.1 * torch.randn(20_000, generator=gen)
    g_tilde = GEM(margin=0.0).project(g, G)
    assert ((G @ g_tilde) / G.norm(dim=1) / g.norm() >= -1e-5).all()

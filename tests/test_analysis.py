"""Unit tests of cfutils.analysis on tiny synthetic data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import vector_to_parameters

from cfutils.analysis import (at_parameters, flat_parameters, group_logits, group_shares, linear_cka, linear_probe_accuracy,
                              loss_along_line)
from cfutils.models import MLP


def tiny_model(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(n_inputs=6, widths=(5,), n_outputs=3)


def test_flat_parameters_is_a_detached_copy():
    model = tiny_model(0)
    theta = flat_parameters(model)
    assert theta.numel() == sum(p.numel() for p in model.parameters())
    assert not theta.requires_grad
    theta += 1.0
    assert not torch.allclose(theta, flat_parameters(model))


def test_loss_along_line_matches_the_model_at_every_point_and_leaves_it_unchanged():
    a, b = tiny_model(0), tiny_model(1)
    start, end = flat_parameters(a), flat_parameters(b)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    path = loss_along_line(a, start, end, x, y, alphas=[0.0, 0.3, 1.0])
    probe = tiny_model(2)
    for alpha, loss, acc in zip(path.alphas, path.loss, path.accuracy):
        vector_to_parameters((1 - alpha) * start + alpha * end, probe.parameters())
        with torch.no_grad():
            logits = probe(x)
        assert loss == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
        assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert torch.equal(flat_parameters(a), start)


def test_loss_along_line_mask_restricts_the_outputs():
    model = tiny_model(0)
    theta = flat_parameters(model)
    x, y = torch.randn(16, 6), torch.randint(0, 2, (16,))
    mask = torch.tensor([True, True, False])
    masked = loss_along_line(model, theta, theta, x, y, alphas=[0.0], mask=mask)
    with torch.no_grad():
        expected = F.cross_entropy(model(x)[:, :2], y)
    assert masked.loss[0] == pytest.approx(float(expected), rel=1e-5)


def test_loss_along_line_rejects_mismatched_vectors():
    model = tiny_model(0)
    theta = flat_parameters(model)
    with pytest.raises(ValueError, match="same shape"):
        loss_along_line(model, theta, theta[:-1], torch.randn(2, 6), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="parameters"):
        loss_along_line(model, theta[:-1], theta[:-1], torch.randn(2, 6), torch.zeros(2, dtype=torch.long))


def test_linear_probe_separates_separable_classes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 10, generator=g) * 4
    labels = torch.randint(0, 4, (400,), generator=g)
    features = centres[labels] + torch.randn(400, 10, generator=g)
    assert linear_probe_accuracy(features[:300], labels[:300], features[300:], labels[300:]) > 0.95
    noise = torch.randn(400, 10, generator=g)
    assert linear_probe_accuracy(noise[:300], labels[:300], noise[300:], labels[300:]) < 0.45


def test_linear_probe_keeps_the_original_label_values():
    features = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    labels = torch.tensor([7, 7, 9, 9])
    assert linear_probe_accuracy(features, labels, features, labels) == 1.0
    with pytest.raises(ValueError, match="ridge"):
        linear_probe_accuracy(features, labels, features, labels, ridge=0.0)


def test_linear_cka_invariances_and_range():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 8, generator=g)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, 3.0 * X @ Q + 1.0) == pytest.approx(1.0)
    unrelated = linear_cka(X, torch.randn(200, 8, generator=g))
    assert 0.0 <= unrelated < 0.2
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(X, X[:10])


def test_group_logits_and_shares():
    logits = torch.tensor([[3.0, 0.0, 1.0, 0.0], [0.0, 1.0, 5.0, 3.0]])
    np.testing.assert_allclose(group_logits(logits, [(0, 1), (2, 3)]), [1.0, 2.25])
    np.testing.assert_allclose(group_shares(logits, [(0, 1), (2, 3)]), [0.5, 0.5])


def test_at_parameters_builds_a_copy_with_the_given_vector():
    a, b = tiny_model(0), tiny_model(1)
    theta_b = flat_parameters(b)
    clone = at_parameters(a, theta_b)
    assert torch.equal(flat_parameters(clone), theta_b)
    assert not torch.equal(flat_parameters(a), theta_b)
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.allclose(clone(x), b(x))
    with pytest.raises(ValueError, match="parameters"):
        at_parameters(a, theta_b[:-1])


def test_conflict_watch_sees_descent_on_the_same_task_and_ascent_on_the_opposite_one():
    from cfutils.analysis import ConflictWatch, cosine, flat_gradient

    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    model = tiny_model(0)
    same = ConflictWatch(lambda m: F.cross_entropy(m(x), y), every=1)
    opposite = ConflictWatch(lambda m: -F.cross_entropy(m(x), y), every=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(6):
        same(step, model)
        opposite(step, model)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()   # full-batch gradient descent on the same loss
        opt.step()
    same(6, model)
    opposite(6, model)
    assert same.steps == list(range(7)) and len(same.cosines) == 6   # the last one awaits its update
    np.testing.assert_allclose(same.cosines, -1.0, atol=1e-5)      # every update descends the loss
    np.testing.assert_allclose(opposite.cosines, 1.0, atol=1e-5)   # and climbs its negative
    assert same.losses[-1] < same.losses[0]
    g = flat_gradient(F.cross_entropy(model(x), y), model)
    assert g.shape == flat_parameters(model).shape and cosine(g, 2 * g) == pytest.approx(1.0)
    assert cosine(g, torch.zeros_like(g)) == 0.0

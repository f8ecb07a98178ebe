r"""Diagonal Fisher information of a classifier, four ways, with per-sample gradients from ``torch.func``.

For a model :math:`p_\theta(y\mid x)` and inputs :math:`x_1..x_N`, the diagonal of the Fisher is

.. math::  F_i = \frac1N \sum_{n=1}^{N} \mathbb{E}_{y\sim p_\theta(\cdot\mid x_n)}
           \Big[\big(\partial_{\theta_i} \log p_\theta(y\mid x_n)\big)^2\Big].

* :func:`fisher_exact` takes the expectation exactly: a sum over the classes weighted by :math:`p_\theta(c\mid x_n)`.
* :func:`fisher_sampled` replaces it by one label drawn from the model (an unbiased Monte-Carlo estimate).
* :func:`fisher_empirical` uses the true label :math:`y_n` instead (the "empirical Fisher": not the Fisher).
* :func:`fisher_batch_squared` squares the gradient of a *batch-mean* loss, as much blog code does; the
  cross terms between samples cancel, so it is roughly the empirical Fisher divided by the batch size.

All of them return a *mean* over samples (multiply by :math:`N` for the sum), as a dict name -> tensor.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

Params = dict[str, torch.Tensor]
KINDS = ("exact", "sampled", "empirical", "batch_squared")


def trainable(model: nn.Module) -> Params:
    """The trainable parameters by name, detached (the point at which gradients are taken)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with the output units a task may not use pushed to a very negative value (task-IL)."""
    return logits if mask is None else logits.masked_fill(~mask, torch.finfo(logits.dtype).min / 2)


def per_sample_reduce(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      scalar: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      weights: torch.Tensor | None = None, transform: Callable = torch.square,
                      mask: torch.Tensor | None = None, chunk: int = 32) -> Params:
    r""":math:`\frac1N \sum_n w_n\, \mathrm{transform}(\nabla_\theta\, \mathrm{scalar}(z_n, y_n))` per parameter.

    ``z_n`` are the (masked) logits of sample ``n``; the per-sample gradients come from ``vmap(grad(...))``,
    a chunk of samples at a time, so memory stays at ``chunk`` copies of the parameters.
    """
    params = trainable(model)

    def one(p: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        z = masked(functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0), mask)
        return scalar(z, yi)

    per_sample = vmap(grad(one), in_dims=(None, 0, 0))
    w = torch.ones(len(x), device=x.device) if weights is None else weights
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for xs, ys, ws in zip(x.split(chunk), y.split(chunk), w.split(chunk)):
        for n, g in per_sample(params, xs, ys).items():
            total[n] += torch.einsum("b,b...->...", ws, transform(g))
    return {n: t / len(x) for n, t in total.items()}


def neg_log_likelihood(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`-\log p(y \mid x) = -\log\mathrm{softmax}(z)_y` for one sample.

    For a sequence model (``z`` of shape ``(T, V)``, ``y`` of shape ``(T,)``) the sum over positions,
    :math:`-\sum_t \log p(y_t \mid x_{<t})`.
    """
    return -torch.log_softmax(z, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1).sum()


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The model's predictive distribution :math:`p_\\theta(\\cdot\\mid x)` for every row of ``x``
    (over the last axis: a sequence model gives one distribution per position)."""
    return torch.softmax(masked(model(x), mask), dim=-1)


def fisher_exact(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None) -> Params:
    r""":math:`F = \frac1N\sum_n \sum_c p_\theta(c\mid x_n)\, (\nabla \log p_\theta(c\mid x_n))^2`.

    One batched pass of per-sample gradients per class (classes a task-IL ``mask`` excludes have p = 0).
    """
    p = probabilities(model, x, mask)
    parts = [per_sample_reduce(model, x, torch.full((len(x),), c, device=x.device), neg_log_likelihood,
                               weights=p[:, c], mask=mask)
             for c in range(p.shape[1]) if p[:, c].any()]
    return {n: sum(part[n] for part in parts) for n in parts[0]}


def fisher_sampled(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> Params:
    r"""One label per sample drawn from the model, :math:`\hat y_n \sim p_\theta(\cdot\mid x_n)`.

    An unbiased Monte-Carlo estimate of :func:`fisher_exact`, at the cost of one pass instead of one per class.
    For a sequence model (logits ``(N, T, V)``) one token is drawn per position, teacher-forced on ``x``:
    the estimate is then that of the Fisher of the window, the sum of the per-position Fishers.
    """
    p = probabilities(model, x, mask)
    flat_p = p.reshape(-1, p.shape[-1]).cpu()
    y_hat = torch.multinomial(flat_p, 1, generator=generator).reshape(p.shape[:-1]).to(x.device)
    return per_sample_reduce(model, x, y_hat, neg_log_likelihood, mask=mask)


def fisher_empirical(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> Params:
    r"""The true labels instead of the model's: :math:`\frac1N \sum_n (\nabla \log p_\theta(y_n\mid x_n))^2`."""
    return per_sample_reduce(model, x, y, neg_log_likelihood, mask=mask)


def fisher_batch_squared(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                         batch_size: int = 128) -> Params:
    r"""The blog recipe, :math:`\frac1K \sum_k \big(\nabla \frac1B \sum_{n\in k} -\log p_\theta(y_n\mid x_n)\big)^2`.

    Not a Fisher: the square of a mean gradient over ``K`` batches of ``batch_size``, shown for comparison.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    names = list(trainable(model))
    total = [torch.zeros_like(p) for p in params]
    batches = list(zip(x.split(batch_size), y.split(batch_size)))
    for xb, yb in batches:
        grads = torch.autograd.grad(F.cross_entropy(masked(model(xb), mask), yb), params)
        total = [t + g.detach() ** 2 for t, g in zip(total, grads)]
    return {n: t / len(batches) for n, t in zip(names, total)}


def fisher(kind: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
           generator: torch.Generator | None = None) -> Params:
    """Dispatch on ``kind`` (one of :data:`KINDS`)."""
    if kind == "exact":
        return fisher_exact(model, x, mask)
    if kind == "sampled":
        return fisher_sampled(model, x, mask, generator)
    if kind == "empirical":
        return fisher_empirical(model, x, y, mask)
    if kind == "batch_squared":
        return fisher_batch_squared(model, x, y, mask)
    raise ValueError(f"fisher={kind!r} is not allowed; choose one of {list(KINDS)}")


def flat(params: Params) -> torch.Tensor:
    """All entries of a parameter dict as one vector (for scatter plots and totals)."""
    return torch.cat([t.flatten() for t in params.values()])
